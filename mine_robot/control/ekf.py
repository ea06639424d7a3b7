"""Pose EKF in ``map``: state ``[x, y, yaw, v, w, b]`` (base_link position, heading, body speeds and
the IMU gyro bias).

Inputs, all plain numbers:
- GNSS antenna position in ``map`` (the node converts NavSatFix lon/lat with
  :class:`mine_robot.geo.LocalFrame`), its 2x2 east/north covariance and the fix status; the
  antenna lever arm (``robot.gnss.xyz``) is part of the measurement model, so a mast offset from
  base_link also makes heading observable;
- wheel odometry body speeds ``v, w``;
- IMU yaw rate, modelled as ``w + b`` with ``b`` a slowly wandering gyro bias (and, if the IMU
  provides it, absolute yaw). At standstill (wheel odometry reads zero) the odometry turn rate is
  a tight zero-rate measurement, which makes the bias observable: without it an uncorrected gyro
  bias turns into a heading that drifts while the robot waits (seen: -86 deg after 4 min).

Motion model: constant speed and turn rate (unicycle), white acceleration noise. Without GNSS the
position covariance grows with the process noise, so downstream consumers (the safety monitor's
covariance watchdog) see RTK loss as a growing sigma. GNSS fixes are gated on the Mahalanobis
distance of the innovation; after ``max_consecutive_rejections`` in a row the filter concludes
that it is the estimate, not the receiver, that is wrong and re-seeds the position from GNSS.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
import math

import numpy as np

from mine_robot.geo import wrap_angle

X, Y, YAW, V, W, B = range(6)
HEADING_LOSS_VAR = 0.0025   # rad^2 (0.05 rad): one prediction losing more is recorded
STANDING_W_SIGMA = 0.05     # rad/s: turn-rate uncertainty of a robot known to stand (see set_heading)
N_STATE = 6
STATUS_NO_FIX = -1  # sensor_msgs/NavSatStatus values
STATUS_FIX, STATUS_SBAS_FIX, STATUS_GBAS_FIX = 0, 1, 2


class EkfError(ValueError):
    """Invalid EKF configuration or measurement."""


@dataclass(frozen=True)
class EkfConfig:
    lever_arm: tuple[float, float] = (0.0, 0.0)   # GNSS antenna in base_link (x forward, y left)
    accel_sigma: float = 0.5          # m/s^2, white linear acceleration noise
    yaw_accel_sigma: float = 1.0      # rad/s^2, white angular acceleration noise
    position_sigma_rate: float = 0.03  # m/sqrt(s), slip / unmodelled motion
    yaw_sigma_rate: float = 0.01      # rad/sqrt(s), unmodelled heading drift
    odom_v_sigma: float = 0.03        # m/s, wheel-odometry speed noise
    # rad/s: skid-steer odometry turn rate. Scrub makes it biased in every turn (10 % in the
    # simulator), not noisy, so it must not outweigh the gyro: averaged over a 3 s point turn a
    # 0.1 sigma pulled the gyro-bias estimate and left 6 deg of heading error. The gyro carries
    # the turn rate; odometry pins it at standstill (ZUPT below).
    odom_w_sigma: float = 1.0
    imu_w_sigma: float = 0.01         # rad/s
    gate_chi2: float = 13.8           # 2-dof chi-square at 99.9 %
    max_consecutive_rejections: int = 20
    default_fix_sigma: float = 2.5    # m, when a fix carries no covariance
    min_fix_sigma: float = 0.005      # m, floor on reported GNSS sigma (receivers are optimistic)
    initial_yaw_sigma: float = math.pi
    max_predict_step: float = 0.1     # s, long gaps are integrated in sub-steps
    # Below this estimated speed a GNSS fix corrects position only: with the antenna over
    # base_link, heading is observable from GNSS only through motion, and at standstill the fix
    # jitter would otherwise random-walk an unknown heading (seen: -46 deg with the robot still).
    min_heading_speed: float = 0.1    # m/s
    gyro_bias_sigma: float = 0.01     # rad/s, initial 1-sigma of the gyro bias
    gyro_bias_walk: float = 0.0005    # rad/s/sqrt(s), random walk of the gyro bias
    zupt_speed: float = 0.005         # m/s and rad/s: odometry below both is a standstill ...
    zupt_w_sigma: float = 0.002       # rad/s: ... where the turn rate is known to be ~0
    # A gap in the data longer than this while the estimate stands still (a node starting on a
    # busy machine, one sample before the gap) is not integrated as random acceleration: a 9 s
    # gap took a known start heading from 0.05 to 2.5 rad (a 1 s gap to 1.0 rad), and the lane
    # follower, which waits for 0.2 rad, never started the sweep. The state time jumps over it.
    standstill_gap: float = 0.25      # s (data normally come every 0.04 s)

    def __post_init__(self):
        for name in ('accel_sigma', 'yaw_accel_sigma', 'odom_v_sigma', 'odom_w_sigma', 'imu_w_sigma',
                     'gate_chi2', 'default_fix_sigma', 'min_fix_sigma', 'initial_yaw_sigma',
                     'max_predict_step', 'min_heading_speed', 'gyro_bias_sigma', 'gyro_bias_walk',
                     'zupt_speed', 'zupt_w_sigma', 'standstill_gap'):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise EkfError(f'EkfConfig.{name} must be > 0, got {value!r}')
        if self.position_sigma_rate < 0 or self.yaw_sigma_rate < 0:
            raise EkfError('EkfConfig sigma rates must be >= 0')
        if self.max_consecutive_rejections < 1:
            raise EkfError('EkfConfig.max_consecutive_rejections must be >= 1')


@dataclass(frozen=True)
class GnssResult:
    accepted: bool
    reason: str               # 'accepted' | 'initialised' | 'no fix' | 'outlier' | 'reseeded' | 'stale'
    mahalanobis2: float = 0.0


class PoseEkf:
    """Extended Kalman filter; call ``predict(t)`` implicitly through the ``update_*`` methods."""

    def __init__(self, config: EkfConfig | None = None):
        self.config = config or EkfConfig()
        self.x = np.zeros(N_STATE)
        self.P = np.diag([1e6, 1e6, self.config.initial_yaw_sigma ** 2, 1.0, 1.0,
                          self.config.gyro_bias_sigma ** 2])
        self.t: float | None = None
        self.position_initialised = False
        self.yaw_initialised = False
        self.gnss_accepted = 0
        self.gnss_rejected = 0
        self.consecutive_rejections = 0
        self.last_gnss_time: float | None = None
        # the wheels were at rest at the last odometry sample (or the robot is known to stand):
        # a data gap is then a gap, not motion (predict)
        self.wheels_at_rest = False
        self.last_motion_t: float | None = None     # time of the last odometry or gyro sample
        # predictions that cost the heading more than HEADING_LOSS_VAR: (t, dt, v, w, wheels at
        # rest, yaw sigma before, after), the last 10
        self.heading_losses: deque[tuple] = deque(maxlen=10)
        self.heading_loss_count = 0

    # ----------------------------------------------------------------- state management
    @property
    def initialised(self) -> bool:
        return self.position_initialised

    def initialise(self, x: float, y: float, yaw: float, t: float, position_sigma: float = 0.05,
                   yaw_sigma: float = 0.05) -> None:
        """Seed the filter with a known pose (e.g. the start pose of a surveyed launch point)."""
        self.x[:] = [x, y, yaw, 0.0, 0.0, self.x[B]]
        self.P = np.diag([position_sigma ** 2, position_sigma ** 2, yaw_sigma ** 2, 0.01, 0.01,
                          self.P[B, B]])
        self.t = float(t)
        self.position_initialised = True
        self.yaw_initialised = True

    def set_heading(self, yaw: float, sigma: float) -> None:
        """A known heading (e.g. the operator's surveyed start heading) with its 1-sigma (rad)."""
        if not (math.isfinite(yaw) and math.isfinite(sigma) and sigma > 0):
            raise EkfError(f'bad heading: yaw={yaw}, sigma={sigma}')
        self.x[YAW] = float(wrap_angle(yaw))
        self.P[YAW, :] = 0.0
        self.P[:, YAW] = 0.0
        self.P[YAW, YAW] = sigma * sigma
        if not self.position_initialised:
            # the known heading of a robot that stands (before it has a position, at start-up):
            # it is not turning either; left at its prior (1 rad/s), the turn-rate uncertainty
            # alone eroded the heading by 1 rad per second of data gap before the first gyro
            # sample. (0.002 rad/s, the standstill update's sigma, also worked but shifted the
            # lockstep start enough to flip the hazard-rule detour test, whose re-plan is
            # sensitive to where the robot stops: README "Status".)
            self.x[W] = 0.0
            self.P[W, :] = 0.0
            self.P[:, W] = 0.0
            self.P[W, W] = STANDING_W_SIGMA ** 2
            self.wheels_at_rest = True
        self.yaw_initialised = True

    def pose_sigma(self) -> float:
        """1-sigma position uncertainty (m): sqrt of the largest eigenvalue of the xy covariance."""
        return float(math.sqrt(max(np.linalg.eigvalsh(self.P[:2, :2]).max(), 0.0)))

    def yaw_sigma(self) -> float:
        return float(math.sqrt(max(self.P[YAW, YAW], 0.0)))

    # ----------------------------------------------------------------- prediction
    def predict(self, t: float) -> None:
        if self.t is None:
            self.t = float(t)
            return
        dt = float(t) - self.t
        if dt <= 0.0:
            return  # out-of-order or duplicate stamps: fuse at the current state time
        c = self.config
        # Nothing is known to move, so the state time jumps without predicting, when
        # - neither wheels nor gyro have said anything since the wheels said "at rest" (a node
        #   starting: its odometry and IMU subscriptions matched seconds after the GNSS one, and
        #   GNSS fixes alone drove predictions that took a known heading from 0.05 to 0.4 rad in
        #   3 s: the lane follower never started the sweep), or
        # - a data gap comes while standing still (see config). The wheels' word counts: gyro
        #   samples alone (before the first odometry sample of a restart) leave a turn rate of a
        #   few mrad/s in the estimate, and a 2 s gap then took a restored heading from 0.05 to
        #   0.26 rad: the lane follower never started the resumed sweep.
        silent = self.last_motion_t is None or float(t) - self.last_motion_t > c.standstill_gap
        standing = self.wheels_at_rest or (abs(self.x[V]) < c.zupt_speed and abs(self.x[W]) < c.zupt_speed)
        if (self.wheels_at_rest and silent) or (dt > c.standstill_gap and standing):
            self.t = float(t)
            return
        steps = max(1, math.ceil(dt / self.config.max_predict_step))
        yaw_var = self.P[YAW, YAW]
        for _ in range(steps):
            self._predict_step(dt / steps)
        if self.P[YAW, YAW] - yaw_var > HEADING_LOSS_VAR:
            # what took the heading: kept for the node's diagnostics (a start-up stall's cause)
            self.heading_losses.append((round(float(t), 3), round(dt, 3), round(float(self.x[V]), 4),
                                        round(float(self.x[W]), 4), self.wheels_at_rest,
                                        round(math.sqrt(max(yaw_var, 0.0)), 3), round(self.yaw_sigma(), 3)))
            self.heading_loss_count += 1
        self.t = float(t)

    def _predict_step(self, dt: float) -> None:
        c = self.config
        x, y, yaw, v, w, b = self.x
        cy, sy = math.cos(yaw), math.sin(yaw)
        self.x = np.array([x + v * cy * dt, y + v * sy * dt, float(wrap_angle(yaw + w * dt)), v, w, b])
        F = np.eye(N_STATE)
        F[X, YAW], F[X, V] = -v * sy * dt, cy * dt
        F[Y, YAW], F[Y, V] = v * cy * dt, sy * dt
        F[YAW, W] = dt
        G = np.array([[0.5 * dt * dt * cy, 0.0], [0.5 * dt * dt * sy, 0.0], [0.0, 0.5 * dt * dt],
                      [dt, 0.0], [0.0, dt], [0.0, 0.0]])
        Q = G @ np.diag([c.accel_sigma ** 2, c.yaw_accel_sigma ** 2]) @ G.T
        Q += np.diag([c.position_sigma_rate ** 2 * dt, c.position_sigma_rate ** 2 * dt,
                      c.yaw_sigma_rate ** 2 * dt, 0.0, 0.0, c.gyro_bias_walk ** 2 * dt])
        self.P = F @ self.P @ F.T + Q

    def _update(self, innovation: np.ndarray, H: np.ndarray, R: np.ndarray,
                only: tuple[int, ...] | None = None) -> None:
        """Kalman update; ``only``: the state indices the measurement may correct (others keep
        their value; the Joseph form keeps the covariance right for such a sub-optimal gain)."""
        S = H @ self.P @ H.T + R
        K = self.P @ H.T @ np.linalg.inv(S)
        if only is not None:
            keep = np.zeros(N_STATE, dtype=bool)
            keep[list(only)] = True
            K[~keep, :] = 0.0
        self.x = self.x + K @ innovation
        self.x[YAW] = float(wrap_angle(self.x[YAW]))
        IKH = np.eye(N_STATE) - K @ H
        self.P = IKH @ self.P @ IKH.T + K @ R @ K.T   # Joseph form keeps P symmetric positive
        self.P = 0.5 * (self.P + self.P.T)

    # ----------------------------------------------------------------- measurements
    def antenna_position(self) -> np.ndarray:
        lx, ly = self.config.lever_arm
        x, y, yaw = self.x[:3]
        return np.array([x + lx * math.cos(yaw) - ly * math.sin(yaw),
                         y + lx * math.sin(yaw) + ly * math.cos(yaw)])

    def update_gnss(self, t: float, east: float, north: float, cov: np.ndarray | None,
                    status: int = STATUS_GBAS_FIX) -> GnssResult:
        """Fuse one antenna fix in ``map`` with its 2x2 covariance (None: unknown)."""
        c = self.config
        if status < STATUS_FIX or not (math.isfinite(east) and math.isfinite(north)):
            return GnssResult(False, 'no fix')
        R = self._fix_covariance(cov)
        lx, ly = c.lever_arm
        if not self.position_initialised:
            yaw = self.x[YAW]
            self.x[X] = east - (lx * math.cos(yaw) - ly * math.sin(yaw))
            self.x[Y] = north - (lx * math.sin(yaw) + ly * math.cos(yaw))
            self.P[:2, :2] = R + np.eye(2) * (lx * lx + ly * ly)
            self.P[:2, 2:] = 0.0
            self.P[2:, :2] = 0.0
            self.t = float(t) if self.t is None else max(self.t, float(t))
            self.position_initialised = True
            self._accept(t)
            return GnssResult(True, 'initialised')
        self.predict(t)
        yaw = self.x[YAW]
        H = np.zeros((2, N_STATE))
        H[0, X] = H[1, Y] = 1.0
        H[0, YAW] = -lx * math.sin(yaw) - ly * math.cos(yaw)
        H[1, YAW] = lx * math.cos(yaw) - ly * math.sin(yaw)
        innovation = np.array([east, north]) - self.antenna_position()
        S = H @ self.P @ H.T + R
        d2 = float(innovation @ np.linalg.solve(S, innovation))
        if d2 > c.gate_chi2:
            self.gnss_rejected += 1
            self.consecutive_rejections += 1
            if self.consecutive_rejections < c.max_consecutive_rejections:
                return GnssResult(False, 'outlier', d2)
            # The receiver has disagreed for a long run: the estimate has drifted. Re-seed.
            self.x[X] += innovation[0]
            self.x[Y] += innovation[1]
            self.P[:2, :2] = R + np.eye(2) * (lx * lx + ly * ly)
            self.P[:2, 2:] = 0.0
            self.P[2:, :2] = 0.0
            self._accept(t)
            return GnssResult(True, 'reseeded', d2)
        standstill = abs(self.x[V]) < c.min_heading_speed
        self._update(innovation, H, R, only=(X, Y) if standstill else None)
        self._accept(t)
        return GnssResult(True, 'accepted', d2)

    def _accept(self, t: float) -> None:
        self.gnss_accepted += 1
        self.consecutive_rejections = 0
        self.last_gnss_time = float(t)

    def _fix_covariance(self, cov) -> np.ndarray:
        c = self.config
        if cov is None:
            return np.eye(2) * c.default_fix_sigma ** 2
        R = np.asarray(cov, dtype=float).reshape(2, 2)
        if not np.all(np.isfinite(R)):
            raise EkfError(f'GNSS covariance is not finite: {R.tolist()}')
        R = 0.5 * (R + R.T)
        floor = c.min_fix_sigma ** 2
        evals, evecs = np.linalg.eigh(R)
        return evecs @ np.diag(np.maximum(evals, floor)) @ evecs.T

    def update_odometry(self, t: float, v: float, w: float) -> None:
        """Fuse wheel-odometry body speeds (m/s, rad/s)."""
        if not (math.isfinite(v) and math.isfinite(w)):
            raise EkfError(f'odometry speeds are not finite: v={v}, w={w}')
        self.predict(t)
        H = np.zeros((2, N_STATE))
        H[0, V] = H[1, W] = 1.0
        c = self.config
        # wheels at rest: the robot is not turning either (zero-velocity update; skid steer cannot
        # rotate without its wheels turning), which pins the gyro bias
        self.wheels_at_rest = abs(v) < c.zupt_speed and abs(w) < c.zupt_speed
        w_sigma = c.zupt_w_sigma if self.wheels_at_rest else c.odom_w_sigma
        R = np.diag([c.odom_v_sigma ** 2, w_sigma ** 2])
        self._update(np.array([v, w]) - self.x[[V, W]], H, R)
        self._motion_heard(t)

    def update_yaw_rate(self, t: float, w: float, sigma: float | None = None) -> None:
        """Fuse an IMU yaw rate (rad/s)."""
        if not math.isfinite(w):
            raise EkfError(f'IMU yaw rate is not finite: {w}')
        self.predict(t)
        H = np.zeros((1, N_STATE))
        H[0, W] = H[0, B] = 1.0          # the gyro reads the turn rate plus its bias
        s = sigma if sigma and sigma > 0 else self.config.imu_w_sigma
        self._update(np.array([w - self.x[W] - self.x[B]]), H, np.array([[s * s]]))
        self._motion_heard(t)

    def _motion_heard(self, t: float) -> None:
        """An odometry or gyro sample at ``t`` has been fused (see :meth:`predict`)."""
        if self.last_motion_t is None or float(t) > self.last_motion_t:
            self.last_motion_t = float(t)

    def update_yaw(self, t: float, yaw: float, sigma: float) -> None:
        """Fuse an absolute heading (IMU orientation with a magnetometer, dual antenna, ...)."""
        if not (math.isfinite(yaw) and math.isfinite(sigma) and sigma > 0):
            raise EkfError(f'bad yaw measurement: yaw={yaw}, sigma={sigma}')
        self.predict(t)
        if not self.yaw_initialised:
            self.x[YAW] = float(wrap_angle(yaw))
            self.P[YAW, :] = 0.0
            self.P[:, YAW] = 0.0
            self.P[YAW, YAW] = sigma * sigma
            self.yaw_initialised = True
            return
        H = np.zeros((1, N_STATE))
        H[0, YAW] = 1.0
        self._update(np.array([float(wrap_angle(yaw - self.x[YAW]))]), H, np.array([[sigma * sigma]]))
