"""``lane_follower``: follows the coverage plan, publishes ``cmd_vel/autonomy`` and progress.

Path source: ``coverage/plan`` (JSON ``CoveragePlan`` with lane/transit roles: lanes at sweep speed,
transits at transit speed) or, when only ``coverage/path`` (nav_msgs/Path) is available, that path
driven entirely at sweep speed. It does not start following before localization has converged
(position 1-sigma from the ``odometry/filtered`` covariance at most ``start_max_sigma`` and heading
1-sigma at most ``start_max_yaw_sigma``); until then it publishes zero. A follower fault is logged at
ERROR (throttled) and held until ``~/resume``, which re-acquires the path from the current pose.
Control (the mission_manager calls ``lane_follower/pause`` and ``lane_follower/resume``):
``~/start``, ``~/pause``, ``~/resume`` (std_srvs/Trigger)
and ``~/pause_at`` (std_msgs/Int32: path vertex index). Progress (index, distance along path,
cross-track error, segment, role, state) as JSON on ``~/progress`` and on /diagnostics.
"""

from __future__ import annotations

import json
import math
import sys
import zlib

from geometry_msgs.msg import Twist
from nav_msgs.msg import Odometry, Path
import numpy as np
from rclpy.node import Node
from std_msgs.msg import Int32, String
from std_srvs.srv import Trigger

from mine_robot.control.follower import FollowerConfig, FollowerError, FollowPath, PathFollower
from mine_robot.nodes._driving import odometry_to_pose, twist
from mine_robot.ros import qos
from mine_robot.ros.diagnostics import ERROR, OK, WARN, Diagnostics
from mine_robot.ros.params import ConfigError, declare
from mine_robot.ros.runner import run_node


class LaneFollowerNode(Node):
    def __init__(self, **kwargs):
        super().__init__('lane_follower', **kwargs)
        rate = declare(self, 'control_rate', 20.0, 'control rate (Hz)', range=(1.0, 200.0))
        self.autostart = declare(self, 'autostart', True, 'follow a plan as soon as it arrives')
        self.pose_timeout = declare(self, 'pose_timeout', 0.5, 'no pose for this long: publish zero (s)',
                                    range=(0.05, 10.0))
        self.start_max_sigma = declare(self, 'start_max_sigma', 0.10, 'do not start before the pose '
                                       '1-sigma is below this (m)', range=(0.001, 10.0))
        self.start_max_yaw_sigma = declare(self, 'start_max_yaw_sigma', 0.2, 'do not start before the '
                                           'heading 1-sigma is below this (rad)', range=(0.001, 4.0))
        self.converge_timeout = declare(self, 'converge_timeout', 30.0, 'waiting longer than this for '
                                        'localization to converge is an error (s): the robot will not '
                                        'move until it does', range=(1.0, 3600.0))
        self.converged = False
        self._waiting_since: float | None = None
        fields = {
            'sweep_speed': (0.3, 'lane speed (m/s)', (0.01, 2.0)),
            'transit_speed': (0.4, 'transit speed (m/s)', (0.01, 2.0)),
            'max_angular': (0.9, 'max turn rate (rad/s)', (0.01, 5.0)),
            'linear_accel': (0.4, 'm/s^2', (0.01, 5.0)),
            'linear_decel': (0.4, 'm/s^2', (0.01, 5.0)),
            'final_approach_time': (0.3, 'v <= distance / this near stop points (s)', (0.01, 5.0)),
            'heading_gain': (2.5, '1/s', (0.01, 50.0)),
            'cross_track_gain': (1.0, 'Stanley gain (1/s)', (0.01, 50.0)),
            'softening_speed': (0.3, 'Stanley softening speed (m/s)', (0.01, 5.0)),
            'corner_angle': (0.35, 'vertices turning more are point turns (rad)', (0.01, 3.2)),
            'turn_tolerance': (0.02, 'point turn done within (rad)', (0.001, 0.5)),
            'max_cross_track': (0.5, 'fault beyond this cross-track error (m)', (0.01, 5.0)),
        }
        values = {k: declare(self, k, d, desc, range=r) for k, (d, desc, r) in fields.items()}
        try:
            self.config = FollowerConfig(**values)
        except FollowerError as exc:
            raise ConfigError(str(exc)) from exc
        self.follower: PathFollower | None = None
        self.active = False
        self.pose = None
        self.plan_source = ''
        self.plan_crc: int | None = None
        self._plan_json: str | None = None
        self.pub = self.create_publisher(Twist, 'cmd_vel/autonomy', qos.RELIABLE)
        self.progress_pub = self.create_publisher(String, '~/progress', 10)
        self.diag = Diagnostics(self)
        self.create_subscription(String, 'coverage/plan', self._on_plan, qos.LATCHED)
        self.create_subscription(Path, 'coverage/path', self._on_path, qos.LATCHED)
        self.create_subscription(Odometry, 'odometry/filtered', self._on_pose, 10)
        self.create_subscription(Int32, '~/pause_at', self._on_pause_at, 10)
        self.create_service(Trigger, '~/start', self._srv(self._start))
        self.create_service(Trigger, '~/pause', self._srv(self._pause))
        self.create_service(Trigger, '~/resume', self._srv(self._resume))
        self.create_timer(1.0 / rate, self._step)

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _set_path(self, path: FollowPath, source: str) -> None:
        self.follower = PathFollower(path, self.config)
        self.plan_source = source
        self.active = self.autostart
        self.get_logger().info(f'new path from {source}: {path.length:.1f} m, {len(path.legs)} legs')

    def _on_plan(self, msg: String) -> None:
        from mine_robot.planning.plan import CoveragePlan
        if msg.data == self._plan_json:
            # the same plan again (a latched topic re-delivers it to a restarted publisher's
            # subscribers, or the planner re-publishes it): keep the progress along it
            return
        self._plan_json = msg.data
        self.plan_crc = zlib.crc32(msg.data.encode())
        try:
            plan = CoveragePlan.from_json(msg.data)
            self._set_path(FollowPath.from_plan(plan, self.config.corner_angle), 'coverage/plan')
        except (ValueError, KeyError, TypeError) as exc:
            self.get_logger().error(f'coverage/plan rejected: {exc}')

    def _on_path(self, msg: Path) -> None:
        if self.plan_source == 'coverage/plan':
            return      # the plan (with roles) wins over the bare path
        pts = np.array([[p.pose.position.x, p.pose.position.y] for p in msg.poses]).reshape(-1, 2)
        try:
            self._set_path(FollowPath.from_segments([('lane', pts)], self.config.corner_angle),
                           'coverage/path')
        except FollowerError as exc:
            self.get_logger().error(f'coverage/path rejected: {exc}')

    def _on_pose(self, msg: Odometry) -> None:
        pose = odometry_to_pose(msg)
        self.pose = (self._now(), pose)
        if not self.converged:
            yaw_var = float(msg.pose.covariance[35])
            yaw_sigma = math.sqrt(yaw_var) if yaw_var >= 0 else math.inf
            self.sigmas = (pose.sigma, yaw_sigma)
            if pose.sigma <= self.start_max_sigma and yaw_sigma <= self.start_max_yaw_sigma \
                    and math.isfinite(pose.x) and math.isfinite(pose.yaw):
                self.converged = True
                self.get_logger().info(f'localization converged (sigma {pose.sigma:.3f} m, heading '
                                       f'{math.degrees(yaw_sigma):.1f} deg): following allowed')

    def _on_pause_at(self, msg: Int32) -> None:
        if self.follower is None:
            self.get_logger().warning('pause_at ignored: no path yet')
            return
        try:
            self.follower.pause_at(msg.data)
        except FollowerError as exc:
            self.get_logger().error(f'pause_at rejected: {exc}')

    def _srv(self, action):
        def handler(_request, response):
            response.success, response.message = action()
            return response
        return handler

    def _start(self):
        if self.follower is None:
            return False, 'no path received yet'
        self.active = True
        return True, 'following'

    def _pause(self):
        if self.follower is None:
            return False, 'no path'
        self.follower.pause()
        return True, 'pausing'

    def _resume(self):
        if self.follower is None:
            return False, 'no path'
        if self.follower.state == 'fault':
            if self.pose is None or self._now() - self.pose[0] > self.pose_timeout:
                return False, 'faulted and no current pose to re-acquire the path from'
            p = self.pose[1]
            fault = self.follower.fault
            self.follower.reset_fault(p.x, p.y, p.yaw)
            self.get_logger().info(f'fault cleared ({fault}); path re-acquired at '
                                   f'{self.follower.s:.2f} m')
        self.follower.resume()
        self.active = True
        return True, 'resumed'

    def _step(self) -> None:
        if self.follower is None or not self.active:
            return
        now = self._now()
        if self.pose is None or now - self.pose[0] > self.pose_timeout:
            self.pub.publish(twist(0.0, 0.0))
            self.diag.update(WARN, 'waiting for odometry/filtered')
            return
        if not self.converged:
            self.pub.publish(twist(0.0, 0.0))
            sig = getattr(self, 'sigmas', (math.inf, math.inf))
            text = (f'waiting for localization to converge (sigma {sig[0]:.3f} m, heading '
                    f'{sig[1]:.3f} rad; limits {self.start_max_sigma:g} m, {self.start_max_yaw_sigma:g} rad)')
            if self._waiting_since is None:
                self._waiting_since = now
            if now - self._waiting_since > self.converge_timeout:
                # a standing robot cannot learn its heading from GNSS: without help it waits for good
                text = (f'{text} for {now - self._waiting_since:.0f} s: the robot will not move; '
                        'check GNSS and IMU, or give the heading (localization initial_yaw or pose_file)')
                self.get_logger().error(text, throttle_duration_sec=30.0)
                self.diag.update(ERROR, text)
            else:
                self.diag.update(WARN, text)
            return
        p = self.pose[1]
        cmd = self.follower.step(now, p.x, p.y, p.yaw)
        self.pub.publish(twist(cmd.v, cmd.w))
        # plan_crc: which plan this progress is along (CRC-32 of its JSON; None for a bare path),
        # so the mission never takes a 'done' of the previous plan for the one it just sent
        progress = {**cmd.progress.as_dict(), 'fault': cmd.fault,
                    'plan_crc': self.plan_crc if self.plan_source == 'coverage/plan' else None}
        self.progress_pub.publish(String(data=json.dumps(progress)))
        if cmd.progress.state == 'done':
            self.active = False
        if cmd.fault:
            self.get_logger().error(f'follower fault: {cmd.fault} at {cmd.progress.distance:.2f} m; '
                                    f'call ~/resume to re-acquire the path', throttle_duration_sec=5.0)
        level = ERROR if cmd.fault else OK
        self.diag.update(level, cmd.fault or cmd.progress.state,
                         {k: (round(v, 3) if isinstance(v, float) else v) for k, v in progress.items()})


def main(args=None):
    sys.exit(run_node(LaneFollowerNode, args))
