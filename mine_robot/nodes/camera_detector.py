"""``camera_detector``: camera/image_raw (bgr8) + odometry/filtered -> detections/camera.
Algorithm: mine_robot.detection.camera."""

from __future__ import annotations

import sys

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import Image

from mine_robot.detection.camera import CameraConfig, CameraProcessor
from mine_robot.detection.types import DetectionError
from mine_robot.nodes._detection import DetectorNodeMixin
from mine_robot.robot import load_robot
from mine_robot.ros import qos
from mine_robot.ros.conversions import stamp_to_sec
from mine_robot.ros.params import ConfigError, declare
from mine_robot.ros.runner import run_node


class CameraDetectorNode(DetectorNodeMixin, Node):
    def __init__(self, **kwargs):
        super().__init__('camera_detector', **kwargs)
        d = CameraConfig()
        values = dict(
            min_diameter_m=declare(self, 'min_diameter_m', d.min_diameter_m, 'smallest object (m)',
                                   range=(0.005, 5.0)),
            max_diameter_m=declare(self, 'max_diameter_m', d.max_diameter_m, 'largest object (m)',
                                   range=(0.01, 10.0)),
            contrast_threshold=declare(self, 'contrast_threshold', d.contrast_threshold,
                                       'lightness difference from the background (Lab L)',
                                       range=(1.0, 255.0)),
            min_edge_sharpness=declare(self, 'min_edge_sharpness', d.min_edge_sharpness,
                                       'boundary gradient / contrast below which a blob is shading, '
                                       'not a body (0 = off)', range=(0.0, 10.0)),
        )
        frame = declare(self, 'frame_id', 'map', 'frame of the published detections', read_only=True)
        try:
            processor = CameraProcessor(load_robot(), CameraConfig(**values))
        except DetectionError as exc:
            raise ConfigError(str(exc)) from exc
        self._setup_detector(processor, 'camera', frame)
        self.create_subscription(Image, 'camera/image_raw', self._on_image, qos.SENSOR)

    def _on_image(self, msg: Image) -> None:
        try:
            if msg.encoding != 'bgr8':
                raise DetectionError(f'encoding {msg.encoding!r}, expected bgr8')
            img = np.frombuffer(bytes(msg.data), dtype=np.uint8)
            if img.size != msg.height * msg.step or msg.step < msg.width * 3:
                raise DetectionError('image data size does not match height x step')
            img = img.reshape(msg.height, msg.step)[:, :msg.width * 3].reshape(msg.height, msg.width, 3)
            self.processor.add_image(stamp_to_sec(msg.header.stamp), img)
        except DetectionError as exc:
            self._bad_input('camera/image_raw', exc)
            return
        self._publish(self.processor.poll())


def main(args=None):
    sys.exit(run_node(CameraDetectorNode, args))


if __name__ == '__main__':
    main()
