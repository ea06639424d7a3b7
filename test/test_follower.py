"""Path follower: straight and turning paths, point turns, speed profile, pause/resume, progress."""

import math

import numpy as np
import pytest

from mine_robot.control.follower import FollowerConfig, FollowerError, FollowPath, PathFollower

DT = 0.05


def run(follower, pose, seconds, on_step=None):
    x, y, yaw = pose
    log = []
    for k in range(int(seconds / DT)):
        cmd = follower.step(k * DT, x, y, yaw)
        log.append((x, y, yaw, cmd.v, cmd.w, cmd.progress))
        if on_step:
            on_step(k, cmd)
        x += cmd.v * math.cos(yaw) * DT
        y += cmd.v * math.sin(yaw) * DT
        yaw += cmd.w * DT
        if cmd.progress.state == 'done':
            break
    return log


def boustrophedon(n_lanes=3, length=6.0, spacing=1.0):
    segs = []
    for i in range(n_lanes):
        xs = (0.0, length) if i % 2 == 0 else (length, 0.0)
        segs.append(('lane', np.array([[xs[0], i * spacing], [xs[1], i * spacing]])))
        if i < n_lanes - 1:
            segs.append(('transit', np.array([[xs[1], i * spacing], [xs[1], (i + 1) * spacing]])))
    return segs


def test_straight_lane_from_offset_start_converges_at_sweep_speed():
    path = FollowPath.from_segments([('lane', np.array([[0.0, 0.0], [10.0, 0.0]]))])
    log = run(PathFollower(path), (0.0, 0.08, 0.05), 60.0)
    assert log[-1][5].state == 'done'
    assert math.hypot(log[-1][0] - 10.0, log[-1][1]) < 0.05
    steady = [abs(p.cross_track) for *_, p in log if 3.0 < p.distance < 9.0]
    assert max(steady) < 0.01
    assert max(v for _, _, _, v, _, _ in log) == pytest.approx(0.3, abs=1e-6)


def test_lanes_with_point_turns_stay_on_path():
    path = FollowPath.from_segments(boustrophedon())
    assert len(path.legs) == 5
    log = run(PathFollower(path), (0.0, 0.0, 0.0), 200.0)
    final = log[-1]
    assert final[5].state == 'done'
    assert math.hypot(final[0] - 6.0, final[1] - 2.0) < 0.05
    cte = np.array([p.cross_track for *_, p in log if p.state == 'track'])
    assert np.sqrt(np.mean(cte ** 2)) < 0.02 and np.max(np.abs(cte)) < 0.05
    # point turns: some steps with v == 0 and w != 0
    assert any(v == 0.0 and abs(w) > 0.05 for _, _, _, v, w, _ in log)
    # transits at transit speed, lanes at sweep speed
    assert max(v for *_, v, _, p in log if p.role == 'lane') <= 0.3 + 1e-9
    segments = [p.segment for *_, p in log]
    assert segments == sorted(segments) and segments[-1] == 4


def test_curved_transit_is_tracked_without_point_turns():
    arc = np.array([[2.0 * math.sin(a), 2.0 * (1 - math.cos(a))] for a in np.linspace(0, math.pi / 2, 40)])
    path = FollowPath.from_segments([('transit', arc)])
    assert len(path.legs) == 1
    log = run(PathFollower(path), (0.0, 0.0, 0.0), 60.0)
    assert log[-1][5].state == 'done'
    assert max(abs(p.cross_track) for *_, p in log) < 0.05


def test_pause_at_index_and_resume():
    pts = np.column_stack([np.linspace(0.0, 8.0, 17), np.zeros(17)])   # 0.5 m spacing
    path = FollowPath.from_segments([('lane', pts)])
    follower = PathFollower(path)
    follower.pause_at(8)                                 # x = 4.0
    log = run(follower, (0.0, 0.0, 0.0), 40.0)
    assert log[-1][5].state == 'paused'
    assert log[-1][0] == pytest.approx(4.0, abs=0.03)
    assert log[-1][3] == 0.0
    follower.resume()
    log = run(follower, log[-1][:3], 40.0)
    assert log[-1][5].state == 'done' and log[-1][0] == pytest.approx(8.0, abs=0.05)
    assert log[-1][5].index == 15 and log[-1][5].remaining == pytest.approx(0.0, abs=1e-9)


def test_immediate_pause_brakes_within_limit():
    path = FollowPath.from_segments([('lane', np.array([[0.0, 0.0], [10.0, 0.0]]))])
    follower = PathFollower(path, FollowerConfig(linear_decel=0.3))

    def pause_midway(k, cmd):
        if k == 200:
            follower.pause()
    log = run(follower, (0.0, 0.0, 0.0), 15.0, on_step=pause_midway)
    speeds = [v for _, _, _, v, _, _ in log[200:]]
    assert np.all(np.diff(speeds) >= -0.3 * DT - 1e-9)   # decel limit respected
    assert log[-1][5].state == 'paused' and log[-1][3] == 0.0


def test_off_path_is_a_fault_with_reason():
    path = FollowPath.from_segments([('lane', np.array([[0.0, 0.0], [10.0, 0.0]]))])
    cmd = PathFollower(path).step(0.0, 1.0, 2.0, 0.0)
    assert cmd.progress.state == 'fault' and 'cross-track' in cmd.fault and cmd.v == 0.0


def test_bad_paths_are_rejected():
    with pytest.raises(FollowerError, match='fewer than 2'):
        FollowPath.from_segments([('lane', np.array([[0.0, 0.0]]))])
    with pytest.raises(FollowerError, match='role'):
        FollowPath.from_segments([('swim', np.array([[0.0, 0.0], [1.0, 0.0]]))])
    with pytest.raises(FollowerError, match='sweep_speed'):
        FollowerConfig(sweep_speed=-1.0)
    path = FollowPath.from_segments([('lane', np.array([[0.0, 0.0], [1.0, 0.0]]))])
    with pytest.raises(FollowerError, match='outside'):
        PathFollower(path).pause_at(7)


def test_backup_primitive_is_driven_backwards_and_tracked_precisely():
    """Lane east, point turn north, back up 0.15 m (reverse segment), then forward north and a
    second corner: the planner's turn primitive."""
    segs = [('lane', np.array([[0.0, 0.0], [4.0, 0.0]])),
            ('transit', np.array([[4.0, 0.0], [4.0, -0.15]]), 'reverse'),
            ('transit', np.array([[4.0, -0.15], [4.0, 0.99]])),
            ('transit', np.array([[4.0, 0.99], [4.15, 0.99]]), 'reverse'),
            ('lane', np.array([[4.15, 0.99], [0.0, 0.99]]))]
    path = FollowPath.from_segments(segs)
    assert len(path.legs) == 5 and list(path.reverse) == [False, True, False, True, False]
    log = run(PathFollower(path), (0.0, 0.0, 0.0), 120.0)
    assert log[-1][5].state == 'done'
    assert math.hypot(log[-1][0], log[-1][1] - 0.99) < 0.03
    rev = [(x, y, yaw, v, p) for x, y, yaw, v, _w, p in log
           if p.direction == 'reverse' and p.state == 'track' and abs(v) > 1e-3]
    assert rev and all(v < 0 for *_, v, _ in rev)                       # backs up
    assert max(-v for *_, v, _ in rev) <= FollowerConfig().reverse_speed + 1e-9
    # while backing up the robot faces the next leg's heading (north, then west) and stays on line
    first = [r for r in rev if r[4].segment == 1]
    second = [r for r in rev if r[4].segment == 3]
    assert first and second
    assert all(abs(math.remainder(yaw - math.pi / 2, 2 * math.pi)) < 0.07 for _, _, yaw, _, _ in first)
    assert all(abs(math.remainder(yaw - math.pi, 2 * math.pi)) < 0.07 for _, _, yaw, _, _ in second)
    cte = np.array([p.cross_track for *_, p in rev])
    assert np.max(np.abs(cte)) < 0.02
    # the backup really reaches its end before the robot drives forward again
    ys = [y for x, y, *_ in first]
    assert min(ys) == pytest.approx(-0.15, abs=0.03)
    xs = [x for x, *_ in second]
    assert max(xs) == pytest.approx(4.15, abs=0.03)


def test_reverse_leg_from_offset_start_converges():
    path = FollowPath.from_segments([('transit', np.array([[0.0, 0.0], [-3.0, 0.0]]), 'reverse')])
    log = run(PathFollower(path), (0.0, 0.06, 0.03), 60.0)
    assert log[-1][5].state == 'done'
    assert math.hypot(log[-1][0] + 3.0, log[-1][1]) < 0.05
    late = [abs(p.cross_track) for *_, p in log if p.distance > 1.5]
    assert max(late) < 0.015
    assert all(v <= 1e-9 for _, _, _, v, _, _ in log)
    with pytest.raises(FollowerError, match='direction'):
        FollowPath.from_segments([('transit', np.array([[0.0, 0.0], [1.0, 0.0]]), 'sideways')])


def test_reset_fault_reacquires_the_path_from_the_current_pose():
    path = FollowPath.from_segments([('lane', np.array([[0.0, 0.0], [10.0, 0.0]]))])
    f = PathFollower(path)
    assert not f.reset_fault(1.0, 0.0)                     # not faulted: nothing to reset
    assert f.step(0.0, 3.0, 2.0, 0.0).progress.state == 'fault'
    assert f.step(0.1, 3.0, 2.0, 0.0).fault                # held while faulted
    f.resume()                                             # plain resume does not clear a fault
    assert f.step(0.2, 3.0, 2.0, 0.0).progress.state == 'fault'
    assert f.reset_fault(4.0, 0.1)                         # driven back by hand, further along
    assert f.fault == '' and f.s == pytest.approx(4.0)
    log = run(f, (4.0, 0.1, 0.0), 30.0)
    assert log[-1][5].state == 'done' and all(p.state != 'fault' for *_, p in log)
    # converges from the 0.1 m offset without overshooting it (the gain is gentle on purpose)
    errors = [abs(p.cross_track) for *_, p in log]
    assert max(errors) < 0.105 and max(errors[len(errors) // 2:]) < 0.02


def test_short_backup_holds_heading_instead_of_swinging_onto_the_line():
    # the planner's post-turn backup: 0.16 m in reverse, started 3 cm off the line
    path = FollowPath.from_segments([('transit', np.array([[0.0, 0.0], [-0.16, 0.0]]), 'reverse')])
    log = run(PathFollower(path), (0.0, 0.03, 0.0), 20.0)
    assert log[-1][5].state == 'done'
    assert max(abs(yaw) for _, _, yaw, *_ in log) < math.radians(1.0)
    assert log[-1][0] == pytest.approx(-0.16, abs=0.02)


def test_stop_points_are_approached_creeping():
    """Near a stop point v ~ distance / final_approach_time, so a safety monitor that predicts
    latency + braking from the current speed never sees the robot going much past the point."""
    path = FollowPath.from_segments([('lane', np.array([[0.0, 0.0], [2.0, 0.0]]))])
    follower = PathFollower(path)
    log = run(follower, (0.0, 0.0, 0.0), 30.0)
    assert log[-1][5].state == 'done'
    c = follower.config
    for x, _, _, v, _, _ in log:
        to_go = 2.0 - x
        if 0.0 < to_go < 0.05:
            overshoot = 0.1 * v + v * v / (2 * 0.5) - to_go       # latency 0.1 s, decel 0.5
            assert overshoot < 0.01
            assert v <= to_go / c.final_approach_time + 0.02
    speeds = [v for *_, v, _, _ in log[:-1]]      # the last command is the stop at the goal
    assert max(abs(np.diff(speeds))) <= c.linear_decel * DT + 1e-9 and speeds[-1] < 0.07


def test_a_paused_follower_is_not_faulted_by_being_moved_and_reacquires_on_resume():
    # two legs at a right angle; paused in the turn, the robot is then backed 0.7 m along its
    # heading (the marking manoeuvre): no fault while held, and resuming re-acquires the leg
    path = FollowPath.from_segments([('lane', np.array([[0.0, 0.0], [4.0, 0.0], [4.0, 4.0]]))])
    f = PathFollower(path)
    log = run(f, (0.0, 0.0, 0.0), 60.0, on_step=lambda k, cmd: f.pause() if cmd.progress.leg == 1 else None)
    assert log[-1][5].state == 'paused'
    x, y, yaw = log[-1][:3]
    moved = (x - 0.7 * math.cos(yaw), y - 0.7 * math.sin(yaw), yaw)
    assert f.step(100.0, *moved).progress.state == 'paused'      # > max_cross_track, but held
    f.resume()
    log = run(f, moved, 60.0)
    assert all(p.state != 'fault' for *_, p in log) and log[-1][5].state == 'done'
    assert log[-1][1] == pytest.approx(4.0, abs=0.05)


def test_a_plan_whose_lanes_run_over_swept_ground_drives_them_at_transit_speed():
    from mine_robot.planning.plan import CoveragePlan, Segment
    plan = CoveragePlan([Segment('lane', np.array([[0.0, 0.0], [10.0, 0.0]]), 0, 0)])
    speeds = {}
    for swept in (False, True):
        plan.swept_lanes = swept
        path = FollowPath.from_plan(CoveragePlan.from_json(plan.to_json()))   # survives JSON
        log = run(PathFollower(path, FollowerConfig()), (0.0, 0.0, 0.0), 60.0)
        assert log[-1][5].state == 'done'
        speeds[swept] = max(v for _, _, _, v, _, _ in log)
    assert speeds[False] == pytest.approx(FollowerConfig().sweep_speed, abs=1e-6)
    assert speeds[True] == pytest.approx(FollowerConfig().transit_speed, abs=1e-6)


def test_a_new_follower_finds_its_place_on_a_plan_the_robot_is_half_way_through():
    """The whole graph restarted with the robot on the second lane: a new follower starts with the
    first leg, faults on the cross-track error, and the reset finds the leg the robot is on."""
    path = FollowPath.from_segments(boustrophedon())          # lanes along y = 0, 1, 2
    f = PathFollower(path)
    assert f.step(0.0, 3.0, 1.02, math.pi).progress.state == 'fault'
    assert f.reset_fault(3.0, 1.02, math.pi)
    first = f.step(0.1, 3.0, 1.02, math.pi).progress
    assert first.segment == 2 and first.distance == pytest.approx(6.0 + 1.0 + 3.0, abs=0.05)
    log = run(f, (3.0, 1.02, math.pi), 120.0)
    assert log[-1][5].state == 'done' and all(p.state != 'fault' for *_, p in log)
    assert math.hypot(log[-1][0] - 6.0, log[-1][1] - 2.0) < 0.05
    # at a corner two legs meet: the heading chooses (here the turn onto the last lane is done)
    g = PathFollower(path)
    g.step(0.0, 0.0, 1.6, 0.0)
    assert g.reset_fault(0.0, 2.0, 0.0) and g.leg == 4


def test_a_robot_that_ran_past_a_corner_goes_back_to_it_before_turning():
    """A late command (a starved computer) left the robot 0.11 m past a corner 0.5 m from the
    boundary; turning there would swing a wheel outside. It backs up to the corner along the
    ground it just covered, holding its heading, and turns there."""
    segs = [('transit', np.array([[0.0, 0.0], [4.0, 0.0]])),
            ('lane', np.array([[4.0, 0.0], [4.0, 3.0]]))]
    follower = PathFollower(FollowPath.from_segments(segs))
    state = {'jumped': False}
    x, y, yaw = 0.0, 0.0, 0.0
    log = []
    for k in range(int(60 / DT)):
        if not state['jumped'] and x > 3.9:
            x, state['jumped'] = 4.11, True          # the late stop: 0.11 m past the corner
        cmd = follower.step(k * DT, x, y, yaw)
        log.append((x, y, yaw, cmd.v, cmd.w, cmd.progress.state))
        x += cmd.v * math.cos(yaw) * DT
        y += cmd.v * math.sin(yaw) * DT
        yaw += cmd.w * DT
        if cmd.progress.state == 'done':
            break
    states = [s for *_, s in log]
    assert 'return' in states and states[-1] == 'done'
    back = [(x, yaw, v) for x, _y, yaw, v, _w, s in log if s == 'return']
    speeds = [v for _, _, v in back]          # it brakes (the ramp), then reverses
    first_back = next(i for i, v in enumerate(speeds) if v < 0)
    assert all(v < 0 for v in speeds[first_back:])
    assert all(a >= b for a, b in zip(speeds, speeds[1:first_back]))
    assert all(abs(yaw) < 0.02 for _, yaw, _ in back)
    turning = [(x, y) for x, y, _yaw, v, w, s in log if s == 'turn' and abs(w) > 0.05]
    assert turning and all(abs(x - 4.0) < 0.03 and abs(y) < 0.01 for x, y in turning)
    assert math.hypot(log[-1][0] - 4.0, log[-1][1] - 3.0) < 0.05
    # a small run past the corner (within the tolerance) turns where it stands, as before
    again = PathFollower(FollowPath.from_segments(segs))
    x, yaw = 4.03, 0.0
    again.step(0.0, 3.99, 0.0, 0.0)
    assert again.step(DT, x, 0.0, yaw).progress.state == 'turn'


def test_a_robot_carried_past_the_end_of_a_lane_by_late_commands_turns_at_the_corner():
    """The commands reach the wheels 0.5 s late (a starved computer): the robot arrives at the
    lane end at speed and runs on after the follower has switched to the point turn. It does not
    turn out there (near a boundary that puts a wheel outside) but comes back to the corner."""
    segs = [('lane', np.array([[0.0, 0.0], [4.0, 0.0]])),
            ('lane', np.array([[4.0, 0.0], [4.0, 2.0]]))]
    follower = PathFollower(FollowPath.from_segments(segs))
    x, y, yaw = 0.0, 0.0, 0.0
    queue = [(0.0, 0.0)] * 10                         # 10 control periods of latency
    log = []
    for k in range(int(80 / DT)):
        cmd = follower.step(k * DT, x, y, yaw)
        queue.append((cmd.v, cmd.w))
        v, w = queue.pop(0)
        log.append((x, y, yaw, v, w, cmd.progress.state))
        x += v * math.cos(yaw) * DT
        y += v * math.sin(yaw) * DT
        yaw += w * DT
        if cmd.progress.state == 'done' and abs(v) < 1e-6:
            break
    assert max(x for x, *_ in log) > 4.06                      # it did run past the corner
    assert 'return' in [s for *_, s in log]
    # out there it hardly turns (what turning it does are the commands already under way when it
    # passed the corner); the turn to the next lane happens back at the corner
    assert max(abs(yaw) for x, y, yaw, *_ in log if x > 4.06 and abs(y) < 0.1) < 0.15
    turned = next(i for i, (_x, _y, yaw, *_rest) in enumerate(log) if yaw > 1.0)
    assert abs(log[turned][0] - 4.0) < 0.06
    assert math.hypot(log[-1][0] - 4.0, log[-1][1] - 2.0) < 0.1
