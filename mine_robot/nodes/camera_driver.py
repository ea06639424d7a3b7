"""``camera_driver``: OpenCV VideoCapture -> ``camera/image_raw`` (bgr8) + ``camera/camera_info``.

``source`` is a device index (``"0"``), a video file, a stream URL (``rtsp://``, ``http://``) or a
folder of images (played in name order at ``fps``, looping if ``loop``). CameraInfo comes from
``calibration_file`` (ROS camera_info YAML; default ``config/camera_calibration.yaml``). Frames are
captured on one thread and published from another; when publishing falls behind, older frames are
dropped (counted in diagnostics), never queued. A frame whose size differs from the calibration is
not published (its CameraInfo would be wrong) and is reported.

Plain Node: capture starts in the constructor, a failing source is re-opened with backoff,
``close()`` stops it.
"""

from __future__ import annotations

import sys
import time

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image

from mine_robot.drivers.camera import CameraConfig, CameraConfigError, CameraSource, load_calibration
from mine_robot.drivers.device import ERROR, OK, WARN
from mine_robot.drivers.stats import RateMeter
from mine_robot.nodes._drivers import StampMapper
from mine_robot.resources import ResourceError, resource
from mine_robot.ros import qos
from mine_robot.ros.diagnostics import Diagnostics
from mine_robot.ros.params import ConfigError, declare
from mine_robot.ros.runner import run_node


class CameraDriverNode(Node):
    def __init__(self, **kwargs):
        super().__init__('camera_driver', **kwargs)
        # dynamic typing: `-p source:=0` arrives as an integer device index
        source = str(declare(self, 'source', '0', 'device index, video file, stream URL or image folder',
                             read_only=True, dynamic_typing=True))
        calibration = declare(self, 'calibration_file', '', 'camera_info YAML (default: package '
                              'config/camera_calibration.yaml)', read_only=True)
        self.frame_id = declare(self, 'frame_id', 'camera_optical', 'optical frame of the images')
        try:
            self.calibration = load_calibration(calibration or resource('config', 'camera_calibration.yaml'))
            config = CameraConfig(
                source=source,
                fps=declare(self, 'fps', 30.0, 'frame rate (paces files and folders)', range=(0.1, 1000.0)),
                loop=declare(self, 'loop', True, 'restart files and folders at the end'),
                width=self.calibration.width, height=self.calibration.height,
                reconnect_min=declare(self, 'reconnect_min', 0.2, 's before re-opening a failed source',
                                      range=(0.01, 60.0)),
                reconnect_max=declare(self, 'reconnect_max', 5.0, 's cap of the re-open backoff',
                                      range=(0.01, 600.0)))
        except (CameraConfigError, ResourceError) as exc:
            raise ConfigError(str(exc)) from exc
        self.image_pub = self.create_publisher(Image, 'camera/image_raw', qos.SENSOR)
        self.info_pub = self.create_publisher(CameraInfo, 'camera/camera_info', qos.SENSOR)
        self.info = self._info_msg()
        self.rate = RateMeter(2.0)
        self.size_mismatches = 0
        self.last_mismatch = ''
        self.diag = Diagnostics(self, hardware_id=source)
        self.stamp = StampMapper(self)
        self.camera = CameraSource(config, self._on_frame)
        self.create_timer(1.0, self._publish_health)
        self.camera.start()

    def _info_msg(self) -> CameraInfo:
        c = self.calibration
        info = CameraInfo(width=c.width, height=c.height, distortion_model=c.distortion_model)
        info.k, info.d, info.r, info.p = list(c.k), list(c.d), list(c.r), list(c.p)
        info.header.frame_id = self.frame_id
        return info

    def _on_frame(self, frame: np.ndarray, t: float, index: int) -> None:
        """Delivery thread: convert and publish (the capture thread keeps capturing meanwhile)."""
        height, width = frame.shape[:2]
        if (width, height) != (self.calibration.width, self.calibration.height):
            self.size_mismatches += 1
            self.last_mismatch = (f'frame {index} is {width}x{height}, calibration is '
                                  f'{self.calibration.width}x{self.calibration.height}')
            self.get_logger().error(f'{self.last_mismatch}; not published', throttle_duration_sec=5.0)
            return
        if frame.ndim == 2:
            frame = np.repeat(frame[:, :, None], 3, axis=2)
        stamp = self.stamp(t)
        msg = Image(height=height, width=width, encoding='bgr8', is_bigendian=0, step=width * 3)
        msg.header.stamp, msg.header.frame_id = stamp, self.frame_id
        msg.data = np.ascontiguousarray(frame).tobytes()
        self.info.header.stamp = stamp
        self.image_pub.publish(msg)
        self.info_pub.publish(self.info)
        self.rate.tick(t)

    def _publish_health(self) -> None:
        s = self.camera.stats()
        rate = self.rate.rate(time.monotonic())
        values = {'source': self.camera.config.source, 'kind': self.camera.config.kind, 'opened': s.opened,
                  'rate_hz': round(rate, 2), 'captured': s.captured, 'published': s.delivered,
                  'dropped': s.dropped, 'read_failures': s.read_failures, 'reopens': s.reopens,
                  'size_mismatches': self.size_mismatches, 'last_error': s.last_error or 'none'}
        if s.finished:
            level, message = WARN, 'source finished (end of file/folder, loop is off)'
        elif not s.opened:
            level, message = ERROR, f'camera not open ({s.last_error or "opening"}); retrying'
        elif self.size_mismatches:
            level, message = ERROR, self.last_mismatch
        else:
            level, message = OK, f'streaming {rate:.1f} fps, {s.dropped} dropped'
        self.diag.update(level, message, values, force=True)

    def close(self) -> None:
        self.camera.close()


def main(args=None):
    sys.exit(run_node(CameraDriverNode, args))
