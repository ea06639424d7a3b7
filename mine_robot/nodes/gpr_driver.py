"""``gpr_driver``: binary GPR trace frames on a serial/USB port -> ``gpr/trace``.

Each frame (docs/protocols.md: sync, length, header with sequence, sample count and time window,
int16 or float32 samples, CRC-32) of a one-antenna radar (version 1) becomes one
``sensor_msgs/Image`` 32FC1 of ``samples x 1``, ``frame_id`` = the antenna frame, stamped at
arrival. The time window must match the configured
``time_window_ns`` (interfaces.md fixes it by config); a trace with another window is counted as
bad, because consumers would misplace every reflection in depth.

An antenna array sends version-2 frames, one per antenna, all antennas of one scan with the same
``seq``; the driver assembles them into one Image of ``samples x channel_count`` (column i =
antenna i) and publishes it when the scan is complete. A scan that misses an antenna (a frame lost
or bad) is dropped whole and counted (``incomplete_scans``), so consumers never see a partial scan.

Plain Node: the port is opened in the constructor and retried with backoff; ``close()`` releases it.
"""

from __future__ import annotations

import functools
import sys

import numpy as np
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


class ScanAssembler:
    """Groups the per-antenna frames of one scan (same seq) into a (samples, channels) array."""

    def __init__(self):
        self.incomplete = 0
        self._seq: int | None = None
        self._parts: dict[int, gpr.GprTrace] = {}

    def add(self, trace: gpr.GprTrace) -> tuple[gpr.GprTrace, np.ndarray] | None:
        if trace.channel_count == 1:
            return trace, trace.samples.reshape(-1, 1)
        if self._parts and (trace.seq != self._seq or trace.channel in self._parts
                            or len(trace.samples) != len(next(iter(self._parts.values())).samples)):
            self.incomplete += 1             # the previous scan lost an antenna: dropped whole
            self._parts = {}
        self._seq = trace.seq
        self._parts[trace.channel] = trace
        if len(self._parts) < trace.channel_count:
            return None
        parts, self._parts = self._parts, {}
        if sorted(parts) != list(range(trace.channel_count)):
            self.incomplete += 1
            return None
        return parts[0], np.stack([parts[c].samples for c in range(trace.channel_count)], axis=1)


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
                                   on_connection=self._on_connection,
                                   # every antenna frame counts: scan seq x antennas + antenna
                                   seq_of=lambda t: t.seq * t.channel_count + t.channel,
                                   seq_modulus=2 ** 32 * gpr.MAX_CHANNELS,
                                   parser=functools.partial(parse_checked, time_window_ns=window))
        self.scan = ScanAssembler()
        self.create_timer(1.0, self._publish_health)
        self.stream.start()

    def _on_trace(self, trace: gpr.GprTrace, t: float) -> None:
        scan = self.scan.add(trace)
        if scan is None:
            return
        first, samples = scan
        rows, cols = samples.shape
        msg = Image(height=rows, width=cols, encoding='32FC1', is_bigendian=0, step=4 * cols)
        msg.header.stamp = self.stamp(first.device_time, t)
        msg.header.frame_id = self.frame_id
        msg.data = samples.astype('<f4').tobytes()
        self.pub.publish(msg)

    def _on_bad(self, exc: ProtocolError, t: float) -> None:
        self.get_logger().warning(f'bad GPR frame skipped: {exc}', throttle_duration_sec=2.0)

    def _on_connection(self, connected: bool, reason: str) -> None:
        log_connection(self, connected, reason)

    def _publish_health(self) -> None:
        h = self.stream.health()
        self.diag.update(h.level, h.message, {**h.values, 'incomplete_scans': self.scan.incomplete},
                         force=True)

    def close(self) -> None:
        self.stream.close()


def main(args=None):
    sys.exit(run_node(GprDriverNode, args))
