"""Shared plumbing of the detector nodes: Detection <-> PointCloud2 and the common node shape
(odometry in, sensor stream in, detections/<sensor> out, diagnostics)."""

from __future__ import annotations

import math

import numpy as np
from sensor_msgs.msg import PointCloud2

from mine_robot.detection.types import Detection, DetectionError
from mine_robot.nodes._driving import odometry_to_pose
from mine_robot.ros import qos
from mine_robot.ros.conversions import cloud_to_fields, fields_to_cloud, stamp_to_sec
from mine_robot.ros.diagnostics import OK, WARN, Diagnostics

DETECTION_FIELDS = ('x', 'y', 'z', 'confidence', 'strength', 'id', 'depth', 'sigma')
FIT_FIELDS = ('cov_xx', 'cov_xy', 'cov_yy', 'depth_sigma', 'peak_signal', 'peak_x', 'peak_y')


def detections_to_cloud(dets: list[Detection], frame_id: str, stamp: float) -> PointCloud2:
    """detections/<sensor> cloud (fields per docs/interfaces.md); ``z`` = -depth (below ground)."""
    depth = np.array([d.depth if math.isfinite(d.depth) else np.nan for d in dets], dtype=np.float32)
    fields = {'x': [d.x for d in dets], 'y': [d.y for d in dets], 'z': -np.nan_to_num(depth),
              'confidence': [d.confidence for d in dets], 'strength': [d.strength for d in dets],
              'id': [d.id for d in dets], 'depth': depth, 'sigma': [d.sigma for d in dets]}
    # slant-range sensors need the along-track direction and range tolerance: extra fields
    if any('slant_range_m' in d.extra for d in dets):
        fields['heading'] = [float(d.extra.get('heading', 0.0)) for d in dets]
        fields['reflectivity'] = [float(d.extra.get('reflectivity', 0.0)) for d in dets]
        fields['range_tolerance'] = [float(d.extra.get('range_tolerance_m', 0.1)) for d in dets]
        fields['channel'] = [float(d.extra.get('channel', 0)) for d in dets]
        fields['mdr'] = [float(d.extra.get('mdr', 0.0)) for d in dets]
        fields['mdr_deep'] = [float(d.extra.get('mdr_deep', 0.0)) for d in dets]
    if any('mass_g' in d.extra for d in dets):
        fields['mass_g'] = [float(d.extra.get('mass_g', 0.0)) for d in dets]
        fields['snr'] = [float(d.extra.get('snr', 0.0)) for d in dets]
    # fit quality of point sensors (metal detector): position covariance, depth sigma, where and
    # how strongly the coils saw the object
    for key in FIT_FIELDS:
        if any(d.extra.get(key) is not None for d in dets):
            fields[key] = [float(d.extra[key]) if d.extra.get(key) is not None else np.nan for d in dets]
    if any('hazard_score' in d.extra for d in dets):
        fields['hazard_score'] = [float(d.extra.get('hazard_score', 1.0)) for d in dets]
        fields['axis_ratio'] = [float(d.extra.get('axis_ratio', 1.0)) for d in dets]
    fields = {k: np.asarray(v, dtype=np.float32) for k, v in fields.items()}
    fields['id'] = np.asarray([d.id for d in dets], dtype=np.uint32)
    return fields_to_cloud(fields, frame_id, stamp, dtypes={'id': np.uint32})


def cloud_to_detections(msg: PointCloud2, sensor: str, slant: bool = False) -> list[Detection]:
    """Inverse of :func:`detections_to_cloud`; raises DetectionError naming a missing field."""
    f = cloud_to_fields(msg)
    missing = [k for k in ('x', 'y', 'confidence', 'strength') if k not in f]
    if missing:
        raise DetectionError(f'detections/{sensor}: cloud lacks fields {missing}')
    t = stamp_to_sec(msg.header.stamp)
    n = len(f['x'])
    out = []
    for i in range(n):
        depth = float(f['depth'][i]) if 'depth' in f else math.nan
        extra = {}
        for key, name in (('heading', 'heading'), ('reflectivity', 'reflectivity'), ('mass_g', 'mass_g'),
                          ('snr', 'snr'), ('hazard_score', 'hazard_score'), ('axis_ratio', 'axis_ratio'),
                          ('range_tolerance', 'range_tolerance_m'), ('mdr', 'mdr'),
                          ('mdr_deep', 'mdr_deep')):
            if key in f:
                extra[name] = float(f[key][i])
        if 'channel' in f:
            extra['channel'] = int(f['channel'][i])
        for key in FIT_FIELDS:
            if key in f and math.isfinite(float(f[key][i])):
                extra[key] = float(f[key][i])
        if slant:
            extra['slant_range_m'] = depth
        if 'axis_ratio' in extra:
            extra['shape'] = 'elongated' if extra['axis_ratio'] >= 2.2 else 'round'
        sigma = float(f['sigma'][i]) if 'sigma' in f else 0.05
        out.append(Detection(t=t, x=float(f['x'][i]), y=float(f['y'][i]), depth=depth,
                             confidence=float(np.clip(f['confidence'][i], 0.0, 1.0)),
                             strength=float(f['strength'][i]), sensor=sensor,
                             id=int(f['id'][i]) if 'id' in f else 0,
                             sigma=sigma if sigma > 0 else 0.05, extra=extra))
    return out


class DetectorNodeMixin:
    """Common parts of md_detector, gpr_detector and camera_detector (call ``_setup_detector``)."""

    def _setup_detector(self, processor, sensor: str, frame_id: str) -> None:
        self.processor = processor
        self.sensor = sensor
        self.frame_id = frame_id
        self.errors = 0
        self.published = 0
        self.pub = self.create_publisher(PointCloud2, f'detections/{sensor}', qos.RELIABLE)
        self.diag = Diagnostics(self)
        self.create_subscription(self._odometry_type(), 'odometry/filtered', self._on_odom, 10)

    @staticmethod
    def _odometry_type():
        from nav_msgs.msg import Odometry
        return Odometry

    def _on_odom(self, msg) -> None:
        p = odometry_to_pose(msg)
        try:
            self.processor.add_pose(p.t, p.x, p.y, p.yaw)
        except DetectionError as exc:
            self._bad_input('odometry/filtered', exc)
            return
        self._publish(self.processor.poll())

    def _bad_input(self, topic: str, exc: Exception) -> None:
        self.errors += 1
        self.get_logger().warning(f'{topic}: {exc} (sample dropped)', throttle_duration_sec=2.0)
        self.diag.update(WARN, f'dropped bad input on {topic}: {exc}', {'errors': self.errors})

    def _publish(self, dets: list[Detection]) -> None:
        if dets:
            self.pub.publish(detections_to_cloud(dets, self.frame_id, max(d.t for d in dets)))
            self.published += len(dets)
        self.diag.update(OK if not self.errors else WARN, 'running',
                         {'detections': self.published, 'errors': self.errors, **self.processor.stats})
