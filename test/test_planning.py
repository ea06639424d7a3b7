"""Coverage planner: plan model round trips, planner properties (hypothesis), the swept-ground
checker, and the ``mine-robot plan`` command."""

import json
import math
from pathlib import Path
import subprocess
import sys

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
import numpy as np
import pytest
from shapely.geometry import LineString, Polygon, box

from mine_robot.planning.area import load_area, local_area
from mine_robot.planning.coverage import CoverageTracker
from mine_robot.planning.plan import CoveragePlan, PlanError, Segment
from mine_robot.planning.planner import PlannerConfig, PlannerError, plan_coverage
from mine_robot.planning.safety import SweepChecker, check_plan
from mine_robot.robot import load_robot

ROBOT = load_robot()
REPO = Path(__file__).resolve().parent.parent


def field(w=16.0, h=11.0, holes=()):
    search = box(0, 0, w, h)
    return local_area(search, no_go=list(holes), safe=[box(-3, -5, w + 3, 0)])


@pytest.fixture(scope='module')
def small_plan():
    area = field(holes=[box(6, 4, 8, 6)])
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
    # starts on the declared safe ground (the access lane)
    assert area.safe_ground.buffer(1e-6).contains(LineString(plan.segments[0].points[:2]).interpolate(0))


def test_plan_covers_the_searchable_ground(small_plan):
    area, plan = small_plan
    # NOTE: issue 3's target is 99.9 %; this small holed field reaches ~90 % (README, known gaps)
    assert plan.stats['coverage_fraction_all'] > 0.9
    # independent check: drive the plan's poses through the CoverageTracker
    tracker = CoverageTracker(ROBOT)
    tracker.add_poses(plan.poses(0.1)[:, :3])
    assert tracker.fraction(area.searchable) == pytest.approx(plan.stats['coverage_fraction_all'], abs=0.01)
    assert plan.stats['lower_bound_m'] == pytest.approx(area.searchable.area / plan.spacing, rel=1e-3)


def test_json_and_geojson_round_trip(small_plan):
    area, plan = small_plan
    back = CoveragePlan.from_json(plan.to_json())
    assert len(back.segments) == len(plan.segments)
    assert back.length == pytest.approx(plan.length, abs=0.05)
    assert back.stats['lane_count'] == plan.stats['lane_count']
    gj = json.loads(json.dumps(plan.to_geojson(area.frame)))
    assert gj['type'] == 'FeatureCollection' and 'stats' in gj
    roles = {f['properties']['role'] for f in gj['features']}
    assert roles == {'lane', 'transit'}
    assert [f['properties']['seq'] for f in gj['features']] == list(range(len(gj['features'])))
    lon, lat = gj['features'][0]['geometry']['coordinates'][0]
    assert abs(lon - 102.6) < 0.01 and abs(lat - 17.97) < 0.01
    again = CoveragePlan.from_geojson(gj, area.frame)
    assert again.length == pytest.approx(plan.length, abs=0.05)
    with pytest.raises(PlanError):
        CoveragePlan.from_json('{"segments": [{"role": "swim", "points": [[0,0],[1,1]], "seq": 0}]}')


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


def test_checker_flags_a_turn_on_unswept_ground_and_accepts_safe_ground():
    safe = box(-5, -3, 0, 3)
    ok = SweepChecker(ROBOT, safe)
    ok.drive(np.array([[-3.0, 0.0], [6.0, 0.0]]), 0, 'lane')
    assert ok.result.violations == []                       # straight run from safe ground
    bad = SweepChecker(ROBOT, safe)
    bad.drive(np.array([[-3.0, 0.0], [6.0, 0.0], [6.0, 5.0]]), 0, 'lane')   # 90° turn in a single band
    kinds = {v.kind for v in bad.result.violations}
    assert bad.result.violations and kinds <= {'turn', 'straight'}
    v = bad.result.violations[0]
    assert v.metres > 0 and 5.0 < v.x < 7.0 and 'unswept' in v.reason or 'not swept' in v.reason
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
    assert tracker.fraction(strip) > 0.98       # ends of the strip: see README known gaps
    assert plan.stats['no_go_m'] == 0.0


def test_given_angle_is_used_and_bad_config_is_rejected():
    area = field(w=14, h=10)
    plan = plan_coverage(area, ROBOT, PlannerConfig(angle_deg=90.0, headland_passes=1))
    assert plan.stats['angle_deg'] == pytest.approx(90.0)
    lanes = [s for s in plan.segments if s.role == 'lane' and len(s.points) == 2]
    assert lanes and all(abs(s.points[0, 0] - s.points[1, 0]) < 1e-6 for s in lanes)   # north-south
    for bad, msg in ((PlannerConfig(overlap=0.95), 'overlap'), (PlannerConfig(headland_passes=0), 'headland'),
                     (PlannerConfig(swath_width=-1), 'swath_width')):
        with pytest.raises(PlannerError, match=msg):
            plan_coverage(area, ROBOT, bad)


def test_car_like_mode_rounds_transit_corners():
    area = field(w=24, h=14)
    plan = plan_coverage(area, ROBOT, PlannerConfig(turn_radius=2.0, headland_passes=1))
    assert plan.stats['no_go_m'] == 0.0 and plan.stats['gaps'] == 0
    assert plan.stats['config']['turn_radius'] == 2.0


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


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(holed_fields())
def test_property_no_no_go_crossing_continuity_and_coverage(area):
    plan = plan_coverage(area, ROBOT, PlannerConfig())
    s = plan.stats
    assert s['no_go_m'] == 0.0
    assert s['outside_m'] < 0.01
    assert s['gaps'] == 0
    assert s['coverage_fraction_all'] > 0.85        # target 0.999 not met yet (README, known gaps)
    path = LineString(plan.path())
    assert path.intersection(area.no_go_union).length == 0.0


def test_cli_plan_writes_plan_geojson_and_png(tmp_path):
    out, png = tmp_path / 'PLAN.geojson', tmp_path / 'PLAN.png'
    result = subprocess.run([sys.executable, '-m', 'mine_robot.cli', 'plan',
                             str(REPO / 'sim' / 'areas' / 'small_rectangle.geojson'), '--overlap', '0.1',
                             '-o', str(out), '--png', str(png)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    gj = json.loads(out.read_text())
    assert gj['stats']['lane_count'] > 5 and gj['stats']['coverage_fraction'] > 0.95
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
