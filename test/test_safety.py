"""Each safety rule triggered in isolation, with the reason it states."""

import math

import numpy as np
import pytest
from shapely.geometry import Polygon, box

from mine_robot.control.safety import (
    EstopLatch,
    Geofence,
    PoseSample,
    SafetyConfig,
    SafetyError,
    SafetyMonitor,
    SweptGroundRule,
    Watchdog,
    predict_poses,
)
from mine_robot.robot import load_robot

ROBOT = load_robot()
ONLY = dict(estop_enabled=False, geofence_enabled=False, swept_ground_enabled=False,
            hazard_enabled=False, pose_watchdog_enabled=False, input_watchdog_enabled=False,
            sensor_watchdog_enabled=False)


def monitor(geofence=None, swept=None, **enable):
    config = SafetyConfig(**{**ONLY, **enable})
    return SafetyMonitor(config, ROBOT, geofence, swept)


def rules(status):
    return [r.rule for r in status.reasons]


def test_predict_poses_arc_is_exact():
    poses = predict_poses(0.0, 0.0, 0.0, 0.5, np.pi / 2, 1.0, 0.5)
    r = 0.5 / (np.pi / 2)
    assert poses[-1] == pytest.approx([r, r, np.pi / 2])
    straight = predict_poses(1.0, 2.0, np.pi, 0.3, 0.0, 1.0, 0.25)
    assert straight[-1] == pytest.approx([0.7, 2.0, np.pi])


def test_estop_latches_until_released_and_reset():
    m = monitor(estop_enabled=True)
    assert not m.evaluate(0.0).stop
    m.estop.request(True)
    m.estop.request(False)                       # releasing the button does not clear the latch
    status = m.evaluate(0.1)
    assert status.stop and status.estop and rules(status) == ['estop']
    m.estop.request(True)
    assert m.estop.reset() == (False, 'e-stop is still asserted: release it before resetting')
    m.estop.request(False)
    ok, _ = m.estop.reset()
    assert ok and not m.evaluate(0.2).stop and m.estop.reset_count == 1


def test_geofence_stops_motion_toward_the_edge_but_allows_driving_back():
    fence = Geofence(box(0, 0, 10, 10), safe=[box(-3, 0, 0, 2)])
    m = monitor(geofence=fence, geofence_enabled=True)
    m.set_pose(PoseSample(0.0, 9.6, 5.0, 0.0))   # front wheel edge at 9.93; braking takes 0.15 m
    m.set_command(0.3, 0.0)
    status = m.evaluate(0.0)
    assert rules(status) == ['geofence'] and 'outside the search/safe area' in status.message
    m.set_pose(PoseSample(0.0, 9.4, 5.0, 0.0))   # body front at 9.9; wheels stop inside
    assert not m.evaluate(0.0).stop
    m.set_pose(PoseSample(0.0, 9.6, 5.0, 0.0))
    m.set_command(-0.3, 0.0)
    assert not m.evaluate(0.0).stop
    # the safe access strip west of the area is allowed ground
    m.set_pose(PoseSample(0.0, 0.2, 1.0, np.pi))
    m.set_command(0.3, 0.0)
    assert not m.evaluate(0.0).stop


def test_no_go_zone_stops_with_its_own_reason():
    fence = Geofence(box(0, 0, 10, 10), no_go=[box(5, 4, 6, 6)])
    m = monitor(geofence=fence, geofence_enabled=True)
    m.set_pose(PoseSample(0.0, 4.0, 5.0, 0.0))    # detector head front 0.11 m from the zone
    m.set_command(0.3, 0.0)                       # braking takes 0.13 m: into the zone
    assert rules(m.evaluate(0.0)) == ['no_go']
    m.set_command(0.0, 0.5)                       # turning in place next to it is fine
    assert not m.evaluate(0.0).stop
    m.set_pose(PoseSample(0.0, 4.3, 5.0, 0.0))    # head already 0.19 m inside (recovery):
    m.set_command(0.3, 0.0)                       # deeper is refused,
    assert rules(m.evaluate(0.0)) == ['no_go']
    m.set_command(-0.2, 0.0)                      # backing out is allowed although it touches
    assert not m.evaluate(0.0).stop               # zone cells the head did not cover before


def test_estimated_motion_is_checked_even_with_zero_command():
    fence = Geofence(box(0, 0, 10, 10))
    m = monitor(geofence=fence, geofence_enabled=True)
    m.set_pose(PoseSample(0.0, 9.5, 5.0, 0.0, v=0.4))
    m.set_command(0.0, 0.0)
    assert rules(m.evaluate(0.0)) == ['geofence']


def test_swept_ground_rule():
    rule = SweptGroundRule(ROBOT.wheel_patches(), safe=[box(-5, -1, 0.5, 1)])
    rule.set_swept(box(0, -0.55, 3.0, 0.55))      # one lane swept up to x = 3
    m = monitor(swept=rule, swept_ground_enabled=True)
    m.set_pose(PoseSample(0.0, 1.0, 0.0, 0.0))
    m.set_command(0.3, 0.0)
    assert not m.evaluate(0.0).stop
    m.set_pose(PoseSample(0.0, 2.6, 0.0, 0.0))    # front wheels 0.07 m from unswept ground
    status = m.evaluate(0.0)
    assert rules(status) == ['swept_ground'] and 'unswept' in status.message
    m.set_command(0.0, 0.0)
    assert not m.evaluate(0.0).stop
    m.set_pose(PoseSample(0.0, 1.5, 0.0, 0.0))
    m.set_command(0.0, 0.8)                       # point turn within the swept lane is fine
    assert not m.evaluate(0.0).stop
    m.set_command(0.5, 1.0)                       # a fast arc from the centre brakes inside it
    assert not m.evaluate(0.0).stop
    m.set_pose(PoseSample(0.0, 1.5, 0.12, 0.0))   # 12 cm left of centre the same arc cannot stop
    assert rules(m.evaluate(0.0)) == ['swept_ground']  # before a wheel leaves the lane
    m.set_command(0.3, 0.0)                       # straight on is fine there
    assert not m.evaluate(0.0).stop


def test_pose_watchdog_stale_and_covariance():
    m = monitor(pose_watchdog_enabled=True)
    assert 'no pose received yet' in m.evaluate(0.0).message
    m.set_pose(PoseSample(1.0, 0.0, 0.0, 0.0, sigma=0.02))
    assert not m.evaluate(1.2).stop
    assert rules(m.evaluate(1.6)) == ['pose_stale']
    m.set_pose(PoseSample(2.0, 0.0, 0.0, 0.0, sigma=0.3))
    status = m.evaluate(2.0)
    assert rules(status) == ['pose_covariance'] and 'RTK lost' in status.message


def test_input_watchdog_only_for_inputs_that_were_moving():
    m = monitor(input_watchdog_enabled=True)
    m.set_input('autonomy', 0.0, 0.0, 0.0)
    assert not m.evaluate(5.0).stop
    m.set_input('autonomy', 0.3, 0.0, 5.0)
    assert not m.evaluate(5.4).stop
    status = m.evaluate(5.6)
    assert rules(status) == ['input_stale'] and 'autonomy' in status.message


def test_sensor_watchdog():
    m = monitor(sensor_watchdog_enabled=True)
    m.add_sensor('metal_detector/signal', 0.5)
    assert 'never heard' in m.evaluate(0.0).message
    m.sensor_seen('metal_detector/signal', 1.0)
    assert not m.evaluate(1.4).stop
    assert rules(m.evaluate(1.6)) == ['sensor_silent']


def test_watchdog_and_config_validation():
    with pytest.raises(SafetyError, match='timeout'):
        Watchdog().add('x', 0.0)
    with pytest.raises(SafetyError, match='decel'):
        SafetyConfig(decel=-1.0)
    with pytest.raises(SafetyError, match='max_horizon'):
        SafetyConfig(horizon_step=1.0, max_horizon=0.5)
    with pytest.raises(SafetyError, match='no search area'):
        SafetyMonitor(SafetyConfig(**{**ONLY, 'geofence_enabled': True}), ROBOT)
    with pytest.raises(SafetyError, match='empty'):
        Geofence(Polygon())


def test_estop_latch_reset_without_latch_is_harmless():
    latch = EstopLatch()
    assert latch.reset() == (True, 'e-stop was not latched') and latch.reset_count == 0


def test_point_turn_at_the_outer_boundary_body_overhangs_wheels_inside():
    """Only the wheels touch ground: the body swinging over the outer boundary is no violation."""
    fence = Geofence(box(0, 0, 10, 10))
    m = monitor(geofence=fence, geofence_enabled=True)
    m.set_pose(PoseSample(0.0, 9.45, 5.0, 0.0))  # body front at 9.95, wheel turn circle to 9.92
    m.set_command(0.0, 0.6)
    status = m.evaluate(0.0)
    assert not status.stop, status.message
    m.set_pose(PoseSample(0.0, 9.45, 5.0, np.pi / 4))   # mid-turn: body corner 0.2 m past the edge
    assert not m.evaluate(0.0).stop


def test_detector_head_into_no_go_stops():
    fence = Geofence(box(0, 0, 10, 10), no_go=[box(5, 4, 6, 6)])
    m = monitor(geofence=fence, geofence_enabled=True)
    m.set_pose(PoseSample(0.0, 4.0, 5.0, 0.0))    # body front at 4.5, detector head front at 4.89
    m.set_command(0.3, 0.0)
    status = m.evaluate(0.0)
    assert rules(status) == ['no_go'] and 'detector head' in status.message


def test_prediction_is_the_braking_trajectory():
    config = SafetyConfig(decel=0.5, angular_decel=1.5, latency=0.1, min_lookahead=0.03)
    for v in (0.1, 0.3, -0.15):
        poses = config.braking_poses(0.0, 0.0, 0.0, v, 0.0)
        # held for the latency, then braked at decel, plus the lookahead along the travel
        assert poses[-1, 0] == pytest.approx(math.copysign(v * v / 1.0 + abs(v) * 0.1 + 0.03, v))
        assert np.all(np.diff(poses[:, 0]) * v >= -1e-12)        # monotonic along the travel
    turn = config.braking_poses(0.0, 0.0, 0.0, 0.0, 0.6)
    assert turn[-1, 2] == pytest.approx(0.6 * 0.1 + 0.36 / 3.0)  # w latency + w^2 / (2 alpha)
    assert np.allclose(turn[:, :2], 0.0)                          # a point turn stays put
    arc = config.braking_poses(0.0, 0.0, 0.0, 0.5, 1.0)
    assert np.hypot(*arc[-1, :2]) < 0.5 * 0.1 + 0.25 + 0.03 + 1e-9   # no longer than the brake
    assert arc[-1, 2] == pytest.approx(0.1 + 1.0 / 3.0)

def test_backup_near_swept_edge_goes_on_when_it_can_stop_in_time():
    # the post-turn backup at 0.15 m/s with swept ground 0.08 m behind the rear wheels: it stops
    # within 0.015 + 0.0225 + 0.01 m, so it may go on (a constant-speed horizon stopped it)
    rear = -ROBOT.wheel_reach[0]
    rule = SweptGroundRule(ROBOT.wheel_patches())
    rule.set_swept(box(rear - 0.08, -0.6, 3.0, 0.6))
    m = SafetyMonitor(SafetyConfig(**{**ONLY, 'swept_ground_enabled': True}), ROBOT, None, rule)
    m.set_pose(PoseSample(0.0, 0.0, 0.0, 0.0))
    m.set_command(-0.15, 0.0)
    assert not m.evaluate(0.0).stop
    m.set_command(-0.3, 0.0)                      # faster, it could not stop in time
    assert rules(m.evaluate(0.0)) == ['swept_ground']


def test_swept_ground_includes_the_most_recent_poses_at_once():
    """The tracker's polygon lags; the rule's own exact recent swath does not."""
    from mine_robot.planning.coverage import detector_outline
    rule = SweptGroundRule(ROBOT.wheel_patches(), safe=[box(-5, -1, 0.5, 1)], outline=detector_outline(ROBOT))
    rule.set_swept(box(0, -0.55, 1.0, 0.55))      # stale tracker polygon: swept to x = 1 only
    for x in np.arange(0.0, 2.51, 0.015):         # 20 Hz at 0.3 m/s: detector now reaches x = 3.39
        rule.add_pose(float(x), 0.0, 0.0)
    m = monitor(swept=rule, swept_ground_enabled=True)
    m.set_pose(PoseSample(0.0, 2.5, 0.0, 0.0))
    m.set_command(0.3, 0.0)
    status = m.evaluate(0.0)
    assert not status.stop, status.message
    m.set_pose(PoseSample(0.0, 3.1, 0.0, 0.0))    # wheels would pass the detector's reach
    assert rules(m.evaluate(0.0)) == ['swept_ground']


def test_known_hazard_keeps_the_wheels_away_but_the_robot_may_straddle_or_leave_it():
    m = monitor(hazard_enabled=True)
    assert m.hazards.set('T7', 10.55, 5.28) and not m.hazards.set('T7', 10.55, 5.28)
    assert not m.hazards.set('nan', math.nan, 5.0) and len(m.hazards) == 1
    # front-left wheel patch ends at x 10.33, y 5.23..5.33: the hazard is 0.22 m ahead of it and
    # braking from 0.3 m/s covers 0.13 m -> closer than the 0.20 m clearance
    m.set_pose(PoseSample(0.0, 10.0, 5.0, 0.0))
    m.set_command(0.3, 0.0)
    status = m.evaluate(0.0)
    assert rules(status) == ['hazard'] and 'known hazard T7' in status.message
    assert status.values['hazard_wheel_distance_m'] == pytest.approx(0.22, abs=1e-6)
    assert m.hazards.remove('T7') and not m.evaluate(0.0).stop and not m.hazards.remove('T7')
    m.hazards.set('T7', 10.55, 5.28)
    m.set_command(0.05, 0.0)                     # creeping stops within 0.02 m: still clear
    assert not m.evaluate(0.0).stop
    m.set_command(-0.3, 0.0)                     # backing away is always allowed
    assert not m.evaluate(0.0).stop
    # a wheel already too close (a late report) may move away, not closer
    m.set_pose(PoseSample(0.0, 10.15, 5.0, 0.0))   # 0.07 m from the wheel
    assert not m.evaluate(0.0).stop and [r.rule for r in m.evaluate(0.0).warnings] == ['hazard']
    m.set_command(0.1, 0.0)
    assert rules(m.evaluate(0.0)) == ['hazard']
    def at_10_5(hazard, v, w):
        """Status of a robot at (10, 5) heading east commanded (v, w) with one known hazard."""
        one = monitor(hazard_enabled=True)
        one.hazards.set('H', *hazard)
        one.set_pose(PoseSample(0.0, 10.0, 5.0, 0.0))
        one.set_command(v, w)
        return one.evaluate(0.0)
    # straddling: a hazard on the centre line passes between the wheels (0.23 m from each)
    assert not at_10_5((10.8, 5.0), 0.3, 0.0).stop
    # a point turn next to a hazard swings the wheels toward it (0.22 m left of the front-left wheel)
    assert rules(at_10_5((10.25, 5.55), 0.0, 1.0)) == ['hazard']
    # far hazards cost nothing and never stop
    status = at_10_5((30.0, 30.0), 0.5, 0.0)
    assert not status.stop and 'hazard_wheel_distance_m' not in status.values


def test_known_hazards_follow_fusion_and_the_missions_record():
    from mine_robot.control.safety import HazardRule
    rule = HazardRule()
    assert rule.from_targets([{'id': 1, 'x': 1.0, 'y': 2.0, 'classification': 'unknown'},
                              {'id': 2, 'x': 3.0, 'y': 2.0, 'classification': 'clutter'}]) == ['target 1']
    assert len(rule) == 1 and rule.from_targets([{'id': 1, 'x': 1.0, 'y': 2.0}]) == []   # unchanged
    # re-classified as clutter: forgotten; the mission's record keeps a hazard across restarts
    rule.from_targets([{'id': 1, 'x': 1.0, 'y': 2.0, 'classification': 'clutter'}])
    assert len(rule) == 0
    assert rule.from_mission([[1.0, 2.0], [5.0, 5.0]]) == ['recorded at 1.00,2.00', 'recorded at 5.00,5.00']
    rule.from_mission([[5.0, 5.0]])                       # the mission's list is the current one
    assert len(rule) == 1 and math.isinf(rule.nearest(np.array([[[0.9, 1.9], [1.1, 1.9], [1.1, 2.1]]]),
                                                      (1.0, 2.0))[0])
    with pytest.raises(KeyError):
        rule.from_targets([{'x': 1.0, 'y': 2.0}])          # malformed: the node logs and goes on


def test_the_raster_rules_are_reevaluated_when_swept_ground_grows_under_the_same_pose():
    """The monitor reuses its raster answer for an unchanged pose and command (heartbeats), but
    never after the swept ground changed: the same pose and command then get a fresh answer."""
    from mine_robot.planning.coverage import detector_outline
    rule = SweptGroundRule(ROBOT.wheel_patches(), safe=[box(-5, -1, 0.5, 1)], outline=detector_outline(ROBOT))
    rule.set_swept(box(0, -0.55, 3.0, 0.55))
    m = monitor(swept=rule, swept_ground_enabled=True)
    m.set_pose(PoseSample(0.0, 2.6, 0.0, 0.0))    # front wheels 0.07 m from unswept ground
    m.set_command(0.3, 0.0)
    assert rules(m.evaluate(0.0)) == ['swept_ground']
    assert rules(m.evaluate(0.05)) == ['swept_ground']     # heartbeat: same answer
    rule.set_swept(box(3.0, -0.55, 4.0, 0.55))    # the ground ahead is swept meanwhile
    assert not m.evaluate(0.1).stop
    m.set_command(0.0, 0.0)
    assert not m.evaluate(0.15).stop


def test_only_a_material_command_change_asks_for_an_evaluation_at_once():
    m = monitor()
    m.set_command(0.3, 0.0)
    assert not m.command_differs(0.32, 0.04)          # a follower's correction: next pose
    assert m.command_differs(0.0, 0.0)                # stopping
    assert m.command_differs(-0.1, 0.0)               # reversing
    assert m.command_differs(0.36, 0.0)               # faster by more than 0.05 m/s
    assert m.command_differs(0.3, 0.15)               # turning harder
    m.set_command(0.0, 0.0)
    assert m.command_differs(0.01, 0.0)               # starting to move
    assert not m.command_differs(0.0, 0.0)
    m.set_command(0.0, 0.05)
    assert m.command_differs(0.0, -0.05)              # the other way round
