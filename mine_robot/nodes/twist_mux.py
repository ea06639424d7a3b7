"""``twist_mux``: arbitration e-stop > safety stop > teleop > autonomy, limits, -> ``cmd_vel``.

Publishes at ``rate`` (the control period) and additionally *at once* from the callback that
engages a stop (``estop`` True, or a ``safety/status`` with ``stop``), so the stop latency is one
DDS hop plus a callback, not a control period.
"""

from __future__ import annotations

import json
import sys

from diagnostic_msgs.msg import DiagnosticStatus
from geometry_msgs.msg import Twist
from rclpy.node import Node
from std_msgs.msg import Bool, String

from mine_robot.control.mux import EstopLock, Limits, MuxError, MuxInput, TwistMux, VelocityLimiter
from mine_robot.nodes._driving import load_robot_param, twist
from mine_robot.ros import qos
from mine_robot.ros.diagnostics import Diagnostics
from mine_robot.ros.params import ConfigError, declare
from mine_robot.ros.runner import run_node


class TwistMuxNode(Node):
    def __init__(self, **kwargs):
        super().__init__('twist_mux', **kwargs)
        rate = declare(self, 'rate', 20.0, 'output rate (Hz); 1/rate is the control period',
                       range=(1.0, 200.0))
        timeouts = {name: declare(self, f'{name}_timeout', 0.5, f'{name} input timeout (s)',
                                  range=(0.01, 10.0)) for name in ('teleop', 'marking', 'autonomy', 'safety')}
        scale = declare(self, 'speed_scale', 1.0, 'fraction of the robot.yaml speed limits',
                        range=(0.05, 1.0))
        robot = load_robot_param(declare(self, 'robot_config', '', 'robot.yaml (empty: default)',
                                         read_only=True))
        try:
            self.mux = TwistMux([MuxInput('estop', 100, 0.0, lock=True),
                                 MuxInput('safety', 90, timeouts['safety'], lock=True),
                                 MuxInput('teleop', 20, timeouts['teleop']),
                                 # the marking manoeuvre (stop, nozzle over the target) overrides
                                 # the lane follower; the operator's joystick overrides both
                                 MuxInput('marking', 15, timeouts['marking']),
                                 MuxInput('autonomy', 10, timeouts['autonomy'])])
            self.limiter = VelocityLimiter(Limits.from_robot(robot, scale))
        except MuxError as exc:
            raise ConfigError(str(exc)) from exc
        self.estop = EstopLock()
        self.pub = self.create_publisher(Twist, 'cmd_vel', qos.RELIABLE)
        self.diag = Diagnostics(self)
        self.decision = None
        self.create_subscription(Twist, 'cmd_vel/teleop', lambda m: self._on_cmd('teleop', m), qos.RELIABLE)
        for name in ('marking', 'autonomy'):
            self.create_subscription(Twist, f'cmd_vel/{name}', lambda m, n=name: self._on_cmd(n, m),
                                     qos.RELIABLE)
        self.create_subscription(Bool, 'estop', self._on_estop, qos.LATCHED)
        self.create_subscription(String, 'safety/status', self._on_safety, qos.LATCHED)
        self.create_timer(1.0 / rate, self._publish)

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _on_cmd(self, name: str, msg: Twist) -> None:
        try:
            self.mux.set_command(name, msg.linear.x, msg.angular.z, self._now())
        except MuxError as exc:
            self.get_logger().warning(f'ignored command: {exc}', throttle_duration_sec=2.0)

    def _on_estop(self, msg: Bool) -> None:
        if self.estop.request(msg.data):
            self.mux.set_lock('estop', True, 'e-stop asserted', self._now())
            self._publish()

    def _on_safety(self, msg: String) -> None:
        now = self._now()
        try:
            status = json.loads(msg.data)
            stop, reasons = bool(status['stop']), '; '.join(status.get('reasons', []))
            self.estop.monitor_status(bool(status.get('estop', False)), int(status.get('reset_count', 0)))
        except (ValueError, KeyError, TypeError) as exc:
            self.get_logger().error(f'unreadable safety/status ({exc}): treated as a stop',
                                    throttle_duration_sec=2.0)
            stop, reasons = True, f'unreadable safety status: {exc}'
        self.mux.set_lock('estop', self.estop.active, 'e-stop latched', now)
        was_stopped = self.decision is not None and self.decision.stopped
        self.mux.set_lock('safety', stop, reasons or 'ok', now)
        if stop and not was_stopped:
            self._publish()

    def _publish(self) -> None:
        now = self._now()
        d = self.mux.select(now)
        if d.stopped:
            v, w = self.limiter.stop(now)
        else:
            v, w = self.limiter.limit(d.v, d.w, now)
        self.pub.publish(twist(v, w))
        changed = self.decision is None or (d.source, d.reason) != (self.decision.source,
                                                                     self.decision.reason)
        if changed:
            self.get_logger().info(f'cmd_vel source: {d.source} ({d.reason})')
        self.decision = d
        level = DiagnosticStatus.ERROR if d.stopped else DiagnosticStatus.OK
        self.diag.update(level, d.reason, {'source': d.source, 'v': round(v, 3), 'w': round(w, 3),
                                           'clamped': self.limiter.clamped}, force=changed)


def main(args=None):
    sys.exit(run_node(TwistMuxNode, args))
