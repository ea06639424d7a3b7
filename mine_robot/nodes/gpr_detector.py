"""``gpr_detector``: gpr/trace (Image 32FC1, samples x antennas: one scan of the array of
config/robot.yaml ``gpr.channel_y``, column i = antenna i) + odometry/filtered -> detections/gpr
(``depth`` = slant range; extra fields ``heading``, ``reflectivity``, ``range_tolerance``,
``channel``, ``mdr``). Algorithm: mine_robot.detection.gpr (one B-scan per antenna)."""

from __future__ import annotations

import sys

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import Image

from mine_robot.detection.gpr import GprConfig, GprProcessor
from mine_robot.detection.types import DetectionError
from mine_robot.nodes._detection import DetectorNodeMixin
from mine_robot.robot import load_robot
from mine_robot.ros import qos
from mine_robot.ros.conversions import stamp_to_sec
from mine_robot.ros.params import ConfigError, declare
from mine_robot.ros.runner import run_node


class GprDetectorNode(DetectorNodeMixin, Node):
    def __init__(self, **kwargs):
        super().__init__('gpr_detector', **kwargs)
        d = GprConfig()
        values = dict(
            permittivity=declare(self, 'permittivity', d.permittivity, 'soil relative permittivity',
                                 range=(1.0, 81.0)),
            attenuation_per_m=declare(self, 'attenuation_per_m', d.attenuation_per_m,
                                      'soil amplitude attenuation (1/m)', range=(0.0, 100.0)),
            time_window_ns=declare(self, 'time_window_ns', d.time_window_ns, 'trace time window (ns)',
                                   range=(1.0, 1000.0), read_only=True),
            threshold_sigma=declare(self, 'threshold_sigma', d.threshold_sigma,
                                    'hyperbola detection threshold (noise sigmas)', range=(2.0, 100.0)),
            aperture_m=declare(self, 'aperture_m', d.aperture_m, 'migration half-aperture (m)',
                               range=(0.02, 2.0)),
            max_range_m=declare(self, 'max_range_m', d.max_range_m, 'deepest slant range (m)',
                                range=(0.05, 5.0)),
        )
        frame = declare(self, 'frame_id', 'map', 'frame of the published detections', read_only=True)
        try:
            processor = GprProcessor(load_robot(), GprConfig(**values))
        except DetectionError as exc:
            raise ConfigError(str(exc)) from exc
        self._setup_detector(processor, 'gpr', frame)
        self.create_subscription(Image, 'gpr/trace', self._on_trace, qos.SENSOR_QUEUE)

    def _on_trace(self, msg: Image) -> None:
        try:
            if msg.encoding != '32FC1':
                raise DetectionError(f'encoding {msg.encoding!r}, expected 32FC1')
            dtype = np.dtype('>f4' if msg.is_bigendian else '<f4')
            values = np.frombuffer(bytes(msg.data), dtype=dtype)
            if values.size != msg.height * msg.width:
                raise DetectionError(f'{values.size} samples for a {msg.height}x{msg.width} image')
            channels = len(self.processor.channels)
            if msg.width != channels:
                raise DetectionError(f'scan of {msg.width} antennas; config/robot.yaml gpr.channel_y '
                                     f'has {channels}')
            self.processor.add_scan(stamp_to_sec(msg.header.stamp), values.reshape(msg.height, msg.width).T)
        except DetectionError as exc:
            self._bad_input('gpr/trace', exc)
            return
        self._publish(self.processor.poll())


def main(args=None):
    sys.exit(run_node(GprDetectorNode, args))


if __name__ == '__main__':
    main()
