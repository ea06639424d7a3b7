"""Process entry point shared by every node executable.

``run_node(factory)`` initialises rclpy, builds the node (a ConfigError or other start-up
validation error exits 1 with a clear message), spins the process's executor (see
:func:`make_executor`) until Ctrl-C or shutdown, and tears down in order, so no spin thread
outlives the interpreter.
"""

from __future__ import annotations

from collections.abc import Callable
import os
import sys

import rclpy
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor, SingleThreadedExecutor

STARTUP_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError, RuntimeError)
EXECUTORS = ('events', 'single', 'multi')


def make_executor(kind: str | None = None):
    """The executor for a node process: ``MINE_ROBOT_EXECUTOR`` = events (default) | single | multi.

    rclpy's EventsExecutor (C++ event queue) by default: over the 17-node sweep graph at 2x real
    time it needed 205 CPU seconds in 150 s against 284 for the SingleThreadedExecutor, and with
    the machine no longer saturated the detectors stopped losing samples (the metal detector lost
    0.7 % of its samples instead of 21 %; 2026-12-06, see README "Status"). Every node's
    callbacks are non-blocking (device I/O runs on reader threads, waiting services are
    coroutines), so one thread per process is enough. ``single`` and ``multi`` are rclpy's
    wait-set executors (the multi-threaded one needs about 1.5x the CPU of the single one)."""
    kind = (kind or os.environ.get('MINE_ROBOT_EXECUTOR') or 'events').strip().lower()
    if kind not in EXECUTORS:
        raise ValueError(f'MINE_ROBOT_EXECUTOR must be one of {EXECUTORS}, got {kind!r}')
    if kind == 'events':
        from rclpy.experimental import EventsExecutor
        return EventsExecutor()
    return SingleThreadedExecutor() if kind == 'single' else MultiThreadedExecutor()


def spin(executor) -> None:
    """Spin until shutdown. The EventsExecutor is driven by ``spin_once``: its ``spin()`` (rclpy
    10.0, Kilted) never fired sim_world's steady-clock timer in a node with ``use_sim_time``, so
    the simulator published no clock and the whole graph waited."""
    if isinstance(executor, (SingleThreadedExecutor, MultiThreadedExecutor)):
        executor.spin()
        return
    while executor.context.ok():
        executor.spin_once(timeout_sec=0.5)


def run_node(factory: Callable[[], object], args: list[str] | None = None) -> int:
    rclpy.init(args=args)
    try:
        node = factory()
    except STARTUP_ERRORS as exc:
        print(f'[{getattr(factory, "__name__", "node")}] fatal configuration error: {exc}',
              file=sys.stderr)
        rclpy.try_shutdown()
        return 1
    executor = make_executor()
    executor.add_node(node)
    try:
        spin(executor)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        close = getattr(node, 'close', None)
        if callable(close):
            close()
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0
