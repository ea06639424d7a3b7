"""Camera capture (OpenCV over folders and video files) and camera_driver node."""

import threading
import time

import cv2
from diagnostic_msgs.msg import DiagnosticArray
import numpy as np
import pytest
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image

from mine_robot.drivers.camera import CameraConfig, CameraConfigError, CameraSource, load_calibration
from mine_robot.nodes.camera_driver import CameraDriverNode
from mine_robot.resources import resource
from mine_robot.robot import load_robot
from mine_robot.ros.testing import BackgroundSpinner, MessageCollector

DEEP = QoSProfile(depth=200, reliability=ReliabilityPolicy.BEST_EFFORT)


def make_folder(path, n=5, size=(480, 640)):
    path.mkdir()
    for i in range(n):
        img = np.zeros((*size, 3), np.uint8)
        img[:, :, 1] = i * 40            # frame i is recognisable by its green level
        cv2.imwrite(str(path / f'frame_{i:03d}.png'), img)
    (path / 'notes.txt').write_text('not an image')
    return path


def make_video(path, n=20, size=(480, 640), fps=30.0):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*'MJPG'), fps, (size[1], size[0]))
    assert writer.isOpened()
    for i in range(n):
        img = np.full((*size, 3), (10 * i) % 250, np.uint8)
        writer.write(img)
    writer.release()
    return path


class Frames:
    def __init__(self, delay=0.0):
        self.items, self.delay, self.cond = [], delay, threading.Condition()

    def __call__(self, frame, t, index):
        if self.delay:
            time.sleep(self.delay)
        with self.cond:
            self.items.append((frame, t, index, time.monotonic()))
            self.cond.notify_all()

    def wait(self, n, timeout=10):
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.items) >= n, timeout), f'{len(self.items)} frames'


def test_packaged_calibration_matches_robot_geometry():
    cal = load_calibration(resource('config', 'camera_calibration.yaml'))
    cam = load_robot().camera
    assert (cal.width, cal.height) == (cam.width, cam.height)
    assert cal.k[0] == pytest.approx(cam.focal_px, abs=1e-3) and cal.k[2] == 320.0


def test_bad_calibration_and_config(tmp_path):
    (tmp_path / 'bad.yaml').write_text('image_width: 640\nimage_height: 480\ncamera_matrix: {data: [1, 2]}\n')
    with pytest.raises(CameraConfigError, match='camera_matrix has 2 values'):
        load_calibration(tmp_path / 'bad.yaml')
    with pytest.raises(CameraConfigError, match='cannot read'):
        load_calibration(tmp_path / 'missing.yaml')
    with pytest.raises(CameraConfigError, match='empty'):
        CameraConfig('')
    assert CameraConfig('2').kind == 'device' and CameraConfig('rtsp://cam/1').kind == 'url'
    assert CameraConfig(str(tmp_path)).kind == 'folder' and CameraConfig('x.avi').kind == 'file'


def test_folder_plays_in_order_and_loops(tmp_path):
    frames = Frames()
    source = CameraSource(CameraConfig(str(make_folder(tmp_path / 'imgs')), fps=50.0), frames).start()
    try:
        frames.wait(12)
    finally:
        source.close()
    greens = [int(f[0][0, 0, 1]) for f in frames.items[:12]]
    assert greens == [0, 40, 80, 120, 160] * 2 + [0, 40]
    times = [f[1] for f in frames.items[:12]]
    assert np.median(np.diff(times)) == pytest.approx(0.02, abs=0.006)      # paced at fps


def test_video_file_end_without_loop(tmp_path):
    frames = Frames()
    source = CameraSource(CameraConfig(str(make_video(tmp_path / 'v.avi')), fps=200.0, loop=False),
                          frames).start()
    try:
        deadline = time.monotonic() + 10
        while not source.stats().finished and time.monotonic() < deadline:
            time.sleep(0.05)
        stats = source.stats()
    finally:
        source.close()
    assert stats.finished and stats.captured == 20 and frames.items[0][0].shape == (480, 640, 3)
    assert stats.delivered + stats.dropped == 20


def test_slow_consumer_drops_frames_instead_of_queueing(tmp_path):
    frames = Frames(delay=0.05)     # consumer at most 20 fps, source 200 fps
    source = CameraSource(CameraConfig(str(make_video(tmp_path / 'v.avi', n=60)), fps=200.0), frames).start()
    try:
        frames.wait(10)
        stats = source.stats()
    finally:
        source.close()
    assert stats.dropped > stats.delivered
    ages = [done - t for _, t, _, done in frames.items]
    assert max(ages) < 0.2           # every delivered frame is fresh (<= one consumer delay + slack)


def test_missing_source_retries(tmp_path):
    source = CameraSource(CameraConfig(str(tmp_path / 'nope.avi'), reconnect_min=0.02, reconnect_max=0.05),
                          Frames()).start()
    try:
        time.sleep(0.3)
        stats = source.stats()
    finally:
        source.close()
    assert not stats.opened and 'cannot open' in stats.last_error and stats.captured == 0


def last_status(msgs):
    for m in reversed(msgs):
        for s in m.status:
            if s.name.endswith('camera_driver'):
                return s, {kv.key: kv.value for kv in s.values}
    return None, {}


@pytest.mark.ros
def test_node_publishes_image_and_camera_info(ros_context, ros_node_factory, tmp_path):
    folder = make_folder(tmp_path / 'imgs')
    node = CameraDriverNode(context=ros_context, parameter_overrides=[
        Parameter('source', value=str(folder)), Parameter('fps', value=30.0)])
    probe = ros_node_factory('probe')
    images = MessageCollector(probe, Image, 'camera/image_raw', DEEP)
    infos = MessageCollector(probe, CameraInfo, 'camera/camera_info', DEEP)
    diags = MessageCollector(probe, DiagnosticArray, '/diagnostics')
    try:
        with BackgroundSpinner(ros_context, node, probe):
            got = images.wait_for(10, timeout=10)
            info = infos.wait_for(1, timeout=5)[0]
            img = got[-1]
            assert (img.width, img.height, img.encoding, img.step) == (640, 480, 'bgr8', 1920)
            assert img.header.frame_id == 'camera_optical'
            assert abs(img.header.stamp.sec - time.time()) < 3
            pixels = np.frombuffer(bytes(img.data), np.uint8).reshape(480, 640, 3)
            assert pixels[0, 0, 1] in (0, 40, 80, 120, 160)
            assert (info.width, info.height) == (640, 480) and info.k[0] == pytest.approx(554.2547, abs=1e-3)
            _, values = last_status(diags.wait_for(lambda m: last_status(m)[0] is not None, 5))
            assert values['opened'] == 'True' and values['kind'] == 'folder'
    finally:
        node.close()
        node.destroy_node()


@pytest.mark.ros
def test_node_reports_size_mismatch_and_missing_source(ros_context, ros_node_factory, tmp_path):
    folder = make_folder(tmp_path / 'small', size=(120, 160))
    node = CameraDriverNode(context=ros_context, parameter_overrides=[Parameter('source', value=str(folder))])
    missing = CameraDriverNode(context=ros_context, parameter_overrides=[
        Parameter('source', value=str(tmp_path / 'none.avi')), Parameter('reconnect_max', value=0.2)],
        namespace='second')
    probe = ros_node_factory('probe')
    diags = MessageCollector(probe, DiagnosticArray, '/diagnostics')
    try:
        with BackgroundSpinner(ros_context, node, missing, probe):
            msgs = diags.wait_for(lambda m: int(last_status(m)[1].get('size_mismatches', 0)) > 0, 5)
            status, _ = last_status(msgs)
            assert status.level == b'\x02' and '160x120' in status.message
            def second(m):
                return [s for a in m for s in a.status if s.name.startswith('second/')]
            status = second(diags.wait_for(lambda m: second(m), 5))[-1]
            assert status.level == b'\x02' and 'not open' in status.message
    finally:
        for n in (node, missing):
            n.close()
            n.destroy_node()
