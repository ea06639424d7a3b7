"""ROS plumbing shared by the device driver nodes (not an executable: leading underscore)."""

from __future__ import annotations

from concurrent.futures import Future as ConcurrentFuture
import time

from builtin_interfaces.msg import Time
from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.task import Future

from mine_robot.drivers.device import SERIAL_PARAMETERS, DeviceConfig
from mine_robot.drivers.stats import DeviceClock
from mine_robot.ros.conversions import sec_to_stamp
from mine_robot.ros.params import ConfigError, declare

STAMP_SOURCES = ('device', 'arrival', 'device_absolute')


def log_connection(node: Node, connected: bool, reason: str) -> None:
    """The one way drivers report a device connecting, or going away and being retried."""
    if connected:
        node.get_logger().info(reason)
    else:
        node.get_logger().error(f'{reason}; retrying', throttle_duration_sec=10.0)


def declare_serial(node: Node) -> DeviceConfig:
    """Declare the parameters every serial driver shares; ConfigError if they are unusable."""
    values = {name: declare(node, name, default, desc, **kw) for name, default, desc, kw in SERIAL_PARAMETERS}
    try:
        return DeviceConfig(**values)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc


class StampMapper:
    """ROS time (node clock) of events stamped with ``time.monotonic()`` on a reader thread.

    With the system clock the offset between the two clocks is measured at most once a second
    (bracketed by two monotonic reads, so a preempted measurement is discarded) and reused, so the
    stamps keep the exact spacing of the monotonic stamps; with sim time it is read per call.
    """

    def __init__(self, node: Node, refresh: float = 1.0):
        self._clock = node.get_clock()
        self._refresh = refresh
        self._offset_ns: int | None = None
        self._measured = -1e9

    def __call__(self, t_mono: float):
        if getattr(self._clock, 'ros_time_is_active', False):
            now = self._clock.now()
            return (now - Duration(nanoseconds=int((time.monotonic() - t_mono) * 1e9))).to_msg()
        mono = time.monotonic()
        if self._offset_ns is None or mono - self._measured > self._refresh:
            self._measure(first=self._offset_ns is None)
            self._measured = mono
        ns = int(t_mono * 1e9) + self._offset_ns
        return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)

    def _measure(self, first: bool) -> None:
        """Keep the tightest of a few bracketed readings; a preempted reading is never used
        unless nothing better exists yet."""
        best = None
        for _ in range(5 if first else 2):
            # without sim time the node clock is the system clock (CLOCK_REALTIME): read it directly,
            # rclpy's clock.now() may wait for the GIL and blur the bracket by milliseconds
            before = time.monotonic_ns()
            now_ns = time.time_ns()
            after = time.monotonic_ns()
            if best is None or after - before < best[0]:
                best = (after - before, now_ns - (before + after) // 2)
        if first or best[0] < 200_000:
            self._offset_ns = best[1]


async def wait_future(node: Node, future: ConcurrentFuture):
    """Await a concurrent Future (resolved on another thread) inside an async callback, so a service
    waiting for a device acknowledgement never blocks an executor thread."""
    done: Future = Future(executor=node.executor)
    future.add_done_callback(lambda f: done.set_result(f.result()))
    done.add_done_callback(lambda _f: None)  # a scheduled done-callback wakes the executor
    return await done


class DeviceStamper:
    """Header stamps for a device whose messages carry their own device time.

    ``stamp_source``:
    - ``device``: the device clock mapped onto the host clock (DeviceClock: keeps the device's
      exact sample spacing, removes USB/serial buffering jitter);
    - ``arrival``: the host arrival time of the frame;
    - ``device_absolute``: the device clock already runs on the ROS clock (a device disciplined
      by GNSS/PTP, or the built-in simulator's virtual devices under sim time):
      stamp = device time + ``device_time_offset``.
    """

    def __init__(self, node: Node, default: str = 'device'):
        self.source = declare(node, 'stamp_source', default,
                              'device (device clock mapped to host time), arrival (host arrival time) or '
                              'device_absolute (device clock is the ROS clock, + device_time_offset)',
                              choices=STAMP_SOURCES)
        self.offset = declare(node, 'device_time_offset', 0.0,
                              'device_absolute: ROS time = device time + this (s)', range=(-1e10, 1e10))
        self.clock = DeviceClock()
        self._host = StampMapper(node)

    def reset(self) -> None:
        """The device reconnected: its clock may have restarted."""
        self.clock = DeviceClock()

    @property
    def resets(self) -> int:
        return self.clock.resets

    def __call__(self, device_time: float, arrival: float) -> Time:
        if self.source == 'device_absolute':
            return sec_to_stamp(device_time + self.offset)
        if self.source == 'device':
            arrival = self.clock.stamp(device_time, arrival)
        return self._host(arrival)
