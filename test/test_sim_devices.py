"""Virtual serial devices over real pty pairs and pyserial, and a real driver in the loop."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import serial

from mine_robot.drivers.protocols import gnss as gnss_proto
from mine_robot.drivers.protocols import gpr as gpr_proto
from mine_robot.drivers.protocols import marker as marker_proto
from mine_robot.drivers.protocols import metal_detector as md_proto
from mine_robot.robot import load_robot
from mine_robot.sim.scenario import load_scenario
from mine_robot.sim.virtual_devices import (
    MD_DEVICE_SCALE,
    VirtualGnss,
    VirtualGpr,
    VirtualMarker,
    VirtualMetalDetector,
)
from mine_robot.sim.world import SimConfig, SimWorld


@pytest.fixture(scope='module')
def robot():
    return load_robot()


@pytest.fixture
def world(robot):
    return SimWorld(load_scenario('default'), robot, seed=4, config=SimConfig(camera_rate=0.0))


def _read_frames(port: serial.Serial, framer, count: int, timeout: float = 5.0) -> list[bytes]:
    frames: list[bytes] = []
    deadline = time.monotonic() + timeout
    while len(frames) < count and time.monotonic() < deadline:
        frames += [f for f in framer.feed(port.read(4096)) if isinstance(f, bytes)]
    return frames


def test_virtual_metal_detector_streams_samples_and_acknowledges(tmp_path, world):
    dev = VirtualMetalDetector(tmp_path, rate_hz=50.0)
    try:
        with serial.Serial(dev.path, timeout=0.2) as port:
            step = world.step(0.2, 0.3, 0.0)
            for s in step.md:
                dev.sample(s.t, s.signal)
            msgs = [md_proto.parse(f) for f in _read_frames(port, md_proto.make_framer(), len(step.md))]
            assert [m.seq for m in msgs] == list(range(len(step.md)))
            for m, s in zip(msgs, step.md):
                assert m.device_time_us == round(s.t * 1e6)
                assert np.allclose(np.array(m.values) / MD_DEVICE_SCALE, s.signal, atol=1e-5)
            # commands: accepted, refused (rate), and a retry answered again without re-applying
            port.write(md_proto.encode_sensitivity(7, 60) + md_proto.encode_rate(8, 200)
                       + md_proto.encode_sensitivity(7, 60))
            time.sleep(0.1)
            dev.service()
            acks = [md_proto.parse(f) for f in _read_frames(port, md_proto.make_framer(), 3)]
            assert [(a.cmd_id, a.ok) for a in acks] == [(7, True), (8, False), (7, True)]
            assert 'fixed at 50 Hz' in acks[1].reason and dev.sensitivity == 60
    finally:
        dev.close()


def test_virtual_gnss_sends_nmea_with_the_simulated_fix(tmp_path, world):
    dev = VirtualGnss(tmp_path, time_base=1_700_000_000.0)
    try:
        with serial.Serial(dev.path, timeout=0.2) as port:
            fixes = world.step(0.5, 0.2, 0.0).gnss
            for fix in fixes:
                dev.fix(fix)
            msgs = [gnss_proto.parse(f) for f in _read_frames(port, gnss_proto.make_framer(), 3 * len(fixes))]
            ggas = [m for m in msgs if isinstance(m, gnss_proto.Gga)]
            gsts = [m for m in msgs if isinstance(m, gnss_proto.Gst)]
            assert len(ggas) == len(fixes) == 5 and len(gsts) == 5
            for gga, fix in zip(ggas, fixes):
                assert gga.quality == 4
                assert gga.latitude == pytest.approx(fix.lat, abs=1e-8)
                assert gga.longitude == pytest.approx(fix.lon, abs=1e-8)
            assert gsts[0].sd_lat == pytest.approx(0.02)
    finally:
        dev.close()


def test_virtual_gpr_sends_binary_traces(tmp_path, world):
    dev = VirtualGpr(tmp_path, world.config.gpr)
    try:
        with serial.Serial(dev.path, timeout=0.2) as port:
            scans = world.step(0.2, 0.2, 0.0).gpr
            n = world.robot.gpr.channels
            assert n == 5 and all(scan.trace.shape[0] == n for scan in scans)
            framer, frames = gpr_proto.make_framer(), []
            for scan in scans:                        # a frame at a time (the pty buffer is small:
                for channel, trace in enumerate(scan.trace):   # a whole scan overflowed it at times)
                    dev.trace(scan.t, trace, channel, n)
                    frames += _read_frames(port, framer, 1)
            parsed = [gpr_proto.parse(f) for f in frames]
            assert len(parsed) == len(scans) * n == 5 * n           # 5 scans of every antenna
            assert np.array_equal(parsed[-1].samples, scans[-1].trace[-1])
            assert parsed[-1].time_window_ns == world.config.gpr.time_window_ns
            # version-2 frames: antenna index and count; one seq (and time) per scan
            assert [p.channel for p in parsed[:n]] == list(range(n))
            assert {p.channel_count for p in parsed} == {n}
            assert [p.seq for p in parsed[::n]] == list(range(5))
            assert len({p.device_time_us for p in parsed[:n]}) == 1
    finally:
        dev.close()


def test_a_burst_larger_than_the_pty_waits_in_the_device_buffer_and_overflow_drops_whole_frames(
        tmp_path, world):
    """The GPR array's scans come faster than a busy driver reads: they wait in the device's output
    buffer (none lost, none cut); only past that buffer are frames dropped, whole and counted."""
    scans = world.step(1.0, 0.2, 0.0).gpr
    traces = [(scan.t, channel, trace) for scan in scans for channel, trace in enumerate(scan.trace)]
    dev = VirtualGpr(tmp_path / 'big', world.config.gpr)
    try:
        with serial.Serial(dev.path, timeout=0.2) as port:
            for t, channel, trace in traces:            # 125 frames, ~260 kB: far over the pty's buffer
                assert dev.trace(t, trace, channel, 5) is None
            assert dev.dropped == 0 and dev.backlog > 0
            framer, frames = gpr_proto.make_framer(), []
            deadline = time.monotonic() + 10.0
            while len(frames) < len(traces) and time.monotonic() < deadline:
                dev.flush()
                items = framer.feed(port.read(65536))
                assert not [i for i in items if not isinstance(i, bytes)]     # no broken frame
                frames += items
            parsed = [gpr_proto.parse(f) for f in frames]
            assert len(parsed) == len(traces) and dev.backlog == 0
            expected = [(c, k // 5) for k, (_t, c, _x) in enumerate(traces)]
            assert [(p.channel, p.seq) for p in parsed] == expected
            assert np.array_equal(parsed[-1].samples, traces[-1][2])
    finally:
        dev.close()
    small = VirtualGpr(tmp_path / 'small', world.config.gpr)
    small.buffer_bytes = 16 * 1024
    try:
        with serial.Serial(small.path, timeout=0.2) as port:
            for t, channel, trace in traces:            # nobody reads: the buffer fills, then drops
                small.trace(t, trace, channel, 5)
            assert small.dropped > 0 and small.sent + small.dropped == len(traces)
            framer, frames = gpr_proto.make_framer(), []
            for _ in range(20):
                small.flush()
                items = framer.feed(port.read(65536))
                assert not [i for i in items if not isinstance(i, bytes)]
                frames += items
            assert len(frames) == small.sent            # what was accepted arrives, whole
    finally:
        small.close()


def test_virtual_marker_marks_at_the_true_nozzle_position_once(tmp_path, world, robot):
    dev = VirtualMarker(tmp_path, world)
    try:
        with serial.Serial(dev.path, timeout=0.2) as port:
            world.step(1.0, 0.3, 0.1)
            x, y, yaw = world.true_pose
            port.write(marker_proto.encode_fire(3, 'T17', 300, slide_mm=-250))
            time.sleep(0.1)
            dev.service()
            assert len(world.marks) == 1
            mark = world.marks[0]
            lateral = robot.marker.xyz[1] - 0.25
            fx, fy = robot.marker.xyz[0], lateral
            assert mark.x == pytest.approx(x + fx * math.cos(yaw) - fy * math.sin(yaw))
            assert mark.y == pytest.approx(y + fx * math.sin(yaw) + fy * math.cos(yaw))
            assert mark.target_id == 'T17'
            # the same command id again (a lost ack): same answer, no second mark
            port.write(marker_proto.encode_fire(3, 'T17', 300, slide_mm=-250))
            time.sleep(0.1)
            dev.service()
            assert len(world.marks) == 1
            world.step(0.4, 0.0, 0.0)
            dev.service()
            msgs = [marker_proto.parse(f) for f in _read_frames(port, marker_proto.make_framer(), 6)]
            acks = [m for m in msgs if isinstance(m, marker_proto.MarkerAck)]
            done = [m for m in msgs if isinstance(m, marker_proto.MarkerDone)]
            assert [(a.cmd_id, a.ok) for a in acks] == [(3, True), (3, True)]
            assert len(done) == 1 and done[0].slide_mm == -250 and done[0].target_id == 'T17'
            assert any(isinstance(m, marker_proto.MarkerStatus) and m.fires == 1 for m in msgs)
    finally:
        dev.close()


@pytest.mark.ros
def test_metal_detector_driver_in_the_loop(ros_context, ros_node_factory, tmp_path):
    """sim_world + sim_sensors with virtual devices; the real metal_detector_driver reads the pty
    and publishes the same coil signals sim_sensors computed."""
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import PointCloud2

    from mine_robot.nodes.metal_detector_driver import MetalDetectorDriverNode
    from mine_robot.nodes.sim_sensors import SimSensorsNode
    from mine_robot.nodes.sim_world import SimWorldNode
    from mine_robot.ros import qos
    from mine_robot.ros.conversions import cloud_to_fields
    from mine_robot.ros.testing import BackgroundSpinner, MessageCollector

    def params(**kw):
        return [Parameter(k, value=v) for k, v in kw.items()]

    devdir = str(tmp_path / 'dev')
    world = SimWorldNode(context=ros_context, parameter_overrides=params(
        real_time_factor=2.0, virtual_devices=True, device_dir=devdir))
    sensors = SimSensorsNode(context=ros_context, parameter_overrides=params(
        camera_rate=0.0, gpr_rate=0.0, virtual_devices=True, device_dir=devdir))
    driver = MetalDetectorDriverNode(context=ros_context, namespace='hw', parameter_overrides=params(
        port=f'{devdir}/metal_detector', signal_scale=1.0 / MD_DEVICE_SCALE, stamp_source='arrival'))
    probe = ros_node_factory('devices_probe')
    sim_md = MessageCollector(probe, PointCloud2, 'metal_detector/signal', qos.SENSOR)
    hw_md = MessageCollector(probe, PointCloud2, '/hw/metal_detector/signal', qos.SENSOR)
    try:
        with BackgroundSpinner(ros_context, world, sensors, driver, probe):
            hw_md.wait_for(20, timeout=30.0)
            sim_md.wait_for(20, timeout=10.0)
    finally:
        for node in (driver, sensors, world):
            node.close()
            node.destroy_node()
    sim_signals = [cloud_to_fields(m)['signal'] for m in sim_md.messages]
    hw = cloud_to_fields(hw_md.messages[-1])
    assert hw['coil'].tolist() == [0, 1, 2, 3, 4]
    assert any(np.allclose(hw['signal'], s, atol=2e-5) for s in sim_signals)
    assert hw_md.messages[-1].header.frame_id == 'md_array'
