"""Driving nodes over real DDS: safety_monitor + twist_mux stop on e-stop and on pose loss, the
e-stop reset service, lane_follower output, joy_teleop, and start-up config errors (exit 1)."""

import contextlib
import json
import math
import os
from pathlib import Path
import subprocess
import sys
import time
import zlib

import numpy as np
import pytest

pytestmark = pytest.mark.ros


def _odom(sigma, x=0.0, y=0.0, yaw=0.0, stamp=None):
    from nav_msgs.msg import Odometry

    from mine_robot.nodes._driving import yaw_to_quaternion
    msg = Odometry()
    msg.header.frame_id = 'map'
    if stamp is not None:
        msg.header.stamp = stamp
    msg.pose.pose.position.x, msg.pose.pose.position.y = x, y
    msg.pose.pose.orientation = yaw_to_quaternion(yaw)
    cov = [0.0] * 36
    cov[0] = cov[7] = sigma ** 2
    msg.pose.covariance = cov
    return msg


class _Fed:
    """A safety monitor driven by a test node that publishes, every 50 ms,
    the pose ``pose`` (mutable: x, y, sigma) and a 0.3 m/s autonomy command."""

    def __init__(self, driver, status, pose):
        self.driver, self.status, self.pose = driver, status, pose

    def last(self) -> dict:
        return json.loads(self.status.messages[-1].data) if self.status.messages else {}

    def wait(self, condition, timeout: float = 5.0) -> None:
        self.status.wait_for(lambda m: m and condition(self.last()), timeout=timeout)


@contextlib.contextmanager
def _safety_fed(ros_context, ros_node_factory, overrides, publishers=(), **pose):
    """``publishers``: (topic, type, qos) the test publishes on, made before spinning starts
    (``fed.pub[topic]``)."""
    from geometry_msgs.msg import Twist
    from nav_msgs.msg import Odometry
    from std_msgs.msg import String

    from mine_robot.nodes._driving import twist
    from mine_robot.nodes.safety_monitor import SafetyMonitorNode
    from mine_robot.ros import qos
    from mine_robot.ros.testing import BackgroundSpinner, MessageCollector

    safety = SafetyMonitorNode(context=ros_context, parameter_overrides=list(overrides))
    driver = ros_node_factory('driver')
    cmd_pub = driver.create_publisher(Twist, 'cmd_vel/autonomy', qos.RELIABLE)
    pose_pub = driver.create_publisher(Odometry, 'odometry/filtered', 10)
    fed = _Fed(driver, MessageCollector(driver, String, 'safety/status', qos.LATCHED),
               dict({'x': 0.0, 'y': 0.0, 'sigma': 0.01}, **pose))
    fed.pub = {topic: driver.create_publisher(kind, topic, profile) for topic, kind, profile in publishers}

    def tick():
        p = fed.pose
        pose_pub.publish(_odom(p['sigma'], x=p['x'], y=p['y'], stamp=driver.get_clock().now().to_msg()))
        cmd_pub.publish(twist(0.3, 0.0))

    try:
        with BackgroundSpinner(ros_context, safety, driver):
            fed.timer = driver.create_timer(0.05, tick)
            yield fed
            driver.destroy_timer(fed.timer)
    finally:
        safety.destroy_node()


def test_estop_and_pose_covariance_stop_the_mux(ros_context, ros_node_factory):
    from geometry_msgs.msg import Twist
    from nav_msgs.msg import Odometry
    from rclpy.parameter import Parameter
    from std_msgs.msg import Bool, String
    from std_srvs.srv import Trigger

    from mine_robot.nodes._driving import twist
    from mine_robot.nodes.safety_monitor import SafetyMonitorNode
    from mine_robot.nodes.twist_mux import TwistMuxNode
    from mine_robot.ros import qos
    from mine_robot.ros.testing import BackgroundSpinner, MessageCollector, call_service

    off = [Parameter(f'{r}_enabled', value=False) for r in ('geofence', 'swept_ground', 'sensor_watchdog')]
    safety = SafetyMonitorNode(context=ros_context, parameter_overrides=off)
    mux = TwistMuxNode(context=ros_context)
    driver = ros_node_factory('driver')
    cmd_pub = driver.create_publisher(Twist, 'cmd_vel/autonomy', qos.RELIABLE)
    pose_pub = driver.create_publisher(Odometry, 'odometry/filtered', 10)
    estop_pub = driver.create_publisher(Bool, 'estop', qos.LATCHED)
    out = MessageCollector(driver, Twist, 'cmd_vel', qos.RELIABLE)
    status = MessageCollector(driver, String, 'safety/status', qos.LATCHED)
    sigma = [0.01]

    def tick():
        pose_pub.publish(_odom(sigma[0], stamp=driver.get_clock().now().to_msg()))
        cmd_pub.publish(twist(0.3, 0.0))

    try:
        with BackgroundSpinner(ros_context, safety, mux, driver):
            timer = driver.create_timer(0.05, tick)
            out.wait_for(lambda m: any(x.linear.x > 0.1 for x in m), timeout=15.0)
            n = len(out.messages)
            estop_pub.publish(Bool(data=True))
            out.wait_for(lambda m: any(x.linear.x == 0.0 for x in m[n:]), timeout=5.0)
            status.wait_for(lambda m: 'estop' in json.loads(m[-1].data)['rules'], timeout=5.0)
            time.sleep(0.3)
            after = out.messages[n:]
            first_stop = next(i for i, x in enumerate(after) if x.linear.x == 0.0)
            assert all(x.linear.x == 0.0 for x in after[first_stop:])   # nothing moves after it
            assert not call_service(driver, Trigger, 'safety_monitor/reset_estop').success
            estop_pub.publish(Bool(data=False))
            time.sleep(0.3)
            assert out.messages[-1].linear.x == 0.0          # releasing does not un-latch
            deadline = time.monotonic() + 5.0                # reset once the release has arrived
            while not call_service(driver, Trigger, 'safety_monitor/reset_estop').success:
                assert time.monotonic() < deadline, 'reset refused after the e-stop was released'
                time.sleep(0.2)
            n = len(out.messages)
            out.wait_for(lambda m: any(x.linear.x > 0.05 for x in m[n:]), timeout=5.0)
            sigma[0] = 0.5                                    # RTK lost: covariance above limit
            status.wait_for(lambda m: 'pose_covariance' in json.loads(m[-1].data)['rules'], timeout=5.0)
            n = len(out.messages)
            out.wait_for(lambda m: any(x.linear.x == 0.0 for x in m[n:]), timeout=5.0)
            after = out.messages[n:]
            first_stop = next(i for i, x in enumerate(after) if x.linear.x == 0.0)
            time.sleep(0.3)
            assert all(x.linear.x == 0.0 for x in out.messages[n + first_stop:])
            driver.destroy_timer(timer)
            # no pose at all -> pose_stale
            status.wait_for(lambda m: 'pose_stale' in json.loads(m[-1].data)['rules'], timeout=5.0)
    finally:
        safety.destroy_node()
        mux.destroy_node()


def test_lane_follower_follows_a_path_and_joy_teleop_needs_the_deadman(ros_context, ros_node_factory):
    from geometry_msgs.msg import PoseStamped, Twist
    from nav_msgs.msg import Odometry, Path
    from sensor_msgs.msg import Joy
    from std_msgs.msg import String

    from mine_robot.nodes.joy_teleop import JoyTeleopNode
    from mine_robot.nodes.lane_follower import LaneFollowerNode
    from mine_robot.ros import qos
    from mine_robot.ros.testing import BackgroundSpinner, MessageCollector

    follower = LaneFollowerNode(context=ros_context)
    joy = JoyTeleopNode(context=ros_context)
    driver = ros_node_factory('driver2')
    path_pub = driver.create_publisher(Path, 'coverage/path', qos.LATCHED)
    pose_pub = driver.create_publisher(Odometry, 'odometry/filtered', 10)
    joy_pub = driver.create_publisher(Joy, 'joy', qos.SENSOR)
    auto = MessageCollector(driver, Twist, 'cmd_vel/autonomy', qos.RELIABLE)
    teleop = MessageCollector(driver, Twist, 'cmd_vel/teleop', qos.RELIABLE)
    progress = MessageCollector(driver, String, 'lane_follower/progress')
    path = Path()
    path.header.frame_id = 'map'
    for x in (0.0, 5.0):
        p = PoseStamped()
        p.pose.position.x = x
        path.poses.append(p)
    try:
        with BackgroundSpinner(ros_context, follower, joy, driver):
            path_pub.publish(path)
            timer = driver.create_timer(0.05, lambda: pose_pub.publish(_odom(0.01, x=1.0, y=0.05)))
            auto.wait_for(lambda m: any(x.linear.x > 0.05 for x in m), timeout=15.0)
            prog = json.loads(progress.wait_for(1)[-1].data)
            assert prog['cross_track'] == pytest.approx(0.05, abs=1e-6) and prog['role'] == 'lane'
            assert auto.messages[-1].angular.z < 0.0           # steering back right onto the lane
            driver.destroy_timer(timer)
            joy_pub.publish(Joy(axes=[0.0, 1.0], buttons=[0, 0, 0, 0, 0, 0]))
            time.sleep(0.5)
            assert teleop.messages == []
            joy_pub.publish(Joy(axes=[0.0, 1.0], buttons=[0, 0, 0, 0, 1, 0]))
            got = teleop.wait_for(1, timeout=5.0)
            assert got[0].linear.x == pytest.approx(0.3)
    finally:
        follower.destroy_node()
        joy.destroy_node()


@pytest.mark.parametrize('node,args,message', [
    ('localization', [], 'datum_lat and datum_lon are required'),
    ('twist_mux', ['-p', 'rate:=0.0'], "parameter 'rate'"),
    ('safety_monitor', ['-p', 'area_file:=/nonexistent/area.geojson'], 'safety_monitor'),
    ('safety_monitor', [], 'no search area'),
])
def test_bad_configuration_exits_1_with_a_clear_message(node, args, message):
    exe = Path(sys.executable).parent / node
    env = dict(os.environ)
    result = subprocess.run([str(exe), '--ros-args', *args], capture_output=True, text=True,
                            timeout=60, env=env)
    assert result.returncode == 1, result.stderr
    assert message in result.stderr


def test_config_file_parses_for_every_node(ros_context):
    """config/control.yaml loads as a ROS parameter file (node-keyed sections)."""
    import rclpy
    from rclpy.context import Context

    from mine_robot.nodes.twist_mux import TwistMuxNode
    from mine_robot.resources import resource

    ctx = Context()
    rclpy.init(context=ctx, args=['--ros-args', '--params-file', str(resource('config', 'control.yaml'))])
    try:
        node = TwistMuxNode(context=ctx)
        assert node.get_parameter('safety_timeout').value == 0.5
        node.destroy_node()
    finally:
        rclpy.try_shutdown(context=ctx)


def test_lane_follower_waits_for_converged_localization_and_resume_clears_a_fault(ros_context,
                                                                                   ros_node_factory):
    from diagnostic_msgs.msg import DiagnosticArray
    from geometry_msgs.msg import PoseStamped, Twist
    from nav_msgs.msg import Odometry, Path
    from rclpy.parameter import Parameter
    from std_msgs.msg import String
    from std_srvs.srv import Trigger

    from mine_robot.nodes.lane_follower import LaneFollowerNode
    from mine_robot.ros import qos
    from mine_robot.ros.testing import BackgroundSpinner, MessageCollector, call_service

    follower = LaneFollowerNode(context=ros_context,
                                parameter_overrides=[Parameter('converge_timeout', value=1.5)])
    driver = ros_node_factory('driver3')
    path_pub = driver.create_publisher(Path, 'coverage/path', qos.LATCHED)
    pose_pub = driver.create_publisher(Odometry, 'odometry/filtered', 10)
    auto = MessageCollector(driver, Twist, 'cmd_vel/autonomy', qos.RELIABLE)
    progress = MessageCollector(driver, String, 'lane_follower/progress')
    diag = MessageCollector(driver, DiagnosticArray, '/diagnostics', 10)

    def follower_status(m):
        return [s for a in m for s in a.status if s.name == 'lane_follower']
    path = Path()
    path.header.frame_id = 'map'
    for x in (0.0, 8.0):
        p = PoseStamped()
        p.pose.position.x = x
        path.poses.append(p)
    pose = {'sigma': 0.3, 'yaw_sigma': 0.01, 'y': 0.0}

    def tick():
        msg = _odom(pose['sigma'], x=1.0, y=pose['y'])
        cov = list(msg.pose.covariance)
        cov[35] = pose['yaw_sigma'] ** 2
        msg.pose.covariance = cov
        pose_pub.publish(msg)

    try:
        with BackgroundSpinner(ros_context, follower, driver):
            path_pub.publish(path)
            driver.create_timer(0.05, tick)
            auto.wait_for(20)
            assert all(m.linear.x == 0.0 and m.angular.z == 0.0 for m in auto.messages)
            assert progress.messages == []                    # not following yet: sigma 0.3 m
            pose.update(sigma=0.02, yaw_sigma=1.0)            # position good, heading unknown
            n = len(auto.messages)
            auto.wait_for(n + 10)
            assert all(m.linear.x == 0.0 for m in auto.messages[n:])
            # still waiting after converge_timeout: an error naming what is missing
            diag.wait_for(lambda m: any(s.level == b'\x02' and 'heading 1.000 rad' in s.message
                                        and 'will not move' in s.message for s in follower_status(m)),
                          timeout=10.0)
            pose['yaw_sigma'] = 0.05                          # converged: it starts
            auto.wait_for(lambda m: any(x.linear.x > 0.05 for x in m), timeout=10.0)
            pose['y'] = 1.0                                   # 1 m off the lane: fault
            progress.wait_for(lambda m: json.loads(m[-1].data)['state'] == 'fault', timeout=5.0)
            time.sleep(0.3)
            assert auto.messages[-1].linear.x == 0.0
            pose['y'] = 0.02                                  # back on the lane
            time.sleep(0.3)                                   # (that pose has reached the follower)
            assert call_service(driver, Trigger, 'lane_follower/resume').success
            progress.wait_for(lambda m: json.loads(m[-1].data)['state'] == 'track', timeout=10.0)
            n = len(auto.messages)
            auto.wait_for(lambda m: any(x.linear.x > 0.05 for x in m[n:]), timeout=10.0)
    finally:
        follower.destroy_node()


def test_lane_follower_keeps_its_progress_when_the_same_plan_arrives_again(ros_context, ros_node_factory):
    """Regression (simulated sweep): a re-delivered latched plan restarted the path from its
    beginning while the robot was 9 m along it, and the follower faulted on cross-track. The same
    plan again keeps the progress; a different plan replaces it."""
    from geometry_msgs.msg import Twist
    from nav_msgs.msg import Odometry
    from std_msgs.msg import String

    from mine_robot.nodes.lane_follower import LaneFollowerNode
    from mine_robot.planning.plan import CoveragePlan, Segment
    from mine_robot.ros import qos
    from mine_robot.ros.testing import BackgroundSpinner, MessageCollector

    plan = CoveragePlan([Segment('transit', np.array([[0.0, -3.0], [0.0, 0.0]]), 0),
                         Segment('lane', np.array([[0.0, 0.0], [10.0, 0.0]]), 1, 0)], {}, 1.1, 1.0)
    other = CoveragePlan([Segment('lane', np.array([[0.0, 3.0], [10.0, 3.0]]), 0, 0)], {}, 1.1, 1.0)
    follower = LaneFollowerNode(context=ros_context)
    driver = ros_node_factory('driver3')
    plan_pub = driver.create_publisher(String, 'coverage/plan', qos.LATCHED)
    pose_pub = driver.create_publisher(Odometry, 'odometry/filtered', 10)
    MessageCollector(driver, Twist, 'cmd_vel/autonomy', qos.RELIABLE)
    progress = MessageCollector(driver, String, 'lane_follower/progress')
    pose = {'x': 0.0, 'y': -2.5, 'yaw': math.pi / 2}

    def latest(m):
        return json.loads(m[-1].data) if m else {}

    try:
        with BackgroundSpinner(ros_context, follower, driver):
            timer = driver.create_timer(0.05, lambda: pose_pub.publish(_odom(0.01, **pose)))
            plan_pub.publish(String(data=plan.to_json()))
            progress.wait_for(lambda m: latest(m).get('distance', 0) > 0.4, timeout=15.0)
            pose.update(y=0.0)                              # at the corner, still heading north
            progress.wait_for(lambda m: latest(m).get('leg', 0) >= 1, timeout=15.0)
            pose.update(yaw=0.0)                            # turned east onto the lane ...
            time.sleep(0.3)
            pose.update(x=6.0)                              # ... and driven 6 m along it
            progress.wait_for(lambda m: latest(m).get('distance', 0) > 8.5, timeout=15.0)
            plan_pub.publish(String(data=plan.to_json()))   # the same plan, re-delivered
            time.sleep(0.5)
            last = json.loads(progress.messages[-1].data)
            assert last['distance'] > 8.5 and last['state'] != 'fault', last
            # progress names the plan it is along (the mission ignores a 'done' of another plan)
            assert last['plan_crc'] == zlib.crc32(plan.to_json().encode())
            plan_pub.publish(String(data=other.to_json()))  # a new plan does replace it
            progress.wait_for(lambda m: abs(latest(m).get('cross_track', 0)) > 2.0
                              or latest(m).get('state') == 'fault', timeout=15.0)
            assert latest(progress.messages)['plan_crc'] == zlib.crc32(other.to_json().encode())
            driver.destroy_timer(timer)
    finally:
        follower.destroy_node()


def test_safety_monitor_keeps_wheels_off_known_hazards_from_fusion_and_mission(ros_context, ros_node_factory):
    from rclpy.parameter import Parameter
    from std_msgs.msg import String

    from mine_robot.ros import qos

    off = [Parameter(f'{r}_enabled', value=False) for r in ('geofence', 'swept_ground', 'sensor_watchdog')]
    topics = [('targets/json', String, qos.RELIABLE), ('mission/status', String, qos.LATCHED)]
    with _safety_fed(ros_context, ros_node_factory, off, topics, x=10.0, y=5.0) as fed:
        targets_pub, mission_pub = fed.pub['targets/json'], fed.pub['mission/status']
        fed.wait(lambda s: not s['stop'], timeout=15.0)
        # clutter right in front of the left wheel is not a hazard; a mine there is
        targets_pub.publish(String(data=json.dumps({'targets': [
            {'id': 3, 'x': 10.55, 'y': 5.28, 'classification': 'clutter'}]})))
        time.sleep(0.5)
        assert not fed.last()['stop'], fed.last()
        targets_pub.publish(String(data=json.dumps({'targets': [
            {'id': 4, 'x': 10.55, 'y': 5.28, 'classification': 'mine'}]})))
        fed.wait(lambda s: 'hazard' in s.get('rules', ()))
        assert any('known hazard target 4' in r for r in fed.last()['reasons'])
        # fusion re-classifies it as clutter: the wheels may pass
        targets_pub.publish(String(data=json.dumps({'targets': [
            {'id': 4, 'x': 10.55, 'y': 5.28, 'classification': 'clutter'}]})))
        fed.wait(lambda s: not s['stop'])
        # a hazard the mission recorded (fusion restarted and forgot it) holds the robot too
        fed.pose['x'] = 20.0
        fed.wait(lambda s: not s['stop'])
        mission_pub.publish(String(data=json.dumps({'state': 'sweeping', 'hazards': [[20.55, 4.72]]})))
        fed.wait(lambda s: 'hazard' in s.get('rules', ()))
        assert any('recorded at 20.55,4.72' in r for r in fed.last()['reasons'])


def test_a_restarted_safety_monitor_takes_the_swept_ground_from_the_mission(ros_context, ros_node_factory,
                                                                          tmp_path):
    """After a restart its raster holds only safe ground: under a robot standing in the middle of
    the field everything counts as unswept, and a robot already on unswept ground may drive on as
    long as it gets no worse, so the rule would protect nothing. The mission's latched
    mission/swept restores it: the wheels may not leave the swept ground."""
    from rclpy.parameter import Parameter
    from std_msgs.msg import String

    from mine_robot.planning.area import area_to_geojson, local_area
    from mine_robot.ros import qos

    area = tmp_path / 'area.geojson'
    area.write_text(json.dumps(area_to_geojson(local_area([(0, 0), (8, 0), (8, 4), (0, 4)]))))
    params = [Parameter('area_file', value=str(area)), Parameter('sensor_watchdog_enabled', value=False)]
    # front wheels' edge at 5.93 m; braking from 0.3 m/s takes them past 6.0 m
    with _safety_fed(ros_context, ros_node_factory, params, [('mission/swept', String, qos.LATCHED)],
                     x=5.6, y=2.0) as fed:
        swept_pub = fed.pub['mission/swept']
        fed.wait(lambda s: any('wheels are on' in w for w in s['warnings']), timeout=15.0)
        assert not fed.last()['stop'], fed.last()   # nothing known: "no worse" lets it go
        # the mission: the detector has swept x < 6 m
        swept_pub.publish(String(data='MULTIPOLYGON (((0 0, 6 0, 6 4, 0 4, 0 0)))'))
        fed.wait(lambda s: 'swept_ground' in s.get('rules', ()))
        fed.pose['x'] = 3.0                          # well inside: free to drive
        fed.wait(lambda s: not s['stop'])
        swept_pub.publish(String(data='LINESTRING (0 0, 1 1)'))     # not an area: ignored
        time.sleep(0.3)
        assert not fed.last()['stop'], fed.last()


def test_localization_keeps_its_estimate_in_pose_file_and_takes_the_heading_from_it(ros_context, tmp_path):
    """A restart after a crash: the standing robot's heading comes from the saved estimate (GNSS
    cannot tell it at standstill); an unusable file leaves the heading to be learned."""
    from rclpy.parameter import Parameter

    from mine_robot.nodes.localization import LocalizationNode

    pose_file = tmp_path / 'localization_pose.json'

    def node(**extra):
        params = [Parameter('datum_lat', value=44.77), Parameter('datum_lon', value=17.19),
                  Parameter('pose_file', value=str(pose_file))]
        params += [Parameter(k, value=v) for k, v in extra.items()]
        return LocalizationNode(context=ros_context, parameter_overrides=params)

    first = node()
    try:
        first.ekf.set_heading(-1.5, 0.01)
        first._save_pose(263.0)
        first._save_pose(263.5)     # nothing changed within a second: not written again
        assert json.loads(pose_file.read_text())['t'] == 263.0
        first._save_pose(264.01)    # a second later: written
        assert json.loads(pose_file.read_text())['t'] == 264.01
        first.ekf.set_heading(-1.5355, 0.01)
        first._save_pose(264.02)    # the heading moved: written at once
    finally:
        first.destroy_node()
    saved = json.loads(pose_file.read_text())
    assert saved['t'] == 264.02 and saved['yaw'] == pytest.approx(-1.5355)
    again = node(initial_yaw=0.0)       # the scenario's start heading: the saved one is newer
    try:
        assert float(again.ekf.x[2]) == pytest.approx(-1.5355)
        assert again.ekf.yaw_sigma() == pytest.approx(0.05)      # as known as a start heading
    finally:
        again.destroy_node()
    for text in ('{"yaw": "north"}', '{"t": 1.0, "yaw": 0.3, "yaw_sigma": 0.9}'):
        pose_file.write_text(text)                              # unusable, or too uncertain
        broken = node()
        try:
            assert broken.ekf.yaw_sigma() > 1.0                  # unknown: learned from motion
        finally:
            broken.destroy_node()
