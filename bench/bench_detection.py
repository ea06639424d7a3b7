"""Detection benchmark: a suite of seeded scenarios through the lockstep pipeline (no ROS).

Prints, over all scenarios: probability of detection with its 95 % Clopper-Pearson lower bound,
false alarms per m², the fraction of metal-detector-only clutter alarms that fusion rejects and
the hazards fusion loses against the metal-detector-only chain, position error (p95), and
per-suite PD with every missed hazard (mass, depth). The ROS-graph latency is measured by
bench/bench_detection_ros.py; this script reports the pipeline's own sample-to-report delay in
simulated time.

Suites (8 m x 8 m generated fields, 40 objects: 20 hazards, 20 clutter of which ~70 % metal,
i.e. ~0.22 metal clutter items per m^2):

- ``medium``: AP mines with 2-10 g of metal at 2-15 cm, UXO, a surface mine, moderately magnetic soil;
- ``spec``: the issue's minimum-metal case: mines with 0.8-1.5 g of metal at 2-10 cm, clutter
  0.5-0.8 m from them, in mineralised laterite (the generator's 'hard' soil and layout);
- ``beyond`` (reported separately, not in the headline figures): the generator's 'hard' mines,
  0.5-2 g at 2-15 cm in the same laterite, harder than the issue's specification (0.5 g at 15 cm
  gives 0.002-0.003 signal units, below the 0.004 white noise).

    .venv/bin/python bench/bench_detection.py [--medium N] [--spec N] [--beyond N] [--size M] [--objects K]
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

from mine_robot.pipeline import SweepPipeline
from mine_robot.robot import load_robot
from mine_robot.sim.generator import generate_scenario

SUITES = {
    'medium': {'difficulty': 'medium'},
    'spec': {'difficulty': 'hard', 'mine_metal_g': (0.8, 1.5), 'mine_depth_m': (0.02, 0.10)},
    'beyond': {'difficulty': 'hard'},
}


def binom_cdf(k: int, n: int, p: float) -> float:
    if p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 0.0 if k < n else 1.0
    logs = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1)
            + i * math.log(p) + (n - i) * math.log1p(-p) for i in range(k + 1)]
    m = max(logs)
    return min(1.0, math.exp(m) * sum(math.exp(v - m) for v in logs))


def clopper_pearson_lower(k: int, n: int, alpha: float = 0.05) -> float:
    """One-sided 95 % lower confidence bound on a binomial proportion (k successes of n)."""
    if k == 0:
        return 0.0
    lo, hi = 0.0, k / n
    for _ in range(60):       # P(X >= k | p) = alpha, solved by bisection
        mid = (lo + hi) / 2
        if 1.0 - binom_cdf(k - 1, n, mid) < alpha:
            lo = mid
        else:
            hi = mid
    return lo


def evaluate(scenario, robot, seed):
    pipe = SweepPipeline(scenario, robot, seed=seed)
    t0 = time.monotonic()
    pipe.run()
    wall = time.monotonic() - t0
    hazards = np.array([[o.x, o.y] for o in scenario.hazards])
    reported = [t for t in pipe.targets if t.classification != 'clutter']
    md_only = [t for t in pipe.targets if 'metal' in t.sensors]

    def matched(targets):
        found, errors = set(), {}
        for t in targets:
            d = np.hypot(hazards[:, 0] - t.x, hazards[:, 1] - t.y)
            i = int(np.argmin(d))
            if d[i] <= 0.5:
                found.add(i)
                errors[i] = min(errors.get(i, math.inf), float(d[i]))
        false = [t for t in targets if np.min(np.hypot(hazards[:, 0] - t.x, hazards[:, 1] - t.y)) > 0.5]
        return found, errors, false

    found, errors, false = matched(reported)
    md_found, _, md_false = matched(md_only)
    rejected = sum(1 for t in md_false if t.classification == 'clutter')
    lost = sorted(md_found - found)
    delays = [pipe.report_times[t.id] - t.first_t for t in reported if t.id in pipe.report_times]
    judge = pipe.judge()
    return {'hazards': len(hazards), 'found': len(found), 'false': len(false),
            'area': judge['searched_area_m2'], 'md_false': len(md_false), 'md_rejected': rejected,
            'lost': len(lost), 'errors': list(errors.values()), 'delays': delays, 'wall': wall,
            'sim': pipe.time, 'coverage': judge['coverage_fraction'],
            'missed': [scenario.hazards[i] for i in range(len(hazards)) if i not in found]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--medium', type=int, default=4, help='medium scenarios (AP mines 2-10 g, UXO)')
    ap.add_argument('--spec', type=int, default=4,
                    help='minimum-metal scenarios (0.8-1.5 g at 2-10 cm, laterite)')
    ap.add_argument('--beyond', type=int, default=2,
                    help='harder-than-spec scenarios (0.5-2 g at 2-15 cm, laterite), reported separately')
    ap.add_argument('--size', type=float, default=8.0, help='side of each square field (m)')
    ap.add_argument('--objects', type=int, default=40, help='objects per field (half hazards)')
    args = ap.parse_args()
    robot = load_robot()
    runs = []
    for suite, count in (('medium', args.medium), ('spec', args.spec), ('beyond', args.beyond)):
        for seed in range(count):
            sc = generate_scenario(seed=100 + seed, objects=args.objects, width=args.size,
                                   height=args.size, name=f'{suite}_s{100 + seed}', **SUITES[suite])
            r = evaluate(sc, robot, seed)
            r['difficulty'] = suite
            runs.append(r)
            print(f'{sc.name:28s} hazards {r["hazards"]:3d} found {r["found"]:3d} FA {r["false"]:3d} '
                  f'MD-only clutter alarms {r["md_false"]:3d} rejected {r["md_rejected"]:3d} '
                  f'lost {r["lost"]} '
                  f'coverage {r["coverage"]:.3f}  sim {r["sim"]:.0f} s wall {r["wall"]:.0f} s', flush=True)
            for o in r['missed']:
                print(f'    missed {o.id} {o.kind} {o.metal_g} g at {o.depth_m} m, d={o.diameter_m}')
    report('headline: medium + spec', [r for r in runs if r['difficulty'] != 'beyond'])
    if any(r['difficulty'] == 'beyond' for r in runs):
        report('beyond the specification (0.5-2 g at 2-15 cm)',
               [r for r in runs if r['difficulty'] == 'beyond'])
    print(f'wall time {sum(r["wall"] for r in runs):.0f} s for {sum(r["sim"] for r in runs):.0f} s simulated')


def report(title: str, runs: list) -> None:
    if not runs:
        return
    print(f'\n=== {title} ===')
    n = sum(r['hazards'] for r in runs)
    k = sum(r['found'] for r in runs)
    area = sum(r['area'] for r in runs)
    fa = sum(r['false'] for r in runs)
    md_false = sum(r['md_false'] for r in runs)
    md_rej = sum(r['md_rejected'] for r in runs)
    errors = [e for r in runs for e in r['errors']]
    delays = [d for r in runs for d in r['delays']]
    print(f'hazards {n}, detected {k}: PD = {k / n:.4f}, 95 % lower bound (Clopper-Pearson) '
          f'{clopper_pearson_lower(k, n):.4f}')
    for diff in ('medium', 'spec', 'beyond'):
        nn = sum(r['hazards'] for r in runs if r['difficulty'] == diff)
        kk = sum(r['found'] for r in runs if r['difficulty'] == diff)
        if nn:
            print(f'  {diff:6s}: {kk}/{nn} = {kk / nn:.4f} (lower bound {clopper_pearson_lower(kk, nn):.4f})')
    print(f'false alarms {fa} over {area:.0f} m^2 searched = {fa / area:.4f} per m^2')
    print(f'MD-only clutter alarms {md_false}; fusion rejects {md_rej} = '
          f'{(md_rej / md_false if md_false else float("nan")):.3f}; hazards lost vs MD-only chain: '
          f'{sum(r["lost"] for r in runs)}')
    if errors:
        print(f'position error: median {np.median(errors):.3f} m, p95 {np.percentile(errors, 95):.3f} m')
    if delays:
        print(f'sample-to-report delay (sim time, pipeline): median {np.median(delays):.2f} s, '
              f'p95 {np.percentile(delays, 95):.2f} s')


if __name__ == '__main__':
    main()
