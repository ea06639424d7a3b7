"""metal_detector_driver node: reads a pty, publishes PointCloud2, survives bad input, unplug,
a missing port, and answers ~/ground_balance from the device's acknowledgement."""

from pathlib import Path
import subprocess
import sys
import threading
import time

from diagnostic_msgs.msg import DiagnosticArray
import numpy as np
import pytest
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import PointCloud2
from std_srvs.srv import Trigger

from mine_robot.drivers.protocols import metal_detector as md
from mine_robot.drivers.pty import PtyDevice
from mine_robot.nodes.metal_detector_driver import MetalDetectorDriverNode
from mine_robot.robot import load_robot
from mine_robot.ros.conversions import cloud_to_fields, stamp_to_sec
from mine_robot.ros.testing import BackgroundSpinner, MessageCollector, call_service

pytestmark = pytest.mark.ros


def diag_values(msgs, name='metal_detector_driver'):
    for m in reversed(msgs):
        for s in m.status:
            if s.name.endswith(name):
                return s, {kv.key: kv.value for kv in s.values}
    return None, {}


def start(ros_context, ros_node_factory, port, **params):
    overrides = [Parameter('port', value=port), Parameter('reconnect_min', value=0.05),
                 Parameter('reconnect_max', value=0.2)] + [Parameter(k, value=v) for k, v in params.items()]
    node = MetalDetectorDriverNode(context=ros_context, parameter_overrides=overrides)
    probe = ros_node_factory('probe')
    deep_best_effort = QoSProfile(depth=1000, reliability=ReliabilityPolicy.BEST_EFFORT)  # matches SENSOR
    clouds = MessageCollector(probe, PointCloud2, 'metal_detector/signal', deep_best_effort)
    diags = MessageCollector(probe, DiagnosticArray, '/diagnostics', 10)
    return node, probe, clouds, diags


def test_samples_become_clouds_and_bad_input_is_counted(ros_context, ros_node_factory):
    with PtyDevice() as dev:
        node, probe, clouds, diags = start(ros_context, ros_node_factory, dev.path, signal_scale=2.0)
        try:
            with BackgroundSpinner(ros_context, node, probe):
                assert node.stream.transport.wait_connected(3)
                time.sleep(0.5)   # discovery
                lines = [md.encode_sample(i, 1_000_000 + i * 1000, [i, 1, 2, 3, 4]) for i in range(40)]
                bad = [b'\x00\x13\xff\xfe\n', lines[0][:12] + b'\n', b'$MDS,1,2,3*00\r\n',
                       b'$' + b'A' * 700 + b'\n', md.encode_sample(99, 0, [1, 2, 3, 4])]  # wrong coil count
                gap = [md.encode_sample(i, 1_000_000 + i * 1000, [i, 1, 2, 3, 4]) for i in range(45, 50)]
                dev.write(lines[0])   # alone: its latency sets the device-clock offset
                time.sleep(0.2)       # then a burst that arrives late: stamps keep the device's spacing
                dev.write(b''.join(lines[1:20]) + b''.join(bad) + b''.join(lines[20:]) + b''.join(gap))
                got = clouds.wait_for(45, timeout=10)
                fields = cloud_to_fields(got[0])
                robot = load_robot()
                assert got[0].header.frame_id == 'md_array' and got[0].width == 5
                assert list(fields['coil']) == [0, 1, 2, 3, 4]
                assert np.allclose(fields['y'], robot.metal_detector.coil_y)
                assert list(fields['signal']) == [0, 2, 4, 6, 8]                   # scaled
                first = [cloud_to_fields(c)['signal'][0] / 2 for c in got]
                assert first == list(range(40)) + list(range(45, 50))
                stamps = np.array([stamp_to_sec(c.header.stamp) for c in got[:40]])
                assert np.allclose(np.diff(stamps), 0.001, atol=1e-4)            # device-clock spacing
                assert abs(stamps[-1] - time.time()) < 2.0
                _, values = diag_values(diags.wait_for(lambda m: diag_values(m)[1].get('bad_frames') == '5'
                                                       and diag_values(m)[1].get('lost_messages') == '5', 5))
                assert values['connected'] == 'True' and values['sequence_gaps'] == '1'
                assert '4 coil values, expected 5' in values['last_error']
        finally:
            node.close()
            node.destroy_node()


def test_unplug_replug_and_missing_port_reported(ros_context, ros_node_factory, tmp_path):
    path = tmp_path / 'ttyMD'
    node, probe, clouds, diags = start(ros_context, ros_node_factory, str(path))
    try:
        with BackgroundSpinner(ros_context, node, probe):
            status, values = diag_values(diags.wait_for(lambda m: diag_values(m)[0] is not None, 5))
            assert status.level == b'\x02' and values['connected'] == 'False'
            assert 'not connected' in status.message and 'No such file' in values['last_error']
            with PtyDevice(path) as dev:                           # the device appears
                assert node.stream.transport.wait_connected(3)
                time.sleep(0.3)
                dev.write(b''.join(md.encode_sample(i, i * 1000, [i] * 5) for i in range(10)))
                clouds.wait_for(10, timeout=5)
                dev.unplug()                                         # cable pulled mid-stream
                diags.wait_for(lambda m: diag_values(m)[1].get('disconnects') == '1', 5)
                assert node.context.ok()                             # node alive
                dev.replug()
                assert node.stream.transport.wait_connected(3)
                dev.write(b''.join(md.encode_sample(i, i * 1000, [i] * 5) for i in range(10, 20)))
                clouds.wait_for(20, timeout=5)
                reconnected = diags.wait_for(lambda m: diag_values(m)[1].get('reconnects') == '1', 5)
                _, values = diag_values(reconnected)
                assert values['connected'] == 'True'
    finally:
        node.close()
        node.destroy_node()


def _device(dev: PtyDevice, stop: threading.Event, answer: bool):
    buf = b''
    while not stop.is_set():
        buf += dev.read(0.05)
        while b'\n' in buf:
            line, buf = buf.split(b'\n', 1)
            cmd = md.parse_command(line + b'\n')
            if answer:
                dev.write(md.encode_ack(cmd.cmd_id, True))


@pytest.mark.parametrize('answer', [True, False])
def test_ground_balance_service_waits_for_ack(ros_context, ros_node_factory, answer):
    with PtyDevice() as dev:
        node, probe, _, _ = start(ros_context, ros_node_factory, dev.path, ack_timeout=0.2, retries=1)
        stop = threading.Event()
        device = threading.Thread(target=_device, args=(dev, stop, answer))
        try:
            with BackgroundSpinner(ros_context, node, probe):
                assert node.stream.transport.wait_connected(3)
                device.start()
                t0 = time.monotonic()
                response = call_service(probe, Trigger, '/metal_detector_driver/ground_balance', timeout=5)
                assert response.success is answer
                if answer:
                    assert 'acknowledged' in response.message
                else:
                    assert 'no acknowledgement after 2 attempts' in response.message
                    assert 0.35 < time.monotonic() - t0 < 2.0
        finally:
            stop.set()
            if device.is_alive():
                device.join()
            node.close()
            node.destroy_node()


def test_bad_parameter_exits_1_with_message():
    exe = str(Path(sys.executable).parent / 'metal_detector_driver')    # the installed console script
    result = subprocess.run([exe, '--ros-args', '-p', 'port:=/dev/null', '-p', 'stamp_source:=guess'],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "stamp_source" in result.stderr and 'guess' in result.stderr
    result = subprocess.run([exe],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and 'port is empty' in result.stderr


def test_device_absolute_stamps_are_the_device_clock(ros_context, ros_node_factory):
    """A device on the ROS clock (GNSS/PTP-disciplined, or the simulator under sim time): the
    stamp is the device time plus the configured offset, exactly, whatever the arrival jitter."""
    with PtyDevice() as dev:
        node, probe, clouds, _ = start(ros_context, ros_node_factory, dev.path,
                                       stamp_source='device_absolute', device_time_offset=100.0)
        try:
            with BackgroundSpinner(ros_context, node, probe):
                assert node.stream.transport.wait_connected(3)
                time.sleep(0.5)
                dev.write(md.encode_sample(0, 2_500_000, [1, 1, 1, 1, 1]))
                time.sleep(0.3)   # a late burst: arrival times are bunched, device times are not
                dev.write(b''.join(md.encode_sample(i, 2_500_000 + i * 20_000, [i, 1, 1, 1, 1])
                                   for i in range(1, 10)))
                got = clouds.wait_for(10, timeout=10)
        finally:
            node.close()
            node.destroy_node()
    stamps = [stamp_to_sec(c.header.stamp) for c in got]
    assert stamps == pytest.approx([102.5 + 0.02 * i for i in range(10)], abs=1e-6)


def test_unknown_stamp_source_is_refused():
    from mine_robot.ros.params import ConfigError
    with pytest.raises(ConfigError, match='stamp_source'):
        import rclpy
        from rclpy.context import Context
        ctx = Context()
        rclpy.init(context=ctx)
        try:
            MetalDetectorDriverNode(context=ctx, parameter_overrides=[
                Parameter('port', value='loop://'), Parameter('stamp_source', value='gps_magic')])
        finally:
            rclpy.try_shutdown(context=ctx)
