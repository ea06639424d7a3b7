"""Swept-ground raster checks: the per-cell wheel test agrees with filling the wheel polygons, and the
planner's own (raster) coverage figure never claims more than the exact CoverageTracker."""

from dataclasses import replace
import json
import math
from pathlib import Path

import numpy as np
import pytest
import shapely
from shapely.geometry import LineString, Point, Polygon, box

from mine_robot.planning.area import local_area
from mine_robot.planning.coverage import CoverageTracker
from mine_robot.planning.planner import PlannerConfig, PlannerError, plan_coverage, plan_stats
from mine_robot.planning.safety import SweptRaster, fence_check
from mine_robot.robot import load_robot

ROBOT = load_robot()


def _pair(rng):
    """The same random swept ground in two rasters: one testing per cell, one filling polygons."""
    fast = SweptRaster(ROBOT, (-5, -5, 5, 5), None, cell=0.02, margin=0.03)
    slow = SweptRaster(ROBOT, (-5, -5, 5, 5), None, cell=0.02, margin=0.03)
    slow.wheel_test = None
    for _ in range(3):
        # bands through the neighbourhood of the origin, where the moves are tested
        yaw, back = rng.uniform(-3, 3), rng.uniform(1.0, 2.5)
        ox, oy = rng.uniform(-0.4, 0.4, 2)
        args = (ox - back * math.cos(yaw), oy - back * math.sin(yaw), yaw, back + rng.uniform(0, 1))
        fast.sweep_straight(*args)
        slow.sweep_straight(*args)
    return fast, slow


def test_cell_wheel_test_agrees_with_polygon_filling():
    rng = np.random.default_rng(3)
    assert SweptRaster(ROBOT, (0, 0, 1, 1)).wheel_test is not None       # the robot allows the fast test
    agree = total = unsafe = 0
    for _ in range(150):
        fast, slow = _pair(rng)
        x, y = rng.uniform(-0.3, 0.3, 2)
        y0 = rng.uniform(-3, 3)
        y1 = y0 + rng.uniform(-3, 3)
        yaw, dist, rev = rng.uniform(-3, 3), rng.uniform(0, 1), bool(rng.random() < 0.5)
        for a, b in ((fast.turn_ok(x, y, y0, y1), slow.turn_ok(x, y, y0, y1)),
                     (fast.straight_ok(x, y, yaw, dist, rev), slow.straight_ok(x, y, yaw, dist, rev))):
            agree += a == b
            total += 1
            unsafe += not b
    assert 0.1 * total < unsafe < 0.9 * total          # both outcomes are exercised
    assert agree >= 0.97 * total                       # differences only where a wheel edge grazes a cell


def test_turn_inside_one_band_is_safe_and_a_shifted_one_is_not():
    sw = SweptRaster(ROBOT, (-5, -5, 5, 5), None, cell=0.02, margin=0.03)
    sw.sweep_straight(-4.0, 0.0, 0.0, 4.0)             # band |y| <= 0.55 up to x = 0.89
    assert sw.turn_ok(0.0, 0.0, 0.0, math.pi / 2)
    assert sw.turn_ok(0.0, 0.0, 0.0, -math.pi)
    assert not sw.turn_ok(0.0, 0.15, 0.0, math.pi / 2)  # circle (0.47 + 0.03) reaches past the band
    assert not sw.turn_ok(1.0, 0.0, 0.0, math.pi / 2)   # ahead of the detector's reach
    assert not sw.turn_ok(30.0, 0.0, 0.0, 0.5)          # off the raster: never swept


def test_planner_raster_coverage_is_conservative():
    area = local_area(box(0, 0, 14, 10), no_go=[box(5, 4, 7, 6)], safe=[box(-3, -5, 17, 0)])
    plan = plan_coverage(area, ROBOT, PlannerConfig())
    exact = plan_stats(plan, area, ROBOT)['coverage_fraction']
    s = plan.stats
    assert s['coverage_method'].startswith('raster')
    assert s['coverage_fraction'] <= exact + 1e-4
    assert s['coverage_fraction'] >= exact - 0.003
    again = plan_coverage(area, ROBOT, PlannerConfig(exact_coverage=True))
    assert again.stats['coverage_method'] == 'exact'
    assert again.stats['coverage_fraction'] == exact


def _zone_field(holes):
    return local_area(box(0, 0, 20, 14), no_go=holes, safe=[box(-3, -5, 23, 0)])


def test_zone_fields_are_wheel_safe_and_fully_covered():
    # square zones and a rotated (oblique-cornered) one: straight edge passes on the mitred offset,
    # square detours and staircase connectors keep every wheel on swept ground
    for holes in ([box(5, 4, 8, 7), box(13, 6, 15, 9)], [Polygon([(6, 4), (9, 5), (8, 8), (5, 7)])]):
        area = _zone_field(holes)
        plan = plan_coverage(area, ROBOT, PlannerConfig())
        s = plan.stats
        assert s['rings'] == len(holes)
        assert s['safety']['count'] == 0 and s['unsafe_corners'] == 0 and s['notes'] == []
        assert s['no_go_m'] == 0.0 and s['gaps'] == 0 and s['outside_m'] < 0.01
        assert plan_stats(plan, area, ROBOT)['coverage_fraction'] >= 0.999


def test_zone_edge_passes_are_straight_with_one_turn_per_zone_corner():
    zone = box(5, 4, 8, 7)
    plan = plan_coverage(_zone_field([zone]), ROBOT, PlannerConfig())
    # lane legs next to the zone run at 0.53 m (half swath - zone_overlap) from it, straight from one
    # mitred corner to the next
    near = [seg for seg in plan.segments if seg.role == 'lane'
            and all(Point(p).distance(zone) < 1.0 for p in seg.points)]
    assert len(near) >= 4 and all(len(seg.points) == 2 for seg in near)
    for seg in near:
        mid = Point(seg.points.mean(axis=0))
        assert mid.distance(zone) == pytest.approx(0.53, abs=1e-6)
    ends = {(round(x, 2), round(y, 2)) for seg in near for x, y in seg.points}
    assert {(4.47, 3.47), (8.53, 3.47), (8.53, 7.53), (4.47, 7.53)} <= ends


def test_spur_passes_cover_what_the_lanes_miss():
    # a field whose long edges are nearly parallel to the lanes leaves wedges for spur passes
    area = local_area(Polygon([(0, 0), (18, 0), (18.8, 12), (0, 12)]), safe=[box(-3, -5, 22, 0)])
    on = plan_coverage(area, ROBOT, PlannerConfig(angle_deg=90.0))
    off = plan_coverage(area, ROBOT, PlannerConfig(angle_deg=90.0, spur_min_area=0.0))
    assert on.stats['spur_passes'] > 0 == off.stats['spur_passes']
    cov_on = plan_stats(on, area, ROBOT)['coverage_fraction']
    cov_off = plan_stats(off, area, ROBOT)['coverage_fraction']
    # known gap (README): the spur of the wedge beside the access lane does not reach all of it
    assert cov_on > cov_off + 0.01
    assert on.stats['safety']['count'] == 0


# --------------------------------------------------------------------------- region re-plans
# The demo's re-sweep (test/data/resweep_demo0.json, written by bench/bench_planner.py
# --extract-resweep from the demo's mission.db): two slivers (0.45 m² at the access lane, 0.14 m² in
# the far corner) of a 10 m field swept around ten found hazards, the robot at the far corner. The
# plan made then crossed hazard discs (0.56 m), left the area and had an unsafe corner at (9.2, 9.9).
RESWEEP = Path(__file__).resolve().parent / 'data' / 'resweep_demo0.json'


def resweep_case(**changes):
    case = {**json.loads(RESWEEP.read_text()), **changes}
    area = local_area(Polygon(case['search']), safe=[Polygon(p) for p in case['safe_access']])
    discs = [Point(x, y).buffer(case['hazard_zone_radius'], quad_segs=4) for x, y in case['hazards']]
    return (area, replace(area, no_go=discs), shapely.from_wkt(case['missed_wkt']),
            shapely.from_wkt(case['swept_wkt']), case['start'][:2])


def test_resweep_plan_of_the_demo_is_short_safe_and_covers_the_slivers():
    field, area, missed, swept, start = resweep_case()
    plan = plan_coverage(area, ROBOT, PlannerConfig(), start=start, region=missed, swept=swept)
    s = plan.stats
    assert s['safe_to_drive'] and s['unsafe_reasons'] == []
    assert s['no_go_m'] == 0.0 and s['outside_m'] == 0.0 and s['gaps'] == 0
    assert s['unsafe_corners'] == 0 and s['safety']['count'] == 0 and s['route_failures'] == 0
    # the safety monitor's geofence: wheels inside the search area + the access lane only (the swept
    # ground past the boundary is no ground for wheels), body and detector clear of the hazard discs
    fence = fence_check(plan, ROBOT, shapely.union_all([field.search, field.safe_ground]), area.no_go_union)
    assert fence.wheels_outside_m2 == 0.0 and fence.body_in_no_go_m2 == 0.0
    assert LineString(plan.path()).intersection(area.no_go_union).length == 0.0
    # both slivers swept (exact footprint), nothing dropped; 13 m apart, so about that long
    tracker = CoverageTracker(ROBOT, max_step=1e9, max_gap=1e9)
    tracker.add_poses(plan.vertex_poses()[:, :3])
    for piece in missed.geoms:
        assert tracker.fraction(piece) > 0.97
    assert s['dropped'] == [] and s['dropped_m2'] == 0.0
    assert plan.length < 17.0


def test_resweep_plan_as_the_mission_calls_it_today_is_safe_on_its_own_terms():
    # Mission.make_resweep_plan declares the swept ground safe (area.safe), including the strips
    # the detector swept past the outer boundary: the plan is clean against those inputs
    field, area, missed, swept, start = resweep_case()
    shrunk = swept.buffer(-0.02)
    area = replace(area, safe=[*field.safe, *[p for p in getattr(shrunk, 'geoms', [shrunk])
                                              if p.area >= 0.5]])
    s = plan_coverage(area, ROBOT, PlannerConfig(), start=start, region=missed).stats
    assert s['safe_to_drive'], s['unsafe_reasons']
    assert s['no_go_m'] == 0.0 and s['outside_m'] == 0.0 and s['unsafe_corners'] == 0


def test_a_sliver_that_cannot_be_reached_safely_is_dropped_and_reported():
    # a hazard found next to the access-lane sliver: no lane or pass reaches it with the detector
    # clear of the hazard's disc; the far sliver is still planned, the near one reported with a reason
    hazards = json.loads(RESWEEP.read_text())['hazards'] + [[0.9, 0.75]]
    field, area, missed, swept, start = resweep_case(hazards=hazards)
    plan = plan_coverage(area, ROBOT, PlannerConfig(), start=start, region=missed, swept=swept)
    s = plan.stats
    assert s['safe_to_drive'] and s['unsafe_corners'] == 0 and s['no_go_m'] == 0.0
    assert len(s['dropped']) == 1
    d = s['dropped'][0]
    x, y = d['where']
    assert x < 0.6 and y < 1.2 and 0.35 < d['area_m2'] < 0.55 and d['reason']
    assert s['dropped_m2'] == pytest.approx(d['area_m2'], abs=1e-3)
    tracker = CoverageTracker(ROBOT, max_step=1e9, max_gap=1e9)
    tracker.add_poses(plan.vertex_poses()[:, :3])
    far = max(missed.geoms, key=lambda p: p.centroid.x)
    assert tracker.fraction(far) > 0.97
    # only that sliver asked for: nothing can be planned, and the error says why
    near = min(missed.geoms, key=lambda p: p.centroid.x)
    with pytest.raises(PlannerError, match='nothing could be planned safely'):
        plan_coverage(area, ROBOT, PlannerConfig(), start=start, region=near, swept=swept)
