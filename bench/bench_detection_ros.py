"""ROS-graph detection latency: the real md_detector, gpr_detector and detection_fusion nodes, each
in its own process (as launched on the robot, parameters from config/detection.yaml), fed over DDS
with simulated metal-detector signals (50 Hz), GPR traces (25 Hz) and odometry (50 Hz) of a robot
driving a straight lane at the sweep speed over a row of buried objects.

For every object it prints the latency from the sample that carries the object (the detection's own
timestamp, ``first_t`` of the target: the time the array was over the object) to the first
``targets/json`` update that contains the target, as received by a subscriber in this process;
then median / p95 / max. It also gives the part of that latency that is the detector's causal
look-ahead (``window_ahead_m`` of the metal detector at the lane speed) and the rest (processing
and transport).

    ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST ROS_DOMAIN_ID=61 .venv/bin/python bench/bench_detection_ros.py \\
        [--speed 0.3] [--objects 16] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time

import numpy as np


def scenario(n: int, seed: int):
    from mine_robot.sim.scenario import scenario_from_dict
    rng = np.random.default_rng(seed)
    objects = []
    for i in range(n):
        objects.append({'id': f'M{i}', 'kind': 'mine', 'x': 1.5 + 0.8 * i,
                        'y': round(float(rng.uniform(-0.4, 0.4)), 3),
                        'depth_m': round(float(rng.uniform(0.02, 0.10)), 3),
                        'metal_g': round(float(rng.uniform(1.0, 5.0)), 2), 'diameter_m': 0.1})
    length = 1.5 + 0.8 * n + 1.0
    return scenario_from_dict({
        'name': 'latency', 'datum': {'lat': 44.0, 'lon': 18.0},
        'area': {'search_area': [[-1, -1], [length, -1], [length, 1], [-1, 1]]},
        'soil': {'md_noise': 0.0015, 'md_ground_amplitude': 0.002, 'md_ground_correlation_m': 1.0,
                 'md_drift': 0.0002, 'gpr_clutter_density': 0.3},
        'robot': {'x': -1.0, 'y': 0.0}, 'objects': objects}), length


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--speed', type=float, default=0.3, help='lane speed (m/s; the sweep speed is 0.3)')
    ap.add_argument('--objects', type=int, default=16, help='buried objects along the lane, 0.8 m apart')
    ap.add_argument('--seed', type=int, default=0)
    args = ap.parse_args()
    if os.environ.get('ROS_AUTOMATIC_DISCOVERY_RANGE') != 'LOCALHOST' or 'ROS_DOMAIN_ID' not in os.environ:
        print('set ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST and a ROS_DOMAIN_ID of your own', file=sys.stderr)
        return 2

    from nav_msgs.msg import Odometry
    import rclpy
    from sensor_msgs.msg import Image, PointCloud2
    from std_msgs.msg import String

    from mine_robot.detection.chain import load_detection_settings
    from mine_robot.resources import resource
    from mine_robot.robot import load_robot
    from mine_robot.ros import qos
    from mine_robot.ros.conversions import fields_to_cloud, sec_to_stamp
    from mine_robot.sim.sensors import GprModel, MetalDetectorModel

    robot = load_robot()
    sc, length = scenario(args.objects, args.seed)
    md_model = MetalDetectorModel(sc, robot, np.random.default_rng(args.seed))
    gpr_model = GprModel(sc, robot, np.random.default_rng(args.seed + 1))
    params = str(resource('config', 'detection.yaml'))
    procs = [subprocess.Popen([sys.executable, '-m', f'mine_robot.nodes.{name}', '--ros-args',
                               '--params-file', params], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
             for name in ('md_detector', 'gpr_detector', 'detection_fusion')]
    rclpy.init()
    node = rclpy.create_node('latency_feeder')
    odom_pub = node.create_publisher(Odometry, 'odometry/filtered', 10)
    md_pub = node.create_publisher(PointCloud2, 'metal_detector/signal', qos.SENSOR)
    gpr_pub = node.create_publisher(Image, 'gpr/trace', qos.SENSOR)
    first_seen: dict[int, tuple[float, dict]] = {}

    def on_targets(msg: String) -> None:
        now = time.time()
        for t in json.loads(msg.data)['targets']:
            first_seen.setdefault(t['id'], (now, t))
    node.create_subscription(String, 'targets/json', on_targets, qos.RELIABLE)
    coils = robot.metal_detector.coil_positions()
    head_x = float(coils[:, 0].mean())
    try:
        # discovery: wait until the three nodes subscribe
        deadline = time.time() + 30.0
        while time.time() < deadline and (md_pub.get_subscription_count() < 1 or
                                          gpr_pub.get_subscription_count() < 1 or
                                          odom_pub.get_subscription_count() < 3):
            rclpy.spin_once(node, timeout_sec=0.1)
        time.sleep(1.0)
        x0 = -1.0
        t_start = time.time()
        k = 0
        while True:
            now = time.time()
            x = x0 + args.speed * (now - t_start)
            if x + head_x > length:
                break
            odom = Odometry()
            odom.header.stamp = sec_to_stamp(now)
            odom.header.frame_id = 'map'
            odom.pose.pose.position.x = x
            odom.pose.pose.orientation.w = 1.0
            odom.twist.twist.linear.x = args.speed
            odom_pub.publish(odom)
            xy = np.column_stack([x + coils[:, 0], coils[:, 1]])
            sig = md_model.sample(now, xy)
            md_pub.publish(fields_to_cloud({'x': coils[:, 0], 'y': coils[:, 1], 'z': np.zeros(len(coils)),
                                            'signal': sig, 'coil': np.arange(len(coils))}, 'md_array', now))
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
            rclpy.spin_once(node, timeout_sec=0.0)
            time.sleep(max(0.0, 0.02 - (time.time() - now)))
        end = time.time() + 3.0
        while time.time() < end:
            rclpy.spin_once(node, timeout_sec=0.05)
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
    lat, truth_lat, found = [], [], 0
    for o in sc.objects:
        near = [(rt, t) for rt, t in first_seen.values() if math.hypot(t['x'] - o.x, t['y'] - o.y) < 0.15]
        if not near:
            print(f'{o.id}: {o.metal_g} g at {o.depth_m} m, y {o.y:+.2f}: not reported')
            continue
        found += 1
        rt, t = min(near, key=lambda v: v[0])
        lat.append(rt - t['first_t'])
        t_over = t_start + (o.x - head_x - x0) / args.speed     # head over the object
        truth_lat.append(rt - t_over)
        print(f'{o.id}: {o.metal_g} g at {o.depth_m} m, y {o.y:+.2f}: {t["classification"]}, '
              f'latency {lat[-1]:.3f} s from its sample, {truth_lat[-1]:.3f} s from the head being over it')
    look = load_detection_settings(params).md.window_ahead_m / args.speed
    print(f'\nspeed {args.speed} m/s; {found}/{len(sc.objects)} objects reported')
    if lat:
        print(f'sample -> target update: median {np.median(lat):.3f} s, p95 {np.percentile(lat, 95):.3f} s, '
              f'max {np.max(lat):.3f} s (of which the metal detector\'s look-ahead {look:.3f} s)')
        print(f'head over object -> target update: median {np.median(truth_lat):.3f} s, '
              f'p95 {np.percentile(truth_lat, 95):.3f} s')
    return 0


if __name__ == '__main__':
    sys.exit(main())
