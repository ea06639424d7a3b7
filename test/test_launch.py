"""Pip-mode checks of the launch files (no `launch` package needed) and of the plain-Python plan
they execute (mine_robot.launch_support). The real launch framework runs them in
test_launch_sim.py where launch_pytest is installed."""

from __future__ import annotations

import ast
from pathlib import Path
import xml.etree.ElementTree as ET

import pytest
import yaml

from mine_robot import launch_support as ls

REPO = Path(__file__).resolve().parent.parent
LAUNCH = REPO / 'launch'
LAUNCH_FILES = sorted(LAUNCH.glob('*.launch.py'))
USER_FACING = ('robot.launch.py', 'sim.launch.py', 'gazebo.launch.py', 'teleop.launch.py')


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def _argument_specs(tree: ast.Module) -> list[tuple]:
    """(name, default, description) tuples: the data every DeclareLaunchArgument is built from."""
    specs = []
    for node in ast.walk(tree):
        if isinstance(node, ast.List) and node.elts and all(
                isinstance(e, ast.Tuple) and len(e.elts) == 3 for e in node.elts):
            for e in node.elts:
                name, _default, desc = e.elts
                if isinstance(name, ast.Constant) and isinstance(name.value, str):
                    specs.append((name.value, _default, desc))
    return specs


def _calls(tree: ast.Module, func_name: str) -> list[ast.Call]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None
            if name == func_name:
                out.append(node)
    return out


def _kw(call: ast.Call, key: str):
    for kw in call.keywords:
        if kw.arg == key and isinstance(kw.value, ast.Constant):
            return kw.value.value
    return None


def _node_modules() -> set[str]:
    return {p.stem for p in (REPO / 'mine_robot' / 'nodes').glob('*.py') if not p.stem.startswith('_')}


def test_the_user_facing_launch_files_exist():
    names = {p.name for p in LAUNCH_FILES}
    assert set(USER_FACING) <= names
    assert 'stack.launch.py' in names


@pytest.mark.parametrize('path', LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_file_compiles_and_defines_only_generate_launch_description(path):
    tree = _tree(path)
    compile(tree, str(path), 'exec')
    functions = [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    assert functions == ['generate_launch_description']
    assert not [n for n in tree.body if isinstance(n, ast.ClassDef)]


@pytest.mark.parametrize('path', LAUNCH_FILES, ids=lambda p: p.name)
def test_every_argument_is_declared_with_a_description(path):
    tree = _tree(path)
    declares = _calls(tree, 'DeclareLaunchArgument')
    assert declares, 'no DeclareLaunchArgument'
    for call in declares:
        assert any(kw.arg == 'description' for kw in call.keywords), ast.unparse(call)
    specs = _argument_specs(tree)
    assert specs
    names = [s[0] for s in specs]
    assert len(names) == len(set(names)), f'argument declared twice in {path.name}'
    for name, _default, desc in specs:
        assert isinstance(desc, ast.Constant) and isinstance(desc.value, str) and len(desc.value) > 15, name


@pytest.mark.parametrize('path', LAUNCH_FILES, ids=lambda p: p.name)
def test_paths_come_from_the_package_share_not_literals(path):
    text = path.read_text()
    tree = _tree(path)
    assert 'FindPackageShare' in text
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            assert not node.value.startswith(('/opt/', '/home/', '/usr/', '/tmp/')), node.value
    for call in _calls(tree, 'PathJoinSubstitution'):
        first = call.args[0].elts[0]
        assert isinstance(first, ast.Call) and first.func.id == 'FindPackageShare'


def test_included_launch_files_and_named_files_exist():
    for path in LAUNCH_FILES:
        tree = _tree(path)
        for call in _calls(tree, 'PathJoinSubstitution'):
            parts = call.args[0].elts
            package = parts[0].args[0].value
            rel = [p.value for p in parts[1:] if isinstance(p, ast.Constant)]
            if package == 'mine_robot':
                assert (REPO.joinpath(*rel)).exists(), f'{path.name} names missing {"/".join(rel)}'


def test_every_executable_named_exists_as_a_node_module():
    modules = _node_modules()
    named = set(ls.NODE_CONFIG)
    for path in LAUNCH_FILES:
        for call in _calls(_tree(path), 'Node'):
            if _kw(call, 'package') == 'mine_robot':
                named.add(_kw(call, 'executable'))
    named.discard(None)
    missing = sorted(named - modules)
    assert not missing, f'launch files start executables with no mine_robot/nodes module: {missing}'
    for name in named:
        assert '\ndef main(' in (REPO / 'mine_robot' / 'nodes' / f'{name}.py').read_text(), name


def test_every_parameter_file_named_exists_and_is_node_keyed():
    for name in sorted(set(ls.NODE_CONFIG.values())):
        path = REPO / 'config' / name
        assert path.is_file(), f'config/{name} (named in launch_support.NODE_CONFIG) is missing'
        data = yaml.safe_load(path.read_text())
        assert isinstance(data, dict)
        for key, section in data.items():
            assert isinstance(section, dict) and 'ros__parameters' in section, f'{name}: {key}'


def test_config_sections_name_real_nodes():
    """A section keyed by a node name that no node has would be silently ignored."""
    modules = _node_modules()
    for name in sorted(set(ls.NODE_CONFIG.values())):
        path = REPO / 'config' / name
        if not path.is_file():
            continue
        for key in yaml.safe_load(path.read_text()):
            if '*' not in key:
                assert key.strip('/').split('/')[-1] in modules, f'config/{name}: no node {key!r}'


def test_non_mine_robot_packages_are_declared_dependencies():
    deps = {e.text for e in ET.parse(REPO / 'package.xml').getroot().iter() if e.tag.endswith('depend')}
    for path in LAUNCH_FILES:
        for call in _calls(_tree(path), 'Node'):
            package = _kw(call, 'package')
            if package in ('ros_gz_sim', 'ros_gz_bridge'):
                continue  # Gazebo is optional: the README lists its apt packages
            assert package == 'mine_robot' or package in deps, f'{path.name}: {package} not in package.xml'


# ------------------------------------------------------------------ the plan the launch files run

def _args(**overrides) -> dict[str, str]:
    base = {'config_dir': str(REPO / 'config'), 'urdf': str(REPO / 'urdf' / 'mine_robot.urdf')}
    base.update(overrides)
    return base


def test_modes_start_the_documented_node_sets():
    robot = ls.GraphPlan.from_arguments(_args(drivers='true', teleop='joy')).executables()
    assert set(robot) == {*ls.DRIVER_NODES, *ls.STACK_NODES, 'joy_teleop'}
    assert 'sim_world' not in robot
    sim = ls.GraphPlan.from_arguments(_args(simulator='builtin', use_sim_time='true')).executables()
    assert set(sim) == {'sim_world', 'sim_sensors', *ls.STACK_NODES}
    assert sim.index('sim_world') < sim.index('localization')
    virtual = ls.GraphPlan.from_arguments(_args(simulator='builtin', virtual_devices='true')).executables()
    assert set(virtual) == {'sim_world', 'sim_sensors', *ls.SERIAL_DRIVER_NODES, *ls.STACK_NODES}
    gazebo = ls.GraphPlan.from_arguments(_args(simulator='gazebo')).executables()
    assert set(gazebo) == {'sim_sensors', *ls.STACK_NODES}
    teleop = ls.GraphPlan.from_arguments(_args(autonomy='false', teleop='keyboard')).executables()
    assert teleop == ['twist_mux', 'safety_monitor', 'keyboard_teleop']


def test_bad_launch_arguments_are_rejected_with_the_reason(tmp_path):
    with pytest.raises(ls.LaunchConfigError, match='simulator'):
        ls.GraphPlan.from_arguments(_args(simulator='webots'))
    with pytest.raises(ls.LaunchConfigError, match='use_sim_time'):
        ls.GraphPlan.from_arguments(_args(use_sim_time='maybe'))
    with pytest.raises(ls.LaunchConfigError, match='virtual_devices'):
        ls.GraphPlan.from_arguments(_args(virtual_devices='true'))
    with pytest.raises(ls.LaunchConfigError, match='namespace'):
        ls.GraphPlan.from_arguments(_args(namespace='robot 1'))
    with pytest.raises(ls.LaunchConfigError, match='config_dir'):
        ls.GraphPlan.from_arguments(_args(config_dir=str(tmp_path / 'nope')))
    bad = tmp_path / 'bad.yaml'
    bad.write_text('twist_mux: [1, 2]\n')
    plan = ls.GraphPlan.from_arguments(_args(params_file=str(bad)))
    with pytest.raises(ls.LaunchConfigError, match='ros__parameters'):
        plan.node_parameters('twist_mux')


def _write_config(tmp_path, text):
    cfg = tmp_path / 'config'
    cfg.mkdir(exist_ok=True)
    for name in set(ls.NODE_CONFIG.values()):
        (cfg / name).write_text('{}\n')
    (cfg / 'control.yaml').write_text(text)
    return cfg


def test_node_keyed_config_applies_under_a_namespace(tmp_path):
    cfg = _write_config(tmp_path, (
        '/**:\n  ros__parameters: {shared: 1, level: wildcard}\n'
        'twist_mux:\n  ros__parameters: {timeout: 0.5, level: node, nested: {a: 1, b: {c: 2}}}\n'
        'lane_follower:\n  ros__parameters: {speed: 0.3}\n'
        '/robot2/twist_mux:\n  ros__parameters: {timeout: 0.9}\n'))
    for ns in ('', 'robot1', '/robot1/'):
        plan = ls.GraphPlan.from_arguments(_args(config_dir=str(cfg), namespace=ns, use_sim_time='true'))
        params = plan.node_parameters('twist_mux')
        assert params == {'shared': 1, 'level': 'node', 'timeout': 0.5, 'nested.a': 1,
                          'nested.b.c': 2, 'use_sim_time': True}
    # a section for one robot's fully qualified name applies to that robot only
    robot2 = ls.GraphPlan.from_arguments(_args(config_dir=str(cfg), namespace='robot2'))
    assert robot2.node_parameters('twist_mux')['timeout'] == 0.9
    assert 'speed' not in robot2.node_parameters('twist_mux')


def test_params_file_overrides_config_and_arguments_override_both(tmp_path):
    cfg = _write_config(tmp_path, 'twist_mux:\n  ros__parameters: {timeout: 0.5}\n')
    (cfg / 'drivers.yaml').write_text('gnss_driver:\n  ros__parameters: {port: /dev/ttyS0, baud: 9600}\n')
    extra = tmp_path / 'site.yaml'
    extra.write_text('/**/twist_mux:\n  ros__parameters: {timeout: 0.2}\n'
                     'gnss_driver:\n  ros__parameters: {baud: 115200}\n')
    plan = ls.GraphPlan.from_arguments(_args(config_dir=str(cfg), params_file=str(extra), drivers='true',
                                             gnss_port='/dev/ttyACM3', namespace='r1'))
    assert plan.node_parameters('twist_mux')['timeout'] == 0.2
    gnss = plan.node_parameters('gnss_driver')
    assert gnss['port'] == '/dev/ttyACM3' and gnss['baud'] == 115200
    # an empty port argument leaves the config value alone
    plan = ls.GraphPlan.from_arguments(_args(config_dir=str(cfg), drivers='true', gnss_port=''))
    assert plan.node_parameters('gnss_driver')['port'] == '/dev/ttyS0'


def test_namespaced_robots_get_their_own_tf_and_sim_clock(tmp_path):
    cfg = str(_write_config(tmp_path, '{}'))
    assert ls.GraphPlan.from_arguments(_args(simulator='builtin')).common_remappings() == []
    sim = ls.GraphPlan.from_arguments(_args(simulator='builtin', namespace='robot1'))
    assert ('/tf', 'tf') in sim.common_remappings() and ('/clock', 'clock') in sim.common_remappings()
    gz = ls.GraphPlan.from_arguments(_args(simulator='gazebo', namespace='robot1', config_dir=cfg))
    assert ('/clock', 'clock') not in gz.common_remappings()  # one Gazebo world, one clock
    assert all(spec.remappings == gz.common_remappings() for spec in gz.nodes())


def test_robot_state_publisher_gets_the_urdf_text():
    plan = ls.GraphPlan.from_arguments(_args(use_sim_time='true'))
    params = plan.robot_state_parameters()
    assert params['use_sim_time'] is True
    ET.fromstring(params['robot_description'])  # the whole, well-formed URDF
    assert '/model/mine_robot/cmd_vel' in params['robot_description']
    gz = ls.GraphPlan.from_arguments(_args(simulator='gazebo', gz_model='robot2'))
    text = gz.robot_state_parameters()['robot_description']
    assert '/model/robot2/cmd_vel' in text and '/model/mine_robot/' not in text


def test_argument_overrides_target_declared_node_parameters():
    """Each launch argument that overrides a node parameter names a parameter the node declares."""
    modules = _node_modules()
    for argument, targets in ls.ARGUMENT_PARAMETERS.items():
        for node, param in targets:
            if node not in modules:
                pytest.fail(f'{argument}: node {node} does not exist (yet)')
            text = _source_with_imports(f'mine_robot.nodes.{node}')
            assert f"'{param}'" in text or f'"{param}"' in text, f'{node} declares no {param!r} ({argument})'


def _source_with_imports(module: str, depth: int = 3) -> str:
    """A mine_robot module's source plus that of the mine_robot modules it imports (shared
    parameter tables such as drivers.device.SERIAL_PARAMETERS live there)."""
    path = REPO.joinpath(*module.split('.')).with_suffix('.py')
    if not path.is_file():
        return ''
    text = path.read_text()
    if depth == 0:
        return text
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith('mine_robot'):
            text += _source_with_imports(node.module, depth - 1)
    return text


def test_key_matching_follows_ros_wildcards():
    pat = ls._key_pattern
    assert pat('/**').match('/a/b/n') and pat('/**').match('/n')
    assert pat('/**/n').match('/n') and pat('/**/n').match('/a/b/n') and not pat('/**/n').match('/a/m')
    assert pat('n').match('/n') and not pat('n').match('/a/n')
    assert pat('/a/*').match('/a/n') and not pat('/a/*').match('/a/b/n')


def test_simulation_takes_datum_heading_and_area_from_the_scenario(tmp_path):
    cfg = str(_write_config(tmp_path, 'localization:\n  ros__parameters: {datum_lat: .nan}\n'))
    scenario = REPO / 'sim' / 'scenarios' / 'default.yaml'
    from mine_robot.sim.scenario import load_scenario
    truth = load_scenario(scenario)
    plan = ls.GraphPlan.from_arguments(_args(config_dir=cfg, simulator='builtin', scenario=str(scenario),
                                             real_time_factor='5', seed='7'))
    loc = plan.node_parameters('localization')
    assert (loc['datum_lat'], loc['datum_lon']) == (truth.frame.lat, truth.frame.lon)
    assert loc['initial_yaw'] == pytest.approx(truth.robot_start.yaw)
    assert plan.node_parameters('safety_monitor')['area_file'] == str(scenario)
    world = plan.node_parameters('sim_world')
    assert world['real_time_factor'] == 5.0 and world['seed'] == 7 and world['scenario'] == str(scenario)
    # explicit datum arguments win; a bare scenario name resolves to the packaged file
    plan = ls.GraphPlan.from_arguments(_args(config_dir=cfg, simulator='builtin', scenario='default',
                                             datum_lat='10.5', datum_lon='-20.25'))
    assert plan.node_parameters('localization')['datum_lat'] == 10.5
    assert plan.node_parameters('safety_monitor')['area_file'].endswith('default.yaml')
    with pytest.raises(ls.LaunchConfigError, match='scenario'):
        ls.GraphPlan.from_arguments(_args(config_dir=cfg, simulator='builtin',
                                          scenario=str(tmp_path / 'none.yaml'))).node_parameters('sim_world')
    with pytest.raises(ls.LaunchConfigError, match='number'):
        ls.GraphPlan.from_arguments(_args(config_dir=cfg, simulator='builtin',
                                          real_time_factor='fast')).node_parameters('sim_world')
    with pytest.raises(ls.LaunchConfigError, match='WGS84'):
        ls.GraphPlan.from_arguments(_args(datum_lat='91', datum_lon='0'))


def test_hardware_datum_comes_from_the_area_file(tmp_path):
    cfg = str(_write_config(tmp_path, '{}'))
    area = tmp_path / 'area.geojson'
    area.write_text('{"type": "FeatureCollection", "features": [{"type": "Feature", '
                    '"properties": {"role": "search_area"}, "geometry": {"type": "Polygon", '
                    '"coordinates": [[[17.0, 44.0], [17.001, 44.0], [17.001, 44.001], [17.0, 44.001], '
                    '[17.0, 44.0]]]}}]}')
    plan = ls.GraphPlan.from_arguments(_args(config_dir=cfg, drivers='true', area_file=str(area)))
    lat, lon = plan.datum()
    assert lat == pytest.approx(44.0005, abs=1e-3) and lon == pytest.approx(17.0005, abs=1e-3)
    assert plan.node_parameters('safety_monitor')['datum_lat'] == lat
    # every node that needs the area gets the file (the safety monitor's geofence refuses to start
    # without one)
    for node in ('coverage_planner', 'mission_manager', 'safety_monitor'):
        assert plan.node_parameters(node)['area_file'] == str(area), node
    assert ls.GraphPlan.from_arguments(_args(config_dir=cfg, drivers='true')).datum() is None


def test_virtual_devices_point_the_drivers_at_the_simulator_ports(tmp_path):
    cfg = _write_config(tmp_path, '{}')
    (cfg / 'sim.yaml').write_text('sim_world:\n  ros__parameters: {device_dir: /tmp/vdev}\n')
    plan = ls.GraphPlan.from_arguments(_args(config_dir=str(cfg), simulator='builtin',
                                             virtual_devices='true', namespace='r2', gnss_port='/dev/x'))
    assert plan.node_parameters('sim_world')['device_dir'] == '/tmp/vdev/r2'
    assert plan.node_parameters('sim_sensors')['virtual_devices'] is True
    assert plan.node_parameters('gnss_driver')['port'] == '/tmp/vdev/r2/gnss'
    assert plan.node_parameters('metal_detector_driver')['port'] == '/tmp/vdev/r2/metal_detector'


def test_gazebo_mode_reads_the_gazebo_pose_and_leaves_the_camera_to_gazebo(tmp_path):
    cfg = str(_write_config(tmp_path, '{}'))
    plan = ls.GraphPlan.from_arguments(_args(config_dir=cfg, simulator='gazebo'))
    params = plan.node_parameters('sim_sensors')
    assert params['camera_rate'] == 0.0
    bridge = yaml.safe_load((REPO / 'config' / 'gz_bridge.yaml').read_text())
    assert params['pose_topic'] in {e['ros_topic_name'] for e in bridge}


def test_teleop_only_safety_keeps_estop_and_input_watchdog(tmp_path):
    cfg = str(_write_config(tmp_path, '{}'))
    params = ls.GraphPlan.from_arguments(_args(config_dir=cfg, autonomy='false', teleop='joy')
                                         ).node_parameters('safety_monitor')
    assert params['pose_watchdog_enabled'] is False and params['geofence_enabled'] is False
    assert 'estop_enabled' not in params and 'input_watchdog_enabled' not in params


def test_simulated_mission_and_planner_get_the_scenario_area_as_geojson(tmp_path):
    import json

    from mine_robot.planning.area import load_area
    from mine_robot.sim.scenario import load_scenario
    cfg = str(_write_config(tmp_path, '{}'))
    plan = ls.GraphPlan.from_arguments(_args(config_dir=cfg, simulator='builtin', scenario='default'))
    path = plan.node_parameters('mission_manager')['area_file']
    assert plan.node_parameters('coverage_planner')['area_file'] == path
    assert json.loads(Path(path).read_text())['type'] == 'FeatureCollection'
    truth = load_scenario('default')
    area = load_area(path, truth.frame)
    assert area.search.symmetric_difference(truth.search).area < 1e-3
    assert len(area.no_go) == len(truth.no_go)
    # an explicit area_file is passed through untouched
    plan = ls.GraphPlan.from_arguments(_args(config_dir=cfg, simulator='builtin',
                                             area_file='/data/a.geojson'))
    assert plan.node_parameters('mission_manager')['area_file'] == '/data/a.geojson'
