"""Skid-steer robot kinematics with speed/acceleration limits, wheel slip and wheel odometry.

Units: metres, seconds, radians; pose ``(x, y, yaw)`` in the scenario's local frame (x east,
y north, yaw counter-clockwise from east). Limits come from ``config/robot.yaml``
(``speed_limits``); slip and odometry error parameters from ``config/sim.yaml`` (``robot``).

Model: the commanded twist ``(v, w)`` is clipped to the speed limits and rate-limited by the
acceleration limits; the wheels turn at that twist. The ground moves the body less than the wheels
turn: forward speed is reduced by ``slip_linear`` (fraction) and turn rate by ``slip_angular``
(skid-steer robots scrub when turning), each with a little random variation. Wheel odometry
integrates what the wheels turned (not what the body did), with an encoder scale error and
noise, so it drifts from the truth the way real wheel odometry does.
"""

from __future__ import annotations

from dataclasses import dataclass
import math

import numpy as np

from mine_robot.robot import RobotGeometry


@dataclass(frozen=True)
class KinematicsConfig:
    slip_linear: float = 0.03          # fraction of wheel speed lost to slip when moving forward
    slip_angular: float = 0.10         # fraction of wheel turn rate lost to scrub when turning
    slip_noise: float = 0.02           # std of the random slip variation (fraction)
    odom_scale_error: float = 0.01     # encoder scale error (odometry over-reads by this fraction)
    odom_yaw_rate_bias: float = 0.001  # rad/s bias of the odometric turn rate
    odom_noise_linear: float = 0.005   # m/s std of odometric speed noise
    odom_noise_angular: float = 0.005  # rad/s std of odometric turn-rate noise

    def __post_init__(self):
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if not math.isfinite(value) or (name != 'odom_yaw_rate_bias' and value < 0.0):
                raise ValueError(f'kinematics.{name} must be finite and >= 0, got {value}')
        if self.slip_linear >= 1.0 or self.slip_angular >= 1.0:
            raise ValueError('kinematics slip fractions must be < 1')


@dataclass
class Pose2D:
    x: float
    y: float
    yaw: float

    def as_tuple(self) -> tuple[float, float, float]:
        return (self.x, self.y, self.yaw)


def body_to_world(pose: tuple[float, float, float], points: np.ndarray) -> np.ndarray:
    """Transform (n, 2) points from base_link into the world at ``pose`` (x, y, yaw)."""
    x, y, yaw = pose
    c, s = math.cos(yaw), math.sin(yaw)
    pts = np.asarray(points, dtype=float)
    return pts @ np.array([[c, s], [-s, c]]) + (x, y)


class SkidSteer:
    """True robot motion. ``step(dt, v_cmd, w_cmd)`` advances the pose and returns the wheel twist
    (what the encoders see) and the body twist (what really happened)."""

    def __init__(self, robot: RobotGeometry, pose: tuple[float, float, float],
                 config: KinematicsConfig | None = None, rng: np.random.Generator | None = None):
        self.robot = robot
        self.config = config or KinematicsConfig()
        self.rng = rng if rng is not None else np.random.default_rng(0)
        self.pose = Pose2D(*pose)
        self.wheel_v = 0.0      # m/s, twist the wheels turn at
        self.wheel_w = 0.0
        self.body_v = 0.0       # m/s, true body twist
        self.body_w = 0.0
        self._slip_v = self.config.slip_linear
        self._slip_w = self.config.slip_angular

    def _limit(self, dt: float, v_cmd: float, w_cmd: float) -> tuple[float, float]:
        r = self.robot
        v_cmd = min(max(v_cmd, -r.max_linear), r.max_linear)
        w_cmd = min(max(w_cmd, -r.max_angular), r.max_angular)
        dv, dw = r.max_linear_accel * dt, r.max_angular_accel * dt
        v = self.wheel_v + min(max(v_cmd - self.wheel_v, -dv), dv)
        w = self.wheel_w + min(max(w_cmd - self.wheel_w, -dw), dw)
        return v, w

    def step(self, dt: float, v_cmd: float, w_cmd: float) -> None:
        if dt <= 0.0:
            return
        v_cmd, w_cmd = float(v_cmd), float(w_cmd)
        if not (math.isfinite(v_cmd) and math.isfinite(w_cmd)):
            v_cmd, w_cmd = 0.0, 0.0  # a non-finite command is treated as stop
        self.wheel_v, self.wheel_w = self._limit(dt, v_cmd, w_cmd)
        cfg = self.config
        if cfg.slip_noise > 0.0:
            # slip varies slowly with the ground: first-order walk around its mean
            n0, n1 = self.rng.standard_normal(2).tolist()
            k = cfg.slip_noise * math.sqrt(min(dt, 1.0))
            self._slip_v = min(max(self._slip_v + 0.2 * (cfg.slip_linear - self._slip_v) * dt + k * n0,
                                   0.0), 0.5)
            self._slip_w = min(max(self._slip_w + 0.2 * (cfg.slip_angular - self._slip_w) * dt + k * n1,
                                   0.0), 0.7)
        self.body_v = self.wheel_v * (1.0 - self._slip_v)
        self.body_w = self.wheel_w * (1.0 - self._slip_w)
        p = self.pose
        mid = p.yaw + 0.5 * self.body_w * dt
        p.x += self.body_v * math.cos(mid) * dt
        p.y += self.body_v * math.sin(mid) * dt
        p.yaw = _wrap(p.yaw + self.body_w * dt)


def _wrap(angle: float) -> float:
    """Scalar wrap to [-pi, pi) (same convention as mine_robot.geo.wrap_angle)."""
    return (angle + math.pi) % (2.0 * math.pi) - math.pi


class WheelOdometry:
    """Dead-reckoned pose in the ``odom`` frame from the wheel twist (starts at the origin)."""

    def __init__(self, config: KinematicsConfig | None = None, rng: np.random.Generator | None = None):
        self.config = config or KinematicsConfig()
        self.rng = rng if rng is not None else np.random.default_rng(1)
        self.pose = Pose2D(0.0, 0.0, 0.0)
        self.v = 0.0
        self.w = 0.0

    def step(self, dt: float, wheel_v: float, wheel_w: float) -> None:
        cfg = self.config
        n0, n1 = self.rng.standard_normal(2).tolist()
        self.v = wheel_v * (1.0 + cfg.odom_scale_error) + cfg.odom_noise_linear * n0
        self.w = (wheel_w * (1.0 + cfg.odom_scale_error) + cfg.odom_yaw_rate_bias
                  + cfg.odom_noise_angular * n1)
        if abs(wheel_v) < 1e-9 and abs(wheel_w) < 1e-9:
            self.v, self.w = 0.0, 0.0  # wheels stopped: encoders do not move
        p = self.pose
        mid = p.yaw + 0.5 * self.w * dt
        p.x += self.v * math.cos(mid) * dt
        p.y += self.v * math.sin(mid) * dt
        p.yaw = _wrap(p.yaw + self.w * dt)
