"""The driving stack on plain data, for lockstep runs (benchmark, pipeline) without ROS.

Wires the same classes the nodes use: EKF -> follower -> mux (autonomy input, safety-stop and
e-stop locks) -> limiter, with the safety monitor evaluated every control period on the EKF pose,
the follower's command and the ground swept so far (the swept-ground rule's raster, fed with the
estimated poses, as the safety_monitor node does).
"""

from __future__ import annotations

from dataclasses import dataclass
import math

import numpy as np

from mine_robot.control.ekf import STATUS_FIX, STATUS_GBAS_FIX, STATUS_NO_FIX, EkfConfig, PoseEkf
from mine_robot.control.follower import Command, FollowerConfig, FollowPath, PathFollower
from mine_robot.control.mux import DEFAULT_INPUTS, Limits, MuxDecision, TwistMux, VelocityLimiter
from mine_robot.control.safety import (
    Geofence,
    PoseSample,
    SafetyConfig,
    SafetyMonitor,
    SafetyStatus,
    SweptGroundRule,
)

# sim GNSS mode -> NavSatStatus value (RTK fixed/float are ground-based augmentation)
MODE_STATUS = {'rtk': STATUS_GBAS_FIX, 'float': STATUS_GBAS_FIX, 'single': STATUS_FIX, 'none': STATUS_NO_FIX}


@dataclass(frozen=True)
class StackOutput:
    v: float
    w: float
    follower: Command
    decision: MuxDecision
    safety: SafetyStatus


class DrivingStack:
    def __init__(self, robot, area, path: FollowPath, *, safe=(), follower: FollowerConfig | None = None,
                 safety: SafetyConfig | None = None, ekf: EkfConfig | None = None,
                 ):
        from mine_robot.planning.coverage import detector_outline
        self.robot = robot
        self.ekf = PoseEkf(ekf or EkfConfig(lever_arm=tuple(robot.gnss.xyz[:2])))
        self.follower = PathFollower(path, follower or FollowerConfig())
        safe = list(area.safe) + list(safe)
        self.monitor = SafetyMonitor(safety or SafetyConfig(input_watchdog_enabled=False,
                                                            sensor_watchdog_enabled=False),
                                     robot, Geofence(area.search, safe, area.no_go),
                                     SweptGroundRule(robot.wheel_patches(), safe, detector_outline(robot)))
        self.mux = TwistMux(DEFAULT_INPUTS)
        self.limiter = VelocityLimiter(Limits.from_robot(robot))

    def on_gnss(self, t: float, east: float, north: float, sigma: float, mode: str):
        cov = np.eye(2) * sigma ** 2 if math.isfinite(sigma) else None
        return self.ekf.update_gnss(t, east, north, cov, MODE_STATUS.get(mode, STATUS_NO_FIX))

    def on_odom(self, t: float, v: float, w: float) -> None:
        self.ekf.update_odometry(t, v, w)

    def on_imu(self, t: float, yaw_rate: float) -> None:
        self.ekf.update_yaw_rate(t, yaw_rate)

    def control(self, t: float, pose_fresh: bool = True) -> StackOutput:
        x, y, yaw, v, w = self.ekf.x[:5]
        if pose_fresh and self.ekf.initialised:
            self.monitor.set_pose(PoseSample(t, x, y, yaw, v, w, self.ekf.pose_sigma()))
            self.monitor.swept.add_pose(x, y, yaw)
        cmd = self.follower.step(t, x, y, yaw)
        self.mux.set_command('autonomy', cmd.v, cmd.w, t)
        self.monitor.set_command(cmd.v, cmd.w)
        status = self.monitor.evaluate(t)
        self.mux.set_lock('estop', status.estop, 'e-stop latched', t)
        self.mux.set_lock('safety', status.stop and not status.estop, status.message, t)
        d = self.mux.select(t)
        v_out, w_out = self.limiter.stop(t) if d.stopped else self.limiter.limit(d.v, d.w, t)
        return StackOutput(v_out, w_out, cmd, d, status)
