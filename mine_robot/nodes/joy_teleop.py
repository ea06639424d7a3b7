"""``joy_teleop``: sensor_msgs/Joy -> ``cmd_vel/teleop`` with a dead-man button and scaling.

The mapping (axes, buttons, scales, dead zone) is in ``config/control.yaml``. Nothing is published
unless the dead-man button is held; releasing it sends one zero, then the input times out in the
mux and autonomy (if any) resumes.
"""

from __future__ import annotations

import sys

from geometry_msgs.msg import Twist
from rclpy.node import Node
from sensor_msgs.msg import Joy

from mine_robot.control.teleop import JoyMapping, JoyTeleop, TeleopError
from mine_robot.nodes._driving import twist
from mine_robot.ros import qos
from mine_robot.ros.params import ConfigError, declare
from mine_robot.ros.runner import run_node


class JoyTeleopNode(Node):
    def __init__(self, **kwargs):
        super().__init__('joy_teleop', **kwargs)
        ints = {'axis_linear': (1, 'Joy axis for forward speed'),
                'axis_angular': (0, 'Joy axis for turn rate'),
                'deadman_button': (4, 'button that must be held to drive'),
                'turbo_button': (5, 'button for turbo scales (-1: none)')}
        floats = {'scale_linear': (0.3, 'm/s at full stick'), 'scale_angular': (0.6, 'rad/s at full stick'),
                  'turbo_scale_linear': (0.6, 'm/s at full stick, turbo'),
                  'turbo_scale_angular': (1.0, 'rad/s at full stick, turbo')}
        values = {k: declare(self, k, d, desc, range=(-1, 64)) for k, (d, desc) in ints.items()}
        values.update({k: declare(self, k, d, desc, range=(0.0, 5.0)) for k, (d, desc) in floats.items()})
        values['deadzone'] = declare(self, 'deadzone', 0.05, 'stick dead zone (fraction)', range=(0.0, 0.99))
        try:
            self.teleop = JoyTeleop(JoyMapping(**values))
        except TeleopError as exc:
            raise ConfigError(str(exc)) from exc
        self.pub = self.create_publisher(Twist, 'cmd_vel/teleop', qos.RELIABLE)
        self.create_subscription(Joy, 'joy', self._on_joy, qos.SENSOR)

    def _on_joy(self, msg: Joy) -> None:
        try:
            out = self.teleop.update(list(msg.axes), list(msg.buttons))
        except TeleopError as exc:
            self.get_logger().error(f'joystick does not fit the mapping: {exc}', throttle_duration_sec=5.0)
            return
        if out is not None:
            self.pub.publish(twist(*out))


def main(args=None):
    sys.exit(run_node(JoyTeleopNode, args))
