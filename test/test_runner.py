"""The node process entry point (mine_robot.ros.runner) and the supervisor's child set-up: a node
that stopped spinning never keeps running on its own."""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

pytestmark = pytest.mark.ros

# a node process whose close() prints and then sleeps for CLOSE_S seconds
NODE = textwrap.dedent('''
    import os, sys, time
    from rclpy.node import Node
    from mine_robot.ros.runner import run_node

    class Sleepy(Node):
        def __init__(self):
            super().__init__('sleepy')
            self._said = False
            self.create_timer(0.05, self._spinning)

        def _spinning(self):
            if not self._said:
                self._said = True
                print('spinning', flush=True)

        def close(self):
            print('closing', flush=True)
            if os.environ.get('HOLD_GIL'):
                # a C call that keeps the GIL (as rcl's Publisher.destroy did, blocked)
                import ctypes
                ctypes.PyDLL(None).sleep(int(float(os.environ['CLOSE_S'])))
            else:
                time.sleep(float(os.environ['CLOSE_S']))
            print('closed', flush=True)

    sys.exit(run_node(Sleepy))
''')


def _start(close_s: float, teardown_s: str | None, hold_gil: bool = False) -> subprocess.Popen:
    env = dict(os.environ, CLOSE_S=str(close_s))
    if hold_gil:
        env['HOLD_GIL'] = '1'
    env.pop('MINE_ROBOT_TEARDOWN_S', None)
    if teardown_s is not None:
        env['MINE_ROBOT_TEARDOWN_S'] = teardown_s
    proc = subprocess.Popen([sys.executable, '-c', NODE], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    return proc


def _wait_for(proc: subprocess.Popen, text: str, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if text in line:
            return
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise AssertionError(f'no {text!r} from the node: {proc.communicate()}')


def test_a_node_closes_cleanly_on_sigint():
    proc = _start(close_s=0.2, teardown_s=None)
    _wait_for(proc, 'spinning')
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert 'closing' in out and 'closed' in out


def test_a_repeated_sigint_does_not_interrupt_close():
    proc = _start(close_s=1.5, teardown_s=None)
    _wait_for(proc, 'spinning')
    proc.send_signal(signal.SIGINT)
    _wait_for(proc, 'closing')
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert 'closed' in out and 'KeyboardInterrupt' not in err


def test_a_hanging_teardown_is_ended_by_the_watchdog():
    proc = _start(close_s=120, teardown_s='1.5')
    _wait_for(proc, 'spinning')
    start = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 3
    assert 'teardown did not finish in 1.5 s' in err
    assert time.monotonic() - start < 15


def test_a_teardown_hung_while_holding_the_gil_is_ended_by_the_kernel():
    """close() blocks in a C call that keeps the GIL: the watchdog thread cannot run, SIGALRM
    (default action) ends the process 2 s after the limit."""
    proc = _start(close_s=120, teardown_s='1', hold_gil=True)
    _wait_for(proc, 'spinning')
    start = time.monotonic()
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGALRM
    assert time.monotonic() - start < 15


def test_sigterm_during_a_hanging_teardown_ends_the_process_at_once():
    proc = _start(close_s=120, teardown_s='60')
    _wait_for(proc, 'spinning')
    proc.send_signal(signal.SIGINT)
    _wait_for(proc, 'closing')
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=10)
    assert proc.returncode == -signal.SIGTERM


def test_a_bad_teardown_limit_is_a_clear_start_up_error():
    proc = _start(close_s=0, teardown_s='soon')
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1
    assert "MINE_ROBOT_TEARDOWN_S must be a positive number of seconds, got 'soon'" in err


def test_a_child_whose_supervisor_is_already_gone_does_not_start():
    """The supervisor's pre-exec hook: a child already re-parented (its supervisor died between
    fork and prctl) exits instead of running on its own; a child of a live supervisor runs."""
    from mine_robot.ros.graph import _die_with_parent

    orphan = subprocess.Popen(['sleep', '30'], preexec_fn=functools.partial(_die_with_parent, 1))
    assert orphan.wait(timeout=10) != 0
    child = subprocess.Popen(['sleep', '30'],
                             preexec_fn=functools.partial(_die_with_parent, os.getpid()))
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            child.wait(timeout=1.0)
    finally:
        child.kill()
        child.wait()
