"""Benchmark of the coverage planner (issue 3): plans a set of fields and prints, per field,
planning time (median of N), coverage fraction, path length, its ratio to the lower bound
(searchable area / lane spacing), metres of path in no-go zones / outside, and the swept-ground
violations. Not run by the test suite.

    .venv/bin/python bench/bench_planner.py [--repeat 5] [--fields rect,lshape,...]

The last row is a mission re-plan over missed strips (``region=``), from test/data/resweep_demo0.json;
``--extract-resweep DB OUT`` writes such a case from a mission's ``mission.db`` (the ground swept when
the re-sweep plan was made, rebuilt from the driven poses as the mission does it; the hazards known
then; the robot's pose).
"""

from __future__ import annotations

import argparse
from dataclasses import replace
import json
import math
from pathlib import Path
import sqlite3
import statistics
import time

import numpy as np
import shapely
from shapely.geometry import Point, Polygon, box

from mine_robot.planning.area import area_from_geojson, local_area
from mine_robot.planning.coverage import CoverageTracker
from mine_robot.planning.planner import PlannerConfig, plan_coverage, plan_stats
from mine_robot.robot import load_robot

RESWEEP_CASE = Path(__file__).resolve().parent.parent / 'test' / 'data' / 'resweep_demo0.json'


def access(search: Polygon):
    """A safe access lane along the bottom of the field's bounding box, 5 m deep, reaching 1.5 m up
    beside the field so that it adjoins the field's boundary along its lowest 1.5 m (a lane that
    touched a non-convex or rotated field only at its lowest vertex left no way in with the wheels on
    allowed ground)."""
    minx, miny, maxx, _ = search.bounds
    return box(minx - 3, miny - 5, maxx + 3, miny + 1.5).difference(search.buffer(0))


def random_holes(search: Polygon, n: int, rng, size=(1.5, 3.5), spacing: float = 4.0,
                 margin: float = 3.0) -> list[Polygon]:
    """``n`` random star-shaped zones inside ``search`` (``margin`` from its boundary, ``spacing``
    apart); raises if the field has no room for them (so a field's name never lies)."""
    holes = []
    inner = search.buffer(-margin)
    minx, miny, maxx, maxy = inner.bounds
    tries = 0
    while len(holes) < n and tries < 5000:
        tries += 1
        c = Point(rng.uniform(minx, maxx), rng.uniform(miny, maxy))
        r = rng.uniform(*size)
        k = int(rng.integers(4, 8))
        ang = np.sort(rng.uniform(0, 2 * math.pi, k))
        rad = r * rng.uniform(0.6, 1.0, k)
        poly = Polygon(np.column_stack([c.x + rad * np.cos(ang), c.y + rad * np.sin(ang)]))
        if not poly.is_valid or not inner.contains(poly):
            continue
        if any(poly.distance(h) < spacing for h in holes):
            continue
        holes.append(poly)
    if len(holes) < n:
        raise RuntimeError(f'placed only {len(holes)} of {n} zones: make the field bigger')
    return holes


def random_nonconvex(rng, radius=30.0, k=14) -> Polygon:
    ang = np.sort(rng.uniform(0, 2 * math.pi, k))
    rad = radius * rng.uniform(0.65, 1.0, k)
    return Polygon(np.column_stack([rad * np.cos(ang), rad * np.sin(ang)]))


def fields() -> dict:
    rng = np.random.default_rng(7)
    out = {}
    rect = box(0, 0, 60, 40)
    out['rectangle 60x40'] = local_area(rect, safe=[access(rect)])
    lsh = Polygon([(0, 0), (50, 0), (50, 20), (22, 20), (22, 45), (0, 45)])
    out['L-shape, 2 holes'] = local_area(lsh, no_go=[box(8, 8, 12, 12), box(8, 28, 13, 33)],
                                         safe=[access(lsh)])
    for n in (5, 10, 15):
        # the outline grows with the number of zones (about 130 m² of field per zone)
        poly = random_nonconvex(rng, radius=24.0 + 1.2 * n)
        out[f'non-convex, {n} holes'] = local_area(poly, no_go=random_holes(poly, n, rng),
                                                   safe=[access(poly)])
    strip = shapely.affinity.rotate(box(0, 0, 120, 8), 27, origin=(0, 0))
    out['thin strip 120x8 @27°'] = local_area(strip, safe=[access(strip)])
    ang = np.linspace(0, 2 * math.pi, 41)[:-1]
    many = Polygon(np.column_stack([30 * np.cos(ang) * (1 + 0.08 * np.sin(5 * ang)),
                                    22 * np.sin(ang) * (1 + 0.08 * np.sin(5 * ang))]))
    out['many-sided (40)'] = local_area(many, safe=[access(many)])
    return out


def extract_resweep(db: str, robot, min_width: float = 0.10, radius: float = 0.30) -> dict:
    """A re-sweep planning case from a mission database: the first 'resweep' plan's time, the ground
    swept by then (CoverageTracker over the recorded poses, as Mission does), the missed strips
    (``tracker.unswept(searchable, min_width)`` = Mission.missed_strips), the non-clutter targets
    known by then and the last pose. The swept ground is shrunk by 6 mm and simplified by 5 mm (so the
    stored polygon never claims ground the detector did not pass over); the rest is kept to 1 mm."""
    con = sqlite3.connect(f'file:{db}?mode=ro', uri=True)
    area = area_from_geojson(json.loads(con.execute('select geojson from area').fetchone()[0]))
    t_plan = con.execute("select t from plans where kind = 'resweep' order by id").fetchone()[0]
    track = np.array(con.execute('select x, y, yaw from track where t <= ? order by id',
                                 (t_plan,)).fetchall())
    tracker = CoverageTracker(robot)
    tracker.add_poses(track)
    missed = tracker.unswept(area.searchable, min_width)
    hazards = [(round(x, 3), round(y, 3)) for x, y in con.execute(
        "select x, y from targets where classification != 'clutter' and first_t <= ?", (t_plan,))]
    swept = shapely.simplify(tracker.swept().buffer(-0.006), 0.005)
    con.close()

    def coords(p):
        return np.round(np.asarray(p.exterior.coords), 3).tolist()
    return {'source': f'{Path(db).parent.name}/{Path(db).name}: first resweep plan at t = {t_plan:.2f} s '
                      '(bench/bench_planner.py --extract-resweep)',
            'search': coords(area.search), 'safe_access': [coords(p) for p in area.safe],
            'hazards': hazards, 'hazard_zone_radius': radius,
            'start': np.round(track[-1, :3], 3).tolist(),
            'missed_wkt': shapely.to_wkt(missed, rounding_precision=3),
            'swept_wkt': shapely.to_wkt(swept, rounding_precision=3)}


def resweep_inputs(case: dict):
    """(area with the hazard discs as no-go, region, swept, start) for ``plan_coverage``; the hazard
    discs as Mission.hazard_zones makes them."""
    area = local_area(Polygon(case['search']), safe=[Polygon(p) for p in case['safe_access']])
    discs = [Point(x, y).buffer(case['hazard_zone_radius'], quad_segs=4) for x, y in case['hazards']]
    discs = [d for d in discs if d.intersection(area.search).area >= 0.05 * d.area]
    area = replace(area, no_go=discs)
    return area, shapely.from_wkt(case['missed_wkt']), shapely.from_wkt(case['swept_wkt']), case['start'][:2]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--repeat', type=int, default=5)
    parser.add_argument('--notes', action='store_true', help="print each plan's stats['notes']")
    parser.add_argument('--fields', default='', help='comma-separated substrings of field names')
    parser.add_argument('--body-inside', action='store_true',
                        help='PlannerConfig(keep_body_inside=True): the whole body stays inside the outer '
                        'boundary (costs the edge strips); default: the planner default (wheels inside)')
    parser.add_argument('--wheels-inside', action='store_true',
                        help='PlannerConfig(wheels_inside=True) for the whole-area plans too (the geofence '
                        'held everywhere); default: the planner default (on for region plans only)')
    parser.add_argument('--extract-resweep', nargs=2, metavar=('MISSION_DB', 'OUT_JSON'),
                        help='write a re-sweep planning case from a mission.db and exit')
    args = parser.parse_args()
    robot = load_robot()
    if args.extract_resweep:
        case = extract_resweep(args.extract_resweep[0], robot)
        Path(args.extract_resweep[1]).write_text(
            '{\n' + ',\n'.join(f'{json.dumps(k)}: {json.dumps(v)}' for k, v in case.items()) + '\n}\n')
        print(f'wrote {args.extract_resweep[1]}: {len(case["hazards"])} hazards, missed '
              f'{shapely.from_wkt(case["missed_wkt"]).area:.3f} m²')
        return 0
    cfg = PlannerConfig(keep_body_inside=args.body_inside, wheels_inside=True if args.wheels_inside else None)
    print(f'keep_body_inside={cfg.keep_body_inside}; time_s = wall-clock median on this (shared) machine, '
          'cpu_s = process CPU time median; cover% = exact (CoverageTracker, computed after timing), '
          "rcov% = the planner's own conservative raster figure (stats.coverage_fraction)")
    print(f'{"field":24s} {"time_s":>7s} {"cpu_s":>6s} {"build_s":>7s} {"cover%":>7s} {"rcov%":>7s} '
          f'{"length":>8s} '
          f'{"ratio":>6s} {"no_go_m":>7s} {"out_m":>6s} {"gaps":>4s} {"unsafe_n":>8s} {"unsafe_m2":>9s} '
          f'{"ohng_m2":>7s} '
          f'{"ohout_m":>7s} {"whl_out":>7s} {"body_ng":>7s} {"drop_m2":>7s} {"safe":>4s} '
          f'{"holes":>5s} {"rings":>5s} {"backups":>7s} {"probes":>6s} {"notes":>5s}')
    cases = {name: (area, {}) for name, area in fields().items()}
    if RESWEEP_CASE.exists():
        area, missed, swept, start = resweep_inputs(json.loads(RESWEEP_CASE.read_text()))
        cases['re-sweep demo0 (region)'] = (area, {'region': missed, 'swept': swept, 'start': start})
    for name, (area, kw) in cases.items():
        if args.fields and not any(f in name for f in args.fields.split(',')):
            continue
        times, cpu, build = [], [], []
        plan = None
        for _ in range(args.repeat):
            t0, c0 = time.perf_counter(), time.process_time()
            plan = plan_coverage(area, robot, cfg, **kw)
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
            build.append(plan.stats['build_time_s'])
        s = plan.stats
        # the exact coverage (CoverageTracker, shapely), outside the timed planning
        if 'swept' in kw:       # what plan_coverage does with swept=: safe ground inside the area
            sw = kw['swept'].intersection(area.search)
            area = replace(area, safe=[*area.safe, *[p for p in getattr(sw, 'geoms', [sw]) if p.area > 1e-3]])
        exact = plan_stats(plan, area, robot, kw.get('region'))['coverage_fraction']
        print(f'{name:24s} {statistics.median(times):7.3f} {statistics.median(cpu):6.3f} '
              f'{statistics.median(build):7.3f} '
              f'{100 * exact:7.3f} {100 * s["coverage_fraction"]:7.3f} '
              f'{s["path_length_m"]:8.1f} {s["length_ratio"]:6.3f} '
              f'{s["no_go_m"]:7.3f} {s["outside_m"]:6.3f} {s["gaps"]:4d} {s["safety"]["count"]:8d} '
              f'{s["safety"]["area_m2"]:9.4f} {s["overhang_no_go_m2"]:7.3f} '
              f'{s["overhang_outside_max_m"]:7.3f} {s["fence"]["wheels_outside_m2"]:7.3f} '
              f'{s["fence"]["body_in_no_go_m2"]:7.3f} {s["dropped_m2"]:7.3f} '
              f'{"yes" if s["safe_to_drive"] else "no":>4s} '
              f'{len(area.no_go):5d} {s["rings"]:5d} {s["backups"]:7d} {s.get("probes", 0):6d} '
              f'{len(s["notes"]):5d}', flush=True)
        if args.notes:
            for note in s['notes']:
                print(f'    note: {note}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
