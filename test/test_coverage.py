"""Coverage accounting: swept footprint from driven poses, fractions, unswept remainder, wheels."""

import math

from hypothesis import given, settings
from hypothesis import strategies as st
import numpy as np
import pytest
from shapely.geometry import Point, Polygon, box

from mine_robot.planning.coverage import CoverageTracker, densify, detector_outline, swept_by_poses
from mine_robot.robot import load_robot

ROBOT = load_robot()
MD_X = ROBOT.metal_detector.xyz[0]
R = ROBOT.metal_detector.coil_radius
W = ROBOT.swath_width


def straight(x0, x1, y=0.0, step=0.05):
    xs = np.arange(x0, x1 + 1e-9, step)
    return np.column_stack([xs, np.full_like(xs, y), np.zeros_like(xs)])


def test_straight_drive_sweeps_a_swath_wide_band_ahead_of_base_link():
    tracker = CoverageTracker(ROBOT)
    tracker.add_poses(straight(0.0, 10.0))
    swept = tracker.swept()
    minx, miny, maxx, maxy = swept.bounds
    assert (minx, maxx) == pytest.approx((MD_X - R, 10.0 + MD_X + R), abs=1e-9)
    assert (maxy - miny) == pytest.approx(W, abs=1e-9)
    assert swept.area == pytest.approx(W * 10.0 + W * 2 * R - (4 - math.pi) * R * R, abs=0.01)
    band = box(MD_X, -W / 2 + 1e-6, 10.0 + MD_X, W / 2 - 1e-6)
    assert tracker.fraction(band) == pytest.approx(1.0)
    # nothing behind the detector's start and nothing wider than the swath
    assert tracker.fraction(box(0.0, -0.5, MD_X - R - 1e-6, 0.5)) == 0.0
    assert tracker.fraction(box(2.0, W / 2 + 1e-6, 8.0, W)) == 0.0


def test_every_coil_centre_track_is_inside_the_swept_ground():
    rng = np.random.default_rng(3)
    yaw = np.cumsum(rng.normal(0.0, 0.05, 300))
    xy = np.cumsum(0.05 * np.column_stack([np.cos(yaw), np.sin(yaw)]), axis=0)
    poses = np.column_stack([xy, yaw])
    swept = swept_by_poses(ROBOT, poses)
    coils = ROBOT.metal_detector.coil_positions()
    for x, y, th in poses[::10]:
        c, s = math.cos(th), math.sin(th)
        for cx, cy in coils:
            assert swept.buffer(1e-6).contains(Point(x + c * cx - s * cy, y + s * cx + c * cy))


def test_point_turn_in_place_sweeps_the_annulus():
    yaw = np.linspace(0.0, 2 * math.pi, 400)
    tracker = CoverageTracker(ROBOT)
    tracker.add_poses(np.column_stack([np.zeros_like(yaw), np.zeros_like(yaw), yaw]))
    r_in, r_out = MD_X - R, math.hypot(MD_X + R, W / 2 - R)
    assert tracker.fraction(Point(0, 0).buffer(r_out - 0.02).difference(Point(0, 0).buffer(r_in + 0.01))) \
        > 0.999
    assert tracker.fraction(Point(0, 0).buffer(r_in - 0.01)) == 0.0       # wheels' disc stays unswept


def test_incremental_batched_and_one_shot_agree():
    poses = np.vstack([straight(0, 6), straight(6, 0, y=1.0)[::-1] * [1, 1, 0] + [0, 0, math.pi]])
    one = CoverageTracker(ROBOT, batch=10_000)
    one.add_poses(poses)
    inc = CoverageTracker(ROBOT, batch=7, fold=3)
    for p in poses:
        inc.add_pose(*p)
    ref = swept_by_poses(ROBOT, poses)
    assert inc.swept().symmetric_difference(ref).area < 1e-6
    assert one.swept().symmetric_difference(ref).area < 1e-6
    assert inc.pose_count == len(poses)


def test_an_unflushed_fraction_lags_by_at_most_one_batch_and_is_exact_after_it():
    region = box(-1.0, -1.0, 7.0, 1.0)
    tracker = CoverageTracker(ROBOT, batch=10)
    poses = straight(0, 6)
    for p in poses[:25]:                         # two batches flushed, five poses pending
        tracker.add_pose(*p)
    lagging = tracker.fraction(region, flush=False)
    assert lagging == tracker.fraction(region, flush=False)          # remembered
    flushed_ref = swept_by_poses(ROBOT, poses[:20])
    assert lagging == pytest.approx(region.intersection(flushed_ref).area / region.area, abs=1e-9)
    exact = tracker.fraction(region)                                  # flushes the five
    assert exact > lagging
    assert tracker.fraction(region, flush=False) == pytest.approx(exact, abs=1e-12)


def test_a_localisation_jump_is_not_claimed_as_swept():
    tracker = CoverageTracker(ROBOT, max_gap=2.0)
    tracker.add_poses([[0, 0, 0], [0.05, 0, 0], [20, 0, 0], [20.05, 0, 0]])
    assert tracker.fraction(box(5, -0.3, 15, 0.3)) == 0.0
    tracker.break_track()
    tracker.add_poses([[30, 0, 0]])
    assert tracker.fraction(box(21.5, -0.3, 29.5, 0.3)) == 0.0
    assert len(densify(np.array([[0, 0, 0], [10, 0, 0]]), max_gap=2.0)) == 2


def test_unswept_remainder_keeps_missed_strips_and_drops_slivers():
    region = box(0, -3, 10, 3)
    tracker = CoverageTracker(ROBOT)
    for y in (-2.5, -1.45, 1.45, 2.5):               # leaves a ~1.8 m strip around y = 0
        tracker.add_poses(straight(-2, 10, y=y))
    rest = tracker.unswept(region, min_width=0.2)
    assert not rest.is_empty
    assert rest.bounds[1] == pytest.approx(-1.45 + W / 2, abs=1e-6)
    assert rest.bounds[3] == pytest.approx(1.45 - W / 2, abs=1e-6)
    assert tracker.fraction(region) == pytest.approx(1 - rest.area / region.area, abs=1e-3)
    tracker.add_poses(straight(-2, 10, y=0.0)[:0])   # empty input is fine
    tracker.break_track()
    tracker.add_poses(straight(-2, 10, y=-0.45))
    tracker.break_track()
    tracker.add_poses(straight(-2, 10, y=0.45))
    assert tracker.unswept(region, min_width=0.05).is_empty
    assert tracker.fraction(region) > 0.999


def test_wheels_on_unswept_ground_are_reported_and_swept_ground_is_safe():
    tracker = CoverageTracker(ROBOT)
    tracker.add_poses(straight(0, 0.3))
    assert tracker.wheel_exposure(0.3, 0, 0) > 0.05        # nothing swept under the wheels yet
    safe = box(-1, -1, 1, 1)
    assert tracker.wheel_exposure(0.3, 0, 0, safe=safe) == 0.0
    tracker.add_poses(straight(0.35, 3.0))
    assert tracker.wheel_exposure(3.0, 0, 0) == pytest.approx(0.0, abs=1e-9)
    # a quarter point turn at the end: the rotated wheels are still on swept ground
    assert tracker.wheel_exposure(3.0, 0, math.pi / 2) == pytest.approx(0.0, abs=1e-9)


def test_detector_outline_spans_the_swath():
    outline = Polygon(detector_outline(ROBOT))
    minx, miny, maxx, maxy = outline.bounds
    assert maxy - miny == pytest.approx(W)
    assert (minx, maxx) == pytest.approx((MD_X - R, MD_X + R))


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.floats(0.0, 0.3), st.floats(-0.3, 0.3)), min_size=2, max_size=40))
def test_swept_ground_only_grows(steps):
    tracker = CoverageTracker(ROBOT, batch=5)
    x = y = yaw = 0.0
    previous = 0.0
    for ds, dyaw in steps:
        yaw += dyaw
        x, y = x + ds * math.cos(yaw), y + ds * math.sin(yaw)
        tracker.add_pose(x, y, yaw)
        area = tracker.swept_area()
        assert area >= previous - 1e-9
        previous = area


def test_incremental_tracking_over_a_long_sweep_is_exact():
    """6000 poses added one at a time (the 50 Hz path; its speed is measured by
    bench/bench_coverage.py): the three lanes' ground is all swept, and nothing beyond it."""
    lanes = [straight(0, 40, y=i * 1.0, step=0.02) for i in range(3)]   # 6000 poses
    tracker = CoverageTracker(ROBOT)
    for p in np.vstack(lanes):
        tracker.add_pose(*p)
    assert tracker.fraction(box(1, -0.5, 39, 2.5)) > 0.999
    half = ROBOT.swath_width / 2
    assert tracker.fraction(box(1, 2.0 + half + 0.05, 39, 4.0)) == 0.0
