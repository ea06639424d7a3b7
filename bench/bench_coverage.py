"""Speed of incremental coverage accounting (CoverageTracker.add_pose), the path the safety
monitor and the mission run at odometry rate. Prints mean and worst time per pose and the time of
the exact swept polygon and fraction at the end.

    .venv/bin/python bench/bench_coverage.py [--poses 6000]
"""

import argparse
import time

import numpy as np
from shapely.geometry import box

from mine_robot.planning.coverage import CoverageTracker
from mine_robot.robot import load_robot


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--poses', type=int, default=6000)
    args = parser.parse_args()
    robot = load_robot()
    per_lane = args.poses // 3
    lanes = [np.column_stack([np.linspace(0, per_lane * 0.02, per_lane), np.full(per_lane, float(i)),
                              np.zeros(per_lane)]) for i in range(3)]
    tracker = CoverageTracker(robot)
    times = []
    for p in np.vstack(lanes):
        t = time.perf_counter()
        tracker.add_pose(*p)
        times.append(time.perf_counter() - t)
    t = time.perf_counter()
    frac = tracker.fraction(box(1, -0.5, per_lane * 0.02 - 1, 2.5))
    final = time.perf_counter() - t
    times = np.array(times) * 1e3
    print(f'poses {len(times)}: add_pose mean {times.mean():.3f} ms, p99 {np.percentile(times, 99):.3f} ms, '
          f'worst {times.max():.1f} ms (budget at 50 Hz: 20 ms); fraction() {final * 1e3:.1f} ms; '
          f'covered {100 * frac:.2f} %')


if __name__ == '__main__':
    main()
