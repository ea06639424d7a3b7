"""``gpr_driver``: binary GPR trace frames on a serial/USB port -> ``gpr/trace``.

Each frame (docs/protocols.md: sync, length, header with sequence, sample count and time window,
int16 or float32 samples, CRC-32) becomes one ``sensor_msgs/Image`` 32FC1 of ``samples x 1``,
``frame_id`` = the antenna frame, stamped at arrival. The time window must match the configured
``time_window_ns`` (interfaces.md fixes it by config); a trace with another window is counted as
bad, because consumers would misplace every reflection in depth.

Plain Node: the port is opened in the constructor and retried with backoff; ``close()`` releases it.
"""

from __future__ import annotations

import functools
import sys

from rclpy.node import Node
from sensor_msgs.msg import Image

from mine_robot.drivers.device import DeviceStream
from mine_robot.drivers.protocols import ProtocolError, gpr
from mine_robot.nodes._drivers import DeviceStamper, declare_serial, log_connection
from mine_robot.ros import qos
from mine_robot.ros.diagnostics import Diagnostics
from mine_robot.ros.params import declare
from mine_robot.ros.runner import run_node


def parse_checked(frame: bytes, time_window_ns: float, tolerance: float = 1e-3) -> gpr.GprTrace:
    trace = gpr.parse(frame)
    if abs(trace.time_window_ns - time_window_ns) > tolerance * time_window_ns:
        raise ProtocolError(f'GPR trace {trace.seq}: time window {trace.time_window_ns:g} ns, '
                            f'configured {time_window_ns:g} ns')
    return trace


class GprDriverNode(Node):
    def __init__(self, **kwargs):
        super().__init__('gpr_driver', **kwargs)
        config = declare_serial(self)
        self.frame_id = declare(self, 'frame_id', 'gpr_antenna', 'frame of the antenna')
        window = declare(self, 'time_window_ns', 16.0, 'time window every trace must cover (ns)',
                         range=(0.1, gpr.MAX_TIME_WINDOW_NS))
        self.pub = self.create_publisher(Image, 'gpr/trace', qos.SENSOR)
        self.diag = Diagnostics(self, hardware_id=config.port)
        self.stamp = DeviceStamper(self, default='arrival')
        self.stream = DeviceStream('gpr', config, gpr, self._on_trace, on_error=self._on_bad,
                                   on_connection=self._on_connection, seq_of=lambda t: t.seq,
                                   parser=functools.partial(parse_checked, time_window_ns=window))
        self.create_timer(1.0, self._publish_health)
        self.stream.start()

    def _on_trace(self, trace: gpr.GprTrace, t: float) -> None:
        msg = Image(height=len(trace.samples), width=1, encoding='32FC1', is_bigendian=0, step=4)
        msg.header.stamp = self.stamp(trace.device_time, t)
        msg.header.frame_id = self.frame_id
        msg.data = trace.samples.astype('<f4').tobytes()
        self.pub.publish(msg)

    def _on_bad(self, exc: ProtocolError, t: float) -> None:
        self.get_logger().warning(f'bad GPR frame skipped: {exc}', throttle_duration_sec=2.0)

    def _on_connection(self, connected: bool, reason: str) -> None:
        log_connection(self, connected, reason)

    def _publish_health(self) -> None:
        h = self.stream.health()
        self.diag.update(h.level, h.message, h.values, force=True)

    def close(self) -> None:
        self.stream.close()


def main(args=None):
    sys.exit(run_node(GprDriverNode, args))
