"""``safety_monitor``: every safety rule of ``mine_robot.control.safety``, one status out.

Known hazards (no wheel may come within ``hazard_clearance``) come from ``targets/json`` (fusion;
every target not classified clutter) and the ``hazards`` list of the latched ``mission/status``.
Publishes ``safety/status`` (std_msgs/String JSON ``{stop, estop, reset_count, reasons, warnings}``,
transient local) at ``rate`` as the mux's heartbeat, and *immediately* when the stop state changes
(evaluation runs in the e-stop, pose and command callbacks). Owns the e-stop latch: reset only via
``~/reset_estop`` (std_srvs/Trigger), refused while ``estop`` is still True. Every stop reason is
also on /diagnostics (ERROR, one key per rule).
"""

from __future__ import annotations

import importlib
import json
import math
from pathlib import Path
import sys

from geometry_msgs.msg import Twist
from nav_msgs.msg import Odometry
from rclpy.node import Node
import shapely
from shapely.geometry import Polygon
from std_msgs.msg import Bool, String
from std_srvs.srv import Trigger

from mine_robot.control.mux import MuxInput, TwistMux
from mine_robot.control.safety import Geofence, SafetyConfig, SafetyError, SafetyMonitor, SweptGroundRule
from mine_robot.nodes._driving import load_robot_param, odometry_to_pose
from mine_robot.ros import qos
from mine_robot.ros.diagnostics import ERROR, OK, WARN, Diagnostics
from mine_robot.ros.params import ConfigError, declare
from mine_robot.ros.runner import run_node


def load_area_for_safety(path: str, lat: float, lon: float):
    """SearchArea from a GeoJSON area or a scenario YAML (its area), in the given datum if set."""
    from mine_robot.geo import LocalFrame
    from mine_robot.planning.area import load_area
    if Path(path).suffix in ('.yaml', '.yml'):
        from mine_robot.sim.scenario import load_scenario
        return load_scenario(path).area
    frame = LocalFrame(lat=lat, lon=lon) if math.isfinite(lat) and math.isfinite(lon) else None
    return load_area(path, frame)


def parse_sensor(spec: str) -> tuple[str, type, float]:
    parts = spec.split()
    if len(parts) != 3:
        raise ConfigError(f'required_sensors entry {spec!r}: expected "topic pkg/msg/Type timeout_s"')
    topic, type_name, timeout = parts
    try:
        pkg, _, cls = type_name.split('/')
        msg_type = getattr(importlib.import_module(f'{pkg}.msg'), cls)
        return topic, msg_type, float(timeout)
    except (ValueError, ImportError, AttributeError) as exc:
        raise ConfigError(f'required_sensors entry {spec!r}: {exc}') from exc


class SafetyMonitorNode(Node):
    def __init__(self, **kwargs):
        super().__init__('safety_monitor', **kwargs)
        rate = declare(self, 'rate', 20.0, 'status heartbeat rate (Hz)', range=(1.0, 200.0))
        area_file = declare(self, 'area_file', '', 'GeoJSON area (search_area/no_go/safe_access) or '
                            'scenario YAML', read_only=True)
        lat = declare(self, 'datum_lat', float('nan'), 'map datum latitude (NaN: the area file frame)')
        lon = declare(self, 'datum_lon', float('nan'), 'map datum longitude')
        safe_xy = declare(self, 'safe_access', [0.0], 'extra safe ground in map metres: flat list '
                          'x0, y0, x1, y1, ... (one polygon; [0.0] = none)')
        robot = load_robot_param(declare(self, 'robot_config', '', 'robot.yaml (empty: default)',
                                         read_only=True))
        floats = {
            'decel': (robot.max_linear_accel, 'braking deceleration of the base on a zero command '
                      '(m/s^2; predicted motion covers the braking distance)', (0.01, 20.0)),
            'angular_decel': (robot.max_angular_accel, 'angular braking deceleration (rad/s^2)',
                              (0.01, 50.0)),
            'latency': (0.1, 'delay from the check to the base obeying a stop (s)', (0.0, 2.0)),
            'max_horizon': (3.0, 'cap on the predicted stopping time (s)', (0.05, 30.0)),
            'horizon_step': (0.05, 'step between predicted poses (s)', (0.01, 1.0)),
            'pose_timeout': (0.5, 'pose older than this stops the robot (s)', (0.05, 10.0)),
            'max_pose_sigma': (0.05, '1-sigma position limit (m)', (0.001, 10.0)),
            'input_timeout': (0.5, 'moving command input silent this long stops (s)', (0.05, 10.0)),
            'hazard_clearance': (0.20, 'closest a wheel contact patch may come to a known hazard (m)',
                                 (0.01, 2.0)),
        }
        values = {k: declare(self, k, d, desc, range=r) for k, (d, desc, r) in floats.items()}
        for rule in ('estop', 'geofence', 'swept_ground', 'hazard', 'pose_watchdog', 'input_watchdog',
                     'sensor_watchdog'):
            values[f'{rule}_enabled'] = declare(self, f'{rule}_enabled', True, f'enable the {rule} rule')
        tolerance = declare(self, 'swept_tolerance', 0.02, 'unswept ground under a wheel narrower '
                            'than twice this is ignored (m)', range=(0.0, 0.049))
        cell = declare(self, 'swept_grid_cell', 0.01, 'cell of the swept-ground raster (m)',
                       range=(0.002, 0.1))
        sensors = declare(self, 'required_sensors', [''], 'sensors the mission needs: '
                          '"topic pkg/msg/Type timeout_s" each')
        try:
            config = SafetyConfig(**values)
            geofence = swept = None
            if area_file:
                area = load_area_for_safety(area_file, lat, lon)
                safe = list(area.safe)
                if len(safe_xy) >= 6:
                    safe.append(Polygon(list(zip(safe_xy[0::2], safe_xy[1::2]))))
                geofence = Geofence(area.search, safe, area.no_go)
                from mine_robot.planning.coverage import detector_outline
                swept = SweptGroundRule(robot.wheel_patches(), safe, detector_outline(robot),
                                        tolerance=tolerance, cell=cell)
            self.monitor = SafetyMonitor(config, robot, geofence, swept)
        except (SafetyError, ValueError, OSError) as exc:
            raise ConfigError(f'safety_monitor: {exc}') from exc
        self.selector = TwistMux([MuxInput('teleop', 20, values['input_timeout']),
                                  MuxInput('marking', 15, values['input_timeout']),
                                  MuxInput('autonomy', 10, values['input_timeout'])])
        self.status_pub = self.create_publisher(String, 'safety/status', qos.LATCHED)
        self.diag = Diagnostics(self)
        self.status = None
        for spec in [s for s in sensors if s.strip()]:
            topic, msg_type, timeout = parse_sensor(spec)
            self.monitor.add_sensor(topic, timeout)
            # raw: the watchdog needs the arrival, not the content (no deserialising 50 Hz clouds)
            self.create_subscription(msg_type, topic, lambda _m, n=topic: self.monitor.sensor_seen(
                n, self._now()), qos.SENSOR, raw=True)
        self.create_subscription(Bool, 'estop', self._on_estop, qos.LATCHED)
        self.create_subscription(Odometry, 'odometry/filtered', self._on_pose, 10)
        for name in ('teleop', 'marking', 'autonomy'):
            self.create_subscription(Twist, f'cmd_vel/{name}',
                                     lambda m, n=name: self._on_cmd(n, m), qos.RELIABLE)
        # known hazards: fusion's targets and the mission's record of them (after a restart of
        # fusion or of this node the mission's latched status still lists every hazard found)
        self.create_subscription(String, 'targets/json', self._on_targets, qos.RELIABLE)
        self.create_subscription(String, 'mission/status', self._on_mission_status, qos.LATCHED)
        # the mission's swept ground: after a restart of this node (or of the whole graph) the
        # raster does not start empty under a robot that stands in the middle of swept lanes
        self.create_subscription(String, 'mission/swept', self._on_mission_swept, qos.LATCHED)
        self.create_service(Trigger, '~/reset_estop', self._on_reset)
        self.create_timer(1.0 / rate, lambda: self._evaluate(heartbeat=True))

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _on_estop(self, msg: Bool) -> None:
        self.monitor.estop.request(msg.data)
        self._evaluate()

    def _on_pose(self, msg: Odometry) -> None:
        pose = odometry_to_pose(msg)
        # watchdog ages use this node's clock; the stamp is only trusted for ordering
        self.monitor.set_pose(type(pose)(self._now(), pose.x, pose.y, pose.yaw, pose.v, pose.w, pose.sigma))
        if self.monitor.swept is not None and math.isfinite(pose.x):
            self.monitor.swept.add_pose(pose.x, pose.y, pose.yaw)
        self._evaluate(new_pose=True)

    def _on_targets(self, msg: String) -> None:
        def update(data):
            return self.monitor.hazards.from_targets(data['targets'] if isinstance(data, dict) else data)
        self._hazards_from('targets/json', msg, update)

    def _on_mission_status(self, msg: String) -> None:
        self._hazards_from('mission/status', msg,
                           lambda data: self.monitor.hazards.from_mission(data.get('hazards', [])))

    def _on_mission_swept(self, msg: String) -> None:
        if self.monitor.swept is None:
            return
        try:
            geom = shapely.from_wkt(msg.data)
            if geom.geom_type not in ('Polygon', 'MultiPolygon', 'GeometryCollection'):
                raise ValueError(f'a {geom.geom_type}, not an area')
        except (shapely.errors.GEOSException, ValueError) as exc:
            self.get_logger().error(f'mission/swept ignored: {exc}', throttle_duration_sec=5.0)
            return
        self.monitor.swept.set_swept(geom)
        self._evaluate()

    def _hazards_from(self, topic: str, msg: String, update) -> None:
        try:
            new = update(json.loads(msg.data))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
            self.get_logger().error(f'{topic} hazards ignored: {exc}', throttle_duration_sec=5.0)
            return
        if new:
            self.get_logger().info(f'{len(self.monitor.hazards)} known hazards; new: {", ".join(new)}',
                                   throttle_duration_sec=2.0)
            self._evaluate()

    def _on_cmd(self, name: str, msg: Twist) -> None:
        now = self._now()
        self.monitor.set_input(name, msg.linear.x, msg.angular.z, now)
        self.selector.set_command(name, msg.linear.x, msg.angular.z, now)
        d = self.selector.select(now)
        if self.monitor.command_differs(d.v, d.w):
            self._evaluate()

    def _on_reset(self, _request, response):
        response.success, response.message = self.monitor.estop.reset()
        self.get_logger().info(f'e-stop reset requested: {response.message}')
        self._evaluate()
        return response

    def _evaluate(self, heartbeat: bool = False, new_pose: bool = False) -> None:
        now = self._now()
        d = self.selector.select(now)
        # the raster rules run again for a new pose or a materially different command; between
        # poses, small command corrections reuse the last answer (SafetyMonitor.command_differs)
        if new_pose or self.monitor.command_differs(d.v, d.w):
            self.monitor.set_command(d.v, d.w)
        status = self.monitor.evaluate(now)
        changed = self.status is None or (status.stop, status.reasons) != (self.status.stop,
                                                                         self.status.reasons)
        self.status = status
        if not (heartbeat or changed):
            return
        body = {'stop': status.stop, 'estop': status.estop,
                'reset_count': self.monitor.estop.reset_count,
                'reasons': [str(r) for r in status.reasons],
                'rules': sorted({r.rule for r in status.reasons}),
                'warnings': [str(r) for r in status.warnings], 'stamp': now}
        self.status_pub.publish(String(data=json.dumps(body)))
        if changed:
            if status.stop:
                self.get_logger().warning(f'safety: {status.message}')
            else:
                self.get_logger().info(f'safety: {status.message}')
        level = ERROR if status.stop else WARN if status.warnings else OK
        values = dict(status.values)
        values.update({r.rule: r.message for r in status.reasons})
        self.diag.update(level, status.message, values, force=changed)


def main(args=None):
    sys.exit(run_node(SafetyMonitorNode, args))
