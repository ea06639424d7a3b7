"""mission_manager and marking nodes over real DDS: services, status, marking with a real
(test) marker that acknowledges or never does, and start-up configuration errors."""

import json
import math
import os
from pathlib import Path
import subprocess
import sys
import time

import pytest

from mine_robot.planning.area import area_to_geojson, local_area

pytestmark = pytest.mark.ros

from mine_robot.robot import load_robot  # noqa: E402

AHEAD = load_robot().metal_detector.xyz[0]
NOZZLE_X = load_robot().marker.xyz[0]


@pytest.fixture
def area_file(tmp_path):
    path = tmp_path / 'area.geojson'
    path.write_text(json.dumps(area_to_geojson(local_area([(0, 0), (6, 0), (6, 2), (0, 2)]))))
    return path


def plan(ys=(0.5, 1.5)):
    segs = [{'role': 'lane', 'lane': k, 'seq': k,
             'points': [(-1.2, y), (6.2 - AHEAD, y)] if k % 2 == 0 else [(7.2, y), (0.0 - 0.2 + AHEAD, y)]}
            for k, y in enumerate(ys)]
    return json.dumps({'segments': segs})


def odom(x, y, yaw):
    from nav_msgs.msg import Odometry
    msg = Odometry()
    msg.header.frame_id = 'map'
    msg.pose.pose.position.x, msg.pose.pose.position.y = float(x), float(y)
    msg.pose.pose.orientation.z, msg.pose.pose.orientation.w = math.sin(yaw / 2), math.cos(yaw / 2)
    return msg


def status_of(collector, pred, timeout=15.0):
    msgs = collector.wait_for(lambda ms: any(pred(json.loads(m.data)) for m in ms), timeout)
    return next(json.loads(m.data) for m in msgs if pred(json.loads(m.data)))


def test_mission_manager_services_status_and_exports(ros_context, ros_node_factory, tmp_path, area_file):
    from std_msgs.msg import String
    from std_srvs.srv import Trigger

    from mine_robot.nodes.mission_manager import MissionManagerNode
    from mine_robot.ros import qos
    from mine_robot.ros.testing import BackgroundSpinner, MessageCollector, call_service

    out = tmp_path / 'out'
    node = MissionManagerNode(context=ros_context, parameter_overrides=[
        _p('area_file', str(area_file)), _p('output_dir', str(out)), _p('export_png', False),
        _p('follower', ''), _p('status_rate', 20.0)])
    test = ros_node_factory('mission_test')
    status = MessageCollector(test, String, 'mission/status', qos.LATCHED)
    plan_pub = test.create_publisher(String, 'coverage/plan', qos.LATCHED)
    odom_pub = test.create_publisher(__import__('nav_msgs.msg', fromlist=['Odometry']).Odometry,
                                     'odometry/filtered', qos.RELIABLE)
    targets_pub = test.create_publisher(String, 'targets/json', qos.RELIABLE)
    swept = MessageCollector(test, String, 'mission/swept', qos.LATCHED)
    try:
        with BackgroundSpinner(ros_context, node, test):
            status_of(status, lambda s: s['state'] == 'idle')
            r = call_service(test, Trigger, 'mission/resume')
            assert not r.success and 'not paused' in r.message
            r = call_service(test, Trigger, 'mission/start')
            assert r.success and r.message.startswith('planning'), r.message
            r = call_service(test, Trigger, 'mission/start')
            assert not r.success and 'already running (state planning)' in r.message
            plan_pub.publish(String(data=plan()))
            status_of(status, lambda s: s['state'] == 'sweeping' and s['lanes_total'] == 2)
            targets_pub.publish(String(data=json.dumps({'targets': [
                {'id': 4, 'x': 2.0, 'y': 0.5, 'confidence': 0.9, 'classification': 'mine',
                 'settled': True}]})))
            s = status_of(status, lambda s: s['targets_found'] == 1)
            assert s['pending_marks'] == [{'id': '4', 'x': 2.0, 'y': 0.5, 'classification': 'mine'}]
            for i in range(60):  # first lane
                odom_pub.publish(odom(-1.2 + (7.4 - AHEAD) * i / 59, 0.5, 0.0))  # to the lane end
                time.sleep(0.005)
            s = status_of(status, lambda s: s['lanes_done'] == 1)
            assert 40 < s['percent_covered'] < 60 and s['eta_s'] > 0
            # the swept ground for a restarted safety monitor: the first lane's strip
            import shapely
            msgs = swept.wait_for(lambda ms: any(shapely.from_wkt(m.data).area > 4.0 for m in ms), 5.0)
            strip = shapely.from_wkt(msgs[-1].data)
            assert strip.contains(shapely.Point(3.0, 0.5)) and not strip.contains(shapely.Point(3.0, 1.8))
            assert call_service(test, Trigger, 'mission/pause').success
            status_of(status, lambda s: s['state'] == 'paused')
            r = call_service(test, Trigger, 'mission/pause')
            assert not r.success and 'already paused' in r.message
            assert call_service(test, Trigger, 'mission/resume').success
            r = call_service(test, Trigger, 'mission/abort')
            assert r.success and str(out) in r.message
            s = status_of(status, lambda s: s['state'] == 'aborted')
            assert s['eta_s'] == 0.0
    finally:
        node.close()
        node.destroy_node()
    report = json.loads((out / 'report.json').read_text())
    assert report['state'] == 'aborted' and report['lanes'] == {'total': 2, 'done': 1}
    assert report['targets']['mine'] == 1 and report['marks']['hazards_unmarked'] == ['4']
    assert (out / 'mission.db').exists()


def test_start_with_a_bad_area_file_is_refused_by_the_service(ros_context, ros_node_factory, tmp_path):
    from std_srvs.srv import Trigger

    from mine_robot.nodes.mission_manager import MissionManagerNode
    from mine_robot.ros.testing import BackgroundSpinner, call_service

    bad = tmp_path / 'area.geojson'
    bad.write_text('not json')
    node = MissionManagerNode(context=ros_context, parameter_overrides=[
        _p('area_file', str(bad)), _p('output_dir', str(tmp_path / 'o')), _p('follower', '')])
    test = ros_node_factory('bad_area_test')
    try:
        with BackgroundSpinner(ros_context, node, test):
            r = call_service(test, Trigger, 'mission/start')
            assert not r.success and 'not valid JSON' in r.message
            assert node.mission.sm.state == 'idle'
    finally:
        node.close()
        node.destroy_node()


class _Marker:
    """A test marker device on the ROS side: acknowledges FIRE commands (or never does)."""

    def __init__(self, node, answer: bool):
        from std_msgs.msg import String

        from mine_robot.ros import qos
        self.commands = []
        self.answer = answer
        self.pub = node.create_publisher(String, 'marker/status', qos.RELIABLE)
        node.create_subscription(String, 'marker/command', self._on_cmd, qos.RELIABLE)

    def _on_cmd(self, msg):
        from std_msgs.msg import String
        cmd = json.loads(msg.data)
        self.commands.append(cmd)
        if self.answer:
            self.pub.publish(String(data=json.dumps({'type': 'ack', 'cmd_id': cmd['cmd_id'], 'ok': True})))
            self.pub.publish(String(data=json.dumps({'type': 'done', 'cmd_id': cmd['cmd_id'],
                                                     'slide_mm': cmd['slide_mm']})))


@pytest.mark.parametrize('answer', [True, False])
def test_marking_node_marks_or_reports_failure(ros_context, ros_node_factory, answer):
    from nav_msgs.msg import Odometry
    from std_msgs.msg import String

    from mine_robot.nodes.marking import MarkingNode
    from mine_robot.ros import qos
    from mine_robot.ros.testing import BackgroundSpinner, MessageCollector

    node = MarkingNode(context=ros_context, parameter_overrides=[
        _p('ack_timeout', 0.3), _p('retries', 2), _p('control_rate', 50.0)])
    test = ros_node_factory('marking_test')
    marker = _Marker(test, answer)
    events = MessageCollector(test, String, 'marking/events', qos.RELIABLE)
    status_pub = test.create_publisher(String, 'mission/status', qos.LATCHED)
    odom_pub = test.create_publisher(Odometry, 'odometry/filtered', qos.RELIABLE)
    try:
        with BackgroundSpinner(ros_context, node, test):
            # the robot stands with the target right under the nozzle, 0.3 m to its left
            odom_pub.publish(odom(1.0, 0.0, 0.0))
            time.sleep(0.3)
            odom_pub.publish(odom(1.0, 0.0, 0.0))
            status_pub.publish(String(data=json.dumps({
                'state': 'sweeping', 'hazards': [[1.0 + NOZZLE_X, 0.3]],
                'pending_marks': [{'id': '9', 'x': 1.0 + NOZZLE_X, 'y': 0.3, 'classification': 'mine'}]})))
            msgs = events.wait_for(lambda ms: any('outcome' in m.data for m in ms), timeout=15.0)
    finally:
        node.destroy_node()
    evs = [json.loads(m.data) for m in msgs]
    assert evs[0] == {'event': 'started', 'target_id': '9'}
    out = evs[-1]
    assert marker.commands and marker.commands[0]['slide_mm'] == 300
    assert marker.commands[0]['name'] == 'FIRE' and marker.commands[0]['target'] == '9'
    if answer:
        assert out['status'] == 'marked' and out['attempts'] == 1
        assert math.dist((out['x'], out['y']), (1.0 + NOZZLE_X, 0.3)) < 1e-6
    else:
        assert out['status'] == 'failed' and out['attempts'] == 3
        assert 'no acknowledgement' in out['reason']
        # a lost ack is retried with the same command id (the device de-duplicates)
        assert [c['cmd_id'] for c in marker.commands] == [marker.commands[0]['cmd_id']] * 3


@pytest.mark.parametrize('exe,args,message', [
    ('mission_manager', ['-p', 'coverage_goal:=2.0'], 'coverage_goal'),
    ('marking', ['-p', 'clutter_policy:=paint_it_pink'], 'clutter_policy'),
])
def test_bad_parameters_exit_1_with_a_clear_message(exe, args, message):
    binary = Path(sys.executable).parent / exe
    result = subprocess.run([str(binary), '--ros-args', *args], capture_output=True, text=True,
                            timeout=60, env={**os.environ})
    assert result.returncode == 1
    assert 'fatal configuration error' in result.stderr and message in result.stderr


def _p(name, value):
    from rclpy.parameter import Parameter
    return Parameter(name, value=value)
