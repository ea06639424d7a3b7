"""Mission benchmark (issue 8): the whole autonomous sweep on the default scenario and a seeded
batch of generated fields, in lockstep (mine_robot.mission.lockstep: the same mission, marking,
driving, safety, detection and fusion classes and configs as the ROS graph, on one simulated
clock). Prints, per run and aggregated: final state, coverage after the re-sweep (judge, from
the true coil poses), probability of detection, false alarms, marks made and failed, marking
error per mark and per marked hazard (p95), hazards confirmed but not marked, wheel passes over
undetected and over known hazards, detours and re-sweeps, simulated and wall time.

    .venv/bin/python bench/bench_mission.py [--seeds 5] [--size 8] [--objects 12]
        [--difficulty medium] [--no-default] [--set NODE.PARAM=VALUE ...]

The ROS graph itself (`mine-robot sweep --sim`) adds transport timing on top; its default run is
measured with that command.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
import tempfile
import time

import numpy as np
import yaml

from mine_robot.mission.lockstep import MissionRun
from mine_robot.sim.generator import generate_scenario
from mine_robot.sim.scenario import dump_scenario


def overrides(items):
    out: dict = {}
    for item in items:
        key, _, value = item.partition('=')
        node, _, param = key.partition('.')
        out.setdefault(node, {})[param] = yaml.safe_load(value)
    return out


def hazard_mark_errors(judge: dict) -> tuple[list[float], list[str]]:
    """The judge's per-hazard marking errors (each hazard's nearest mark in force within 0.5 m)
    and the detected hazards without such a mark."""
    errors = [m['error_m'] for m in judge['marks'] if m.get('hazard_mark')]
    marked = {m['nearest_hazard'] for m in judge['marks'] if m.get('hazard_mark')}
    unmarked = [h['id'] for h in judge['per_hazard'] if h['detected'] and h['id'] not in marked]
    return errors, unmarked


def run_one(name: str, scenario_path: str, out: Path, seed: int, ov: dict) -> dict:
    t0 = time.monotonic()
    run = MissionRun(scenario_path, out, seed=seed, overrides=ov, max_time=3000.0)
    res = run.run()
    j = res.judge or {}
    h_err, unmarked = hazard_mark_errors(j) if j else ([], [])
    mark_err = [m['error_m'] for m in j.get('marks', []) if m['matched'] and not m.get('superseded')]
    r = {'name': name, 'state': res.state, 'message': res.message, 'sim': res.sim_time,
         'wall': time.monotonic() - t0, 'coverage': j.get('coverage_fraction', float('nan')),
         'hazards': j.get('hazards', 0), 'detected': j.get('detected', 0),
         'fa': j.get('false_alarms', 0), 'area': j.get('searched_area_m2', 0.0),
         'marked': res.status.get('targets_marked', 0), 'failed': res.status.get('marks_failed', 0),
         'mark_err': mark_err, 'hazard_err': h_err, 'unmarked': unmarked,
         'undetected_passes': j.get('wheel_passes_over_undetected_hazards', 0),
         'known_passes': j.get('wheel_passes_over_known_hazards', 0),
         'detours': res.status.get('detours', 0), 'resweeps': res.status.get('resweeps', 0)}
    p95 = lambda v: f'{np.percentile(v, 95):.3f}' if v else '  -  '  # noqa: E731
    print(f"{name:26s} {r['state']:8s} cov {100 * r['coverage']:6.2f}% "
          f"PD {r['detected']:2d}/{r['hazards']:<2d} "
          f"FA {r['fa']:2d} marks {r['marked']:2d} (failed {r['failed']}) err p95 mark {p95(mark_err)} "
          f"hazard {p95(h_err)} unmarked {len(unmarked)} passes undetected {r['undetected_passes']} "
          f"known {r['known_passes']} detours {r['detours']} resweeps {r['resweeps']} "
          f"sim {r['sim']:4.0f} s wall {r['wall']:4.0f} s", flush=True)
    if r['state'] != 'complete':
        print(f"    {r['message'][:300]}")
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--seeds', type=int, default=5, help='generated fields (seeds 200, 201, ...)')
    ap.add_argument('--size', type=float, default=8.0, help='side of each generated field (m)')
    ap.add_argument('--objects', type=int, default=12, help='objects per generated field (half hazards)')
    ap.add_argument('--difficulty', default='medium', choices=('easy', 'medium', 'hard'))
    ap.add_argument('--no-default', action='store_true', help='skip the default scenario')
    ap.add_argument('--set', action='append', default=[], metavar='NODE.PARAM=VALUE',
                    help='node parameter override, e.g. safety_monitor.hazard_enabled=false')
    args = ap.parse_args()
    ov = overrides(args.set)
    runs = []
    with tempfile.TemporaryDirectory(prefix='bench_mission_') as tmp:
        tmp = Path(tmp)
        if not args.no_default:
            runs.append(run_one('default', 'default', tmp / 'default', 0, ov))
        for k in range(args.seeds):
            seed = 200 + k
            sc = generate_scenario(seed=seed, objects=args.objects, width=args.size, height=args.size,
                                   difficulty=args.difficulty)
            path = tmp / f'{sc.name}.yaml'
            dump_scenario(sc, path)
            runs.append(run_one(sc.name, str(path), tmp / sc.name, seed, ov))
    n = len(runs)
    done = sum(r['state'] == 'complete' for r in runs)
    cov = [r['coverage'] for r in runs if math.isfinite(r['coverage'])]
    mark_err = [e for r in runs for e in r['mark_err']]
    h_err = [e for r in runs for e in r['hazard_err']]
    print('\n=== aggregate over', n, 'runs', f"(overrides: {ov or 'none'}) ===")
    print(f'completed {done}/{n}; coverage min {100 * min(cov):.2f} % mean {100 * np.mean(cov):.2f} % '
          f'(runs >= 99.5 %: {sum(c >= 0.995 for c in cov)}/{len(cov)})')
    hz = sum(r['hazards'] for r in runs)
    print(f"PD {sum(r['detected'] for r in runs)}/{hz}; false alarms {sum(r['fa'] for r in runs)} over "
          f"{sum(r['area'] for r in runs):.0f} m^2")
    print(f"marks {sum(r['marked'] for r in runs)}, failed {sum(r['failed'] for r in runs)}; "
          f"confirmed hazards left unmarked {sum(len(r['unmarked']) for r in runs)}")
    if mark_err:
        print(f'marking error per mark in force (within 0.5 m of a hazard; superseded marks left '
              f'out): n {len(mark_err)} median '
              f'{np.median(mark_err):.3f} p95 {np.percentile(mark_err, 95):.3f} max {max(mark_err):.3f} m')
    if h_err:
        print(f'marking error per marked hazard (nearest mark): n {len(h_err)} median {np.median(h_err):.3f} '
              f'p95 {np.percentile(h_err, 95):.3f} max {max(h_err):.3f} m')
    print(f"wheel passes over undetected hazards {sum(r['undetected_passes'] for r in runs)}, over known "
          f"hazards {sum(r['known_passes'] for r in runs)}; detours {sum(r['detours'] for r in runs)}, "
          f"re-sweeps {sum(r['resweeps'] for r in runs)}")
    print(f"simulated {sum(r['sim'] for r in runs):.0f} s in {sum(r['wall'] for r in runs):.0f} s wall")


if __name__ == '__main__':
    main()
