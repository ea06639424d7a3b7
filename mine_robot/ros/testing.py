"""Helpers for tests that run real rclpy nodes over real DDS in an isolated context.

The test suite's conftest sets ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` and a per-run
``ROS_DOMAIN_ID`` before anything initialises rclpy, so discovery never leaves this machine and
parallel runs never cross.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
import contextlib
import threading
import time

import rclpy
from rclpy.context import Context
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor, SingleThreadedExecutor


@contextlib.contextmanager
def isolated_context() -> Iterator[Context]:
    """A fresh rclpy Context, initialised for the test and shut down afterwards."""
    context = Context()
    rclpy.init(context=context)
    try:
        yield context
    finally:
        rclpy.try_shutdown(context=context)


class BackgroundSpinner:
    """Spin nodes on a (joined) background thread: a SingleThreadedExecutor, as the nodes run in
    production (``mine_robot.ros.runner``), or a MultiThreadedExecutor with ``num_threads`` > 1.

    The multi-threaded executor busy-polls a subscription whose message a pool thread has not taken
    yet; with a latched status subscription on a test node it burned a whole core and a 20 Hz test
    timer fired 1-5 times a second (the safety monitor then stopped on stale pose, a flaky test)."""

    def __init__(self, context: Context, *nodes, num_threads: int = 1):
        self._executor = (MultiThreadedExecutor(num_threads=num_threads, context=context)
                          if num_threads > 1 else SingleThreadedExecutor(context=context))
        for node in nodes:
            self._executor.add_node(node)
        self._thread = threading.Thread(target=self._spin, name='test-spinner')

    def add(self, node) -> None:
        self._executor.add_node(node)

    def _spin(self) -> None:
        with contextlib.suppress(ExternalShutdownException):
            self._executor.spin()

    def __enter__(self) -> BackgroundSpinner:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._executor.shutdown(timeout_sec=5.0)
        self._thread.join(timeout=10.0)


class MessageCollector:
    """Subscribe to a topic and keep every message; wait for a count or a predicate."""

    def __init__(self, node, msg_type, topic: str, qos=10):
        self.messages: list = []
        self._cond = threading.Condition()
        self.subscription = node.create_subscription(msg_type, topic, self._on_msg, qos)

    def _on_msg(self, msg) -> None:
        with self._cond:
            self.messages.append(msg)
            self._cond.notify_all()

    def wait_for(self, predicate: Callable[[list], bool] | int = 1, timeout: float = 10.0) -> list:
        """Block until ``predicate(messages)`` (or ``len(messages) >= n``); raise on timeout."""
        check = (lambda msgs: len(msgs) >= predicate) if isinstance(predicate, int) else predicate
        deadline = time.monotonic() + timeout
        with self._cond:
            while not check(self.messages):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f'condition not met on {self.subscription.topic_name} within '
                                       f'{timeout} s ({len(self.messages)} messages received)')
                self._cond.wait(remaining)
            return list(self.messages)


def wait_for_message(node, msg_type, topic: str, timeout: float = 10.0, qos=10):
    """Return the first message on ``topic`` received by ``node`` (which must be spinning)."""
    collector = MessageCollector(node, msg_type, topic, qos)
    try:
        return collector.wait_for(1, timeout)[0]
    finally:
        node.destroy_subscription(collector.subscription)


def call_service(node, srv_type, name: str, request=None, timeout: float = 10.0):
    """Call a service from a test thread (node spinning elsewhere) and return the response."""
    client = node.create_client(srv_type, name)
    try:
        if not client.wait_for_service(timeout_sec=timeout):
            raise TimeoutError(f'service {name} not available within {timeout} s')
        future = client.call_async(request if request is not None else srv_type.Request())
        done = threading.Event()
        future.add_done_callback(lambda _f: done.set())
        if not done.wait(timeout):
            raise TimeoutError(f'service {name} did not answer within {timeout} s')
        return future.result()
    finally:
        node.destroy_client(client)
