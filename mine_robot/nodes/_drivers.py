"""ROS plumbing shared by the device driver nodes (not an executable: leading underscore)."""

from __future__ import annotations

from concurrent.futures import Future as ConcurrentFuture
import time

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


def ros_stamp(node: Node, t_mono: float):
    """ROS time (node clock) of an event that happened at ``time.monotonic() == t_mono``."""
    now = node.get_clock().now()
    return (now - Duration(nanoseconds=int((time.monotonic() - t_mono) * 1e9))).to_msg()


async def wait_future(node: Node, future: ConcurrentFuture):
    """Await a concurrent Future (resolved on another thread) inside an async callback, so a service
    waiting for a device acknowledgement never blocks an executor thread."""
    done: Future = Future(executor=node.executor)
    future.add_done_callback(lambda f: done.set_result(f.result()))
    done.add_done_callback(lambda _f: None)  # a scheduled done-callback wakes the executor
    return await done
