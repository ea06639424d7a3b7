"""gnss_driver and gpr_driver nodes over pty devices: messages out, bad input counted, node up."""

import datetime as dt
import time

from diagnostic_msgs.msg import DiagnosticArray
import numpy as np
import pytest
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image, NavSatFix, NavSatStatus, TimeReference

from mine_robot.drivers.protocols import build_sentence, gnss, gpr
from mine_robot.drivers.pty import PtyDevice
from mine_robot.nodes.gnss_driver import GnssDriverNode
from mine_robot.nodes.gpr_driver import GprDriverNode
from mine_robot.ros.conversions import stamp_to_sec
from mine_robot.ros.testing import BackgroundSpinner, MessageCollector

pytestmark = pytest.mark.ros
DEEP = QoSProfile(depth=1000, reliability=ReliabilityPolicy.BEST_EFFORT)


def last_status(msgs, name):
    for m in reversed(msgs):
        for s in m.status:
            if s.name.endswith(name):
                return s, {kv.key: kv.value for kv in s.values}
    return None, {}


def overrides(port, **params):
    return [Parameter('port', value=port), Parameter('reconnect_min', value=0.05),
            Parameter('reconnect_max', value=0.2)] + [Parameter(k, value=v) for k, v in params.items()]


def test_gnss_fix_time_reference_and_bad_sentences(ros_context, ros_node_factory):
    with PtyDevice() as dev:
        node = GnssDriverNode(context=ros_context, parameter_overrides=overrides(dev.path))
        probe = ros_node_factory('probe')
        fixes = MessageCollector(probe, NavSatFix, 'gnss/fix', DEEP)
        refs = MessageCollector(probe, TimeReference, 'gnss/time_reference', DEEP)
        diags = MessageCollector(probe, DiagnosticArray, '/diagnostics')
        try:
            with BackgroundSpinner(ros_context, node, probe):
                assert node.stream.transport.wait_connected(3)
                time.sleep(0.5)
                utc = dt.datetime(2025, 6, 1, 8, 30, 15, tzinfo=dt.UTC)
                sod = 8 * 3600 + 30 * 60 + 15
                epoch = (gnss.encode_gst(sod, 0.2, 0.02, 0.01, 0.0, 0.015, 0.011, 0.03)
                         + gnss.encode_gga(sod, -1.25, 36.75, 4, 15, 0.7, 1600.0, -12.5)
                         + gnss.encode_rmc(utc, -1.25, 36.75) + gnss.encode_hdt(45.0)
                         + build_sentence(['GPGSV', '1', '1', '01', '05', '40', '083', '46']))  # skipped
                garbage = (b'$GPGGA,,,,,,0,,,,,,,,*66\r\n'                       # empty fields: a no-fix
                           + gnss.encode_gga(sod, -1.25, 36.75, 1, 9, 1.0, 1.0)[:30] + b'\r\n'  # truncated
                           + gnss.encode_hdt(45.0).replace(b'*', b'*F')          # wrong checksum
                           + build_sentence(['GPGGA', '083015', '9907.0', 'N', '03645.0', 'E', 1, 9,
                                             1.0, 1.0, 'M', 0, 'M', '', ''])      # out-of-range latitude
                           + bytes(range(1, 255)) + b'\n')   # random bytes: contain a \n, so 2 bad frames
                dev.write(epoch + garbage + epoch)
                got = fixes.wait_for(3, timeout=10)
                rtk = got[0]
                assert rtk.header.frame_id == 'gnss_antenna'
                assert rtk.status.status == NavSatStatus.STATUS_GBAS_FIX
                assert rtk.latitude == pytest.approx(-1.25) and rtk.altitude == pytest.approx(1587.5)
                assert rtk.position_covariance_type == NavSatFix.COVARIANCE_TYPE_DIAGONAL_KNOWN
                assert rtk.position_covariance[4] == pytest.approx(0.015 ** 2)
                assert abs(stamp_to_sec(rtk.header.stamp) - time.time()) < 2.0
                nofix = got[1]
                assert nofix.status.status == NavSatStatus.STATUS_NO_FIX and np.isnan(nofix.latitude)
                assert got[2].latitude == pytest.approx(-1.25)
                ref = refs.wait_for(2, timeout=5)[0]
                assert stamp_to_sec(ref.time_ref) == pytest.approx(utc.timestamp()) and ref.source == 'gnss'
                _, values = last_status(diags.wait_for(
                    lambda m: last_status(m, 'gnss_driver')[1].get('bad_frames') == '5', 5), 'gnss_driver')
                assert values['fix_quality'] == 'RTK_FIXED' and values['heading_deg'] == '45.0'
                assert values['other_sentences'] == '2'                   # GSV: not a bad frame
                assert node.context.ok()
        finally:
            node.close()
            node.destroy_node()


def test_gpr_traces_as_images_with_bad_frames(ros_context, ros_node_factory):
    with PtyDevice() as dev:
        params = overrides(dev.path, time_window_ns=50.0)
        node = GprDriverNode(context=ros_context, parameter_overrides=params)
        probe = ros_node_factory('probe')
        traces = MessageCollector(probe, Image, 'gpr/trace', DEEP)
        diags = MessageCollector(probe, DiagnosticArray, '/diagnostics')
        try:
            with BackgroundSpinner(ros_context, node, probe):
                assert node.stream.transport.wait_connected(3)
                time.sleep(0.5)
                rng = np.random.default_rng(3)
                data = [rng.normal(0, 100, 512) for _ in range(12)]
                frames = [gpr.encode_trace(i, i * 10000, d, 50.0, gpr.FORMAT_INT16 if i % 2 else
                                           gpr.FORMAT_FLOAT32) for i, d in enumerate(data)]
                bad_crc = bytearray(frames[4])
                bad_crc[200] ^= 1
                absurd = gpr.SYNC + (2 ** 31).to_bytes(4, 'little') + b'\x01' * 64
                wrong_window = gpr.encode_trace(100, 0, data[0], 80.0)
                stream = (b''.join(frames[:4]) + bytes(bad_crc) + absurd + wrong_window
                          + bytes(rng.integers(0, 256, 300, dtype=np.uint8)) + b''.join(frames[5:]))
                dev.write(stream)
                got = traces.wait_for(11, timeout=10)
                assert got[0].encoding == '32FC1'
                assert (got[0].height, got[0].width, got[0].step) == (512, 1, 4)
                assert got[0].header.frame_id == 'gpr_antenna'
                decoded = [np.frombuffer(bytes(m.data), '<f4') for m in got]
                expected = [d for i, d in enumerate(data) if i != 4]
                assert all(np.allclose(a, b, atol=0.5) for a, b in zip(decoded, expected))
                msgs = diags.wait_for(
                    lambda m: int(last_status(m, 'gpr_driver')[1].get('bad_frames', 0)) >= 3, 5)
                _, values = last_status(msgs, 'gpr_driver')
                assert values['lost_messages'] == '1'        # trace 4 lost (bad CRC)
                assert node.context.ok()
        finally:
            node.close()
            node.destroy_node()


def test_gpr_array_frames_are_assembled_into_scans(ros_context, ros_node_factory):
    with PtyDevice() as dev:
        params = overrides(dev.path, time_window_ns=16.0)
        node = GprDriverNode(context=ros_context, parameter_overrides=params)
        probe = ros_node_factory('probe')
        traces = MessageCollector(probe, Image, 'gpr/trace', DEEP)
        try:
            with BackgroundSpinner(ros_context, node, probe):
                assert node.stream.transport.wait_connected(3)
                time.sleep(0.5)
                rng = np.random.default_rng(5)
                scans = [rng.normal(0, 1, (3, 64)).astype(np.float32) for _ in range(4)]
                frames = [[gpr.encode_trace(i, i * 40000, scan[c], 16.0, channel=c, channel_count=3)
                           for c in range(3)] for i, scan in enumerate(scans)]
                frames[1][2] = b''                      # scan 1 loses its last antenna: dropped whole
                dev.write(b''.join(f for scan in frames for f in scan))
                got = traces.wait_for(3, timeout=10)
                assert [(m.height, m.width, m.step) for m in got] == [(64, 3, 12)] * 3
                for msg, i in zip(got, (0, 2, 3)):
                    image = np.frombuffer(bytes(msg.data), '<f4').reshape(64, 3)
                    assert np.array_equal(image.T, scans[i])          # column c = antenna c
                time.sleep(0.3)
                assert len(traces.messages) == 3 and node.scan.incomplete == 1
                assert node.stream.sequence.lost == 1                 # the one antenna frame
        finally:
            node.close()
            node.destroy_node()
