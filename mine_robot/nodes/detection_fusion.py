"""``detection_fusion``: detections/<sensor> for every sensor in the config + odometry/filtered ->
targets (PointCloud2), targets/markers (MarkerArray), targets/json (String, full evidence).

The sensor list and per-sensor likelihoods come from the ``sensors`` parameter (JSON, see
config/detection.yaml): a new sensor joins with one entry there. Algorithm: mine_robot.fusion.
"""

from __future__ import annotations

import json
import sys
import time

from nav_msgs.msg import Odometry
import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import PointCloud2
from std_msgs.msg import String
from visualization_msgs.msg import Marker, MarkerArray

from mine_robot.detection.types import DetectionError
from mine_robot.fusion import CLASSES, FusionEngine, FusionError, fusion_config_from_dict
from mine_robot.nodes._detection import cloud_to_detections
from mine_robot.nodes._driving import odometry_to_pose
from mine_robot.ros import qos
from mine_robot.ros.conversions import fields_to_cloud
from mine_robot.ros.diagnostics import OK, WARN, Diagnostics
from mine_robot.ros.params import ConfigError, declare
from mine_robot.ros.runner import run_node

COLOURS = {'mine': (1.0, 0.0, 0.0), 'uxo': (1.0, 0.5, 0.0), 'unknown': (1.0, 1.0, 0.0),
           'clutter': (0.5, 0.5, 0.5)}


class DetectionFusionNode(Node):
    def __init__(self, **kwargs):
        super().__init__('detection_fusion', **kwargs)
        sensors = declare(self, 'sensors', '', 'JSON object: sensor name -> likelihood model '
                          '(topic, feature, bins, llr_hit, llr_miss, mount, reach_m, ...)', read_only=True)
        top = {
            'prior_llr': declare(self, 'prior_llr', -1.0, 'prior log-odds of hazard', range=(-20.0, 20.0)),
            'report_threshold': declare(self, 'report_threshold', 0.8, 'P(hazard) for mine/uxo',
                                        range=(0.0, 1.0)),
            'clutter_threshold': declare(self, 'clutter_threshold', 0.2, 'P(hazard) for clutter',
                                         range=(0.0, 1.0)),
            'min_unknown_confidence': declare(self, 'min_unknown_confidence', 0.4,
                                              'below this, non-metal targets are clutter', range=(0.0, 1.0)),
            'uxo_mass_g': declare(self, 'uxo_mass_g', 60.0, 'metal mass (g) above which a hazard is UXO',
                                  range=(0.0, 1e6)),
            'strong_metal_snr': declare(self, 'strong_metal_snr', 1e9,
                                        'metal alarms above this SNR are never clutter', range=(0.0, 1e12)),
        }
        self.frame_id = declare(self, 'frame_id', 'map', 'frame of targets', read_only=True)
        first_id = declare(self, 'first_target_id', 0, 'id of the first target; 0 = from the start '
                           'time (unique across restarts)', range=(0, 4_000_000_000), read_only=True)
        if first_id == 0:
            # A restarted fusion must never reuse an id the mission already recorded (the mission
            # upserts targets by id; a crash-resume test lost 3 targets that way): ids start at
            # <start second mod 400000> x 10^4 + 1, unique for 4.6 days and 10^4 targets a session.
            first_id = (int(time.time()) % 400_000) * 10_000 + 1
        try:
            parsed = json.loads(sensors) if sensors else None
            self.engine = FusionEngine(fusion_config_from_dict({'sensors': parsed, **top}), first_id)
        except (json.JSONDecodeError, FusionError) as exc:
            raise ConfigError(f'parameter sensors: {exc}') from exc
        self.errors = 0
        self.cloud_pub = self.create_publisher(PointCloud2, 'targets', qos.RELIABLE)
        self.marker_pub = self.create_publisher(MarkerArray, 'targets/markers', qos.RELIABLE)
        self.json_pub = self.create_publisher(String, 'targets/json', qos.RELIABLE)
        self.diag = Diagnostics(self)
        for model in self.engine.config.sensors:
            self.create_subscription(PointCloud2, model.topic, self._handler(model), qos.RELIABLE)
        self.create_subscription(Odometry, 'odometry/filtered', self._on_odom, 10)
        names = ', '.join(f'{s.name} ({s.topic})' for s in self.engine.config.sensors)
        self.get_logger().info(f'fusing {names}')

    def _handler(self, model):
        def on_detections(msg: PointCloud2) -> None:
            try:
                dets = cloud_to_detections(msg, model.name, slant=model.association == 'slant_range')
                changed = self.engine.update(dets)
            except (DetectionError, FusionError, ValueError, KeyError) as exc:
                self.errors += 1
                self.get_logger().warning(f'{model.topic}: {exc} (message dropped)',
                                          throttle_duration_sec=2.0)
                self.diag.update(WARN, f'bad detections on {model.topic}: {exc}', {'errors': self.errors})
                return
            if changed:
                self._publish()
        return on_detections

    def _on_odom(self, msg: Odometry) -> None:
        p = odometry_to_pose(msg)
        if self.engine.add_pose(p.t, p.x, p.y, p.yaw):
            self._publish()

    def _publish(self) -> None:
        targets = self.engine.targets
        stamp = self.get_clock().now().to_msg()
        fields = {
            'x': np.array([t.x for t in targets], np.float32),
            'y': np.array([t.y for t in targets], np.float32),
            'z': np.array([-(t.depth if np.isfinite(t.depth) else 0.0) for t in targets], np.float32),
            'confidence': np.array([t.confidence for t in targets], np.float32),
            'strength': np.array([t.strength for t in targets], np.float32),
            'id': np.array([t.id for t in targets], np.uint32),
            'class': np.array([CLASSES.index(t.classification) for t in targets], np.uint8)}
        self.cloud_pub.publish(fields_to_cloud(fields, self.frame_id, stamp,
                                               dtypes={'id': np.uint32, 'class': np.uint8}))
        self.json_pub.publish(String(data=json.dumps({'targets': [t.to_dict() for t in targets]})))
        markers = MarkerArray()
        for t in targets:
            m = Marker()
            m.header.frame_id, m.header.stamp = self.frame_id, stamp
            m.ns, m.id, m.type, m.action = 'targets', t.id, Marker.CYLINDER, Marker.ADD
            m.pose.position.x, m.pose.position.y = float(t.x), float(t.y)
            m.pose.orientation.w = 1.0
            m.scale.x = m.scale.y = 0.15
            m.scale.z = 0.05
            r, g, b = COLOURS[t.classification]
            m.color.r, m.color.g, m.color.b, m.color.a = r, g, b, 0.4 + 0.6 * float(t.confidence)
            markers.markers.append(m)
        self.marker_pub.publish(markers)
        counts = {c: sum(t.classification == c for t in targets) for c in CLASSES}
        self.diag.update(OK if not self.errors else WARN, 'running',
                         {'targets': len(targets), **counts, 'errors': self.errors})


def main(args=None):
    sys.exit(run_node(DetectionFusionNode, args))


if __name__ == '__main__':
    main()
