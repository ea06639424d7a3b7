"""Marking planner geometry and the fire/ack/retry sequence."""

import itertools
import math

from hypothesis import given, settings
from hypothesis import strategies as st
import numpy as np
import pytest
from shapely.geometry import box

from mine_robot.mission.marking import (
    Fire,
    MarkerAck,
    MarkingConfig,
    MarkingSequence,
    MoveAlong,
    Resume,
    Stop,
    along_lane_command,
    marking_policy,
    nozzle_position,
    plan_mark,
)
from mine_robot.robot import load_robot

ROBOT = load_robot()
CFG = MarkingConfig()
NOZZLE_X = ROBOT.marker.xyz[0]
LO, HI = ROBOT.marker.slide_limits


def lane_swept(x0=-10.0, x1=10.0, y=0.0):
    """Swept ground of an east-going lane along y (swath 1.10 m) driven from x0 to x1."""
    half = ROBOT.swath_width / 2
    return box(x0, y - half, x1, y + half)


def test_geometry_comes_from_robot_yaml():
    import yaml

    from mine_robot.resources import resource
    raw = yaml.safe_load(resource('config', 'robot.yaml').read_text())['robot']
    assert NOZZLE_X == pytest.approx(raw['marker']['xyz'][0])
    assert (LO, HI) == tuple(raw['marker']['slide_limits'])
    assert ROBOT.metal_detector.xyz[0] == pytest.approx(raw['metal_detector']['xyz'][0])


def test_target_just_under_the_detector_means_continue_forward():
    # robot at origin heading east; the target is under the detector, MD_X ahead
    md_x = ROBOT.metal_detector.xyz[0]
    plan = plan_mark(ROBOT, (0.0, 0.0, 0.0), (md_x, 0.20), CFG,
                     swept=lane_swept(x1=md_x + ROBOT.metal_detector.coil_radius))
    assert plan.feasible, plan.reason
    assert plan.travel == pytest.approx(md_x - NOZZLE_X) and plan.slide == pytest.approx(0.20)
    assert plan.nozzle == pytest.approx((md_x, 0.20))
    assert plan.reason.startswith('continue')


def test_target_confirmed_after_passing_requires_backing_up():
    # heading north-east; target 0.2 m ahead of base_link along the lane, 0.5 m left
    yaw = math.radians(40)
    pose = (5.0, 2.0, yaw)
    target = (5.0 + 0.2 * math.cos(yaw) - 0.5 * math.sin(yaw),
              2.0 + 0.2 * math.sin(yaw) + 0.5 * math.cos(yaw))
    plan = plan_mark(ROBOT, pose, target, CFG)
    assert plan.feasible and plan.reason.startswith('back up')
    assert plan.travel == pytest.approx(0.2 - NOZZLE_X)
    assert plan.slide == pytest.approx(0.5)
    assert plan.nozzle == pytest.approx(target, abs=1e-9)
    assert plan.stop_pose[2] == yaw  # never turns


@pytest.mark.parametrize('lateral,ok', [(0.55, True), (-0.55, True), (0.5501, False), (-0.56, False),
                                        (0.0, True)])
def test_slide_limits(lateral, ok):
    plan = plan_mark(ROBOT, (0.0, 0.0, 0.0), (1.0, lateral), CFG)
    assert plan.feasible is ok
    if not ok:
        assert plan.defer and 'neighbouring lane' in plan.reason
    else:
        assert LO <= plan.slide <= HI and plan.nozzle == pytest.approx((1.0, lateral))


def test_forward_onto_unswept_ground_is_refused():
    # the lane was only swept up to x = 1.0 (detector front edge): going 1.3 m forward would put
    # the front wheels beyond it
    far = MarkingConfig(max_forward=2.0)
    plan = plan_mark(ROBOT, (0.0, 0.0, 0.0), (1.9, 0.0), far, swept=lane_swept(x1=1.0))
    assert not plan.feasible and 'unswept ground' in plan.reason
    # without a swept polygon, the default forward limit keeps the wheels behind the swept edge
    plan = plan_mark(ROBOT, (0.0, 0.0, 0.0), (1.9, 0.0), CFG)
    assert not plan.feasible and 'max_forward' in plan.reason
    front_wheel_edge = ROBOT.wheels.wheelbase / 2 + ROBOT.wheels.contact_length / 2
    swept_edge = ROBOT.metal_detector.xyz[0] + ROBOT.metal_detector.coil_radius
    assert front_wheel_edge + CFG.max_forward < swept_edge


def test_backing_up_beyond_the_swept_start_is_refused_and_max_backup_applies():
    plan = plan_mark(ROBOT, (0.0, 0.0, 0.0), (-1.0, 0.0), CFG, swept=lane_swept(x0=-0.8))
    assert not plan.feasible and 'unswept' in plan.reason
    plan = plan_mark(ROBOT, (0.0, 0.0, 0.0), (-5.0, 0.3), CFG)
    assert not plan.feasible and 'max_backup' in plan.reason


def test_wheels_never_brought_near_a_hazard():
    # target in the left wheel track, already behind the front wheels: backing up over it
    plan = plan_mark(ROBOT, (0.0, 0.0, 0.0), (0.1, 0.30), CFG, swept=lane_swept())
    assert not plan.feasible and 'within' in plan.reason and 'hazard' in plan.reason
    # another known hazard behind the robot in the wheel track blocks backing up to this one
    plan = plan_mark(ROBOT, (0.0, 0.0, 0.0), (-0.2, 0.0), CFG, swept=lane_swept(),
                     hazards=[(-1.0, -0.3)])
    assert not plan.feasible and '(-1.00, -0.30)' in plan.reason


@settings(max_examples=60, deadline=None)
@given(x=st.floats(-20, 20), y=st.floats(-20, 20), yaw=st.floats(-math.pi, math.pi),
       along=st.floats(-2.0, 1.5), lateral=st.floats(-0.55, 0.55))
def test_feasible_plans_put_the_nozzle_on_the_target(x, y, yaw, along, lateral):
    c, s = math.cos(yaw), math.sin(yaw)
    target = (x + c * along - s * lateral, y + s * along + c * lateral)
    plan = plan_mark(ROBOT, (x, y, yaw), target, CFG)
    if plan.feasible:
        assert math.dist(plan.nozzle, target) < 1e-6
        assert plan.stop_pose[2] == yaw
        # stop pose lies on the line through the pose along the heading
        dx, dy = plan.stop_pose[0] - x, plan.stop_pose[1] - y
        assert abs(-s * dx + c * dy) < 1e-6
    else:
        assert plan.reason


def test_policy_for_clutter_is_configurable():
    assert marking_policy('mine', CFG).mark and marking_policy('uxo', CFG).mode == 'paint'
    assert not marking_policy('clutter', CFG).mark
    distinct = marking_policy('clutter', MarkingConfig(clutter_policy='mark_distinct'))
    assert distinct.mark and distinct.mode == 'flag'
    with pytest.raises(ValueError, match='clutter_policy'):
        MarkingConfig(clutter_policy='paint_it_pink')
    with pytest.raises(ValueError, match='unknown target classification'):
        marking_policy('rock', CFG)


def _drive_to(seq, pose, t):
    """Move the simulated robot to the sequence's stop pose (with a small stop error)."""
    sx, sy, yaw = seq.plan.stop_pose
    return seq.update(t, (sx + 0.01, sy - 0.01, yaw)), (sx + 0.01, sy - 0.01, yaw)


def test_sequence_marks_at_the_nozzles_actual_position():
    seq = MarkingSequence(ROBOT, CFG, 'T1', (0.3, 0.45), 'mine', swept=lane_swept(),
                          command_ids=itertools.count(100))
    actions = seq.start(0.0, (0.0, 0.0, 0.0))
    assert isinstance(actions[0], Stop) and isinstance(actions[1], MoveAlong)
    assert actions[1].travel == pytest.approx(0.3 - NOZZLE_X)
    assert seq.update(1.0, (0.0, 0.0, 0.0)) == []  # not there yet
    actions, pose = _drive_to(seq, None, 2.0)
    fire = actions[-1]
    assert isinstance(fire, Fire) and fire.command_id == 100 and fire.mode == 'paint'
    # slide re-solved from the pose actually reached: the 1 cm cross-track error is absorbed
    assert fire.slide == pytest.approx(0.46)
    assert seq.on_ack(2.1, pose, MarkerAck(99, True)) == []  # someone else's ack is ignored
    # the slide actually went 1 cm short: the mark is recorded where the nozzle really was
    actions = seq.on_ack(2.2, pose, MarkerAck(100, True, slide=fire.slide - 0.01))
    assert isinstance(actions[0], Resume)
    out = seq.outcome
    assert out.status == 'marked' and out.attempts == 1 and out.mode == 'paint'
    assert (out.x, out.y) == pytest.approx(nozzle_position(ROBOT, pose, fire.slide - 0.01))
    # 1 cm along-lane stop error and 1 cm slide shortfall both show in the recorded position
    assert math.dist((out.x, out.y), (0.3, 0.45)) == pytest.approx(math.hypot(0.01, 0.01))


def test_the_marker_fires_only_once_the_robot_stands_still():
    # confirmed with the nozzle already over the target while the robot drives at 0.4 m/s: stop,
    # wait for the robot to stand still, drive back over the braking distance, then fire
    seq = MarkingSequence(ROBOT, CFG, 'T9', (NOZZLE_X, 0.2), 'mine', command_ids=itertools.count(1))
    actions = seq.start(0.0, (0.0, 0.0, 0.0), speed=0.4)
    assert [type(a) for a in actions] == [Stop] and seq.state == 'settling'
    # still rolling inside the tolerance: hold, no fire
    assert [type(a) for a in seq.update(0.05, (0.02, 0.0, 0.0), speed=0.2)] == [Stop]
    # braked to a stop 0.10 m past the stop pose: drive back, no fire
    actions = seq.update(0.5, (0.10, 0.0, 0.0), speed=0.0)
    assert [type(a) for a in actions] == [MoveAlong] and actions[0].travel == pytest.approx(-0.10)
    assert seq.state == 'moving'
    # back within the tolerance but still reversing: hold
    assert not any(isinstance(a, Fire) for a in seq.update(1.5, (0.01, 0.0, 0.0), speed=-0.05))
    actions = seq.update(1.7, (0.01, 0.0, 0.0), speed=0.0)
    assert isinstance(actions[-1], Fire)
    seq.on_ack(2.2, (0.01, 0.0, 0.0), MarkerAck(actions[-1].command_id, True))
    assert seq.outcome.status == 'marked'
    assert math.dist((seq.outcome.x, seq.outcome.y), (NOZZLE_X, 0.2)) == pytest.approx(0.01, abs=1e-6)


def test_actuator_that_never_acknowledges_is_retried_then_reported():
    cfg = MarkingConfig(retries=2, ack_timeout=1.0)
    seq = MarkingSequence(ROBOT, cfg, 'T2', (NOZZLE_X, 0.0), 'uxo', command_ids=itertools.count(1))
    actions = seq.start(0.0, (0.0, 0.0, 0.0))  # already at the stop pose: fire at once
    fires = [a for a in actions if isinstance(a, Fire)]
    t = 0.0
    while seq.outcome is None:
        t += 0.25
        fires += [a for a in seq.update(t, (0.0, 0.0, 0.0)) if isinstance(a, Fire)]
        assert t < 20
    assert [f.command_id for f in fires] == [1, 1, 1] and [f.attempt for f in fires] == [1, 2, 3]
    assert seq.outcome.status == 'failed' and seq.outcome.attempts == 3
    assert 'no acknowledgement' in seq.outcome.reason and 'gave up after 3' in seq.outcome.reason
    # fire at 0, timeouts noticed at 1.25 and 2.5 (refire), then at 3.75 the failure
    assert t == pytest.approx(3.75)


def test_negative_ack_is_retried_and_may_succeed():
    seq = MarkingSequence(ROBOT, MarkingConfig(retries=1), 'T3', (NOZZLE_X, 0.1), 'mine',
                          command_ids=itertools.count(7))
    fire = seq.start(0.0, (0.0, 0.0, 0.0))[-1]
    retry = seq.on_ack(0.1, (0.0, 0.0, 0.0), MarkerAck(fire.command_id, False, error='nozzle clogged'))
    assert isinstance(retry[0], Fire) and retry[0].command_id == 8
    seq.on_ack(0.2, (0.0, 0.0, 0.0), MarkerAck(8, True))
    assert seq.outcome.status == 'marked' and seq.outcome.attempts == 2


def test_unreachable_and_clutter_targets_get_an_outcome_not_a_skip():
    # beyond the slide from here: deferred (tried again from later poses), the robot never stopped
    seq = MarkingSequence(ROBOT, CFG, 'T4', (NOZZLE_X, 0.9), 'mine')
    assert seq.start(0.0, (0.0, 0.0, 0.0)) == []
    assert seq.outcome.status == 'deferred' and 'neighbouring lane' in seq.outcome.reason
    seq = MarkingSequence(ROBOT, CFG, 'C1', (0.62, 0.0), 'clutter')
    assert seq.start(0.0, (0.0, 0.0, 0.0)) == []
    assert seq.outcome.status == 'not_marked' and 'config' in seq.outcome.reason
    seq = MarkingSequence(ROBOT, MarkingConfig(move_timeout=5.0), 'T5', (0.0, 0.0), 'mine')
    seq.start(0.0, (0.0, 0.0, 0.0))
    assert seq.update(6.0, (0.0, 0.0, 0.0))[-1] == Resume()
    assert 'did not reach the stop pose' in seq.outcome.reason
    with pytest.raises(RuntimeError, match='already started'):
        seq.start(7.0, (0.0, 0.0, 0.0))


def test_along_lane_command_reverses_and_holds_heading():
    v, w = along_lane_command((1.0, 0.0, 0.1), (0.5, 0.0, 0.0), 0.0, speed=0.15)
    assert v == pytest.approx(-0.15) and w < 0
    v, _ = along_lane_command((0.49, 0.0, 0.0), (0.5, 0.0, 0.0), 0.0, speed=0.15)
    assert 0 < v < 0.05


def test_in_wheel_path_covers_the_wheel_tracks_ahead_only():
    from mine_robot.mission.marking import in_wheel_path
    pose = (1.0, 2.0, math.pi / 2)                     # heading north
    # wheel tracks at |lateral| 0.23..0.33 (left = west when heading north)
    assert in_wheel_path(ROBOT, pose, (1.0 - 0.28, 2.7), 0.1, 0.6)     # left track, 0.7 m ahead
    assert in_wheel_path(ROBOT, pose, (1.0 + 0.40, 2.5), 0.1, 0.6)     # right track + clearance
    assert not in_wheel_path(ROBOT, pose, (1.0, 2.6), 0.1, 0.6)         # between the tracks
    assert not in_wheel_path(ROBOT, pose, (1.0 + 0.50, 2.6), 0.1, 0.6)  # outside the tracks
    assert not in_wheel_path(ROBOT, pose, (1.0 - 0.28, 3.4), 0.1, 0.6)  # beyond the guard distance
    assert not in_wheel_path(ROBOT, pose, (1.0 - 0.28, 1.4), 0.1, 0.6)  # behind the rear wheels


def drive_to(ctl, pose, run=1.0):
    """Bring the controller's robot to ``pose`` along a straight run of ``run`` m on its heading."""
    x, y, yaw = pose
    ctl.on_pose((x - run * math.cos(yaw), y - run * math.sin(yaw), yaw))
    ctl.on_pose(pose)


def test_controller_marks_the_missions_pending_target_and_reports_the_outcome():
    from mine_robot.mission.marking import MarkingController
    ctl = MarkingController(ROBOT, CFG, command_ids=itertools.count(7))
    drive_to(ctl, (0.0, 0.0, 0.0))
    assert ctl.step(0.0).events == []                    # idle until the mission lists a mark
    # the mission lists a mine 0.3 m behind the nozzle, 5 cm left: back up, slide left, fire
    status = {'state': 'sweeping', 'pending_marks': [{'id': 'T1', 'x': NOZZLE_X - 0.3, 'y': 0.05,
                                                      'classification': 'mine'}], 'hazards': []}
    ctl.on_status(status)
    out = ctl.step(1.0)
    assert out.events == [{'event': 'started', 'target_id': 'T1'}] and out.cmd == (0.0, 0.0)
    v, _ = ctl.step(1.05).cmd
    assert v < 0                                          # backing up along the lane
    ctl.on_pose((-0.3, 0.0, 0.0))
    out = ctl.step(3.0)
    assert len(out.fires) == 1 and out.fires[0]['cmd_id'] == 7 and out.fires[0]['slide_mm'] == 50
    assert ctl.step(3.1).cmd == (0.0, 0.0)                # holds the robot while firing
    assert ctl.on_marker(3.2, {'type': 'ack', 'cmd_id': 7, 'ok': True}).events == []   # accepted
    out = ctl.on_marker(3.6, {'type': 'done', 'cmd_id': 7, 'slide_mm': 50})
    (event,) = out.events
    assert event['event'] == 'outcome' and event['status'] == 'marked'
    assert math.hypot(event['x'] - (NOZZLE_X - 0.3), event['y'] - 0.05) < 1e-6
    assert ctl.seq is None and 'T1' in ctl.done
    ctl.on_status({**status, 'pending_marks': []})        # recorded by the mission: forgotten
    assert not ctl.done and ctl.step(4.0).events == []


def test_controller_marks_a_target_again_when_the_mission_supersedes_its_mark():
    from mine_robot.mission.marking import MarkingController
    ctl = MarkingController(ROBOT, CFG, command_ids=itertools.count(1))
    ctl.on_pose((0.0, 0.0, 0.0))
    status = {'state': 'sweeping', 'hazards': [],
              'pending_marks': [{'id': 'T1', 'x': NOZZLE_X, 'y': 0.1, 'classification': 'mine'}]}
    ctl.on_status(status)
    out = ctl.step(1.0)
    (fire,) = out.fires
    out = ctl.on_marker(1.6, {'type': 'done', 'cmd_id': fire['cmd_id'], 'slide_mm': 100})
    assert out.events[0]['status'] == 'marked'
    # not recorded yet: the same target listed again (without a new generation) is not re-fired
    ctl.on_status(status)
    assert ctl.step(2.0).fires == []
    ctl.on_status({**status, 'pending_marks': []})
    # the mission superseded the mark (the estimate moved): listed again with remark 1
    moved = {'id': 'T1', 'x': NOZZLE_X, 'y': -0.2, 'classification': 'mine', 'remark': 1}
    ctl.on_status({**status, 'pending_marks': [moved]})
    out = ctl.step(5.0)
    assert out.events[0] == {'event': 'started', 'target_id': 'T1'}
    (fire,) = out.fires
    assert fire['slide_mm'] == -200
    # and the outcome of the first mark is not re-sent in the meantime
    assert all(e.get('status') != 'marked' for e in ctl.step(9.0).events)


def test_controller_drops_a_manoeuvre_for_a_target_the_mission_reports_handled():
    # after a restart fusion reports a target marked before under a new id; the guard starts it
    # before the mission's status names it handled: the manoeuvre stops, nothing is fired
    from mine_robot.mission.marking import MarkingController
    ctl = MarkingController(ROBOT, CFG, command_ids=itertools.count(1))
    drive_to(ctl, (0.0, 0.0, 0.0))
    status = {'state': 'sweeping', 'hazards': [], 'handled': [],
              'pending_marks': [{'id': 'N1', 'x': NOZZLE_X - 0.5, 'y': 0.0, 'classification': 'mine'}]}
    ctl.on_status(status)
    out = ctl.step(1.0)
    assert out.events == [{'event': 'started', 'target_id': 'N1'}] and ctl.seq is not None
    assert ctl.step(1.05).cmd[0] < 0                       # backing up to it
    ctl.on_status({**status, 'pending_marks': [], 'handled': ['N1', 'OLD1']})
    out = ctl.step(1.1)
    assert ctl.seq is None and out.fires == [] and out.cmd == (0.0, 0.0)
    assert any('not marked again' in text for _, text in out.log)
    for k in range(40):                                    # and it is not started again
        assert ctl.step(1.2 + 0.05 * k).fires == []


def test_controller_guard_stops_for_an_unsettled_target_in_the_wheels_path():
    from mine_robot.mission.marking import MarkingController
    ctl = MarkingController(ROBOT, CFG)
    ctl.on_pose((0.0, 0.0, 0.0))
    ctl.on_status({'state': 'sweeping', 'pending_marks': [], 'hazards': []})
    wheel_y = float(ROBOT.wheels.contact_centres()[0][1])
    ahead = float(ROBOT.wheel_patches()[:, :, 0].max()) + 0.3
    ctl.on_targets([{'id': 4, 'x': ahead, 'y': wheel_y, 'classification': 'clutter', 'settled': False},
                    {'id': 5, 'x': ahead, 'y': 5.0, 'classification': 'mine', 'settled': True}])
    out = ctl.step(0.0)
    # unsettled (not yet cleared as clutter) and in a wheel track ahead: marked now, as unknown
    assert out.events[0] == {'event': 'started', 'target_id': '4'}
    assert ctl.seq.classification == 'unknown' and '4' in ctl.guarded
    assert any('wheels' in text for _, text in out.log)
    # the mission paused: the robot is held still, whatever the sequence wanted
    ctl.on_status({'state': 'paused', 'pending_marks': [], 'hazards': []})
    assert ctl.step(0.1).cmd == (0.0, 0.0)


def test_controller_guard_never_restarts_a_handled_target():
    from mine_robot.mission.marking import MarkingController
    ctl = MarkingController(ROBOT, CFG)
    ctl.on_pose((0.0, 0.0, 0.0))
    wheel_y = float(ROBOT.wheels.contact_centres()[0][1])
    ahead = float(ROBOT.wheel_patches()[:, :, 0].max()) + 0.3
    ctl.on_targets([{'id': 4, 'x': ahead, 'y': wheel_y, 'classification': 'mine', 'settled': True}])
    # marked before (e.g. from the previous lane, or by a marking node that restarted since)
    ctl.on_status({'state': 'sweeping', 'pending_marks': [], 'hazards': [], 'handled': ['4']})
    assert ctl.step(0.0).events == [] and ctl.seq is None


def test_controller_waits_for_a_turn_to_end_before_starting_a_mark():
    from mine_robot.mission.marking import MarkingController
    ctl = MarkingController(ROBOT, CFG)
    ctl.on_status({'state': 'sweeping', 'hazards': [], 'pending_marks': [
        {'id': 'T1', 'x': NOZZLE_X - 0.3, 'y': 0.05, 'classification': 'mine'}]})
    ctl.on_pose((0.0, 0.0, 0.7), yaw_rate=0.5)        # mid point turn, heading between two lanes
    assert ctl.step(0.0).events == [] and ctl.seq is None
    ctl.on_pose((-0.5, 0.0, 0.0), yaw_rate=0.01)      # the turn is over: on the lane heading,
    ctl.on_pose((0.0, 0.0, 0.0), yaw_rate=0.01)       # driven 0.5 m along it
    assert ctl.step(0.1).events == [{'event': 'started', 'target_id': 'T1'}]
    assert ctl.seq.plan.heading == pytest.approx(0.0)


def test_controller_sends_an_unrecorded_outcome_again_until_the_mission_has_it():
    from mine_robot.mission.marking import MarkingController
    ctl = MarkingController(ROBOT, MarkingConfig(resend_after=3.0), command_ids=itertools.count(1))
    ctl.on_pose((0.0, 0.0, 0.0))
    pending = {'state': 'sweeping', 'hazards': [], 'pending_marks': [
        {'id': 'T1', 'x': NOZZLE_X, 'y': 0.0, 'classification': 'mine'}]}
    ctl.on_status(pending)
    out = ctl.step(0.0)                                   # already over it: fires at once
    assert out.fires and out.events[0]['event'] == 'started'
    (outcome,) = ctl.on_marker(0.6, {'type': 'done', 'cmd_id': out.fires[0]['cmd_id'], 'slide_mm': 0}).events
    # the mission manager was restarting: its next status still lists T1 as a mark to make
    ctl.on_status(pending)
    assert ctl.step(1.0).events == []                     # not yet: within resend_after
    again = ctl.step(3.7)
    assert again.events == [outcome] and again.fires == [] and ctl.seq is None   # never fired twice
    ctl.on_status({**pending, 'pending_marks': [], 'handled': ['T1']})
    assert ctl.step(10.0).events == []


def test_a_deferred_target_is_marked_once_a_later_pose_reaches_it():
    """A target beyond the slide from the lane it was confirmed on is deferred, not failed; when
    the robot later passes it on the neighbouring lane (nozzle just past it) the mark is made."""
    from mine_robot.mission.marking import MarkingController
    ctl = MarkingController(ROBOT, CFG)
    target = {'id': 'T9', 'x': 3.0, 'y': 0.75, 'classification': 'mine'}
    ctl.on_status({'state': 'sweeping', 'pending_marks': [target], 'hazards': [[3.0, 0.75]]})
    ctl.on_pose((3.0 - NOZZLE_X, 0.0, 0.0))          # lane at y = 0: the target 0.75 m across
    out = ctl.step(0.0)
    assert [e['event'] for e in out.events] == ['outcome'] and out.events[0]['status'] == 'deferred'
    assert out.cmd is None and ctl.seq is None          # no stop for an unreachable target
    assert ctl.step(1.0).events == []                   # not retried from a pose that cannot reach
    # the next lane (y = 0.99, heading west): the nozzle comes up to the target, then just past it
    ctl.on_pose((3.0 + NOZZLE_X + 0.4, 0.99, math.pi))
    assert ctl.step(2.0).fires == []                    # still 0.4 m ahead: not yet
    ctl.on_pose((3.0 + NOZZLE_X - 0.1, 0.99, math.pi))
    out = ctl.step(3.0)
    assert [e['event'] for e in out.events] == ['started'] and ctl.seq is not None
    assert ctl.seq.plan.feasible and -0.3 <= ctl.seq.plan.travel <= 0.0


def test_a_deferred_target_with_a_short_window_is_caught_at_transit_speed():
    """A target just outside a wheel track (0.35 m across) can be marked only while the nozzle is
    within about 0.15 m past it: further on the wheels are next to it already. Driving past at
    0.4 m/s (a mark visit's lanes), the retries come often enough to catch that window."""
    from mine_robot.mission.marking import MarkingController
    target = {'id': 'M2', 'x': 5.0, 'y': 0.35, 'classification': 'mine'}
    for offset in np.arange(0.0, 0.2, 0.01):        # every phase of the retries against the window
        ctl = MarkingController(ROBOT, CFG)
        ctl.on_status({'state': 'resweep', 'pending_marks': [target], 'hazards': [[5.0, 0.35]]})
        ctl.deferred['M2'] = {'t': -1.0, 'reason': 'not reachable from here'}   # deferred earlier
        started, t, x = False, 0.0, 5.0 - NOZZLE_X - 0.6 + offset
        while x < 5.0 and not started:
            ctl.on_pose((x, 0.0, 0.0))
            out = ctl.step(t)
            started = any(e['event'] == 'started' for e in out.events)
            t, x = t + 0.05, x + 0.4 * 0.05
        assert started, f'missed with offset {offset:.2f}'
        assert ctl.seq.plan.feasible and -0.3 <= ctl.seq.plan.travel <= CFG.stop_tolerance


def test_a_target_reachable_only_by_a_long_reverse_is_not_retried_there():
    """A retry backs up at most 0.3 m: a deferred target far behind (a long reverse along what
    may be a transit's heading) waits for a better pose."""
    from mine_robot.mission.marking import MarkingController
    ctl = MarkingController(ROBOT, CFG)
    target = {'id': 'T8', 'x': 3.0, 'y': 0.75, 'classification': 'mine'}
    ctl.on_status({'state': 'sweeping', 'pending_marks': [target], 'hazards': []})
    ctl.on_pose((3.0 - NOZZLE_X, 0.0, 0.0))
    ctl.step(0.0)
    ctl.on_pose((3.0 - NOZZLE_X + 1.5, 0.3, 0.0))     # 1.5 m past it, within the slide's reach
    assert ctl.step(1.0).events == [] and ctl.seq is None


def test_a_single_fit_on_the_outermost_coil_waits_for_a_second_look():
    """A metal-only target seen once at or beyond the array's outermost coil is not marked from
    that fit (its lateral position is clamped to the edge coil); a second detection frees it."""
    from mine_robot.mission.marking import MarkingController
    ctl = MarkingController(ROBOT, CFG)
    edge = max(ROBOT.metal_detector.coil_y)
    target = {'id': 'E1', 'x': 2.0, 'y': -edge, 'classification': 'unknown'}
    evidence = {'metal': {'hits': 1}, 'gpr': {'hits': 0}}
    ctl.on_targets([{**target, 'settled': True, 'evidence': evidence}])
    ctl.on_status({'state': 'sweeping', 'pending_marks': [target], 'hazards': [[2.0, -edge]]})
    drive_to(ctl, (2.0 - NOZZLE_X + 0.2, 0.0, 0.0))  # nozzle just past it, slide could reach
    out = ctl.step(0.0)
    assert [(e['event'], e.get('status')) for e in out.events] == [('outcome', 'deferred')]
    assert 'position not fixed' in out.events[0]['reason'] and ctl.seq is None
    assert ctl.step(1.0).events == []                 # nothing new: still waiting
    ctl.on_targets([{**target, 'settled': True, 'evidence': {'metal': {'hits': 1}, 'gpr': {'hits': 3}}}])
    assert ctl.step(2.0).events == []                 # a GPR echo there does not fix it
    ctl.on_targets([{**target, 'settled': True, 'evidence': {'metal': {'hits': 2}, 'gpr': {'hits': 3}}}])
    assert ctl.step(3.0).events == []                 # a second fit: fusion gets 2 s to absorb the pass
    out = ctl.step(5.5)
    assert [e['event'] for e in out.events] == ['started'] and ctl.seq.target_id == 'E1'
    # the same fit well inside the array is marked at once
    ctl2 = MarkingController(ROBOT, CFG)
    inner = {'id': 'E2', 'x': 2.0, 'y': 0.0, 'classification': 'unknown'}
    ctl2.on_targets([{**inner, 'settled': True, 'evidence': evidence}])
    ctl2.on_status({'state': 'sweeping', 'pending_marks': [inner], 'hazards': [[2.0, 0.0]]})
    drive_to(ctl2, (2.0 - NOZZLE_X + 0.2, 0.0, 0.0))
    assert [e['event'] for e in ctl2.step(0.0).events] == ['started']


def test_a_deferred_target_settled_as_clutter_gets_its_not_marked_outcome():
    from mine_robot.mission.marking import MarkingController
    ctl = MarkingController(ROBOT, CFG)
    target = {'id': 'C7', 'x': 3.0, 'y': 0.75, 'classification': 'unknown'}
    ctl.on_status({'state': 'sweeping', 'pending_marks': [target], 'hazards': [[3.0, 0.75]]})
    ctl.on_pose((3.0 - NOZZLE_X, 0.0, 0.0))
    assert ctl.step(0.0).events[0]['status'] == 'deferred'
    ctl.on_status({'state': 'sweeping', 'pending_marks': [{**target, 'classification': 'clutter'}],
                   'hazards': []})
    out = ctl.step(1.0)
    assert [(e['event'], e['status']) for e in out.events] == [('outcome', 'not_marked')]


def test_clutter_reclassified_a_hazard_is_marked_after_all():
    """A target left unmarked as clutter that fusion later calls a hazard comes back in the
    mission's pending marks; the controller marks it and never re-sends the old outcome."""
    from mine_robot.mission.marking import MarkingController
    ctl = MarkingController(ROBOT, CFG)
    target = {'id': 'R1', 'x': 3.0, 'y': 0.0, 'classification': 'clutter'}
    ctl.on_status({'state': 'sweeping', 'pending_marks': [target], 'hazards': []})
    drive_to(ctl, (3.0 - NOZZLE_X + 0.1, 0.0, 0.0))
    out = ctl.step(0.0)
    assert [(e['event'], e['status']) for e in out.events] == [('outcome', 'not_marked')]
    ctl.on_status({'state': 'sweeping', 'pending_marks': [], 'hazards': []})   # recorded
    ctl.on_status({'state': 'sweeping', 'pending_marks': [{**target, 'classification': 'mine'}],
                   'hazards': [[3.0, 0.0]]})
    out = ctl.step(5.0)
    assert [e['event'] for e in out.events] == ['started'] and ctl.seq.target_id == 'R1'


def test_a_guard_target_that_was_deferred_is_retried_once_settled():
    from mine_robot.mission.marking import MarkingController
    ctl = MarkingController(ROBOT, CFG)
    # unsettled, on the left wheel track 0.4 m ahead of the front wheels: the guard takes it, but a
    # known hazard under the rear wheel makes the manoeuvre unsafe: deferred
    track_y = 0.28
    target = {'id': 'G1', 'x': 1.0, 'y': track_y, 'classification': 'unknown', 'settled': False,
              'evidence': {'metal': {'hits': 2}}}
    ctl.on_targets([target])
    ctl.on_status({'state': 'sweeping', 'pending_marks': [], 'hazards': [[1.0, track_y], [0.0, track_y]]})
    ctl.on_pose((0.25, 0.0, 0.0))
    out = ctl.step(0.0)
    assert [(e['event'], e.get('status')) for e in out.events] == [('outcome', 'deferred')]
    assert 'G1' in ctl.guarded and 'G1' in ctl.deferred
    assert ctl.step(0.2).events == []                  # the guard does not retry it every period
    # settled: the mission lists it; from a pose where the nozzle is just past it, it is marked
    ctl.on_status({'state': 'sweeping', 'pending_marks': [{**target, 'classification': 'mine'}],
                   'hazards': [[1.0, track_y]]})
    ctl.on_pose((1.0 - NOZZLE_X + 0.1, track_y - 0.3, 0.0))
    out = ctl.step(2.0)
    assert [e['event'] for e in out.events] == ['started'] and ctl.seq.target_id == 'G1'


def test_a_duplicate_report_of_the_target_does_not_block_its_mark():
    from mine_robot.mission.marking import DUPLICATE_RADIUS
    pose = (0.0, 0.0, 0.0)
    target = (NOZZLE_X - 0.5, 0.12)           # 0.5 m behind the nozzle, 0.11 m inside the left wheels
    assert plan_mark(ROBOT, pose, target, CFG, hazards=[target]).feasible
    twin = (target[0], target[1] + 0.04)       # the same object reported again, 0.07 m from a wheel
    assert 0.04 < DUPLICATE_RADIUS
    assert plan_mark(ROBOT, pose, target, CFG, hazards=[target, twin]).feasible
    other = (target[0], target[1] + 0.08)      # a distinct hazard that close to the wheel blocks
    blocked = plan_mark(ROBOT, pose, target, CFG, hazards=[target, other])
    assert not blocked.feasible and 'hazard' in blocked.reason and blocked.defer


def test_a_second_deferral_after_a_started_mark_reaches_the_mission():
    """The mission goes to marking on 'started' and waits for the outcome: a deferral after the
    stop (the target beyond the slide once stopped) must reach it even when the target had been
    deferred before (only a target's first deferral used to be sent: the mission then waited in
    marking for good during a mark visit)."""
    from mine_robot.mission.marking import MarkingController
    ctl = MarkingController(ROBOT, CFG)
    target = {'id': 'T9', 'x': 3.0, 'y': 0.75, 'classification': 'mine'}
    ctl.on_status({'state': 'sweeping', 'pending_marks': [target], 'hazards': [[3.0, 0.75]]})
    ctl.on_pose((3.0 - NOZZLE_X, 0.0, 0.0))
    assert ctl.step(0.0).events[0]['status'] == 'deferred'          # the first deferral
    drive_to(ctl, (3.0 + NOZZLE_X - 0.1, 0.99, math.pi))
    assert [e['event'] for e in ctl.step(3.0).events] == ['started']
    stop = ctl.seq.plan.stop_pose
    # it stops where it should, but the lane drifted: the target is now beyond the slide
    t, events = 3.0, []
    for _ in range(100):
        t += 0.05
        ctl.on_pose((stop[0], stop[1] + 0.8, stop[2]), speed=0.0)
        events += ctl.step(t).events
        if ctl.seq is None:
            break
    assert [e['status'] for e in events if e['event'] == 'outcome'] == ['deferred'], events


def test_a_back_up_only_runs_over_the_straight_track_the_robot_came_by():
    """A target confirmed during a lane-end point turn, behind the robot on its new heading: backing
    up 0.85 m along the new heading would leave the search area (the crash-resume batch's robot was
    held there by the geofence until the mark failed). The mark is deferred, naming the straight
    track behind the robot (none: the post-turn backup left it at the rear end of its run, 0.18 m
    behind the corner); a few centimetres up the lane it has that much; on a lane driven straight
    the same back-up is made."""
    from mine_robot.mission.marking import MarkingController
    ctl = MarkingController(ROBOT, CFG)
    target = {'id': 'T11', 'x': 8.1, 'y': 0.09, 'classification': 'unknown'}
    ctl.on_status({'state': 'sweeping', 'pending_marks': [], 'hazards': [[8.1, 0.09]]})
    for x in np.arange(6.0, 7.64, 0.05):                  # the lane east along y = 0.54
        ctl.on_pose((x, 0.54, 0.0))
    for yaw in np.linspace(0.0, math.pi / 2, 10):         # the point turn to the north
        ctl.on_pose((7.64, 0.54, yaw))
    for y in np.arange(0.54, 0.355, -0.02):               # the post-turn backup
        ctl.on_pose((7.64, y, math.pi / 2))
    assert ctl.backup_room() == pytest.approx(0.0, abs=1e-9)
    ctl.on_pose((7.64, 0.40, math.pi / 2))
    assert ctl.backup_room() == pytest.approx(0.04, abs=0.01)
    ctl.on_status({'state': 'sweeping', 'pending_marks': [target], 'hazards': [[8.1, 0.09]]})
    out = ctl.step(0.0)
    assert [(e['event'], e['status']) for e in out.events] == [('outcome', 'deferred')]
    assert 'straight track' in out.events[0]['reason'] and out.cmd is None and ctl.seq is None
    # the same target 0.85 m behind the nozzle of a robot that drove 3 m straight: backed up to
    ctl2 = MarkingController(ROBOT, CFG)
    ctl2.on_status({'state': 'sweeping', 'pending_marks': [], 'hazards': [[8.1, 0.09]]})
    for y in np.arange(-2.5, 0.36, 0.05):
        ctl2.on_pose((8.1 - 0.46, y, math.pi / 2))
    ctl2.on_status({'state': 'sweeping', 'pending_marks': [target], 'hazards': [[8.1, 0.09]]})
    assert [e['event'] for e in ctl2.step(0.0).events] == ['started']
    assert ctl2.seq.plan.travel < -0.8 and ctl2.step(0.05).cmd[0] < 0
