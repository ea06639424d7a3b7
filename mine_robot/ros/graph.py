"""Start the mine_robot ROS graph without ``ros2 launch`` (pip mode).

The node set and every node's parameters come from :class:`mine_robot.launch_support.GraphPlan`,
the same object ``launch/stack.launch.py`` uses, so pip mode and a full ROS install run the same
graph. Each node runs in its own process (both cores get used, a crash stays contained and can be
told apart). Every child's output goes to ``<log_dir>/<node>.log``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
import functools
import os
from pathlib import Path
import signal
import subprocess
import sys
import time
from typing import Any

import yaml

from mine_robot.launch_support import GraphPlan, NodeSpec


def _die_with_parent(parent: int) -> None:
    """In the child before exec: SIGTERM it when the supervisor dies (Linux prctl), so a killed
    supervisor never leaves a graph running on its own. A supervisor that died between the fork
    and the prctl call (the child was already re-parented) ends the child here."""
    try:
        import ctypes
        libc = ctypes.CDLL('libc.so.6', use_errno=True)
        libc.prctl(1, signal.SIGTERM)   # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return                          # not Linux: Graph.stop() still runs on normal exits
    if os.getppid() != parent:
        os._exit(1)


def ros_environment(domain_id: int | None = None) -> dict[str, str]:
    """The environment every child gets: DDS discovery on this machine only, one domain."""
    env = dict(os.environ)
    env['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
    env.setdefault('RMW_IMPLEMENTATION', 'rmw_fastrtps_cpp')
    if domain_id is not None:
        env['ROS_DOMAIN_ID'] = str(domain_id)
    env['PYTHONUNBUFFERED'] = '1'
    env.setdefault('RCUTILS_LOGGING_BUFFERED_STREAM', '0')
    return env


def _nest(flat: Mapping[str, Any]) -> dict[str, Any]:
    """Dotted parameter names -> nested mappings, as a ROS parameter file writes them."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        node = out
        parts = key.split('.')
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


def run_processes(work_dir: Path, node: str | None = None) -> list[tuple[int, str]]:
    """(pid, command line) of the live node processes of the graph whose parameter files are in
    ``work_dir/params`` (a sweep's ``OUT/run``), optionally only node ``node``: for tests and
    benchmarks that kill one node, and for checking that none outlives its supervisor."""
    marker = str(Path(work_dir) / 'params')
    found = []
    for proc in Path('/proc').iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / 'cmdline').read_bytes().replace(b'\0', b' ').decode(errors='replace')
        except OSError:
            continue
        if marker in cmd and (node is None or f'mine_robot.nodes.{node} import' in cmd):
            found.append((int(proc.name), cmd))
    return found


@dataclass
class NodeProcess:
    spec: NodeSpec
    params_file: Path
    log_file: Path
    process: subprocess.Popen | None = None
    restarts: int = 0
    _log: Any = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.spec.executable

    def command(self, log_level: str) -> list[str]:
        code = f'import sys; from mine_robot.nodes.{self.name} import main; sys.exit(main())'
        cmd = [sys.executable, '-c', code, '--ros-args', '-r', f'__node:={self.name}',
               '--params-file', str(self.params_file), '--log-level', log_level]
        for src, dst in self.spec.remappings:
            cmd += ['-r', f'{src}:={dst}']
        return cmd

    def start(self, env: Mapping[str, str], log_level: str) -> None:
        self._log = open(self.log_file, 'ab')  # closed in stop()
        self._log.write(f'--- start {time.strftime("%Y-%m-%d %H:%M:%S")}\n'.encode())
        self._log.flush()
        self.process = subprocess.Popen(self.command(log_level), stdout=self._log,
                                        stderr=subprocess.STDOUT, env=dict(env),
                                        stdin=subprocess.DEVNULL, start_new_session=True,
                                        preexec_fn=functools.partial(_die_with_parent, os.getpid()))

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def tail(self, lines: int = 15) -> str:
        try:
            text = self.log_file.read_text(errors='replace').splitlines()
        except OSError:
            return ''
        return '\n'.join(text[-lines:])

    def signal(self, sig: int) -> None:
        if self.alive():
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                pass

    def stop(self, timeout: float = 5.0) -> None:
        """SIGINT (clean shutdown), then SIGTERM, then SIGKILL."""
        for sig, wait in ((signal.SIGINT, timeout), (signal.SIGTERM, 2.0), (signal.SIGKILL, 2.0)):
            if not self.alive():
                break
            self.signal(sig)
            try:
                self.process.wait(wait)
            except subprocess.TimeoutExpired:
                continue
        if self._log is not None:
            self._log.close()
            self._log = None


class Graph:
    """All nodes of a GraphPlan as supervised child processes."""

    def __init__(self, plan: GraphPlan, work_dir: Path, domain_id: int | None = None,
                 log_level: str = 'warn'):
        self.plan = plan
        self.work_dir = Path(work_dir)
        self.log_dir = self.work_dir / 'logs'
        self.log_dir.mkdir(parents=True, exist_ok=True)
        params_dir = self.work_dir / 'params'
        params_dir.mkdir(parents=True, exist_ok=True)
        self.env = ros_environment(domain_id)
        self.log_level = log_level
        self.max_restarts = 3            # per node, used by the supervisor (respawn)
        self.nodes: dict[str, NodeProcess] = {}
        for spec in plan.nodes():
            params_file = params_dir / f'{spec.executable}.yaml'
            params_file.write_text(yaml.safe_dump(
                {'/**': {'ros__parameters': _nest(spec.parameters)}}, sort_keys=False))
            self.nodes[spec.executable] = NodeProcess(spec, params_file,
                                                      self.log_dir / f'{spec.executable}.log')

    def start(self, stagger: float = 0.05) -> None:
        for node in self.nodes.values():
            node.start(self.env, self.log_level)
            time.sleep(stagger)

    def dead(self) -> list[NodeProcess]:
        return [n for n in self.nodes.values() if n.process is not None and not n.alive()]

    def respawn(self, max_restarts: int) -> tuple[list[str], list[NodeProcess]]:
        """Restart every dead node that has been restarted fewer than ``max_restarts`` times (as
        launch_ros ``respawn=True`` does on a full install); returns (names restarted, nodes dead
        for good). A restarted node starts from its parameters; the mission manager resumes its
        mission from ``mission.db`` (``resume_on_start``)."""
        restarted, lost = [], []
        for node in self.dead():
            if node.restarts >= max_restarts:
                lost.append(node)
                continue
            code = node.process.returncode
            node.stop(timeout=0.1)               # closes the log
            node.restarts += 1
            node.start(self.env, self.log_level)
            restarted.append(f'{node.name} (exit code {code}, restart {node.restarts}/{max_restarts})')
        return restarted, lost

    def stop(self) -> None:
        # consumers first, sources last, so nothing reports the sources vanishing as a fault
        for node in reversed(list(self.nodes.values())):
            node.signal(signal.SIGINT)
        deadline = time.monotonic() + 8.0
        for node in reversed(list(self.nodes.values())):
            if node.process is not None:
                try:
                    node.process.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    pass
            node.stop(timeout=0.5)

    def __enter__(self) -> Graph:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
