"""Benchmark the device drivers end to end: device bytes on a pty -> real driver process -> DDS.

For each device the real executable runs as its own process; this process plays the device
(writing the wire format to a pty at the target rate) and subscribes to the output topic. Printed
per device: messages sent/received (loss), sustained receive rate, the driver process's CPU use,
and latencies:
  arrival->receive: header stamp (host time the bytes arrived, stamp_source=arrival) to the
                    subscriber's receive time - parsing, message building, publish, DDS delivery;
  write->receive:   device write to receive (adds the pty hop).
Targets (issue 5): metal detector 1 kHz x 5 coils, GNSS 20 Hz, GPR 100 traces/s x 512 samples,
camera 640x480 at 30 fps.

    .venv/bin/python bench/bench_drivers.py [--duration 10] [--only md,gnss,gpr,camera] [--capacity]

``--capacity`` also runs each serial driver node in this process and pushes messages through it as
fast as the pty delivers them (no subscriber): CPU microseconds per message and the peak rate,
which depend far less on how loaded the machine is than the end-to-end figures.

Runs with ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST and ROS_DOMAIN_ID from the environment (default 77).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
from pathlib import Path
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
os.environ.setdefault('ROS_DOMAIN_ID', '77')

import cv2
from diagnostic_msgs.msg import DiagnosticArray
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image, NavSatFix, PointCloud2

from mine_robot.drivers.protocols import gnss, gpr
from mine_robot.drivers.protocols import metal_detector as md
from mine_robot.drivers.pty import PtyDevice
from mine_robot.ros.conversions import stamp_to_sec

BIN = Path(sys.executable).parent
CLK_TCK = os.sysconf('SC_CLK_TCK')
DEEP = QoSProfile(depth=5000, reliability=ReliabilityPolicy.BEST_EFFORT)


def cpu_seconds(pid: int) -> float:
    fields = Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


class Receiver:
    """Subscribes in this process; records (id, receive wall time, header stamp) per message."""

    def __init__(self, node, msg_type, topic, ident):
        self.rows: list[tuple[int, float, float, float]] = []
        self.ident = ident
        node.create_subscription(msg_type, topic, self._on, DEEP)

    def _on(self, msg) -> None:
        self.rows.append((self.ident(msg), time.time(), time.monotonic(), stamp_to_sec(msg.header.stamp)))


def run_driver(exe: str, params: dict) -> subprocess.Popen:
    args = [str(BIN / exe), '--ros-args']
    for k, v in params.items():
        args += ['-p', f'{k}:={v}']
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def wait_for_publisher(node, topic: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while node.count_publishers(topic) == 0:
        if time.monotonic() > deadline:
            raise TimeoutError(f'no publisher on {topic}')
        time.sleep(0.1)
    time.sleep(1.0)      # let discovery settle both ways


def stream(dev: PtyDevice, rate: float, duration: float, encode) -> np.ndarray:
    """Write message i at its due time (batched every ~2 ms); returns each message's write time."""
    n = int(rate * duration)
    written = np.zeros(n)
    t0 = time.monotonic()
    sent = 0
    while sent < n:
        due = min(n, int((time.monotonic() - t0) * rate) + 1)
        if due > sent:
            batch = b''.join(encode(i) for i in range(sent, due))
            written[sent:due] = time.monotonic()    # before: the write blocks while the pty is full
            dev.write(batch)
            sent = due
        time.sleep(0.002)
    return written


def report(name: str, target: str, sent: int, receiver: Receiver, written: np.ndarray | None,
           cpu: float, wall: float, warmup: int) -> None:
    rows = receiver.rows
    ids = np.array([r[0] for r in rows], dtype=np.int64)
    recv_wall = np.array([r[1] for r in rows])
    recv_mono = np.array([r[2] for r in rows])
    stamps = np.array([r[3] for r in rows])
    steady = ids >= warmup
    span = recv_mono[steady].max() - recv_mono[steady].min() if steady.sum() > 1 else float('nan')
    rate = (steady.sum() - 1) / span if span > 0 else float('nan')
    arrival = (recv_wall - stamps)[steady] * 1e3
    lost = sent - len(set(ids.tolist()))
    line = (f'{name:<15} target {target:<20} sent {sent:>6} received {len(rows):>6} (lost {lost:>4})  '
            f'rate {rate:8.1f}/s  driver CPU {100 * cpu / wall:5.1f} %  arrival->receive '
            f'p50 {np.percentile(arrival, 50):6.2f} ms p99 {np.percentile(arrival, 99):6.2f} ms')
    if written is not None:
        w = (recv_mono - written[np.clip(ids, 0, len(written) - 1)])[steady] * 1e3
        line += f'  write->receive p50 {np.percentile(w, 50):6.2f} ms p99 {np.percentile(w, 99):6.2f} ms'
    print(line, flush=True)


def bench_serial(node, executor, name, exe, topic, msg_type, ident, encode, rate, duration, target,
                 params=None):
    with PtyDevice() as dev:
        proc = run_driver(exe, {'port': dev.path, 'stale_timeout': 5.0, **(params or {})})
        try:
            receiver = Receiver(node, msg_type, topic, ident)
            wait_for_publisher(node, topic)
            c0, w0 = cpu_seconds(proc.pid), time.monotonic()
            written = stream(dev, rate, duration, encode)
            time.sleep(0.5)
            cpu, wall = cpu_seconds(proc.pid) - c0, time.monotonic() - w0
            report(name, target, len(written), receiver, written, cpu, wall, warmup=int(rate * 0.5))
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=30)


def bench_camera(node, duration: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / 'ground.avi'
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*'MJPG'), 30.0, (640, 480))
        rng = np.random.default_rng(0)
        base = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
        for i in range(90):
            writer.write(np.roll(base, 7 * i, axis=1))
        writer.release()
        proc = run_driver('camera_driver', {'source': str(path), 'fps': 30.0})
        try:
            diags: dict = {}

            def on_diag(msg):
                for st in msg.status:
                    if st.name.endswith('camera_driver'):
                        v = {kv.key: kv.value for kv in st.values}
                        diags['camera_driver'] = (f'captured {v["captured"]} published {v["published"]} '
                                                  f'dropped {v["dropped"]} rate {v["rate_hz"]} fps')

            node.create_subscription(DiagnosticArray, '/diagnostics', on_diag, 10)
            count = iter(range(10 ** 9))
            receiver = Receiver(node, Image, 'camera/image_raw', lambda _m: next(count))
            wait_for_publisher(node, 'camera/image_raw')
            receiver.rows.clear()
            c0, w0 = cpu_seconds(proc.pid), time.monotonic()
            time.sleep(duration)
            cpu, wall = cpu_seconds(proc.pid) - c0, time.monotonic() - w0
            sent = int(round(30.0 * wall))
            report('camera', '640x480 @ 30 fps', sent, _renumbered(receiver), None, cpu, wall, warmup=0)
            print(f'{"":15} camera_driver diagnostics: {diags.get("camera_driver", "none")}', flush=True)
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=30)


def _renumbered(receiver: Receiver) -> Receiver:
    receiver.rows = [(i, *r[1:]) for i, r in enumerate(receiver.rows)]
    return receiver


def capacity(name: str, node_class, frames: list[bytes], per_chunk: int = 1) -> None:
    """CPU cost per message of the real node (parse + convert + publish), measured in process."""
    from rclpy.parameter import Parameter

    from mine_robot.ros.testing import BackgroundSpinner, isolated_context
    with isolated_context() as context, PtyDevice() as dev:
        overrides = [Parameter('port', value=dev.path)]
        driver = node_class(context=context, parameter_overrides=overrides)
        try:
            with BackgroundSpinner(context, driver):
                driver.stream.transport.wait_connected(10)
                c0, t0 = time.process_time(), time.monotonic()
                for i in range(0, len(frames), 50):
                    dev.write(b''.join(frames[i:i + 50]))
                expected = len(frames) * per_chunk      # frames = wire messages (GNSS: sentences)
                while driver.stream.transport.stats().frames < expected and time.monotonic() - t0 < 120:
                    time.sleep(0.005)
                cpu, wall = time.process_time() - c0, time.monotonic() - t0
                done = driver.stream.transport.stats().frames
        finally:
            driver.close()
            driver.destroy_node()
    print(f'{name:<15} capacity: {done} wire messages in {wall:.2f} s = {done / wall:8.0f}/s peak, '
          f'{1e6 * cpu / max(done, 1):6.0f} us CPU per message (whole process: driver + this feeder)',
          flush=True)


def gnss_epoch(i: int) -> bytes:
    t = 36000.0 + i * 0.05
    lat, lon = -1.25 + i * 1e-7, 36.75
    utc = dt.datetime(2025, 6, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=t)
    # the latitude carries the epoch index (1e-7 degree steps) so the bench can match messages
    return (gnss.encode_gst(t, 0.2, 0.02, 0.01, 0.0, 0.015, 0.011, 0.03)
            + gnss.encode_gga(t, lat, lon, 4, 18, 0.6, 1600.0, -12.5, 1.0, None)
            + gnss.encode_rmc(utc, lat, lon, True, 1.0, 90.0) + gnss.encode_vtg(90.0, 0.5)
            + gnss.encode_hdt(90.0))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--duration', type=float, default=10.0, help='seconds of streaming per device')
    parser.add_argument('--only', default='md,gnss,gpr,camera', help='comma-separated subset')
    parser.add_argument('--capacity', action='store_true', help='also measure in-process CPU per message')
    args = parser.parse_args()
    which = set(args.only.split(','))
    rclpy.init()
    node = rclpy.create_node('bench_drivers')
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    spin = threading.Thread(target=executor.spin, daemon=True)
    spin.start()
    print(f'bench_drivers: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}, '
          f'{args.duration:g} s per device', flush=True)
    rng = np.random.default_rng(1)
    try:
        if 'md' in which:
            bench_serial(node, executor, 'metal_detector', 'metal_detector_driver', 'metal_detector/signal',
                         PointCloud2, lambda m: int(struct.unpack_from('<f', m.data, 12)[0]),  # coil 0 signal
                         lambda i: md.encode_sample(i, i * 1000, [i, 10.5, -3.25, 7.0, 1234.5], status=0),
                         1000.0, args.duration, '1 kHz x 5 coils', {'stamp_source': 'arrival'})
        if 'gnss' in which:
            bench_serial(node, executor, 'gnss', 'gnss_driver', 'gnss/fix', NavSatFix,
                         lambda m: round((m.latitude + 1.25) * 1e7), gnss_epoch,
                         20.0, args.duration, '20 Hz NMEA epochs')
        traces = [rng.normal(0, 1000, 512) for _ in range(16)]
        if 'gpr' in which:
            bench_serial(node, executor, 'gpr', 'gpr_driver', 'gpr/trace', Image,
                         lambda m: int(struct.unpack_from('<f', m.data, 0)[0]),
                         lambda i: gpr.encode_trace(i, i * 10000, np.r_[i, traces[i % 16][1:]], 16.0),
                         100.0, args.duration, '100 traces/s x 512')
        if 'camera' in which:
            bench_camera(node, args.duration)
        if args.capacity:
            from mine_robot.nodes.gnss_driver import GnssDriverNode
            from mine_robot.nodes.gpr_driver import GprDriverNode
            from mine_robot.nodes.metal_detector_driver import MetalDetectorDriverNode
            capacity('metal_detector', MetalDetectorDriverNode,
                     [md.encode_sample(i, i * 1000, [i, 10.5, -3.25, 7.0, 1234.5], 0) for i in range(20000)])
            capacity('gnss', GnssDriverNode, [gnss_epoch(i) for i in range(2000)], per_chunk=5)
            capacity('gpr', GprDriverNode,
                     [gpr.encode_trace(i, i, traces[i % 16], 16.0) for i in range(3000)])
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
        spin.join(timeout=5)
    return 0


if __name__ == '__main__':
    sys.exit(main())
