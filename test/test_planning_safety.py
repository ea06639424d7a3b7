"""Swept-ground raster checks: the per-cell wheel test agrees with filling the wheel polygons, and the
planner's own (raster) coverage figure never claims more than the exact CoverageTracker."""

import math

import numpy as np
from shapely.geometry import box

from mine_robot.planning.area import local_area
from mine_robot.planning.planner import PlannerConfig, plan_coverage, plan_stats
from mine_robot.planning.safety import SweptRaster
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
