"""Coverage planner: plan model round trips, planner properties (hypothesis), the swept-ground
checker, and the ``mine-robot plan`` command."""

import json
import math
from pathlib import Path
import subprocess
import sys

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
import numpy as np
import pytest
from shapely.geometry import LineString, Point, Polygon, box

from mine_robot.planning.area import load_area, local_area
from mine_robot.planning.coverage import CoverageTracker
from mine_robot.planning.plan import CoveragePlan, PlanError, Segment
from mine_robot.planning.planner import PlannerConfig, PlannerError, plan_coverage
from mine_robot.planning.safety import SweepChecker, check_plan, raster_check
from mine_robot.robot import load_robot

ROBOT = load_robot()
REPO = Path(__file__).resolve().parent.parent


def field(w=16.0, h=11.0, holes=()):
    search = box(0, 0, w, h)
    return local_area(search, no_go=list(holes), safe=[box(-3, -5, w + 3, 0)])


@pytest.fixture(scope='module')
def small_plan():
    area = field(holes=[box(6, 4, 8, 6)])
    return area, plan_coverage(area, ROBOT, PlannerConfig(keep_body_inside=True))


@pytest.fixture(scope='module')
def open_plan():
    """No holes, body allowed over the boundary (the default): meets every target."""
    area = field()
    return area, plan_coverage(area, ROBOT, PlannerConfig())


def test_plan_is_continuous_inside_the_area_and_clear_of_no_go(small_plan):
    area, plan = small_plan
    s = plan.stats
    assert s['gaps'] == 0 and s['no_go_m'] == 0.0 and s['outside_m'] < 0.01
    for a, b in zip(plan.segments[:-1], plan.segments[1:]):
        assert np.allclose(a.points[-1], b.points[0])
    assert [seg.seq for seg in plan.segments] == list(range(len(plan.segments)))
    path = LineString(plan.path())
    assert path.intersection(area.no_go_union).length == 0.0
    # starts on the declared safe ground (the access lane) with room to turn
    assert s['start_on_safe_ground']
    assert area.safe_ground.buffer(1e-6).contains(Point(plan.segments[0].points[0]).buffer(0.46))
    assert s['rings'] == 1          # the hole is swept around by a ring


def test_every_corner_is_a_turn_then_a_backup(small_plan):
    _, plan = small_plan
    backups = [s for s in plan.segments if s.direction == 'reverse']
    assert backups and plan.stats['backups'] == len(backups)
    for seg in backups:
        assert seg.role == 'transit' and len(seg.points) == 2
        # the standard backup, or another length the planner checked against the swept ground
        assert 0.0 < seg.length <= 0.3 + 1e-6
    standard = [s for s in backups if abs(s.length - ROBOT.post_turn_backup) < 1e-6]
    assert len(standard) >= 0.8 * len(backups)
    # after a backup the robot drives forward back through the corner on the same line
    for i, seg in enumerate(plan.segments[:-1]):
        if seg.direction == 'reverse':
            nxt = plan.segments[i + 1]
            back = seg.points[0] - seg.points[1]
            ahead = nxt.points[1] - nxt.points[0]
            assert back[0] * ahead[1] - back[1] * ahead[0] == pytest.approx(0.0, abs=1e-6)
            assert back @ ahead > 0


def test_open_field_meets_coverage_safety_and_length_targets(open_plan):
    area, plan = open_plan
    s = plan.stats
    assert s['safety']['count'] == 0
    assert s['coverage_fraction'] >= 0.999
    assert s['length_ratio'] <= 1.15            # 16 x 11 m: lane ends weigh more than on big fields
    # independent checks: the exact (shapely) replay finds no violation either, and the
    # CoverageTracker over finely sampled poses agrees with the stats
    assert check_plan(plan, ROBOT, area.safe_ground).violations == []
    tracker = CoverageTracker(ROBOT)
    tracker.add_poses(plan.poses(0.1)[:, :3])
    assert tracker.fraction(area.searchable) == pytest.approx(s['coverage_fraction'], abs=2e-3)
    assert s['lower_bound_m'] == pytest.approx(area.searchable.area / plan.spacing, rel=1e-3)


def test_keeping_the_body_inside_costs_the_edge_strips(small_plan, open_plan):
    # with the whole body kept inside (an option for sites whose boundary is an obstacle) lanes
    # stay half a body + the post-turn backup (0.5 + 0.16 + 0.01 m) from the boundary: wheel-safe,
    # but strips along the sides parallel to the lanes stay unswept (README)
    area, plan = small_plan
    expected = ROBOT.body_length / 2 + ROBOT.post_turn_backup + 0.01
    assert plan.stats['distances_m']['lane_to_boundary'] == pytest.approx(expected, abs=0.01)
    assert 0.95 < plan.stats['coverage_fraction'] < open_plan[1].stats['coverage_fraction']


def test_json_and_geojson_round_trip_with_directions(small_plan):
    area, plan = small_plan
    back = CoveragePlan.from_json(plan.to_json())
    assert len(back.segments) == len(plan.segments)
    assert [s.direction for s in back.segments] == [s.direction for s in plan.segments]
    assert back.length == pytest.approx(plan.length, abs=0.05)
    assert back.stats['lane_count'] == plan.stats['lane_count']
    gj = json.loads(json.dumps(plan.to_geojson(area.frame)))
    assert gj['type'] == 'FeatureCollection' and 'stats' in gj
    roles = {f['properties']['role'] for f in gj['features']}
    assert roles == {'lane', 'transit'}
    assert {f['properties'].get('direction', 'forward') for f in gj['features']} == {'forward', 'reverse'}
    assert [f['properties']['seq'] for f in gj['features']] == list(range(len(gj['features'])))
    lon, lat = gj['features'][0]['geometry']['coordinates'][0]
    assert abs(lon - 102.6) < 0.01 and abs(lat - 17.97) < 0.01
    again = CoveragePlan.from_geojson(gj, area.frame)
    assert again.length == pytest.approx(plan.length, abs=0.05)
    assert [s.direction for s in again.segments] == [s.direction for s in plan.segments]
    with pytest.raises(PlanError):
        CoveragePlan.from_json('{"segments": [{"role": "swim", "points": [[0,0],[1,1]], "seq": 0}]}')
    with pytest.raises(PlanError, match='reverse'):
        Segment('lane', [[0, 0], [1, 0]], 0, direction='reverse')
    with pytest.raises(PlanError, match='direction'):
        Segment('transit', [[0, 0], [1, 0]], 0, direction='sideways')


def test_poses_follow_the_path_and_turn_in_place():
    plan = CoveragePlan([Segment('lane', [[0, 0], [2, 0]], 0, 0), Segment('transit', [[2, 0], [2, 1]], 1)],
                        swath_width=1.1, spacing=1.0)
    poses = plan.poses(0.5, yaw_step=0.2)
    assert poses.shape[1] == 4
    assert np.allclose(poses[0, :3], [0, 0, 0])
    assert np.allclose(poses[-1, :3], [2, 1, math.pi / 2])
    turn = poses[(np.isclose(poses[:, 0], 2.0)) & (np.isclose(poses[:, 1], 0.0))]
    assert len(turn) >= 3 and np.all(np.diff(turn[:, 2]) > 0)      # rotates on the spot
    assert plan.length == pytest.approx(3.0)


def test_poses_face_away_from_travel_on_reverse_segments():
    plan = CoveragePlan([Segment('lane', [[0, 0], [2, 0]], 0, 0),
                         Segment('transit', [[2, 0], [2, -0.15]], 1, direction='reverse'),
                         Segment('transit', [[2, -0.15], [2, 1]], 2)], swath_width=1.1, spacing=1.0)
    poses = plan.poses(0.05)
    backing = poses[(poses[:, 3] == 1) & (poses[:, 1] < -1e-9)]      # after the turn at (2, 0)
    assert len(backing) >= 2 and np.allclose(backing[:, 2], math.pi / 2)   # faces north, moves south
    assert np.all(np.diff(backing[:, 1]) < 0)
    vp = plan.vertex_poses()
    assert np.allclose(vp[:, 2], [0, 0, math.pi / 2, math.pi / 2, math.pi / 2])


def test_checkers_flag_a_turn_on_unswept_ground_and_accept_safe_ground():
    safe = box(-5, -3, 0, 3)
    ok = SweepChecker(ROBOT, safe)
    ok.drive(np.array([[-3.0, 0.0], [6.0, 0.0]]), 0, 'lane')
    assert ok.result.violations == []                       # straight run from safe ground
    bad = SweepChecker(ROBOT, safe)
    bad.drive(np.array([[-3.0, 0.0], [6.0, 0.0], [6.0, 5.0]]), 0, 'lane')   # 90° turn, no backup
    kinds = {v.kind for v in bad.result.violations}
    assert bad.result.violations and kinds <= {'turn', 'straight'}
    v = bad.result.violations[0]
    assert v.metres > 0 and 5.0 < v.x < 7.0
    # the same corner with the backup primitive is clean, in the exact and the raster replay
    area = local_area(box(0, -2, 12, 8), safe=[safe])
    corner = [[-3.0, 0.0], [6.0, 0.0]]
    plain = CoveragePlan([Segment('lane', corner + [[6.0, 5.0]], 0, 0)], spacing=1.0)
    prim = CoveragePlan([Segment('lane', corner, 0, 0),
                         Segment('transit', [[6.0, 0.0], [6.0, -ROBOT.post_turn_backup]], 1,
                                 direction='reverse'),
                         Segment('lane', [[6.0, -ROBOT.post_turn_backup], [6.0, 5.0]], 2, 1)], spacing=1.0)
    assert check_plan(plain, ROBOT, safe).violations
    assert raster_check(plain, ROBOT, area).violations
    assert check_plan(prim, ROBOT, safe).violations == []
    assert raster_check(prim, ROBOT, area).violations == []
    # backing up onto ground nobody swept is flagged too
    blind = CoveragePlan([Segment('lane', corner, 0, 0),
                          Segment('transit', [[6.0, 0.0], [4.0, 0.0]], 1, direction='reverse'),
                          Segment('transit', [[4.0, 0.0], [4.0, -1.0]], 2, direction='reverse')],
                         spacing=1.0)
    assert any(v.reason.startswith('wheels back') for v in raster_check(blind, ROBOT, area).violations)
    assert check_plan(blind, ROBOT, safe).violations
    # no safe ground at all: the very first move already rolls onto unswept ground
    none = check_plan(CoveragePlan([Segment('lane', [[0, 0], [5, 0]], 0, 0)], spacing=1.0), ROBOT)
    assert none.violations and none.violations[0].kind == 'straight'


def test_planning_over_a_remainder_region_sweeps_it():
    area = field(w=20, h=12)
    strip = box(5, 5.5, 12, 6.6)
    plan = plan_coverage(area, ROBOT, PlannerConfig(), start=(5.0, 3.0), region=strip)
    assert any(s.role == 'lane' for s in plan.segments)
    tracker = CoverageTracker(ROBOT)
    tracker.add_poses(plan.poses(0.1)[:, :3])
    assert tracker.fraction(strip) > 0.99
    assert plan.stats['no_go_m'] == 0.0


def test_given_angle_is_used_and_bad_config_is_rejected():
    area = field(w=14, h=10)
    plan = plan_coverage(area, ROBOT, PlannerConfig(angle_deg=90.0))
    assert plan.stats['angle_deg'] == pytest.approx(90.0)
    lanes = [s for s in plan.segments if s.role == 'lane' and len(s.points) == 2]
    assert lanes and all(abs(s.points[0, 0] - s.points[1, 0]) < 1e-6 for s in lanes)   # north-south
    for bad, msg in ((PlannerConfig(overlap=0.95), 'overlap'), (PlannerConfig(swath_width=-1), 'swath_width'),
                     (PlannerConfig(turn_radius=2.0), 'point turns'),
                     (PlannerConfig(keep_body_inside=False, max_outer_overhang=0.2), 'past the outer'),
                     (PlannerConfig(backup_angle_deg=0.0), 'backup_angle_deg')):
        with pytest.raises(PlannerError, match=msg):
            plan_coverage(area, ROBOT, bad)


@st.composite
def holed_fields(draw):
    w = draw(st.floats(14.0, 22.0))
    h = draw(st.floats(10.0, 16.0))
    n = draw(st.integers(0, 2))
    holes = []
    for _ in range(n):
        cx = draw(st.floats(5.0, w - 5.0))
        cy = draw(st.floats(5.0, h - 5.0))
        r = draw(st.floats(0.6, 1.4))
        k = draw(st.integers(3, 6))
        ang = np.linspace(0, 2 * math.pi, k, endpoint=False) + draw(st.floats(0, 1))
        hole = Polygon(np.column_stack([cx + r * np.cos(ang), cy + r * np.sin(ang)]))
        if all(hole.distance(o) > 3.0 for o in holes):
            holes.append(hole)
    notch = draw(st.floats(0.0, 4.0))
    search = Polygon([(0, 0), (w, 0), (w, h - notch), (w - 5, h - notch), (w - 5, h), (0, h)])
    return local_area(search, no_go=holes, safe=[box(-3, -5, w + 3, 0)])


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
@given(holed_fields())
@example(local_area(Polygon([(0, 0), (14.5, 0), (14.5, 9), (9.5, 9), (9.5, 10), (0, 10)]),
                    no_go=[], safe=[box(-3, -5, 17.5, 0)]))   # found by hypothesis: notch (was 6 violations)
def test_property_no_no_go_crossing_continuity_and_coverage(area):
    plan = plan_coverage(area, ROBOT, PlannerConfig(keep_body_inside=False))
    s = plan.stats
    assert s['no_go_m'] == 0.0
    assert s['outside_m'] < 0.01
    assert s['gaps'] == 0
    assert s['coverage_fraction'] > 0.97
    assert s['safety']['area_m2'] < 3.0
    # every corner is checked against the ground swept so far while the plan is emitted: a corner
    # that cannot be made safe is never silent (a note names it); without no-go zones (notched
    # outlines included) every corner is made safe
    if s['safety']['count']:
        assert s['unsafe_corners'] > 0 and any('wheel-safe' in n for n in s['notes'])
    if not area.no_go:
        assert s['safety']['count'] == 0 and s['unsafe_corners'] == 0
    path = LineString(plan.path())
    assert path.intersection(area.no_go_union).length == 0.0


def test_notched_field_is_wheel_safe():
    # the notch (a reflex corner of the lane region) used to be rounded into many short oblique
    # connector pieces whose corners put a wheel on unswept ground
    area = local_area(Polygon([(0, 0), (14, 0), (14, 9), (9, 9), (9, 10), (0, 10)]),
                      safe=[box(-3, -5, 17, 0)])
    s = plan_coverage(area, ROBOT, PlannerConfig()).stats
    assert s['safety']['count'] == 0 and s['unsafe_corners'] == 0 and s['notes'] == []
    assert s['no_go_m'] == 0.0 and s['outside_m'] < 0.01 and s['gaps'] == 0
    # known gap: the corners of the notch stay partly unswept (no spur pass yet), ~0.5 %
    assert s['coverage_fraction'] >= 0.99


def test_swept_raster_accepts_the_turn_primitive_and_rejects_a_bare_turn():
    from mine_robot.planning.safety import SweptRaster
    sw = SweptRaster(ROBOT, (-5, -5, 15, 10), box(-5, -3, 0, 3), margin=0.03)
    assert sw.straight_ok(-3.0, 0.0, 0.0, 9.0)                      # starts on safe ground
    sw.sweep_straight(-3.0, 0.0, 0.0, 9.0)
    assert sw.turn_ok(6.0, 0.0, 0.0, math.pi / 2)                   # wheel circle inside the band
    b = ROBOT.post_turn_backup
    u = math.pi / 2
    assert sw.straight_ok(6.0, 0.0, u, b, reverse=True)
    assert sw.straight_ok(6.0, -b, u, 5.0)                          # forward after the backup
    assert not sw.straight_ok(6.0, 0.0, u, 5.0)                     # forward without it
    snap = sw.snapshot(6.0, 0.0, 3.0)
    sw.sweep_straight(6.0, -b, u, 5.0)
    assert sw.straight_ok(6.0, 0.0, u, 5.0)
    sw.restore(snap)
    assert not sw.straight_ok(6.0, 0.0, u, 5.0)


def test_zone_fields_report_unsafe_corners_and_never_cross_zones(small_plan):
    area, plan = small_plan
    s = plan.stats
    assert s['no_go_m'] == 0.0 and s['gaps'] == 0
    # known gap (README): on crowded zone fields some corners still cannot be made safe; they must
    # be named in the notes, not silently emitted
    if s['safety']['count']:
        assert s['unsafe_corners'] > 0 and any('wheel-safe' in n for n in s['notes'])


def test_cli_plan_writes_plan_geojson_and_png(tmp_path):
    out, png = tmp_path / 'PLAN.geojson', tmp_path / 'PLAN.png'
    result = subprocess.run([sys.executable, '-m', 'mine_robot.cli', 'plan',
                             str(REPO / 'sim' / 'areas' / 'small_rectangle.geojson'), '--overlap', '0.1',
                             '-o', str(out), '--png', str(png)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    gj = json.loads(out.read_text())
    assert gj['stats']['lane_count'] > 5 and gj['stats']['coverage_fraction'] > 0.95
    assert gj['stats']['safety']['count'] == 0
    assert 'safety' in gj['stats'] and 'count' in gj['stats']['safety']
    assert png.stat().st_size > 10_000
    area = load_area(REPO / 'sim' / 'areas' / 'small_rectangle.geojson')
    again = CoveragePlan.from_geojson(gj, area.frame)
    assert again.length == pytest.approx(gj['stats']['path_length_m'], rel=1e-3)


def test_cli_plan_rejects_a_bad_area_file(tmp_path):
    result = subprocess.run([sys.executable, '-m', 'mine_robot.cli', 'plan',
                             str(REPO / 'test' / 'data' / 'areas' / 'bad_self_intersecting.geojson'),
                             '-o', str(tmp_path / 'p.geojson')], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert 'invalid polygon' in result.stderr
    assert not (tmp_path / 'p.geojson').exists()


def test_known_hazards_are_ground_no_wheel_may_touch_even_when_swept():
    """Keep-out discs around hazards (mission re-plans): the incremental raster refuses any move whose
    wheels touch one over its whole length (the detector sweeping ahead does not make it safe), and
    the replay reports such a move as a hazard violation."""
    from mine_robot.planning.safety import SweptRaster
    hazard = Point(4.0, 0.28).buffer(0.25)               # in the left wheel track of a lane along y = 0
    sw = SweptRaster(ROBOT, (-5, -5, 15, 10), box(-5, -3, 0, 3), margin=0.03, keepout=hazard)
    free = SweptRaster(ROBOT, (-5, -5, 15, 10), box(-5, -3, 0, 3), margin=0.03)
    assert free.straight_ok(-3.0, 0.0, 0.0, 9.0)
    assert not sw.straight_ok(-3.0, 0.0, 0.0, 9.0)       # the wheels would roll past the hazard
    assert sw.straight_ok(-3.0, 0.0, 0.0, 2.0)           # stopping well short of it is fine
    sw.sweep_straight(-3.0, 0.0, 0.0, 10.0)              # the detector passes over it: still no wheel
    sw.sweep_straight(-3.0, -1.0, 0.0, 10.0)             # and over the lane beside it
    assert not sw.straight_ok(6.5, 0.0, math.pi, 3.0)    # coming back the other way
    assert not sw.turn_ok(4.4, 0.0, 0.0, math.pi / 2)    # turning next to it
    assert sw.straight_ok(6.5, -0.5, math.pi, 3.0)       # a pass beside it keeps the clearance
    area = local_area(box(0, -2, 12, 8), safe=[box(-5, -3, 0, 3)])
    lane = CoveragePlan([Segment('lane', [[-3.0, 0.0], [9.0, 0.0]], 0, 0)], spacing=1.0)
    assert raster_check(lane, ROBOT, area).violations == []
    hits = [v for v in raster_check(lane, ROBOT, area, keepout=hazard).violations if v.kind == 'hazard']
    assert hits and hits[0].segment == 0


def test_a_plan_with_a_start_heading_replays_the_first_turn():
    area = local_area(box(0, -2, 12, 8), safe=[box(-5, 0.6, 0, 1.4)])       # a 0.8 m wide access track
    lane = [Segment('lane', [[-1.0, 1.0], [9.0, 1.0]], 0, 0)]
    plain = CoveragePlan(lane, spacing=1.0)
    # facing south at the start: the point turn to east swings the wheels off the narrow track
    turned = CoveragePlan(lane, spacing=1.0, start_yaw=-math.pi / 2)
    assert raster_check(plain, ROBOT, area).violations == []
    assert any(v.kind == 'turn' for v in raster_check(turned, ROBOT, area).violations)
    first = turned.poses(0.1, 0.05)
    assert -math.pi / 2 < first[0, 2] < -math.pi / 2 + 0.1 and len(first) > len(plain.poses(0.1, 0.05))
    assert CoveragePlan.from_json(turned.to_json()).start_yaw == pytest.approx(-math.pi / 2)
    assert CoveragePlan.from_json(plain.to_json()).start_yaw is None


def test_region_plan_keeps_every_wheel_clear_of_known_hazards():
    """A re-plan over part of a field with hazards found in it: lanes stop short of each hazard, the
    detector still sweeps over it, and no wheel comes within the clearance anywhere on the plan."""
    import shapely

    from mine_robot.planning.coverage import transform
    area = local_area(box(0, 0, 8, 6), safe=[box(-3.5, -0.3, 0, 1.4)])
    hazards = [(4.2, 3.1), (6.6, 1.3)]
    plan = plan_coverage(area, ROBOT, start=(-1.5, 0.55, 0.0), region=box(0, 0, 8, 6), hazards=hazards,
                         hazard_clearance=0.25)
    s = plan.stats
    assert s['hazards'] == 2 and s['safe_to_drive'], s['unsafe_reasons']
    assert plan.start_yaw == 0.0
    poses = plan.poses(0.03, 0.05)
    wheels = transform(ROBOT.wheel_patches().reshape(-1, 2), poses[:, :3]).reshape(len(poses), 4, 4, 2)
    d = shapely.distance(shapely.polygons(wheels)[:, :, None], shapely.points(np.array(hazards))[None, None])
    assert d.min() >= 0.25 - 0.02                          # raster cells: within 2 cm of exact
    tracker = CoverageTracker(ROBOT)
    tracker.add_poses(poses[:, :3])
    # what the plan leaves unswept is listed with the reason, not hidden. Known gap: a lane stopped by
    # a hazard on ground nobody has swept yet ends its cell (the way around it has no swept ground to
    # turn on), so the rest waits for the mission's next re-plan
    assert tracker.fraction(area.searchable) > 0.15
    assert s['dropped_m2'] > 0 and all('reason' in d for d in s['dropped'])
