"""Simulator speed: the lockstep world (no ROS) and the ROS nodes, in multiples of real time.

    ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST ROS_DOMAIN_ID=42 .venv/bin/python bench/bench_sim.py

Targets (issue 4): lockstep ≥ 100× real time for a 20 m × 20 m scenario with 30 objects with every
sensor model on (metal detector 50 Hz, GPR 25 Hz, camera 1 Hz, GNSS 10 Hz, IMU and odometry
50 Hz); ROS nodes (sim_world + sim_sensors) ≥ 10× with the rest of the stack idle.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from mine_robot.robot import load_robot
from mine_robot.sim.generator import generate_scenario
from mine_robot.sim.world import SimConfig, SimWorld


def lawnmower(t: float) -> tuple[float, float]:
    """A drive pattern: 30 s lanes at 0.5 m/s with point turns."""
    phase = t % 36.0
    return (0.5, 0.0) if phase < 30.0 else (0.0, 0.55 if int(t // 36.0) % 2 == 0 else -0.55)


def bench_lockstep(sim_seconds: float, config: SimConfig, label: str, dt: float) -> float:
    scenario = generate_scenario(seed=7, objects=30, width=20.0, height=20.0, difficulty='medium')
    robot = load_robot()
    t0 = time.perf_counter()
    world = SimWorld(scenario, robot, seed=1, config=config)
    setup = time.perf_counter() - t0
    counts = dict.fromkeys(('md', 'gpr', 'camera', 'gnss', 'imu', 'odom'), 0)
    t0 = time.perf_counter()
    for _ in range(int(sim_seconds / dt)):
        step = world.step(dt, *lawnmower(world.time))
        for k in counts:
            counts[k] += len(getattr(step, k))
    wall = time.perf_counter() - t0
    factor = sim_seconds / wall
    print(f'lockstep {label:26s} step {dt:.2f} s: {sim_seconds:.0f} s sim in {wall:.2f} s wall -> '
          f'{factor:6.1f}x real time (setup {setup:.2f} s; samples {counts})')
    return factor


STREAMS = (('metal_detector/signal', 'sensor_msgs/PointCloud2', 'md_rate'),
           ('gpr/trace', 'sensor_msgs/Image', 'gpr_rate'),
           ('camera/image_raw', 'sensor_msgs/Image', 'camera_rate'),
           ('gnss/fix', 'sensor_msgs/NavSatFix', 'gnss_rate'),
           ('imu/data', 'sensor_msgs/Imu', 'imu_rate'),
           ('odom', 'nav_msgs/Odometry', 'odom_rate'))


def bench_ros(wall_seconds: float, real_time_factor: float) -> float:
    """sim_world and sim_sensors as their own processes (as launched); this process counts every
    sensor stream with raw (not deserialised) subscriptions, so the probe itself keeps up, and
    compares what arrives per simulated second with the configured rates."""
    import importlib
    import signal
    import subprocess
    import sys
    import threading

    import rclpy
    from rclpy.serialization import deserialize_message
    from rosgraph_msgs.msg import Clock

    from mine_robot.ros import qos
    from mine_robot.ros.conversions import stamp_to_sec
    from mine_robot.ros.testing import BackgroundSpinner, isolated_context
    from mine_robot.sim.world import load_sim_config

    config = load_sim_config()
    rates = {k: getattr(config, k) for _t, _n, k in STREAMS}
    from mine_robot.resources import resource
    params = str(resource('config', 'sim.yaml'))        # the shipped rates, as the graph runs them
    procs = [subprocess.Popen([sys.executable, '-m', f'mine_robot.nodes.{name}', '--ros-args',
                               '--params-file', params, '-p', 'scenario:=medium_mixed', *extra],
                              stdout=subprocess.DEVNULL)
             for name, extra in (('sim_sensors', []),
                                 ('sim_world', ['-p', f'real_time_factor:={real_time_factor}']))]
    counts = {topic: 0 for topic, _t, _r in STREAMS}
    last_md = [None]
    lock = threading.Lock()

    def counter(topic):
        def on_raw(data: bytes) -> None:
            with lock:
                counts[topic] += 1
                if topic == 'metal_detector/signal':
                    last_md[0] = data
        return on_raw

    try:
        with isolated_context() as context:
            probe = rclpy.create_node('bench_probe', context=context)
            clock = {'t': None}

            def on_clock(msg):
                clock['t'] = stamp_to_sec(msg.clock)
            probe.create_subscription(Clock, '/clock', on_clock, 10)
            types = {}
            for topic, type_name, _r in STREAMS:
                pkg, cls = type_name.split('/')
                types[topic] = getattr(importlib.import_module(f'{pkg}.msg'), cls)
                probe.create_subscription(types[topic], topic, counter(topic), qos.SENSOR, raw=True)
            with BackgroundSpinner(context, probe):
                deadline = time.monotonic() + 60.0
                while (clock['t'] is None or counts['metal_detector/signal'] == 0) and \
                        time.monotonic() < deadline:
                    time.sleep(0.1)
                time.sleep(1.0)
                with lock:
                    c0, n0, w0 = clock['t'], dict(counts), time.monotonic()
                time.sleep(wall_seconds)
                with lock:
                    c1, n1, w1 = clock['t'], dict(counts), time.monotonic()
                    md = deserialize_message(last_md[0], types['metal_detector/signal'])
                lag = c1 - stamp_to_sec(md.header.stamp)
            probe.destroy_node()
    finally:
        for p in procs:
            p.send_signal(signal.SIGINT)    # the runner's orderly Ctrl-C shutdown
            p.wait(timeout=20)
    factor = (c1 - c0) / (w1 - w0)
    sim = max(c1 - c0, 1e-9)
    got = ', '.join(f'{topic.split("/")[0]} {(n1[topic] - n0[topic]) / sim:.1f}/{rates[rate]:g}'
                    for topic, _t, rate in STREAMS)
    print(f'ROS nodes (2 processes) requested {real_time_factor:g}x: achieved {factor:6.1f}x real time; '
          f'received per sim second (of configured): {got}; metal-detector lag behind /clock '
          f'{lag:.2f} s sim')
    return factor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--sim-seconds', type=float, default=120.0)
    parser.add_argument('--ros-seconds', type=float, default=10.0)
    parser.add_argument('--rtf', type=float, nargs='*', default=[10.0, 20.0])
    parser.add_argument('--steps', type=float, nargs='*', default=[0.02, 0.1],
                        help='lockstep step lengths (s): the control period of the caller')
    parser.add_argument('--no-ros', action='store_true')
    args = parser.parse_args()
    print(f'machine: {os.cpu_count()} cpus, load average {os.getloadavg()[0]:.1f} (other work slows this)')
    np.seterr(all='ignore')
    for dt in args.steps:
        bench_lockstep(args.sim_seconds, SimConfig(), 'all sensors (camera 1 Hz)', dt)
    bench_lockstep(args.sim_seconds, SimConfig(camera_rate=0.0), 'no camera', args.steps[-1])
    if not args.no_ros:
        os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
        for rtf in args.rtf:
            bench_ros(args.ros_seconds, rtf)


if __name__ == '__main__':
    main()
