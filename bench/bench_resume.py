"""Crash-resume benchmark (issue 8): kill the whole sweep graph (or only one node, e.g. the mission
manager) at a random moment, let it restart, and check that nothing recorded before the kill was
lost and that the sweep completes.

    .venv/bin/python bench/bench_resume.py [--kill-after 60..150] [--seed 3] [--rate 2]
    .venv/bin/python bench/bench_resume.py --node mission_manager [--kill-after ...] [--seed ...]

With ``--node NAME`` only that node's process is SIGKILLed while the rest of the graph keeps
going: the supervisor restarts it (``--respawn``) and the mission manager resumes its mission from
``mission.db`` by itself (``resume_on_start``); the rows committed before the kill are compared
with the folder after the sweep ends. Without ``--node``:

1. ``mine-robot sweep --sim --fresh -o OUT`` is started and SIGKILLed (the supervisor; its node
   processes die with it through PR_SET_PDEATHSIG) after a random number of wall seconds.
2. The detections, targets and marks in ``OUT/mission.db`` are read (what was committed).
3. ``mine-robot sweep --sim -o OUT`` (no ``--fresh``) resumes; when it exits, every row from step 2
   must still be there, unchanged, and the exit status and final state are printed.
The simulator restarts with the robot back on its access lane: the mission resumes with the lanes
already swept counted as done. Not run by the test suite (two sweeps take ~6 minutes).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time

# what must survive unchanged: detections and marks whole; a target by its id and first report
# (fusion, still running while a single node restarts, goes on refining its position)
TABLES = {'detections': 'id, t, sensor, x, y', 'targets': 'id, first_t',
          'marks': 'target_id, status, x, y'}


def rows(db: Path) -> dict[str, set]:
    con = sqlite3.connect(f'file:{db}?mode=ro', uri=True)
    try:
        return {table: set(con.execute(f'select {cols} from {table}')) for table, cols in TABLES.items()}
    finally:
        con.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--kill-after', type=float, default=None, help='wall seconds (default random 60-150)')
    ap.add_argument('--seed', type=int, default=None)
    ap.add_argument('--rate', type=float, default=2.0)
    ap.add_argument('-o', '--output', default=None)
    ap.add_argument('--node', default=None, help='kill only this node (e.g. mission_manager)')
    args = ap.parse_args()
    rng = random.Random(args.seed)
    kill_after = args.kill_after if args.kill_after is not None else rng.uniform(60.0, 150.0)
    out = Path(args.output or tempfile.mkdtemp(prefix='mine_robot_resume_'))
    exe = str(Path(sys.executable).parent / 'mine-robot')
    env = dict(os.environ, ROS_AUTOMATIC_DISCOVERY_RANGE='LOCALHOST')
    env.setdefault('ROS_DOMAIN_ID', str(rng.randint(120, 200)))
    cmd = [exe, 'sweep', '--sim', '-o', str(out), '--rate', str(args.rate), '--timeout', '600']

    if args.node:
        return kill_node(args.node, cmd, env, out, kill_after)
    print(f'[run 1] sweep into {out}, SIGKILL after {kill_after:.0f} s')
    first = subprocess.Popen(cmd + ['--fresh'], env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    time.sleep(kill_after)
    first.send_signal(signal.SIGKILL)
    first.wait()
    time.sleep(3.0)                        # children die with the supervisor (PDEATHSIG)
    before = rows(out / 'mission.db')
    print('[run 1] killed; committed: ' + ', '.join(f'{k} {len(v)}' for k, v in before.items()))

    t0 = time.monotonic()
    second = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.monotonic() - t0
    after = rows(out / 'mission.db')
    lost = {k: before[k] - after[k] for k in TABLES}
    print(f'[run 2] resumed run exited {second.returncode} after {wall:.0f} s')
    print('\n'.join(second.stdout.strip().splitlines()[-5:]))
    print('[check] after: ' + ', '.join(f'{k} {len(v)}' for k, v in after.items()))
    print('[check] rows recorded before the kill and missing after: '
          + ', '.join(f'{k} {len(v)}' for k, v in lost.items()))
    ok = second.returncode == 0 and not any(lost.values())
    print('RESULT', 'ok' if ok else 'FAILED')
    return 0 if ok else 1


def node_pid(out: Path, node: str) -> int | None:
    from mine_robot.ros.graph import run_processes
    return next((pid for pid, _cmd in run_processes(out / 'run', node)), None)


def kill_node(node: str, cmd: list[str], env: dict, out: Path, kill_after: float) -> int:
    print(f'[run] sweep into {out}; SIGKILL {node} after {kill_after:.0f} s, the rest keeps going')
    t0 = time.monotonic()
    sweep = subprocess.Popen(cmd + ['--fresh'], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    time.sleep(kill_after)
    pid = node_pid(out, node)
    if pid is None:
        print(f'[kill] no {node} process found (sweep over?)')
        sweep.kill()
        return 1
    before = rows(out / 'mission.db')
    os.kill(pid, signal.SIGKILL)
    print(f'[kill] {node} (pid {pid}) killed at {time.monotonic() - t0:.0f} s; committed: '
          + ', '.join(f'{k} {len(v)}' for k, v in before.items()))
    text, _ = sweep.communicate()
    wall = time.monotonic() - t0
    after = rows(out / 'mission.db')
    lost = {k: before[k] - after[k] for k in TABLES}
    restarts = [ln for ln in text.splitlines() if 'was restarted' in ln]
    print(f'[run] exited {sweep.returncode} after {wall:.0f} s; restarts: {restarts}')
    print('\n'.join(text.strip().splitlines()[-5:]))
    print('[check] after: ' + ', '.join(f'{k} {len(v)}' for k, v in after.items()))
    print('[check] rows recorded before the kill and missing after: '
          + ', '.join(f'{k} {len(v)}' for k, v in lost.items()))
    ok = sweep.returncode == 0 and not any(lost.values()) and restarts
    print('RESULT', 'ok' if ok else 'FAILED')
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
