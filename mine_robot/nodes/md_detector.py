"""``md_detector``: metal_detector/signal (one point per coil) + odometry/filtered ->
detections/metal. Algorithm: mine_robot.detection.metal_detector."""

from __future__ import annotations

import sys

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import PointCloud2

from mine_robot.detection.metal_detector import MetalDetectorConfig, MetalDetectorProcessor
from mine_robot.detection.types import DetectionError
from mine_robot.nodes._detection import DetectorNodeMixin
from mine_robot.robot import load_robot
from mine_robot.ros import qos
from mine_robot.ros.conversions import cloud_to_fields, stamp_to_sec
from mine_robot.ros.params import ConfigError, declare
from mine_robot.ros.runner import run_node


class MdDetectorNode(DetectorNodeMixin, Node):
    def __init__(self, **kwargs):
        super().__init__('md_detector', **kwargs)
        d = MetalDetectorConfig()
        values = dict(
            threshold_sigma=declare(self, 'threshold_sigma', d.threshold_sigma,
                                    'detection threshold (normalised matched-filter SNR)', range=(2.0, 50.0)),
            min_amplitude=declare(self, 'min_amplitude', d.min_amplitude,
                                  'absolute floor on the fitted peak response (signal units)',
                                  range=(0.0, 100.0)),
            ground_compensation=declare(self, 'ground_compensation', d.ground_compensation,
                                        'correlated ground response in the noise model',
                                        choices=('model', 'none')),
            ground_corr_m=declare(self, 'ground_corr_m', d.ground_corr_m,
                                  'correlation length of the ground response (m)', range=(0.05, 10.0)),
            drift_per_sqrt_m=declare(self, 'drift_per_sqrt_m', d.drift_per_sqrt_m,
                                     'per-coil drift random walk along the path (signal/sqrt(m))',
                                     range=(0.0, 1.0)),
            window_back_m=declare(self, 'window_back_m', d.window_back_m, 'filter window behind (m)',
                                  range=(0.1, 2.0)),
            window_ahead_m=declare(self, 'window_ahead_m', d.window_ahead_m,
                                   'filter window ahead (m): the causal look-ahead, sets the latency',
                                   range=(0.02, 1.0)),
            max_depth_m=declare(self, 'max_depth_m', d.max_depth_m, 'deepest object fitted (m)',
                                range=(0.05, 3.0)),
        )
        frame = declare(self, 'frame_id', 'map', 'frame of the published detections', read_only=True)
        try:
            processor = MetalDetectorProcessor(load_robot(), MetalDetectorConfig(**values))
        except DetectionError as exc:
            raise ConfigError(str(exc)) from exc
        self._setup_detector(processor, 'metal', frame)
        self.create_subscription(PointCloud2, 'metal_detector/signal', self._on_signal, qos.SENSOR_QUEUE)

    def _on_signal(self, msg: PointCloud2) -> None:
        try:
            fields = cloud_to_fields(msg)
            if 'signal' not in fields:
                raise DetectionError('cloud has no "signal" field')
            signal = fields['signal']
            if 'coil' in fields:
                signal = signal[np.argsort(fields['coil'])]
            self.processor.add_sample(stamp_to_sec(msg.header.stamp), signal)
        except (DetectionError, ValueError, KeyError) as exc:
            self._bad_input('metal_detector/signal', exc)
            return
        self._publish(self.processor.poll())


def main(args=None):
    sys.exit(run_node(MdDetectorNode, args))


if __name__ == '__main__':
    main()
