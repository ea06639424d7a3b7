"""Gazebo assets: the scenario -> world generator, the shipped world, the URDF's <gazebo> tags and
the ros_gz_bridge config, checked against the scenario, config/robot.yaml and the topic contract.
Where the SDFormat command-line tool is installed (`gz sdf`, or `ign sdf` on Fortress-era
systems) the world and the URDF converted to SDF are validated by it."""

from __future__ import annotations

import math
from pathlib import Path
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest
import yaml

from mine_robot import launch_support as ls
from mine_robot.robot import load_robot
from mine_robot.sim.gazebo_world import object_shape, visible_objects, world_sdf, write_world
from mine_robot.sim.scenario import load_scenario, scenario_from_dict

REPO = Path(__file__).resolve().parent.parent
URDF = REPO / 'urdf' / 'mine_robot.urdf'
WORLD = REPO / 'sim' / 'worlds' / 'minefield.sdf'
BRIDGE = REPO / 'config' / 'gz_bridge.yaml'


def _sdf_tool() -> list[str] | None:
    for exe in ('gz', 'ign'):
        path = shutil.which(exe)
        if path and subprocess.run([path, 'sdf', '--help'], capture_output=True).returncode == 0:
            return [path, 'sdf']
    return None


SDF_TOOL = _sdf_tool()
requires_sdf_tool = pytest.mark.skipif(
    SDF_TOOL is None, reason='no SDFormat tool (`gz sdf` / `ign sdf`); install gz-tools or '
                             'ignition-tools + libsdformat to validate')


def _scenario(**extra):
    data = {
        'name': 'gz-test', 'datum': {'lat': -12.5, 'lon': 33.25},
        'area': {'search_area': [[0, 0], [12, 0], [12, 8], [0, 8]],
                 'no_go': [[[5, 5], [6, 5], [6, 6], [5, 6]]]},
        'soil': {}, 'robot': {'x': -1.0, 'y': 0.5, 'yaw_deg': 90},
        'objects': [
            {'id': 'M1', 'kind': 'mine', 'x': 2.0, 'y': 3.0, 'depth_m': 0.05, 'metal_g': 1.0,
             'diameter_m': 0.08},
            {'id': 'S1', 'kind': 'surface', 'x': 7.5, 'y': 1.5, 'depth_m': 0.0, 'metal_g': 5.0,
             'diameter_m': 0.11},
            {'id': 'U1', 'kind': 'uxo', 'x': 10.0, 'y': 6.0, 'depth_m': 0.0, 'metal_g': 800.0,
             'diameter_m': 0.06, 'yaw_deg': 30},
            {'id': 'C/1', 'kind': 'clutter', 'x': 1.0, 'y': 7.0, 'depth_m': 0.0, 'metal_g': 2.0,
             'diameter_m': 0.03},
            {'id': 'C2', 'kind': 'clutter', 'x': 4.0, 'y': 4.0, 'depth_m': 0.1, 'metal_g': 9.0},
        ],
    }
    data.update(extra)
    return scenario_from_dict(data)


def _pose(model: ET.Element) -> list[float]:
    return [float(v) for v in model.findtext('pose').split()]


# ----------------------------------------------------------------------------- world generator

def test_world_places_exactly_the_visible_objects_at_their_true_pose():
    scenario = _scenario()
    world = ET.fromstring(world_sdf(scenario)).find('world')
    models = {m.get('name'): m for m in world.findall('model') if m.get('name').startswith('object_')}
    assert set(models) == {'object_S1', 'object_U1', 'object_C_1'}  # buried M1, C2 absent
    for obj in visible_objects(scenario):
        model = models[f'object_{obj.id.replace("/", "_")}']
        x, y, z, roll, pitch, yaw = _pose(model)
        assert (x, y) == pytest.approx((obj.x, obj.y))
        assert yaw == pytest.approx(math.radians(obj.yaw_deg))
        _tag, size, centre_z, lying = object_shape(obj)
        assert z == pytest.approx(centre_z, abs=1e-5)
        assert model.findtext('static') == 'true'
        assert model.find('link/visual') is not None and model.find('link/collision') is not None
    # sizes follow the scenario: the surface mine is a disc of its diameter
    radius = float(models['object_S1'].findtext('link/visual/geometry/cylinder/radius'))
    assert radius == pytest.approx(0.055)
    # the UXO lies on its side along its heading: 4 diameters long, axis turned horizontal
    uxo = models['object_U1']
    assert float(uxo.findtext('link/visual/geometry/cylinder/length')) == pytest.approx(0.24)
    assert _pose(uxo)[4] == pytest.approx(math.pi / 2, abs=1e-5)


def test_world_frame_is_the_scenario_datum_in_enu():
    scenario = _scenario()
    world = ET.fromstring(world_sdf(scenario, world_name='field7')).find('world')
    assert world.get('name') == 'field7'
    sph = world.find('spherical_coordinates')
    assert sph.findtext('world_frame_orientation') == 'ENU'
    assert sph.findtext('surface_model') == 'EARTH_WGS84'
    assert float(sph.findtext('latitude_deg')) == pytest.approx(-12.5)
    assert float(sph.findtext('longitude_deg')) == pytest.approx(33.25)
    assert float(sph.findtext('heading_deg')) == 0.0
    plugins = {p.get('filename') for p in world.findall('plugin')}
    assert {'gz-sim-physics-system', 'gz-sim-sensors-system', 'gz-sim-imu-system',
            'gz-sim-navsat-system', 'gz-sim-scene-broadcaster-system'} <= plugins


def test_ground_covers_area_objects_and_start_and_tape_marks_the_boundaries():
    scenario = _scenario()
    world = ET.fromstring(world_sdf(scenario)).find('world')
    ground = world.find("model[@name='ground']")
    cx, cy = _pose(ground)[:2]
    sx, sy = (float(v) for v in ground.findtext('link/collision/geometry/plane/size').split())
    for x, y in [(-1.0, 0.5), (0, 0), (12, 8), (10.0, 6.0)]:
        assert abs(x - cx) < sx / 2 - 1.0 and abs(y - cy) < sy / 2 - 1.0
    tape = world.find("model[@name='search_area_tape']/link")
    names = [v.get('name') for v in tape.findall('visual')]
    assert sum(n.startswith('search_') for n in names) == 4
    assert sum(n.startswith('no_go0_') for n in names) == 4
    assert tape.find('collision') is None  # tape never obstructs the wheels


def test_generated_world_is_deterministic_and_writes_where_asked(tmp_path):
    scenario = _scenario()
    assert world_sdf(scenario) == world_sdf(scenario)
    path = write_world(scenario, tmp_path / 'sub' / 'w.sdf')
    assert path.read_text() == world_sdf(scenario)


def test_shipped_minefield_world_matches_the_default_scenario():
    """sim/worlds/minefield.sdf is the generator's output for sim/scenarios/default.yaml:
    regenerate it with `mine-robot gazebo-world default -o sim/worlds/minefield.sdf`."""
    scenario = load_scenario(REPO / 'sim' / 'scenarios' / 'default.yaml')
    expected = ET.fromstring(world_sdf(scenario))
    shipped = ET.parse(WORLD).getroot()
    assert ET.tostring(shipped) == ET.tostring(expected)


def test_cli_writes_the_world_and_reports_bad_scenarios(tmp_path):
    scenario = tmp_path / 's.yaml'
    scenario.write_text(yaml.safe_dump(_scenario().to_dict()))
    out = tmp_path / 'w.sdf'
    exe = [sys.executable, '-m', 'mine_robot.cli', 'gazebo-world']
    result = subprocess.run([*exe, str(scenario), '-o', str(out)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert '3 visible object(s) placed, 2 buried' in result.stdout
    assert ET.parse(out).getroot().find('world').get('name') == 'minefield'
    broken = tmp_path / 'broken.yaml'
    broken.write_text('name: x\ndatum: {lat: 95, lon: 0}\n')
    result = subprocess.run([*exe, str(broken), '-o', str(out)], capture_output=True, text=True)
    assert result.returncode == 1
    assert 'datum.lat' in result.stderr


@requires_sdf_tool
def test_worlds_validate_with_sdformat(tmp_path):
    path = write_world(_scenario(), tmp_path / 'w.sdf')
    for world in (path, WORLD):
        result = subprocess.run([*SDF_TOOL, '-k', str(world)], capture_output=True, text=True)
        assert result.returncode == 0 and 'Valid' in result.stdout, result.stdout + result.stderr
    # and the tool does reject a broken world (so the check above means something)
    bad = tmp_path / 'bad.sdf'
    bad.write_text(path.read_text().replace('<static>true</static>', '<static>maybe</static>', 1))
    result = subprocess.run([*SDF_TOOL, '-k', str(bad)], capture_output=True, text=True)
    assert result.returncode != 0 or 'Valid' not in result.stdout


# ----------------------------------------------------------------------------- URDF gazebo tags

def _urdf():
    return ET.parse(URDF).getroot()


def _plugin(root, filename):
    found = [p for p in root.findall('gazebo/plugin') if p.get('filename') == filename]
    assert len(found) == 1, filename
    return found[0]


def test_urdf_drive_plugin_matches_the_robot_geometry():
    root, robot = _urdf(), load_robot()
    drive = _plugin(root, 'gz-sim-diff-drive-system')
    joints = {j.get('name'): j for j in root.findall('joint')}
    for side, sign in (('left_joint', 1.0), ('right_joint', -1.0)):
        names = [e.text for e in drive.findall(side)]
        assert len(names) == 2  # skid steer: front and rear wheel of the side
        for name in names:
            joint = joints[name]
            assert joint.get('type') == 'continuous'
            y = float(joint.find('origin').get('xyz').split()[1])
            assert math.copysign(1.0, y) == sign
    assert float(drive.findtext('wheel_separation')) == pytest.approx(robot.wheels.track)
    assert float(drive.findtext('wheel_radius')) == pytest.approx(robot.wheels.radius)
    assert float(drive.findtext('max_linear_velocity')) == pytest.approx(robot.max_linear)
    assert float(drive.findtext('max_angular_velocity')) == pytest.approx(robot.max_angular)
    assert drive.findtext('child_frame_id') == 'base_link' and drive.findtext('frame_id') == 'odom'
    truth = _plugin(root, 'gz-sim-odometry-publisher-system')
    assert truth.findtext('odom_frame') == 'map'


def test_urdf_sensors_sit_on_the_right_links_and_match_robot_yaml():
    root, robot = _urdf(), load_robot()
    links = {link.get('name') for link in root.findall('link')}
    sensors = {}
    for gz in root.findall('gazebo'):
        for sensor in gz.findall('sensor'):
            assert gz.get('reference') in links
            sensors[sensor.get('type')] = (gz.get('reference'), sensor)
    assert set(sensors) == {'imu', 'navsat', 'camera'}
    assert sensors['imu'][0] == robot.imu.frame
    assert sensors['navsat'][0] == robot.gnss.frame
    ref, cam = sensors['camera']
    assert ref == robot.camera.frame
    assert cam.findtext('gz_frame_id') == robot.camera.optical_frame
    assert int(cam.findtext('camera/image/width')) == robot.camera.width
    assert int(cam.findtext('camera/image/height')) == robot.camera.height
    assert float(cam.findtext('camera/horizontal_fov')) == pytest.approx(robot.camera.horizontal_fov)
    assert cam.findtext('camera/image/format') == 'B8G8R8'  # bridged as bgr8, as the contract says
    for _ref, sensor in sensors.values():
        assert float(sensor.findtext('update_rate')) > 0


def _gz_topics_in_urdf() -> set[str]:
    text = URDF.read_text()
    return set(re.findall(r'>(/model/mine_robot/[a-z_]+)<', text))


def test_bridge_maps_every_gazebo_topic_onto_the_contract():
    entries = yaml.safe_load(BRIDGE.read_text())
    by_gz = {e['gz_topic_name']: e for e in entries}
    assert _gz_topics_in_urdf() - {'/model/mine_robot/tf'} <= set(by_gz)
    for entry in entries:
        assert set(entry) == {'ros_topic_name', 'gz_topic_name', 'ros_type_name', 'gz_type_name',
                              'direction'}
        assert entry['direction'] in ('GZ_TO_ROS', 'ROS_TO_GZ')
        if entry['gz_topic_name'] != '/clock':
            assert entry['gz_topic_name'] in _gz_topics_in_urdf()
    ros = {e['ros_topic_name']: (e['ros_type_name'], e['direction']) for e in entries}
    contract = (REPO / 'docs' / 'interfaces.md').read_text()
    expected = {
        'cmd_vel': ('geometry_msgs/msg/Twist', 'ROS_TO_GZ'),
        'odom': ('nav_msgs/msg/Odometry', 'GZ_TO_ROS'),
        'imu/data': ('sensor_msgs/msg/Imu', 'GZ_TO_ROS'),
        'gnss/fix': ('sensor_msgs/msg/NavSatFix', 'GZ_TO_ROS'),
        'camera/image_raw': ('sensor_msgs/msg/Image', 'GZ_TO_ROS'),
        'camera/camera_info': ('sensor_msgs/msg/CameraInfo', 'GZ_TO_ROS'),
        '/clock': ('rosgraph_msgs/msg/Clock', 'GZ_TO_ROS'),
    }
    for topic, (msg_type, direction) in expected.items():
        assert ros[topic] == (msg_type, direction), topic
        assert f'`{topic}' in contract, f'{topic} is not in docs/interfaces.md'
        pkg, _msg, name = msg_type.split('/')
        assert f'{pkg}/{name}' in contract or name in contract


def test_bridge_config_is_rescoped_for_a_second_robot():
    text = ls.gz_bridge_config(BRIDGE, 'robot2', clock=False)
    entries = yaml.safe_load(text)
    assert all(e['gz_topic_name'].startswith('/model/robot2/') for e in entries)
    assert '/clock' not in {e['ros_topic_name'] for e in entries}
    first = yaml.safe_load(ls.gz_bridge_config(BRIDGE))
    assert first == yaml.safe_load(BRIDGE.read_text())
    with pytest.raises(ls.LaunchConfigError, match='identifier'):
        ls.gz_scoped('x', 'robot 2')


@requires_sdf_tool
def test_urdf_converts_to_a_valid_sdf_with_its_sensors_and_plugins(tmp_path):
    result = subprocess.run([*SDF_TOOL, '-p', str(URDF)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    sdf = tmp_path / 'robot.sdf'
    sdf.write_text(result.stdout)
    check = subprocess.run([*SDF_TOOL, '-k', str(sdf)], capture_output=True, text=True)
    assert check.returncode == 0 and 'Valid' in check.stdout, check.stdout + check.stderr
    model = ET.fromstring(result.stdout).find('model')
    sensors = {s.get('type'): s for s in model.iter('sensor')}
    assert set(sensors) == {'imu', 'navsat', 'camera'}
    # fixed joints are lumped: the camera ends up on base_link at the mast pose, looking down
    camera_pose = [float(v) for v in sensors['camera'].findtext('pose').split()]
    robot = load_robot()
    assert camera_pose[:3] == pytest.approx(list(robot.camera.xyz), abs=1e-4)
    assert camera_pose[4] == pytest.approx(math.pi / 2, abs=1e-4)
    plugins = {p.get('filename') for p in model.findall('plugin')}
    assert {'gz-sim-diff-drive-system', 'gz-sim-odometry-publisher-system'} <= plugins
