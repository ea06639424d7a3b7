"""Process entry point shared by every node executable.

``run_node(factory)`` initialises rclpy, builds the node (a ConfigError or other start-up
validation error exits 1 with a clear message), spins the process's executor (see
:func:`make_executor`) until Ctrl-C or shutdown, and tears down in order, so no spin thread
outlives the interpreter. A teardown that hangs (a device close, a DDS entity that never lets
go) is ended after ``MINE_ROBOT_TEARDOWN_S`` seconds (default 10) with exit code 3 and a message —
or, when a C call holding the GIL keeps that watchdog thread from running, by SIGALRM 2 s later —
and a second SIGTERM during teardown ends the process at once: a node that stopped spinning must
never keep running without a supervisor (a leaked node kept a core busy in a later sweep).
"""

from __future__ import annotations

from collections.abc import Callable
import math
import os
import signal
import sys
import threading

import rclpy
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor, SingleThreadedExecutor

STARTUP_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError, RuntimeError)
EXECUTORS = ('events', 'single', 'multi')
TEARDOWN_EXIT_CODE = 3
ALARM_GRACE_S = 2                # s after the watchdog's limit: SIGALRM ends a teardown it could not


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
    try:
        limit = teardown_seconds()
    except ValueError as exc:
        print(f'[{getattr(factory, "__name__", "node")}] fatal configuration error: {exc}',
              file=sys.stderr)
        return 1
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
        _guard_teardown(getattr(factory, '__name__', 'node'), limit)
        close = getattr(node, 'close', None)
        if callable(close):
            close()
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


def teardown_seconds() -> float:
    raw = os.environ.get('MINE_ROBOT_TEARDOWN_S', '10')
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ValueError(f'MINE_ROBOT_TEARDOWN_S must be a positive number of seconds, got {raw!r}')
    return value


def _guard_teardown(name: str, limit: float) -> None:
    """From here on the process only tears down: SIGTERM gets its default action again (rclpy's
    handler would only request the shutdown already under way), a repeated SIGINT is ignored (it
    asks for what is under way, and must not interrupt a node's close() half-way), and a watchdog
    ends the process if the teardown takes longer than ``limit`` seconds."""
    try:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        # the kernel's backstop: a teardown stuck in a C call that holds the GIL never lets the
        # watchdog thread run (sim_world hung in Publisher.destroy after the supervisor was
        # SIGKILLed and kept publishing into the resumed run's domain for an hour); SIGALRM with
        # its default action ends the process without any Python code (exit by signal 14)
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
        signal.alarm(math.ceil(limit) + ALARM_GRACE_S)
    except ValueError:
        pass                            # not the main thread (a test harness): watchdog only

    def expire() -> None:
        print(f'[{name}] teardown did not finish in {limit:g} s: exiting with code '
              f'{TEARDOWN_EXIT_CODE}', file=sys.stderr, flush=True)
        os._exit(TEARDOWN_EXIT_CODE)

    timer = threading.Timer(limit, expire)
    timer.daemon = True
    timer.start()
