"""The simulator nodes over real DDS: drive with cmd_vel, receive odometry, GNSS, IMU, clock,
coil signals, GPR traces and camera images; bad configuration exits 1 with a clear message."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np
import pytest

pytestmark = pytest.mark.ros


def _params(**values):
    from rclpy.parameter import Parameter
    return [Parameter(k, value=v) for k, v in values.items()]


def test_drive_the_simulated_robot_and_receive_every_sensor(ros_context, ros_node_factory, tmp_path):
    from geometry_msgs.msg import Twist, Vector3
    from nav_msgs.msg import Odometry
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import CameraInfo, Image, Imu, NavSatFix, PointCloud2

    from mine_robot.nodes.sim_sensors import SimSensorsNode
    from mine_robot.nodes.sim_world import SimWorldNode
    from mine_robot.ros import qos
    from mine_robot.ros.conversions import cloud_to_fields, stamp_to_sec
    from mine_robot.ros.testing import BackgroundSpinner, MessageCollector

    world = SimWorldNode(context=ros_context, parameter_overrides=_params(
        scenario='default', real_time_factor=4.0, seed=3, truth_output_dir=str(tmp_path)))
    sensors = SimSensorsNode(context=ros_context, parameter_overrides=_params(
        scenario='default', seed=3, camera_rate=2.0))
    probe = ros_node_factory('sim_probe')
    topics = {'odom': (Odometry, 'odom'), 'truth': (Odometry, 'sim/ground_truth'),
              'fix': (NavSatFix, 'gnss/fix'), 'imu': (Imu, 'imu/data'), 'clock': (Clock, '/clock'),
              'md': (PointCloud2, 'metal_detector/signal'), 'gpr': (Image, 'gpr/trace'),
              'image': (Image, 'camera/image_raw'), 'info': (CameraInfo, 'camera/camera_info')}
    col = {k: MessageCollector(probe, t, name, qos.RELIABLE if k == 'truth' else qos.SENSOR)
           for k, (t, name) in topics.items()}
    cmd_pub = probe.create_publisher(Twist, 'cmd_vel', qos.RELIABLE)
    start_x = world.world.true_pose[0]
    try:
        with BackgroundSpinner(ros_context, world, sensors, probe):
            timer = probe.create_timer(0.05, lambda: cmd_pub.publish(Twist(linear=Vector3(x=0.4))))
            col['image'].wait_for(2, timeout=30.0)
            col['truth'].wait_for(lambda m: stamp_to_sec(m[-1].header.stamp) > 3.0, timeout=30.0)
            timer.cancel()
            for key in topics:
                col[key].wait_for(1, timeout=10.0)
    finally:
        world.close()
        sensors.close()
        world.destroy_node()
        sensors.destroy_node()

    truth = col['truth'].messages
    assert truth[-1].pose.pose.position.x > start_x + 0.5            # it drove forward (east)
    assert abs(truth[-1].pose.pose.position.y - 0.55) < 0.05
    odom = col['odom'].messages[-1]
    assert odom.header.frame_id == 'odom' and odom.twist.twist.linear.x > 0.2
    fix = col['fix'].messages[-1]
    lon0, lat0 = world.scenario.frame.to_wgs84(truth[-1].pose.pose.position.x, 0.55)
    assert fix.status.status == 2 and fix.position_covariance[0] == pytest.approx(0.02 ** 2)
    assert math.hypot((fix.longitude - lon0) * 79000, (fix.latitude - lat0) * 111000) < 1.0
    assert abs(col['imu'].messages[-1].linear_acceleration.z - 9.81) < 0.3
    clocks = [stamp_to_sec(c.clock) for c in col['clock'].messages]
    assert clocks == sorted(clocks) and clocks[-1] > 3.0
    md = cloud_to_fields(col['md'].messages[-1])
    assert set(md) == {'x', 'y', 'z', 'signal', 'coil'} and md['coil'].tolist() == [0, 1, 2, 3, 4]
    assert np.allclose(md['y'], world.robot.metal_detector.coil_y)
    assert col['md'].messages[-1].header.frame_id == 'md_array'
    gpr = col['gpr'].messages[-1]
    n = world.robot.gpr.channels                     # one column per antenna of the array
    assert (gpr.height, gpr.width, gpr.encoding) == (512, n, '32FC1') and n == 5
    scan = np.frombuffer(bytes(gpr.data), dtype=np.float32).reshape(512, n)
    assert np.all(np.abs(scan).max(axis=0) > 0.2)            # every antenna sees the surface echo
    img, info = col['image'].messages[-1], col['info'].messages[-1]
    assert (img.height, img.width, img.encoding, img.header.frame_id) == (480, 640, 'bgr8', 'camera_optical')
    assert info.k[0] == pytest.approx(world.robot.camera.focal_px) and info.k[2] == 320
    # samples follow sim time: ~50 Hz of coil readings per sim second
    md_t = [stamp_to_sec(m.header.stamp) for m in col['md'].messages]
    assert len(md_t) > 20 and np.median(np.diff(md_t)) == pytest.approx(0.02, abs=1e-6)
    assert (tmp_path / 'sim_truth.json').exists()                       # written on close


def test_cmd_vel_timeout_stops_the_robot(ros_context, ros_node_factory):
    from geometry_msgs.msg import Twist

    from mine_robot.nodes.sim_world import SimWorldNode
    from mine_robot.ros import qos
    from mine_robot.ros.testing import BackgroundSpinner

    world = SimWorldNode(context=ros_context, parameter_overrides=_params(
        real_time_factor=10.0, cmd_vel_timeout=0.3))
    probe = ros_node_factory('sim_probe2')
    pub = probe.create_publisher(Twist, 'cmd_vel', qos.RELIABLE)
    try:
        with BackgroundSpinner(ros_context, world, probe):
            msg = Twist()
            msg.angular.z = 0.5
            deadline = world.world.time + 1.0
            import time
            t_wall = time.monotonic()
            while world.world.time < deadline and time.monotonic() - t_wall < 20:
                pub.publish(msg)
                time.sleep(0.02)
            yaw_turning = world.world.base.wheel_w
            stop_at = world.world.time + 2.0
            while world.world.time < stop_at and time.monotonic() - t_wall < 40:
                time.sleep(0.05)
            assert yaw_turning > 0.2
            assert world.world.base.wheel_w == pytest.approx(0.0, abs=1e-9)
    finally:
        world.close()
        world.destroy_node()


def test_a_paused_world_holds_its_clock_and_the_robot_until_run(ros_context, ros_node_factory):
    """start_paused: /clock repeats the start time and cmd_vel moves nothing until sim_world/run;
    then the clock runs and the robot drives (a second run is answered 'already running')."""
    import time

    from geometry_msgs.msg import Twist
    from rosgraph_msgs.msg import Clock as ClockMsg
    from std_srvs.srv import Trigger

    from mine_robot.nodes.sim_world import SimWorldNode
    from mine_robot.ros import qos
    from mine_robot.ros.testing import BackgroundSpinner, call_service

    world = SimWorldNode(context=ros_context, parameter_overrides=_params(
        real_time_factor=5.0, start_paused=True))
    probe = ros_node_factory('sim_probe_paused')
    pub = probe.create_publisher(Twist, 'cmd_vel', qos.RELIABLE)
    clocks = []
    probe.create_subscription(ClockMsg, '/clock',
                              lambda m: clocks.append(m.clock.sec + 1e-9 * m.clock.nanosec), 10)
    msg = Twist()
    msg.linear.x = 0.3
    try:
        with BackgroundSpinner(ros_context, world, probe):
            x0 = world.world.true_pose[0]
            t_wall = time.monotonic()
            while time.monotonic() - t_wall < 1.5:
                pub.publish(msg)
                time.sleep(0.02)
            assert len(clocks) > 5 and max(clocks) == min(clocks) == 0.0
            assert world.world.time == 0.0 and world.world.true_pose[0] == x0
            answer = call_service(probe, Trigger, 'sim_world/run')
            assert answer.success and 'running from t=0.00' in answer.message
            t_wall = time.monotonic()
            while world.world.time < 1.0 and time.monotonic() - t_wall < 20:
                pub.publish(msg)
                time.sleep(0.02)
            assert world.world.time >= 1.0 and max(clocks) > 0.5
            assert world.world.true_pose[0] > x0 + 0.1
            again = call_service(probe, Trigger, 'sim_world/run')
            assert again.success and 'already running' in again.message
    finally:
        world.close()
        world.destroy_node()


@pytest.mark.parametrize(('module', 'arg', 'message'), [
    ('sim_world', 'scenario:=/no/such/field.yaml', 'cannot read scenario'),
    ('sim_world', 'real_time_factor:=0.0', 'real_time_factor'),
    ('sim_sensors', 'gpr.samples:=3', 'gpr.samples'),
])
def test_bad_configuration_exits_1_with_a_clear_message(module, arg, message):
    proc = subprocess.run([sys.executable, '-m', f'mine_robot.nodes.{module}', '--ros-args', '-p', arg],
                          capture_output=True, text=True, timeout=60, env=dict(os.environ))
    assert proc.returncode == 1
    assert 'fatal configuration error' in proc.stderr and message in proc.stderr
