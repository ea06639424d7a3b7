"""The rclpy wheels, DDS and the isolation fixtures work: two nodes talk over a real topic."""

import os

import numpy as np
import pytest

pytestmark = pytest.mark.ros


def test_environment_is_isolated():
    assert os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] == 'LOCALHOST'
    assert 0 < int(os.environ['ROS_DOMAIN_ID']) <= 101


def test_two_nodes_exchange_messages(ros_context, ros_node_factory):
    from std_msgs.msg import String

    from mine_robot.ros.testing import BackgroundSpinner, MessageCollector

    talker = ros_node_factory('talker')
    listener = ros_node_factory('listener')
    pub = talker.create_publisher(String, 'chatter', 10)
    collector = MessageCollector(listener, String, 'chatter')
    with BackgroundSpinner(ros_context, talker, listener):
        timer = talker.create_timer(0.05, lambda: pub.publish(String(data='hello minefield')))
        msgs = collector.wait_for(3, timeout=15.0)
        talker.destroy_timer(timer)
    assert all(m.data == 'hello minefield' for m in msgs)


def test_wait_for_message_times_out(ros_context, ros_node_factory):
    from std_msgs.msg import String

    from mine_robot.ros.testing import BackgroundSpinner, wait_for_message

    node = ros_node_factory('lonely')
    with BackgroundSpinner(ros_context, node), pytest.raises(TimeoutError, match='nobody'):
        wait_for_message(node, String, 'nobody', timeout=0.5)


def test_pointcloud_roundtrip():
    from mine_robot.ros.conversions import cloud_to_fields, fields_to_cloud, sec_to_stamp, stamp_to_sec

    fields = {'x': np.array([1.0, 2.0]), 'y': np.array([3.0, -4.5]), 'id': np.array([7, 9])}
    msg = fields_to_cloud(fields, 'map', 12.25, dtypes={'id': np.uint32})
    back = cloud_to_fields(msg)
    assert msg.width == 2 and msg.header.frame_id == 'map'
    assert np.allclose(back['y'], [3.0, -4.5]) and back['id'].tolist() == [7, 9]
    assert stamp_to_sec(sec_to_stamp(1234.000000001)) == pytest.approx(1234.000000001, abs=1e-9)
    with pytest.raises(ValueError, match='different lengths'):
        fields_to_cloud({'x': np.zeros(2), 'y': np.zeros(3)}, 'map', 0.0)
