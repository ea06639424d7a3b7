"""Benchmark the mission records and exports: durable commit rate, track rate, export time.

    .venv/bin/python bench/mission_records.py [--out DIR]

Prints figures only (not run by the test suite). fsync cost depends on the disk.
"""

from __future__ import annotations

import argparse
from pathlib import Path
import tempfile
import time

import numpy as np
from shapely.geometry import LineString, Polygon

from mine_robot.geo import LocalFrame
from mine_robot.mission.exports import ExportContext, write_outputs
from mine_robot.mission.records import MissionRecords

AREA = {'type': 'FeatureCollection', 'features': []}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--out', help='folder for the files (default: a temporary one)')
    parser.add_argument('-n', type=int, default=500, help='durable detection commits to time')
    args = parser.parse_args()
    root = Path(args.out or tempfile.mkdtemp(prefix='mission-bench-'))
    rec = MissionRecords(root / 'mission.db', AREA)
    t0 = time.perf_counter()
    for i in range(args.n):
        rec.add_detection(float(i), 'metal', i * 0.01, 0.0, confidence=0.5)
    dt = time.perf_counter() - t0
    print(f'durable detection commits (synchronous=FULL): {args.n / dt:8.0f} /s  '
          f'({1000 * dt / args.n:.2f} ms each)')
    t0 = time.perf_counter()
    rows = [dict(t=float(i), sensor='gpr', x=0.0, y=0.0) for i in range(args.n)]
    rec.add_detections(rows)
    dt = time.perf_counter() - t0
    print(f'batched detections (one transaction):         {args.n / dt:8.0f} /s')
    t0 = time.perf_counter()
    n_track = 20000
    for i in range(n_track):
        rec.add_pose(float(i) * 0.05, (i % 400) * 0.05, 0.55 * (i // 400), 0.0)
    rec.flush()
    dt = time.perf_counter() - t0
    print(f'track poses (batched, synchronous=NORMAL):    {n_track / dt:8.0f} /s')
    targets = [{'id': f'T{k}', 'x': k % 20, 'y': k // 20, 'classification': 'mine'} for k in range(50)]
    rec.upsert_targets(1.0, targets)
    for k in range(50):
        rec.add_mark(f'T{k}', 2.0, 'marked', x=k % 20 + 0.02, y=k // 20, attempts=1)
    track = rec.track()
    swept = LineString(track[:, 1:3]).buffer(0.55)
    ctx = ExportContext(LocalFrame(-12.97, 33.76), Polygon([(0, 0), (20, 0), (20, 27), (0, 27)]),
                        (), swept, organisation='bench', lanes_total=50, lanes_done=50, state='complete')
    t0 = time.perf_counter()
    write_outputs(root / 'out', rec, ctx, png=False)
    t1 = time.perf_counter()
    write_outputs(root / 'out', rec, ctx, png=True)
    t2 = time.perf_counter()
    print(f'exports of {len(track)} poses, {args.n * 2} detections, 50 marks: GeoJSON+report.json '
          f'{t1 - t0:.2f} s, with report.png {t2 - t1:.2f} s')
    size = (root / 'mission.db').stat().st_size + (root / 'mission.db-wal').stat().st_size
    print(f'database size incl. WAL: {size / 1e6:.1f} MB   ({root})')
    rec.close()
    print('track p50 step:', float(np.median(np.hypot(*np.diff(track[:, 1:3], axis=0).T))))


if __name__ == '__main__':
    main()
