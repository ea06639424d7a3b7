"""Test-suite wide set-up.

DDS isolation happens here, at import time, before any test can initialise rclpy:
- ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` always (Kilted ignores ROS_LOCALHOST_ONLY);
- a per-run ``ROS_DOMAIN_ID`` (kept if the caller set one, e.g. scripts/test.sh), so two runs on
  one machine never see each other's nodes.
"""

from __future__ import annotations

import os
from pathlib import Path
import random

import pytest

os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
os.environ.setdefault('ROS_DOMAIN_ID', str(random.SystemRandom().randint(1, 100)))
os.environ.setdefault('RMW_IMPLEMENTATION', 'rmw_fastrtps_cpp')

REPO = Path(__file__).resolve().parent.parent

# CI is reproducible (the same examples every run); developers' runs keep exploring new inputs,
# and any failing input found that way is added to its test as an @example.
from hypothesis import settings as _hypothesis_settings  # noqa: E402

_hypothesis_settings.register_profile('ci', derandomize=True, print_blob=True)
if os.environ.get('CI', '').lower() in ('1', 'true', 'yes'):
    _hypothesis_settings.load_profile('ci')


@pytest.fixture
def repo_root() -> Path:
    return REPO


@pytest.fixture
def ros_context():
    """An isolated, initialised rclpy Context (shut down after the test)."""
    from mine_robot.ros.testing import isolated_context
    with isolated_context() as context:
        yield context


@pytest.fixture
def ros_node_factory(ros_context):
    """Create plain rclpy nodes in the isolated context; all destroyed after the test."""
    import rclpy
    nodes = []

    def make(name: str, **kwargs):
        node = rclpy.create_node(name, context=ros_context, **kwargs)
        nodes.append(node)
        return node

    yield make
    for node in nodes:
        node.destroy_node()


def _importable(name: str) -> bool:
    import importlib.util
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


HAVE_LAUNCH_PYTEST = _importable('launch_pytest') and _importable('launch_ros')
HAVE_TF2 = _importable('tf2_ros')
requires_launch_pytest = pytest.mark.skipif(
    not HAVE_LAUNCH_PYTEST,
    reason='launch_pytest/launch_ros are not installed (pip mode); install ROS 2 Jazzy/Kilted to run')
requires_tf2 = pytest.mark.skipif(
    not HAVE_TF2, reason='tf2_ros is not installed (pip mode); install ROS 2 Jazzy/Kilted to run')


def pytest_collection_modifyitems(config, items):
    """ROS tests run real nodes over real DDS on a 2-core machine, where delivery timing is not
    deterministic: each may be re-run twice on failure (pytest-rerunfailures). A real defect fails
    all three attempts; reruns are reported in the summary ("R"), never hidden."""
    for item in items:
        if item.get_closest_marker('ros') is not None and item.get_closest_marker('flaky') is None:
            item.add_marker(pytest.mark.flaky(reruns=2, reruns_delay=1))


def _leftover_nodes(base: str) -> list[tuple[int, str]]:
    """Node processes still running whose command line names a path under ``base``."""
    found = []
    for proc in Path('/proc').iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmd = (proc / 'cmdline').read_bytes().replace(b'\0', b' ').decode(errors='replace')
        except OSError:
            continue
        if 'mine_robot.nodes.' in cmd and base in cmd:
            found.append((int(proc.name), cmd))
    return found


def pytest_sessionfinish(session, exitstatus):
    """No node process started by a test outlives the suite: a leftover one (seen once: a
    detection_fusion of a whole-graph test kept a core busy and spoiled a demo run after the
    suite) is killed and named in the summary."""
    import signal
    try:
        base = str(session.config._tmp_path_factory.getbasetemp())
    except (AttributeError, OSError):
        return
    leftovers = _leftover_nodes(base)
    for pid, _cmd in leftovers:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    session.config._mine_robot_leftovers = leftovers


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    for pid, cmd in getattr(config, '_mine_robot_leftovers', []):
        terminalreporter.write_line(f'WARNING: killed node process {pid} left running by a test: '
                                    f'{cmd[:200]}', yellow=True)
