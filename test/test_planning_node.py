"""coverage_planner node: real rclpy over DDS — plans an area file and publishes the latched
Path, plan JSON and markers; a bad parameter makes the process exit 1 with a clear message."""

import os
from pathlib import Path
import subprocess
import sys

import pytest

pytestmark = pytest.mark.ros
REPO = Path(__file__).resolve().parent.parent
AREA = REPO / 'sim' / 'areas' / 'small_rectangle.geojson'


def test_node_plans_and_late_subscribers_get_the_latched_plan(ros_context, ros_node_factory):
    from nav_msgs.msg import Path as PathMsg
    from rclpy.parameter import Parameter
    from std_msgs.msg import String
    from std_srvs.srv import Trigger
    from visualization_msgs.msg import MarkerArray

    from mine_robot.nodes.coverage_planner import CoveragePlannerNode
    from mine_robot.planning.plan import CoveragePlan
    from mine_robot.ros import qos
    from mine_robot.ros.testing import BackgroundSpinner, MessageCollector, call_service

    node = CoveragePlannerNode(context=ros_context, parameter_overrides=[
        Parameter('area_file', value=str(AREA)), Parameter('overlap', value=0.1)])
    listener = ros_node_factory('plan_listener')
    try:
        with BackgroundSpinner(ros_context, node, listener):
            # subscribe after the plan was published: transient-local delivers it
            paths = MessageCollector(listener, PathMsg, 'coverage/path', qos.LATCHED)
            plans = MessageCollector(listener, String, 'coverage/plan', qos.LATCHED)
            markers = MessageCollector(listener, MarkerArray, 'coverage/markers', qos.LATCHED)
            path = paths.wait_for(1, timeout=20.0)[0]
            plan = CoveragePlan.from_json(plans.wait_for(1, timeout=20.0)[0].data)
            assert markers.wait_for(1, timeout=20.0)[0].markers
            assert path.header.frame_id == 'map'
            assert len(path.poses) > 100
            assert plan.stats['lane_count'] > 5 and plan.spacing == pytest.approx(0.99)
            first = path.poses[0].pose.position
            assert (first.x, first.y) == pytest.approx(tuple(plan.segments[0].points[0]), abs=1e-3)
            # re-plan on the service: a second latched plan arrives
            response = call_service(listener, Trigger, '/coverage_planner/plan', timeout=30.0)
            assert response.success, response.message
            assert 'lanes' in response.message
            plans.wait_for(2, timeout=30.0)
    finally:
        node.destroy_node()


def test_bad_area_file_on_the_service_is_reported_not_fatal(ros_context, ros_node_factory, tmp_path):
    from std_srvs.srv import Trigger

    from mine_robot.nodes.coverage_planner import CoveragePlannerNode
    from mine_robot.ros.testing import BackgroundSpinner, call_service

    node = CoveragePlannerNode(context=ros_context)
    client = ros_node_factory('plan_client')
    try:
        with BackgroundSpinner(ros_context, node, client):
            response = call_service(client, Trigger, '/coverage_planner/plan', timeout=20.0)
            assert not response.success and 'area_file' in response.message
            node.area_file = str(REPO / 'test' / 'data' / 'areas' / 'bad_nogo_outside.geojson')
            response = call_service(client, Trigger, '/coverage_planner/plan', timeout=20.0)
            assert not response.success and 'outside the search area' in response.message
    finally:
        node.destroy_node()


@pytest.mark.parametrize('args,message', [
    (['-p', 'overlap:=0.95'], "parameter 'overlap'"),
    (['-p', f'area_file:={REPO}/test/data/areas/bad_self_intersecting.geojson'], 'invalid polygon'),
])
def test_process_exits_1_with_a_clear_message_on_bad_parameters(args, message):
    exe = Path(sys.executable).parent / 'coverage_planner'
    result = subprocess.run([str(exe), '--ros-args', *args], capture_output=True, text=True, timeout=60,
                            env=dict(os.environ))
    assert result.returncode == 1, result.stderr
    assert 'fatal configuration error' in result.stderr and message in result.stderr
