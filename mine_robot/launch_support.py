"""Plain-Python support for the launch files in ``launch/`` (no ``launch`` import here).

The launch files decide *which* nodes run; this module holds the facts they share, so the
hardware, built-in-simulator and Gazebo launch files cannot drift apart:

- ``NODE_CONFIG``: the parameter file (under ``config/``) of every node executable;
- the node groups each launch file starts (``STACK_NODES``, ``DRIVER_NODES``, ...);
- :func:`node_parameters`: the parameters of one node taken from node-keyed YAML files.

Why the last one exists: a params file keyed ``coverage_planner:`` matches only the node
``/coverage_planner``. Under a namespace (``/robot1/coverage_planner``) ROS ignores that section,
so a second robot would silently run on defaults. The launch files therefore read each node's
section here and hand it to launch_ros as a dict, which launch_ros writes under ``/**`` so it
applies in any namespace. Keys with ROS wildcards (``/**``, ``/**/name``, ``/ns/name``) are
honoured as ROS itself would.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
import math
from pathlib import Path
import re
from typing import Any

import yaml

from mine_robot.resources import read_yaml

# executable (= module = default node name) -> its parameter file in config/
NODE_CONFIG: dict[str, str] = {
    'sim_world': 'sim.yaml',
    'sim_sensors': 'sim.yaml',
    'coverage_planner': 'planner.yaml',
    'localization': 'control.yaml',
    'lane_follower': 'control.yaml',
    'joy_teleop': 'control.yaml',
    'keyboard_teleop': 'control.yaml',
    'twist_mux': 'control.yaml',
    'safety_monitor': 'control.yaml',
    'metal_detector_driver': 'drivers.yaml',
    'gnss_driver': 'drivers.yaml',
    'gpr_driver': 'drivers.yaml',
    'camera_driver': 'drivers.yaml',
    'marker_driver': 'drivers.yaml',
    'md_detector': 'detection.yaml',
    'gpr_detector': 'detection.yaml',
    'camera_detector': 'detection.yaml',
    'detection_fusion': 'detection.yaml',
    'mission_manager': 'mission.yaml',
    'marking': 'mission.yaml',
}

# The autonomy stack every mode runs (pose, plan, follow, arbitrate, guard, detect, fuse, mark,
# supervise). Where the sensor data come from is the only difference between the modes.
STACK_NODES: tuple[str, ...] = (
    'localization', 'coverage_planner', 'lane_follower', 'twist_mux', 'safety_monitor',
    'md_detector', 'gpr_detector', 'camera_detector', 'detection_fusion', 'marking',
    'mission_manager')
# Real hardware (robot.launch.py) or the virtual serial devices of the built-in simulator.
DRIVER_NODES: tuple[str, ...] = (
    'metal_detector_driver', 'gnss_driver', 'gpr_driver', 'camera_driver', 'marker_driver')
# Drivers that talk to a serial device the built-in simulator can emulate with a pty.
SERIAL_DRIVER_NODES: tuple[str, ...] = (
    'metal_detector_driver', 'gnss_driver', 'gpr_driver', 'marker_driver')
SIM_NODES: tuple[str, ...] = ('sim_world', 'sim_sensors')
TELEOP_NODES: dict[str, str] = {'joy': 'joy_teleop', 'keyboard': 'keyboard_teleop'}
# teleop.launch.py: manual driving with arbitration and the safety layer only.
TELEOP_SUPPORT_NODES: tuple[str, ...] = ('twist_mux', 'safety_monitor')

# Gazebo model name used inside urdf/mine_robot.urdf's <gazebo> topics and config/gz_bridge.yaml;
# a second robot gets its own name and gz_scoped() rewrites the topics.
GZ_MODEL = 'mine_robot'


class LaunchConfigError(ValueError):
    """A parameter file given to a launch file is unreadable or malformed."""


def config_files(nodes: Iterable[str]) -> list[str]:
    """The distinct config/ file names the given nodes read, in first-use order."""
    out: list[str] = []
    for node in nodes:
        if node not in NODE_CONFIG:
            raise LaunchConfigError(f'unknown node executable {node!r} (known: {sorted(NODE_CONFIG)})')
        if NODE_CONFIG[node] not in out:
            out.append(NODE_CONFIG[node])
    return out


def _key_pattern(key: str) -> re.Pattern:
    """ROS params-file node key -> regex over fully qualified node names (rcl semantics:
    ``/**`` any number of tokens, ``*`` one token, a key without leading slash is absolute)."""
    if not key.startswith('/'):
        key = '/' + key
    parts = []
    for token in key.strip('/').split('/'):
        if token == '**':
            parts.append('(?:/[^/]+)*')
        else:
            parts.append('/' + re.escape(token).replace(r'\*', '[^/]+'))
    return re.compile(''.join(parts) + '$' if parts else '/$')


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, Mapping):
        for k, v in value.items():
            _flatten(f'{prefix}.{k}' if prefix else str(k), v, out)
    else:
        out[prefix] = value


def node_parameters(node: str, files: Iterable[str | Path], namespace: str = '') -> dict[str, Any]:
    """Parameters for node ``node`` (running in ``namespace``) from node-keyed YAML files.

    A section applies when its key matches the node's fully qualified name *or* its name without
    the namespace, so the package's ``<node>:``-keyed config serves every robot of a multi-robot
    graph. Later files and more specific keys override earlier ones; nested mappings become
    dotted parameter names. Empty paths are skipped (an unset optional ``params_file``).
    """
    ns = '/' + namespace.strip('/') if namespace.strip('/') else ''
    names = [f'{ns}/{node}', f'/{node}']
    params: dict[str, Any] = {}
    for path in files:
        if not str(path).strip():
            continue
        path = Path(path)
        data = read_yaml(path, LaunchConfigError, 'parameter file')
        if data is None:
            continue
        if not isinstance(data, Mapping):
            raise LaunchConfigError(f'parameter file {path}: expected node names at the top level')
        # wildcard keys first, so a section naming the node exactly wins over '/**'
        for key in sorted(data, key=lambda k: '*' not in str(k)):
            if not any(_key_pattern(str(key)).match(name) for name in names):
                continue
            section = data[key]
            if not isinstance(section, Mapping) or 'ros__parameters' not in section:
                raise LaunchConfigError(
                    f'parameter file {path}: section {key!r} must contain "ros__parameters"')
            _flatten('', section['ros__parameters'] or {}, params)
    return params


def gz_scoped(text: str, model: str) -> str:
    """Rewrite the Gazebo topics of the default model (``/model/mine_robot/...``) for ``model``,
    in URDF or bridge-config text, so several robots can share one Gazebo world."""
    if not re.fullmatch(r'[A-Za-z_][A-Za-z0-9_]*', model):
        raise LaunchConfigError(f'Gazebo model name {model!r} must be a plain identifier')
    return text.replace(f'/model/{GZ_MODEL}/', f'/model/{model}/')


def gz_bridge_config(path: str | Path, model: str = GZ_MODEL, clock: bool = True) -> str:
    """config/gz_bridge.yaml scoped to ``model``; without the /clock entry when ``clock`` is false
    (a second robot in the same world: one bridge publishes /clock)."""
    try:
        entries = yaml.safe_load(gz_scoped(read_text(path), model))
    except yaml.YAMLError as exc:
        raise LaunchConfigError(f'bridge config {path} is not valid YAML: {exc}') from exc
    if not isinstance(entries, list) or not all(isinstance(e, Mapping) for e in entries):
        raise LaunchConfigError(f'bridge config {path}: expected a list of topic mappings')
    if not clock:
        entries = [e for e in entries if e.get('ros_topic_name') != '/clock']
    return yaml.safe_dump(entries, sort_keys=False)


def read_text(path: str | Path) -> str:
    """A file's text with a clear error (used for the URDF handed to robot_state_publisher)."""
    try:
        return Path(path).read_text()
    except OSError as exc:
        raise LaunchConfigError(f'cannot read {path}: {exc}') from exc


# ------------------------------------------------------------------ what a launch file starts

# Launch argument -> (node, parameter) it overrides when not empty. Parameter names are the
# nodes' own (mine_robot/nodes/*.py); test_launch.py checks each node declares them.
ARGUMENT_PARAMETERS: dict[str, tuple[tuple[str, str], ...]] = {
    'md_port': (('metal_detector_driver', 'port'),),
    'gnss_port': (('gnss_driver', 'port'),),
    'gpr_port': (('gpr_driver', 'port'),),
    'marker_port': (('marker_driver', 'port'),),
    'camera_source': (('camera_driver', 'source'),),
    'scenario': (('sim_world', 'scenario'), ('sim_sensors', 'scenario')),
    'area_file': (('coverage_planner', 'area_file'), ('mission_manager', 'area_file'),
                  ('safety_monitor', 'area_file')),
    'output_dir': (('mission_manager', 'output_dir'),),
    'real_time_factor': (('sim_world', 'real_time_factor'),),
    'seed': (('sim_world', 'seed'), ('sim_sensors', 'seed')),
}
# Nodes that work in the map frame and take its datum (WGS84 origin) as parameters.
DATUM_NODES: tuple[str, ...] = ('localization', 'safety_monitor')
# Numeric overrides (launch arguments are strings; the node parameters are doubles/ints).
NUMERIC_ARGUMENTS = {'real_time_factor': float, 'seed': int}
SIMULATORS = ('none', 'builtin', 'gazebo')
# Driver -> name of its virtual device under sim_world's/sim_sensors' device_dir.
VIRTUAL_DEVICE_NAMES = {'metal_detector_driver': 'metal_detector', 'gnss_driver': 'gnss',
                        'gpr_driver': 'gpr', 'marker_driver': 'marker'}
TELEOPS = ('none', *TELEOP_NODES)
LOG_LEVELS = ('debug', 'info', 'warn', 'error', 'fatal')


@dataclass(frozen=True)
class NodeSpec:
    """One node to start: executable (= node name), its parameters and remappings."""

    executable: str
    parameters: dict[str, Any]
    remappings: list[tuple[str, str]] = field(default_factory=list)
    prefix: str = ''


def _bool(name: str, value: str) -> bool:
    text = str(value).strip().lower()
    if text in ('true', '1', 'yes', 'on'):
        return True
    if text in ('false', '0', 'no', 'off', ''):
        return False
    raise LaunchConfigError(f'launch argument {name}:={value!r} must be true or false')


def _choice(name: str, value: str, choices: Iterable[str]) -> str:
    choices = tuple(choices)
    if value not in choices:
        raise LaunchConfigError(f'launch argument {name}:={value!r} must be one of {list(choices)}')
    return value


def _convert(argument: str, value: str):
    kind = NUMERIC_ARGUMENTS.get(argument)
    if kind is None:
        return value
    try:
        return kind(value)
    except ValueError:
        raise LaunchConfigError(f'launch argument {argument}:={value!r} must be a number') from None


def _datum(lat: str, lon: str) -> tuple[float, float] | None:
    if not lat.strip() and not lon.strip():
        return None
    try:
        datum = (float(lat), float(lon))
    except ValueError:
        raise LaunchConfigError(f'launch arguments datum_lat/datum_lon ({lat!r}, {lon!r}) must both '
                                'be degrees') from None
    if not (-90.0 <= datum[0] <= 90.0 and -180.0 <= datum[1] <= 180.0):
        raise LaunchConfigError(f'datum {datum} is not WGS84 latitude/longitude')
    return datum


def _namespace(value: str) -> str:
    ns = value.strip().strip('/')
    if ns and not re.fullmatch(r'[A-Za-z_][A-Za-z0-9_]*(/[A-Za-z_][A-Za-z0-9_]*)*', ns):
        raise LaunchConfigError(f'launch argument namespace:={value!r} is not a valid ROS namespace')
    return ns


@dataclass(frozen=True)
class GraphPlan:
    """The node set and parameters one launch of stack.launch.py starts, from its arguments
    (all strings, as launch hands them over). Pure data, so pip-mode tests can check it."""

    namespace: str
    use_sim_time: bool
    config_dir: Path
    params_file: str
    urdf: Path
    publish_robot_state: bool
    autonomy: bool
    drivers: bool
    simulator: str
    teleop: str
    virtual_devices: bool
    log_level: str
    overrides: dict[str, str]
    keyboard_prefix: str = 'xterm -e'
    gz_model: str = GZ_MODEL
    datum_arg: tuple[float, float] | None = None
    respawn: bool = True             # launch: restart a node that dies (mission_manager resumes)
    _cache: dict = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_arguments(cls, args: Mapping[str, str]) -> GraphPlan:
        def get(name, default=''):
            return str(args.get(name, default))

        simulator = _choice('simulator', get('simulator', 'none'), SIMULATORS)
        virtual = _bool('virtual_devices', get('virtual_devices', 'false'))
        if virtual and simulator != 'builtin':
            raise LaunchConfigError('virtual_devices:=true needs simulator:=builtin (the built-in '
                                    'simulator provides the virtual serial devices)')
        config_dir = Path(get('config_dir'))
        if not config_dir.is_dir():
            raise LaunchConfigError(f'config_dir {config_dir} is not a folder')
        return cls(
            namespace=_namespace(get('namespace')),
            use_sim_time=_bool('use_sim_time', get('use_sim_time', 'false')),
            config_dir=config_dir,
            params_file=get('params_file').strip(),
            urdf=Path(get('urdf')),
            publish_robot_state=_bool('publish_robot_state', get('publish_robot_state', 'true')),
            autonomy=_bool('autonomy', get('autonomy', 'true')),
            drivers=_bool('drivers', get('drivers', 'false')),
            simulator=simulator,
            teleop=_choice('teleop', get('teleop', 'none'), TELEOPS),
            virtual_devices=virtual,
            log_level=_choice('log_level', get('log_level', 'info'), LOG_LEVELS),
            overrides={k: get(k).strip() for k in ARGUMENT_PARAMETERS if get(k).strip()},
            keyboard_prefix=get('keyboard_prefix', 'xterm -e'),
            gz_model=get('gz_model', GZ_MODEL) or GZ_MODEL,
            datum_arg=_datum(get('datum_lat'), get('datum_lon')),
            respawn=_bool('respawn', get('respawn', 'true')),
        )

    def executables(self) -> list[str]:
        """Node executables to start, in start order (sources first, consumers after)."""
        out: list[str] = []
        if self.simulator == 'builtin':
            out += SIM_NODES
        elif self.simulator == 'gazebo':
            out.append('sim_sensors')
        if self.drivers:
            out += DRIVER_NODES
        elif self.virtual_devices:
            out += SERIAL_DRIVER_NODES
        out += STACK_NODES if self.autonomy else TELEOP_SUPPORT_NODES
        if self.teleop != 'none':
            out.append(TELEOP_NODES[self.teleop])
        return out

    def common_remappings(self) -> list[tuple[str, str]]:
        """Per-robot tf (and, with the built-in simulator, per-robot clock) under a namespace."""
        if not self.namespace:
            return []
        rules = [('/tf', 'tf'), ('/tf_static', 'tf_static')]
        if self.simulator == 'builtin':
            rules.append(('/clock', 'clock'))
        return rules

    def parameter_files(self, node: str) -> list[Path | str]:
        return [self.config_dir / NODE_CONFIG[node], self.params_file]

    def node_parameters(self, node: str) -> dict[str, Any]:
        params = node_parameters(node, self.parameter_files(node), self.namespace)
        for argument, value in self.overrides.items():
            for target, name in ARGUMENT_PARAMETERS[argument]:
                if target == node:
                    params[name] = _convert(argument, value)
        params.update(self.mode_parameters().get(node, {}))
        if node in DATUM_NODES and self.datum() is not None:
            params['datum_lat'], params['datum_lon'] = self.datum()
        params['use_sim_time'] = self.use_sim_time
        return params

    def scenario(self):
        """The simulation scenario (simulator runs only), loaded once."""
        if self.simulator == 'none':
            return None
        if 'scenario' not in self._cache:
            from mine_robot.sim.scenario import ScenarioError, load_scenario
            try:
                self._cache['scenario'] = load_scenario(self.overrides.get('scenario', 'default'))
            except ScenarioError as exc:
                raise LaunchConfigError(f'launch argument scenario: {exc}') from exc
        return self._cache['scenario']

    def datum(self) -> tuple[float, float] | None:
        """The map origin: datum_lat/datum_lon arguments, else the scenario's datum (simulation),
        else the area file's frame; None leaves the nodes' configured values alone."""
        if self.datum_arg is not None:
            return self.datum_arg
        scenario = self.scenario()
        if scenario is not None:
            return (scenario.frame.lat, scenario.frame.lon)
        if 'area_file' in self.overrides:
            from mine_robot.planning.area import load_area
            try:
                frame = load_area(self.overrides['area_file']).frame
            except (ValueError, OSError) as exc:
                raise LaunchConfigError(f'launch argument area_file: {exc}') from exc
            return (frame.lat, frame.lon)
        return None

    def mode_parameters(self) -> dict[str, dict[str, Any]]:
        """Parameters the chosen mode imposes on its nodes."""
        out: dict[str, dict[str, Any]] = {}
        scenario = self.scenario()
        if scenario is not None:
            # the simulated robot's true start heading is the operator's known start heading
            out['localization'] = {'initial_yaw': math.remainder(scenario.robot_start.yaw, math.tau)}
            # the scenario carries the area (search area and no-go zones): the safety monitor reads
            # the scenario YAML, the planner and mission manager a GeoJSON export of it
            if 'area_file' not in self.overrides and scenario.source is not None:
                out['safety_monitor'] = {'area_file': str(scenario.source)}
                area_file = self.scenario_area_file()
                for node in ('coverage_planner', 'mission_manager'):
                    out[node] = {'area_file': area_file}
        if self.simulator == 'gazebo':
            # Gazebo renders the camera and reports the true pose on sim/ground_truth (gz_bridge.yaml)
            out['sim_sensors'] = {'camera_rate': 0.0, 'pose_topic': 'sim/ground_truth'}
        if self.virtual_devices:
            device_dir = self.device_dir()
            for node in ('sim_world', 'sim_sensors'):
                # the real drivers publish what the virtual devices send: no second copy
                out[node] = {'virtual_devices': True, 'device_dir': device_dir, 'publish_direct': False}
            for node, device in VIRTUAL_DEVICE_NAMES.items():
                out[node] = {'port': f'{device_dir}/{device}'}
            # the virtual devices run on the simulator clock (= ROS time under use_sim_time): their
            # sample times are exact, no host-clock mapping; the detector sends milli-units
            from mine_robot.sim.virtual_devices import MD_DEVICE_SCALE
            out['metal_detector_driver'].update(stamp_source='device_absolute',
                                                signal_scale=1.0 / MD_DEVICE_SCALE)
            out['gpr_driver']['stamp_source'] = 'device_absolute'
        if not self.autonomy:
            # teleop only: nothing in this graph publishes a pose or sensor data, so the
            # pose-based rules and sensor watchdog would hold the robot forever
            out['safety_monitor'] = {'geofence_enabled': False, 'swept_ground_enabled': False,
                                     'pose_watchdog_enabled': False, 'sensor_watchdog_enabled': False}
        return out

    def scenario_area_file(self) -> str:
        """The scenario's area as a WGS84 GeoJSON file (written once per launch)."""
        if 'area_file' not in self._cache:
            import json
            import tempfile

            from mine_robot.planning.area import area_to_geojson
            scenario = self.scenario()
            folder = Path(tempfile.mkdtemp(prefix='mine_robot_launch_'))
            path = folder / f'{scenario.name}_area.geojson'
            path.write_text(json.dumps(area_to_geojson(scenario.area), indent=1))
            self._cache['area_file'] = str(path)
        return self._cache['area_file']

    def device_dir(self) -> str:
        """Folder of the virtual devices' symlinks: from config/sim.yaml, one per namespace."""
        base = node_parameters('sim_world', self.parameter_files('sim_world'), self.namespace).get(
            'device_dir', '/tmp/mine_robot_sim')
        return f'{base.rstrip("/")}/{self.namespace}' if self.namespace else base

    def nodes(self) -> list[NodeSpec]:
        return [NodeSpec(executable=name, parameters=self.node_parameters(name),
                         remappings=self.common_remappings(),
                         prefix=self.keyboard_prefix if name == 'keyboard_teleop' else '')
                for name in self.executables()]

    def robot_state_parameters(self) -> dict[str, Any]:
        text = read_text(self.urdf)
        if self.simulator == 'gazebo':
            text = gz_scoped(text, self.gz_model)
        return {'robot_description': text, 'use_sim_time': self.use_sim_time}


