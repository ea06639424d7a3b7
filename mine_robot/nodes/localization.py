"""``localization``: EKF of GNSS (NavSatFix), wheel odometry and IMU yaw rate -> odometry/filtered.

Publishes ``nav_msgs/Odometry`` in ``map`` after every wheel-odometry update (the same topic
robot_localization uses, so either can serve). Health on /diagnostics: fix acceptance, outliers,
position sigma.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
import sys

from nav_msgs.msg import Odometry
import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import Imu, NavSatFix

from mine_robot.control.ekf import EkfConfig, EkfError, PoseEkf
from mine_robot.geo import GeoError, LocalFrame
from mine_robot.nodes._driving import load_robot_param, quaternion_to_yaw, yaw_to_quaternion
from mine_robot.ros import qos
from mine_robot.ros.conversions import stamp_to_sec
from mine_robot.ros.diagnostics import ERROR, OK, WARN, Diagnostics
from mine_robot.ros.params import ConfigError, declare

MAX_SAVED_YAW_SIGMA = 0.5   # rad; a saved heading more uncertain than this is not restored
SAVE_YAW_STEP = 0.003       # rad; pose_file is rewritten when the heading moved more than this ...
SAVE_PERIOD = 1.0           # s (sim); ... or this long after the last write


class LocalizationNode(Node):
    def __init__(self, **kwargs):
        super().__init__('localization', **kwargs)
        lat = declare(self, 'datum_lat', float('nan'), 'map datum latitude (deg, WGS84)')
        lon = declare(self, 'datum_lon', float('nan'), 'map datum longitude (deg, WGS84)')
        robot_path = declare(self, 'robot_config', '', 'robot.yaml (empty: package default)',
                             read_only=True)
        self.map_frame = declare(self, 'map_frame', 'map', 'frame of the output pose')
        self.base_frame = declare(self, 'base_frame', 'base_link', 'child frame of the output')
        initial = declare(self, 'initial_pose', [float('nan')] * 3,
                          'x, y, yaw in map of a surveyed start pose; NaN: from GNSS')
        initial_yaw = declare(self, 'initial_yaw', float('nan'),
                              'known start heading without initial_pose (rad, map ENU; NaN: unknown, '
                              'learned from motion or IMU orientation)')
        initial_yaw_sigma = declare(self, 'initial_yaw_sigma', 0.05, '1-sigma of initial_yaw (rad)',
                                    range=(1e-4, 4.0))
        if not (math.isnan(initial_yaw) or -math.pi - 1e-9 <= initial_yaw <= math.pi + 1e-9):
            raise ConfigError(f'initial_yaw must be in [-pi, pi] or NaN, got {initial_yaw}')
        self.pose_file = declare(self, 'pose_file', '',
                                 'keep the latest estimate in this JSON file (written when the heading '
                                 'or its sigma changed, or a second passed) and take the heading from '
                                 'it at start: a restart after a crash or power cut knows where the '
                                 'standing robot looks (empty: off)', read_only=True)
        self._saved: tuple[float, float, float] | None = None   # t, yaw, yaw sigma last written
        self._count = {'odom': 0, 'imu': 0, 'fix': 0}
        self._losses_logged = 0
        self.use_imu_orientation = declare(self, 'use_imu_orientation', False,
                                           'fuse IMU absolute yaw when its covariance marks it valid')
        if not (math.isfinite(lat) and math.isfinite(lon)):
            raise ConfigError('parameters datum_lat and datum_lon are required (the map origin)')
        try:
            self.frame = LocalFrame(lat=lat, lon=lon)
        except GeoError as exc:
            raise ConfigError(f'datum: {exc}') from exc
        robot = load_robot_param(robot_path)
        fields = {
            'accel_sigma': (0.5, 'white linear acceleration noise (m/s^2)', (1e-4, 100.0)),
            'yaw_accel_sigma': (1.0, 'white angular acceleration noise (rad/s^2)', (1e-4, 100.0)),
            'position_sigma_rate': (0.03, 'position random walk (m/sqrt(s))', (0.0, 10.0)),
            'odom_v_sigma': (0.03, 'odometry speed noise (m/s)', (1e-4, 10.0)),
            'odom_w_sigma': (1.0, 'odometry turn-rate noise (rad/s)', (1e-4, 10.0)),
            'imu_w_sigma': (0.01, 'IMU yaw-rate noise (rad/s)', (1e-5, 10.0)),
            'gate_chi2': (13.8, 'Mahalanobis^2 gate for GNSS fixes (2 dof)', (1.0, 1000.0)),
        }
        values = {k: declare(self, k, d, desc, range=r) for k, (d, desc, r) in fields.items()}
        values['max_consecutive_rejections'] = declare(
            self, 'max_consecutive_rejections', 20, 'rejected fixes in a row before re-seeding',
            range=(1, 10000))
        try:
            config = EkfConfig(lever_arm=tuple(robot.gnss.xyz[:2]), **values)
        except EkfError as exc:
            raise ConfigError(str(exc)) from exc
        self.ekf = PoseEkf(config)
        if math.isfinite(initial_yaw):
            # the heading is known before the robot moves: at standstill neither GNSS (antenna
            # over base_link) nor the gyro can tell it
            self.ekf.set_heading(initial_yaw, initial_yaw_sigma)
        if all(math.isfinite(v) for v in initial):
            self.ekf.initialise(*initial, t=self.get_clock().now().nanoseconds * 1e-9)
        elif self.pose_file:
            self._heading_from_file(initial_yaw_sigma)
        self.pub = self.create_publisher(Odometry, 'odometry/filtered', 10)
        self.diag = Diagnostics(self)
        # deep reader queues (best effort like every sensor stream): a localization starved of
        # CPU for a second at start-up got only the last 5 samples of each stream, and the
        # resulting 2.9 s hole in wheel and gyro data took a moving robot's heading to 1 rad
        self.create_subscription(NavSatFix, 'gnss/fix', self._on_fix, qos.SENSOR_QUEUE)
        self.create_subscription(Odometry, 'odom', self._on_odom, qos.SENSOR_QUEUE)
        self.create_subscription(Imu, 'imu/data', self._on_imu, qos.SENSOR_QUEUE)
        self.last_fix = ''

    def _heading_from_file(self, min_sigma: float) -> None:
        """The heading of the last estimate saved in ``pose_file`` (the position comes from GNSS)."""
        path = Path(self.pose_file)
        if not path.is_file():
            return
        try:
            saved = json.loads(path.read_text())
            yaw, sigma = float(saved['yaw']), float(saved['yaw_sigma'])
            if not (math.isfinite(yaw) and math.isfinite(sigma)):
                raise ValueError('non-finite heading')
        except (OSError, ValueError, KeyError, TypeError) as exc:
            self.get_logger().error(f'pose_file {path}: unusable ({exc}); the heading is learned '
                                    'from motion')
            return
        if sigma > MAX_SAVED_YAW_SIGMA:
            self.get_logger().warning(f'pose_file {path}: its heading was uncertain ({sigma:.2f} rad): '
                                      'the heading is learned from motion')
            return
        # the standing robot has not turned since: its last heading is as good as an operator's
        # known start heading (the filter's own sigma of that moment can be inflated by a stop
        # or a point turn, and a follower waits for a converged heading before it drives)
        self.ekf.set_heading(math.remainder(yaw, math.tau), min_sigma)
        self.get_logger().warning(f'heading {math.degrees(yaw):.1f} deg from {path} (saved at '
                                  f't={saved.get("t")}, sigma {sigma:.3f} rad then)')

    def _save_pose(self, t: float) -> None:
        """Write the estimate when what a restart takes from it changed: the heading by more than
        SAVE_YAW_STEP, its sigma by more than 10 %, or SAVE_PERIOD (sim s) passed (one write per
        pose cost a sixth of the node's CPU at 2.5x real time)."""
        ekf = self.ekf
        yaw, sigma = float(ekf.x[2]), ekf.yaw_sigma()
        if self._saved is not None:
            last_t, last_yaw, last_sigma = self._saved
            if abs(math.remainder(yaw - last_yaw, math.tau)) <= SAVE_YAW_STEP and \
                    abs(sigma - last_sigma) <= 0.1 * last_sigma and 0.0 <= t - last_t < SAVE_PERIOD:
                return
        self._saved = (t, yaw, sigma)
        data = {'t': round(t, 3), 'x': round(float(ekf.x[0]), 4), 'y': round(float(ekf.x[1]), 4),
                'yaw': round(yaw, 5), 'yaw_sigma': round(sigma, 5)}
        tmp = self.pose_file + '.tmp'
        try:
            with open(tmp, 'w') as f:
                f.write(json.dumps(data))
            os.replace(tmp, self.pose_file)
        except OSError as exc:
            self.get_logger().error(f'cannot write pose_file {self.pose_file}: {exc}',
                                    throttle_duration_sec=10.0)

    def _on_fix(self, msg: NavSatFix) -> None:
        self._count['fix'] += 1
        t = stamp_to_sec(msg.header.stamp)
        cov = None
        if msg.position_covariance_type != NavSatFix.COVARIANCE_TYPE_UNKNOWN:
            c = np.asarray(msg.position_covariance, dtype=float).reshape(3, 3)
            cov = c[:2, :2]
        try:
            if msg.status.status < 0:
                result = self.ekf.update_gnss(t, math.nan, math.nan, None, int(msg.status.status))
            else:
                east, north = self.frame.to_local(msg.longitude, msg.latitude)
                result = self.ekf.update_gnss(t, float(east), float(north), cov, int(msg.status.status))
        except (EkfError, GeoError) as exc:
            self.get_logger().warning(f'GNSS fix ignored: {exc}', throttle_duration_sec=5.0)
            return
        self.last_fix = result.reason
        if result.reason == 'outlier':
            self.get_logger().warning(f'GNSS outlier rejected (d^2={result.mahalanobis2:.1f})',
                                      throttle_duration_sec=2.0)

    def _on_imu(self, msg: Imu) -> None:
        self._count['imu'] += 1
        t = stamp_to_sec(msg.header.stamp)
        try:
            sigma = math.sqrt(msg.angular_velocity_covariance[8]) \
                if msg.angular_velocity_covariance[8] > 0 else None
            self.ekf.update_yaw_rate(t, msg.angular_velocity.z, sigma)
            if self.use_imu_orientation and msg.orientation_covariance[0] >= 0 \
                    and msg.orientation_covariance[8] > 0:
                self.ekf.update_yaw(t, quaternion_to_yaw(msg.orientation),
                                    math.sqrt(msg.orientation_covariance[8]))
        except EkfError as exc:
            self.get_logger().warning(f'IMU sample ignored: {exc}', throttle_duration_sec=5.0)

    def _on_odom(self, msg: Odometry) -> None:
        self._count['odom'] += 1
        try:
            self.ekf.update_odometry(stamp_to_sec(msg.header.stamp), msg.twist.twist.linear.x,
                                     msg.twist.twist.angular.z)
        except EkfError as exc:
            self.get_logger().warning(f'odometry sample ignored: {exc}', throttle_duration_sec=5.0)
            return
        if self.ekf.initialised:
            self.pub.publish(self._odometry(msg.header.stamp))
            if self.pose_file:
                self._save_pose(stamp_to_sec(msg.header.stamp))
        self._report()

    def _odometry(self, stamp) -> Odometry:
        ekf = self.ekf
        out = Odometry()
        out.header.stamp = stamp
        out.header.frame_id = self.map_frame
        out.child_frame_id = self.base_frame
        out.pose.pose.position.x, out.pose.pose.position.y = float(ekf.x[0]), float(ekf.x[1])
        out.pose.pose.orientation = yaw_to_quaternion(float(ekf.x[2]))
        pc = np.zeros((6, 6))
        pc[:2, :2] = ekf.P[:2, :2]
        pc[:2, 5] = pc[5, :2] = ekf.P[:2, 2]
        pc[5, 5] = ekf.P[2, 2]
        pc[2, 2] = pc[3, 3] = pc[4, 4] = 1e-6      # planar robot: z, roll, pitch fixed
        out.pose.covariance = pc.ravel().tolist()
        out.twist.twist.linear.x, out.twist.twist.angular.z = float(ekf.x[3]), float(ekf.x[4])
        tc = np.zeros((6, 6))
        tc[0, 0], tc[5, 5] = ekf.P[3, 3], ekf.P[4, 4]
        tc[0, 5] = tc[5, 0] = ekf.P[3, 4]
        out.twist.covariance = tc.ravel().tolist()
        return out

    def _report(self) -> None:
        ekf = self.ekf
        fresh = ekf.heading_loss_count - self._losses_logged
        if fresh > 0:
            for t, dt, v, w, rest, before, after in list(ekf.heading_losses)[-fresh:]:
                self.get_logger().warning(
                    f'heading sigma {before:.3f} -> {after:.3f} rad in one prediction over {dt:.2f} s at '
                    f't={t:.2f} (speed {v:+.3f} m/s, turn rate {w:+.4f} rad/s, wheels at rest: {rest})')
            self._losses_logged = ekf.heading_loss_count
        sigma = ekf.pose_sigma() if ekf.initialised else float('inf')
        level = OK if sigma < 0.05 else WARN if ekf.initialised else ERROR
        message = (f'position sigma {sigma:.3f} m' if ekf.initialised else 'waiting for a GNSS fix')
        self.diag.update(level, message, {'gnss_accepted': ekf.gnss_accepted,
                                          'gnss_rejected': ekf.gnss_rejected,
                                          'last_fix': self.last_fix,
                                          'yaw_sigma_rad': round(ekf.yaw_sigma(), 4),
                                          'odom_msgs': self._count['odom'], 'imu_msgs': self._count['imu'],
                                          'fix_msgs': self._count['fix'],
                                          'yaw_deg': round(math.degrees(float(ekf.x[2])), 2)})


def main(args=None):
    from mine_robot.ros.runner import run_node
    sys.exit(run_node(LocalizationNode, args))
