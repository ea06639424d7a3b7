"""ROS plumbing shared by the device driver nodes (not an executable: leading underscore)."""

from __future__ import annotations

from concurrent.futures import Future as ConcurrentFuture
import time

from builtin_interfaces.msg import Time
from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.task import Future

from mine_robot.drivers.device import SERIAL_PARAMETERS, DeviceConfig
from mine_robot.ros.params import ConfigError, declare


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
