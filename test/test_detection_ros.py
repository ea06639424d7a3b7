"""ROS test: simulated metal-detector signals and GPR traces in -> targets out, through the real
md_detector, gpr_detector and detection_fusion nodes over DDS."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time

import numpy as np
import pytest

pytestmark = pytest.mark.ros


def _scenario():
    from mine_robot.sim.scenario import scenario_from_dict
    objects = [{'id': 'M1', 'kind': 'mine', 'x': 2.0, 'y': 0.0, 'depth_m': 0.05, 'metal_g': 3.0,
                'diameter_m': 0.1}]
    return scenario_from_dict({
        'name': 'ros-test', 'datum': {'lat': 44.0, 'lon': 18.0},
        'area': {'search_area': [[0, -1], [4, -1], [4, 1], [0, 1]]},
        'soil': {'md_noise': 0.0015, 'md_ground_amplitude': 0.001, 'gpr_clutter_density': 0.0},
        'robot': {'x': 0.0, 'y': 0.0}, 'objects': objects})


def _fusion_overrides():
    from rclpy.parameter import Parameter
    import yaml

    from mine_robot.resources import resource
    params = yaml.safe_load(resource('config', 'detection.yaml').read_text())['detection_fusion'][
        'ros__parameters']
    return [Parameter(k, value=v) for k, v in params.items()]


def test_signals_in_targets_out(ros_context, ros_node_factory):
    from nav_msgs.msg import Odometry
    from sensor_msgs.msg import Image, PointCloud2
    from std_msgs.msg import String

    from mine_robot.nodes.detection_fusion import DetectionFusionNode
    from mine_robot.nodes.gpr_detector import GprDetectorNode
    from mine_robot.nodes.md_detector import MdDetectorNode
    from mine_robot.robot import load_robot
    from mine_robot.ros import qos
    from mine_robot.ros.conversions import fields_to_cloud, sec_to_stamp
    from mine_robot.ros.testing import BackgroundSpinner, MessageCollector
    from mine_robot.sim.sensors import GprModel, MetalDetectorModel

    robot = load_robot()
    scenario = _scenario()
    rng = np.random.default_rng(0)
    md_model = MetalDetectorModel(scenario, robot, rng)
    gpr_model = GprModel(scenario, robot, np.random.default_rng(1))
    md_node = MdDetectorNode(context=ros_context)
    gpr_node = GprDetectorNode(context=ros_context)
    fusion = DetectionFusionNode(context=ros_context, parameter_overrides=_fusion_overrides())
    feeder = ros_node_factory('feeder')
    odom_pub = feeder.create_publisher(Odometry, 'odometry/filtered', 10)
    md_pub = feeder.create_publisher(PointCloud2, 'metal_detector/signal', qos.SENSOR)
    gpr_pub = feeder.create_publisher(Image, 'gpr/trace', qos.SENSOR)
    targets = MessageCollector(feeder, String, 'targets/json', qos.RELIABLE)
    clouds = MessageCollector(feeder, PointCloud2, 'targets', qos.RELIABLE)
    coils = robot.metal_detector.coil_positions()
    received = []
    targets_cb = targets._on_msg

    def stamp_receipt(msg):
        received.append((time.time(), msg))
        targets_cb(msg)
    targets.subscription.callback = stamp_receipt
    try:
        with BackgroundSpinner(ros_context, md_node, gpr_node, fusion, feeder):
            time.sleep(1.0)  # discovery
            v, x0 = 0.5, -0.5
            t_start = time.time()
            k = 0
            while True:
                now = time.time()
                x = x0 + v * (now - t_start)
                if x > 2.4:
                    break
                odom = Odometry()
                odom.header.stamp = sec_to_stamp(now)
                odom.header.frame_id = 'map'
                odom.pose.pose.position.x = x
                odom.pose.pose.orientation.w = 1.0
                odom.twist.twist.linear.x = v
                odom_pub.publish(odom)
                xy = np.column_stack([x + coils[:, 0], coils[:, 1]])
                sig = md_model.sample(now, xy)
                md_pub.publish(fields_to_cloud({'x': coils[:, 0], 'y': coils[:, 1],
                                                'z': np.zeros(len(coils)), 'signal': sig,
                                                'coil': np.arange(len(coils))}, 'md_array', now))
                if k % 2 == 0:
                    # one scan of the antenna array: samples x antennas
                    ant = robot.gpr.channel_positions()
                    scan = gpr_model.traces(x + ant[:, 0], ant[:, 1])
                    img = Image(height=gpr_model.config.samples, width=len(ant), encoding='32FC1',
                                step=4 * len(ant))
                    img.header.stamp = sec_to_stamp(now)
                    img.header.frame_id = 'gpr_antenna'
                    img.data = np.ascontiguousarray(scan.T).astype('<f4').tobytes()
                    gpr_pub.publish(img)
                k += 1
                time.sleep(max(0.0, 0.02 - (time.time() - now)))
            # GPR confirmation through the graph is not asserted here: with the whole chain in one
            # loaded test process best-effort traces are dropped and the hyperbola often does not
            # close (issue 6 is open on this); GPR + metal fusion is tested in test_fusion.py
            msgs = targets.wait_for(lambda m: any(
                any(math.hypot(t['x'] - 2.0, t['y']) < 0.1 and 'metal' in t['sensors']
                    for t in json.loads(x.data)['targets']) for x in m), timeout=10.0)
            clouds.wait_for(1, timeout=5.0)
    finally:
        for node in (md_node, gpr_node, fusion):
            node.destroy_node()
    final = json.loads(msgs[-1].data)['targets']
    mine = [t for t in final if math.hypot(t['x'] - 2.0, t['y']) < 0.1]
    assert len(mine) == 1
    assert mine[0]['classification'] in ('mine', 'unknown')     # a metal alarm is never dropped
    assert 'metal' in mine[0]['sensors'] and 'metal hit' in mine[0]['explanation']
    # latency: first target update carrying the metal detection vs. the time of its peak sample
    first = next((rt, t) for rt, m in received for t in json.loads(m.data)['targets']
                 if math.hypot(t['x'] - 2.0, t['y']) < 0.1)
    latency = first[0] - first[1]['first_t']
    assert latency > 0.0, latency         # causal: the target follows its samples (its speed is a
    print(f'sample-to-target latency {latency:.3f} s')   # benchmark figure, not a test bound)


def test_bad_parameter_exits_1_with_message():
    env = dict(os.environ)
    result = subprocess.run([sys.executable, '-m', 'mine_robot.nodes.md_detector', '--ros-args', '-p',
                             'ground_compensation:=magic'], capture_output=True, text=True, env=env,
                            timeout=60)
    assert result.returncode == 1
    assert 'ground_compensation' in result.stderr and 'magic' in result.stderr
    result = subprocess.run([sys.executable, '-m', 'mine_robot.nodes.detection_fusion', '--ros-args', '-p',
                             'sensors:={"metal": {"bins": [0, 1], "llr_hit": [1]}}'],
                            capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 1
    assert 'sensors' in result.stderr
