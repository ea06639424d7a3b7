"""Scenario -> Gazebo (Harmonic) world SDF, so what Gazebo shows matches the ground truth.

The world is the scenario's ``map`` frame: Gazebo's world frame is ENU with
``<spherical_coordinates>`` at the scenario datum, so world x/y are the scenario's metres east/north
and the NavSat sensor reports the same WGS84 positions the built-in simulator would.

What goes in:
- physics, lighting and the Harmonic systems the robot's sensors need (physics, user commands,
  scene broadcaster, sensors with ogre2, IMU, NavSat);
- flat soil-coloured ground covering the scenario with a margin;
- the search area and no-go zones as visual-only tape on the ground (no collision);
- every object the camera could see (``SimObject.on_surface``) as a static model at its true
  position, size and heading. Buried objects are not placed: they are invisible to a camera and
  ``sim_sensors`` computes their metal-detector and GPR responses from the same scenario.

``mine-robot gazebo-world SCENARIO -o WORLD.sdf`` writes the file; ``launch/gazebo.launch.py``
calls :func:`world_sdf` at launch time when no ``world`` is given.
"""

from __future__ import annotations

import math
from pathlib import Path
import sys
import xml.etree.ElementTree as ET

from mine_robot.sim.scenario import Scenario, ScenarioError, SimObject, load_scenario

SDF_VERSION = '1.9'  # understood by Gazebo Fortress and Harmonic (Harmonic upgrades it on load)
WORLD_NAME = 'minefield'
GROUND_MARGIN_M = 10.0
TAPE_WIDTH_M = 0.04
TAPE_HEIGHT_M = 0.005

SYSTEMS = (
    ('gz-sim-physics-system', 'gz::sim::systems::Physics', {}),
    ('gz-sim-user-commands-system', 'gz::sim::systems::UserCommands', {}),
    ('gz-sim-scene-broadcaster-system', 'gz::sim::systems::SceneBroadcaster', {}),
    ('gz-sim-sensors-system', 'gz::sim::systems::Sensors', {'render_engine': 'ogre2'}),
    ('gz-sim-imu-system', 'gz::sim::systems::Imu', {}),
    ('gz-sim-navsat-system', 'gz::sim::systems::NavSat', {}),
)

# RGBA colours by kind: plastic mine bodies olive, UXO rusty steel, clutter grey metal.
COLOURS = {
    'mine': '0.30 0.36 0.20 1',
    'surface': '0.30 0.36 0.20 1',
    'uxo': '0.45 0.28 0.16 1',
    'clutter': '0.55 0.55 0.55 1',
}
SOIL_RGBA = '0.45 0.36 0.25 1'


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrib: str) -> ET.Element:
    el = ET.SubElement(parent, tag, attrib)
    if text is not None:
        el.text = text
    return el


def _fmt(*values: float) -> str:
    return ' '.join(f'{v:.6g}' for v in values)


def _material(parent: ET.Element, rgba: str) -> None:
    mat = _sub(parent, 'material')
    _sub(mat, 'ambient', rgba)
    _sub(mat, 'diffuse', rgba)
    _sub(mat, 'specular', '0.05 0.05 0.05 1')


def object_shape(obj: SimObject) -> tuple[str, dict[str, float], float, bool]:
    """(geometry tag, its size attributes, height of the centre above ground, lying on its side).

    UXO lie as a horizontal cylinder four diameters long; mines and surface hazards are discs
    (height a third of the diameter, at least 3 cm); clutter is a small fragment (a box)."""
    d = obj.diameter_m
    if obj.kind == 'uxo':
        return 'cylinder', {'radius': d / 2.0, 'length': 4.0 * d}, d / 2.0, True
    if obj.kind == 'clutter':
        h = max(0.2 * d, 0.01)
        return 'box', {'size': (d, 0.6 * d, h)}, h / 2.0, False
    h = max(d / 3.0, 0.03)
    return 'cylinder', {'radius': d / 2.0, 'length': h}, h / 2.0, False


def _geometry(parent: ET.Element, tag: str, size: dict) -> None:
    geom = _sub(_sub(parent, 'geometry'), tag)
    for key, value in size.items():
        _sub(geom, key, _fmt(*value) if isinstance(value, tuple) else _fmt(value))


def object_model(obj: SimObject) -> ET.Element:
    """A static model for one visible object, named ``object_<id>``."""
    tag, size, z, lying = object_shape(obj)
    # A UXO body lies along its heading: pitch turns the cylinder axis (z) onto world x first.
    pitch = math.pi / 2.0 if lying else 0.0
    model = ET.Element('model', name=f'object_{_safe_name(obj.id)}')
    _sub(model, 'static', 'true')
    _sub(model, 'pose', _fmt(obj.x, obj.y, z, 0.0, pitch, math.radians(obj.yaw_deg)))
    link = _sub(model, 'link', name='body')
    for kind in ('collision', 'visual'):
        el = _sub(link, kind, name=kind)
        _geometry(el, tag, size)
        if kind == 'visual':
            _material(el, COLOURS[obj.kind])
    return model


def _safe_name(text: str) -> str:
    return ''.join(c if c.isalnum() or c in '_-' else '_' for c in text) or 'unnamed'


def _tape(parent_link: ET.Element, name: str, ring, rgba: str) -> int:
    """Visual-only strips along a closed ring of (x, y) points; returns how many were added."""
    pts = list(ring)
    if pts and pts[0] == pts[-1]:
        pts = pts[:-1]
    count = 0
    for i, (x0, y0) in enumerate(pts):
        x1, y1 = pts[(i + 1) % len(pts)]
        length = math.hypot(x1 - x0, y1 - y0)
        if length < 1e-6:
            continue
        vis = _sub(parent_link, 'visual', name=f'{name}_{i}')
        _sub(vis, 'pose', _fmt((x0 + x1) / 2.0, (y0 + y1) / 2.0, TAPE_HEIGHT_M / 2.0, 0.0, 0.0,
                               math.atan2(y1 - y0, x1 - x0)))
        _geometry(vis, 'box', {'size': (length + TAPE_WIDTH_M, TAPE_WIDTH_M, TAPE_HEIGHT_M)})
        _material(vis, rgba)
        count += 1
    return count


def world_element(scenario: Scenario, world_name: str = WORLD_NAME) -> ET.Element:
    sdf = ET.Element('sdf', version=SDF_VERSION)
    world = _sub(sdf, 'world', name=world_name)
    physics = _sub(world, 'physics', name='4ms', type='ignored')
    _sub(physics, 'max_step_size', '0.004')
    _sub(physics, 'real_time_factor', '1.0')
    for filename, name, params in SYSTEMS:
        plugin = _sub(world, 'plugin', filename=filename, name=name)
        for key, value in params.items():
            _sub(plugin, key, value)
    _sub(world, 'gravity', '0 0 -9.80665')
    sph = _sub(world, 'spherical_coordinates')
    _sub(sph, 'surface_model', 'EARTH_WGS84')
    _sub(sph, 'world_frame_orientation', 'ENU')
    _sub(sph, 'latitude_deg', f'{scenario.frame.lat:.9f}')
    _sub(sph, 'longitude_deg', f'{scenario.frame.lon:.9f}')
    _sub(sph, 'elevation', '0')
    _sub(sph, 'heading_deg', '0')
    scene = _sub(world, 'scene')
    _sub(scene, 'ambient', '0.6 0.6 0.6 1')
    _sub(scene, 'background', '0.7 0.8 0.95 1')
    _sub(scene, 'shadows', 'true')
    sun = _sub(world, 'light', type='directional', name='sun')
    _sub(sun, 'cast_shadows', 'true')
    _sub(sun, 'pose', '0 0 10 0 0 0')
    _sub(sun, 'diffuse', '0.9 0.9 0.85 1')
    _sub(sun, 'specular', '0.2 0.2 0.2 1')
    _sub(sun, 'direction', '-0.4 0.2 -0.9')

    xmin, ymin, xmax, ymax = scenario.bounds(margin=GROUND_MARGIN_M)
    ground = _sub(world, 'model', name='ground')
    _sub(ground, 'static', 'true')
    _sub(ground, 'pose', _fmt((xmin + xmax) / 2.0, (ymin + ymax) / 2.0, 0, 0, 0, 0))
    glink = _sub(ground, 'link', name='soil')
    size = (xmax - xmin, ymax - ymin)
    col = _sub(glink, 'collision', name='collision')
    _geometry(col, 'plane', {'normal': (0.0, 0.0, 1.0), 'size': size})
    surface = _sub(_sub(col, 'surface'), 'friction')
    ode = _sub(surface, 'ode')
    _sub(ode, 'mu', '0.8')
    _sub(ode, 'mu2', '0.8')
    vis = _sub(glink, 'visual', name='visual')
    _geometry(vis, 'plane', {'normal': (0.0, 0.0, 1.0), 'size': size})
    _material(vis, SOIL_RGBA)

    area = _sub(world, 'model', name='search_area_tape')
    _sub(area, 'static', 'true')
    alink = _sub(area, 'link', name='tape')
    _tape(alink, 'search', scenario.search.exterior.coords, '0.9 0.1 0.1 1')
    for i, hole in enumerate(scenario.search.interiors):
        _tape(alink, f'hole{i}', hole.coords, '0.9 0.1 0.1 1')
    for i, zone in enumerate(scenario.no_go):
        _tape(alink, f'no_go{i}', zone.exterior.coords, '0.95 0.8 0.1 1')

    for obj in visible_objects(scenario):
        world.append(object_model(obj))
    return sdf


def visible_objects(scenario: Scenario) -> list[SimObject]:
    """The objects a camera can see, i.e. the ones placed in the Gazebo world."""
    return [o for o in scenario.objects if o.on_surface]


def world_sdf(scenario: Scenario, world_name: str = WORLD_NAME) -> str:
    """The complete world file as text."""
    root = world_element(scenario, world_name)
    ET.indent(root, space='  ')
    source = scenario.source.name if scenario.source else scenario.name
    buried = len(scenario.objects) - len(visible_objects(scenario))
    header = (f'<?xml version="1.0"?>\n'
              f'<!-- Generated by `mine-robot gazebo-world` from scenario "{scenario.name}" '
              f'({source}); do not edit by hand.\n'
              f'     World frame = scenario map frame (ENU at the datum). '
              f'{buried} buried object(s) are simulated by sim_sensors, not placed here. -->\n')
    return header + ET.tostring(root, encoding='unicode') + '\n'


def write_world(scenario: Scenario, path: str | Path, world_name: str = WORLD_NAME) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(world_sdf(scenario, world_name))
    return path


# ----------------------------------------------------------------------------- CLI

def add_arguments(parser) -> None:
    parser.add_argument('scenario', help='scenario YAML, or the name of a packaged scenario')
    parser.add_argument('-o', '--output', required=True, help='world SDF file to write')
    parser.add_argument('--world-name', default=WORLD_NAME,
                        help=f'SDF world name (default {WORLD_NAME}; the spawner needs it)')


def run(args) -> int:
    try:
        scenario = load_scenario(args.scenario)
        path = write_world(scenario, args.output, args.world_name)
    except (ScenarioError, OSError) as exc:
        print(f'gazebo-world: {exc}', file=sys.stderr)
        return 1
    visible = visible_objects(scenario)
    print(f'wrote {path}: world "{args.world_name}" at lat {scenario.frame.lat}, '
          f'lon {scenario.frame.lon}; {len(visible)} visible object(s) placed, '
          f'{len(scenario.objects) - len(visible)} buried (sensed by sim_sensors)')
    return 0
