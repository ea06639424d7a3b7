"""``coverage_planner``: plan coverage of an area file and publish it, latched.

Parameters (config/planner.yaml): ``area_file``, ``swath_width`` (0 = robot swath), ``overlap``,
``angle_deg`` (negative = automatic), ``turn_radius`` (> 0 = car-like: rejected, the wheel-safe
turn primitive needs point turns), ``max_outer_overhang``,
``frame_id``, ``robot_config``. Plans at start-up when ``area_file`` is set, and again on the
``~/plan`` service (std_srvs/Trigger) or when ``area_file`` is changed at run time.

Publishes (transient local, depth 1): ``coverage/plan`` (std_msgs/String, CoveragePlan JSON),
``coverage/path`` (nav_msgs/Path in ``map``), ``coverage/markers`` (lanes and transits).
"""

from __future__ import annotations

import math
import sys

from geometry_msgs.msg import Point, PoseStamped
from nav_msgs.msg import Path
from rcl_interfaces.msg import SetParametersResult
from rclpy.node import Node
from std_msgs.msg import ColorRGBA, String
from std_srvs.srv import Trigger
from visualization_msgs.msg import Marker, MarkerArray

from mine_robot.planning.area import AreaError, load_area
from mine_robot.planning.planner import PlannerConfig, PlannerError, plan_coverage
from mine_robot.robot import RobotConfigError, load_robot
from mine_robot.ros import qos
from mine_robot.ros.diagnostics import ERROR, OK, WARN, Diagnostics
from mine_robot.ros.params import ConfigError, declare
from mine_robot.ros.runner import run_node


def plan_to_path(plan, frame_id: str, stamp, step: float = 0.25) -> Path:
    msg = Path()
    msg.header.frame_id = frame_id
    msg.header.stamp = stamp
    for x, y, yaw, _seg in plan.poses(step):
        pose = PoseStamped()
        pose.header = msg.header
        pose.pose.position.x, pose.pose.position.y = float(x), float(y)
        pose.pose.orientation.z, pose.pose.orientation.w = math.sin(yaw / 2), math.cos(yaw / 2)
        msg.poses.append(pose)
    return msg


def plan_to_markers(plan, frame_id: str, stamp) -> MarkerArray:
    colours = {'lane': ColorRGBA(r=0.1, g=0.4, b=0.9, a=1.0),
               'transit': ColorRGBA(r=1.0, g=0.55, b=0.0, a=0.8)}
    out = MarkerArray()
    out.markers.append(Marker(action=Marker.DELETEALL))
    for role in ('lane', 'transit'):
        m = Marker(ns=f'coverage_{role}', id=0, type=Marker.LINE_LIST, action=Marker.ADD)
        m.header.frame_id, m.header.stamp = frame_id, stamp
        m.scale.x = 0.08 if role == 'lane' else 0.04
        m.color = colours[role]
        m.pose.orientation.w = 1.0
        for seg in plan.segments:
            if seg.role != role:
                continue
            for a, b in zip(seg.points[:-1], seg.points[1:]):
                m.points.extend([Point(x=float(a[0]), y=float(a[1])), Point(x=float(b[0]), y=float(b[1]))])
        out.markers.append(m)
    return out


class CoveragePlannerNode(Node):
    def __init__(self, **kwargs):
        super().__init__('coverage_planner', **kwargs)
        self.area_file = declare(self, 'area_file', '', 'area GeoJSON (roles search_area, no_go, '
                                 'safe_access); empty = wait for the parameter or the ~/plan service')
        swath = declare(self, 'swath_width', 0.0, 'detector swath (m); 0 = from the robot config',
                        range=(0.0, 10.0))
        overlap = declare(self, 'overlap', 0.1, 'fraction of the swath shared by neighbouring lanes',
                          range=(0.0, 0.8))
        angle = declare(self, 'angle_deg', -1.0, 'lane direction, deg CCW from east; < 0 = automatic',
                        range=(-1.0, 180.0))
        turn_radius = declare(self, 'turn_radius', 0.0, 'minimum turning radius (m); 0 = point turns',
                              range=(0.0, 50.0))
        overhang = declare(self, 'max_outer_overhang', 0.55, 'm the detector head may reach past the '
                           'outer boundary (never past a no-go zone)', range=(0.0, 2.0))
        edge_overlap = declare(self, 'edge_overlap', 0.01, 'm the detector band reaches past the outer '
                               'boundary on the outermost lanes (margin for tracking error; the rear '
                               'wheels after a post-turn backup come this much closer to the boundary)',
                               range=(0.0, 0.2))
        self.frame_id = declare(self, 'frame_id', 'map', 'frame of the published plan')
        self.path_step = declare(self, 'path_step', 0.25, 'pose spacing of coverage/path (m)',
                                 range=(0.02, 5.0))
        robot_config = declare(self, 'robot_config', '', 'robot.yaml (empty: the package config)',
                               read_only=True)
        try:
            self.robot = load_robot(robot_config or None)
            self.config = PlannerConfig(swath_width=swath, overlap=overlap,
                                        angle_deg=None if angle < 0 else angle,
                                        turn_radius=turn_radius, max_outer_overhang=overhang,
                                        edge_overlap=edge_overlap)
            self.config.validate()
        except (RobotConfigError, PlannerError) as exc:
            raise ConfigError(str(exc)) from exc
        self.pub_plan = self.create_publisher(String, 'coverage/plan', qos.LATCHED)
        self.pub_path = self.create_publisher(Path, 'coverage/path', qos.LATCHED)
        self.pub_markers = self.create_publisher(MarkerArray, 'coverage/markers', qos.LATCHED)
        self.diag = Diagnostics(self)
        self.plan = None
        self.create_service(Trigger, '~/plan', self._on_plan_service)
        self._replan_timer = None
        self.add_on_set_parameters_callback(self._on_params)
        if self.area_file:
            ok, message = self.make_plan()
            if not ok:
                raise ConfigError(message)

    def make_plan(self) -> tuple[bool, str]:
        try:
            area = load_area(self.area_file)
            plan = plan_coverage(area, self.robot, self.config)
        except (AreaError, PlannerError) as exc:
            self.get_logger().error(f'cannot plan: {exc}')
            self.diag.update(ERROR, f'cannot plan: {exc}', force=True)
            return False, str(exc)
        self.plan = plan
        stamp = self.get_clock().now().to_msg()
        self.pub_plan.publish(String(data=plan.to_json()))
        self.pub_path.publish(plan_to_path(plan, self.frame_id, stamp, self.path_step))
        self.pub_markers.publish(plan_to_markers(plan, self.frame_id, stamp))
        s = plan.stats
        message = (f'{s["lane_count"]} lanes, {s["path_length_m"]:.0f} m, coverage '
                   f'{100 * s["coverage_fraction"]:.2f} %, unsafe {s["safety"]["metres"]:.2f} m')
        level = WARN if s['safety']['count'] or s['no_go_m'] > 0 else OK
        self.diag.update(level, message, {'area_file': self.area_file,
                                          'planning_time_s': s['planning_time_s']}, force=True)
        self.get_logger().info(f'planned {self.area_file}: {message}')
        return True, message

    def _on_plan_service(self, _request, response):
        if not self.area_file:
            response.success, response.message = False, 'area_file parameter is not set'
            return response
        response.success, response.message = self.make_plan()
        return response

    def _on_params(self, params):
        for p in params:
            if p.name == 'area_file':
                self.area_file = p.value
                if self._replan_timer is None:     # plan outside the parameter callback
                    self._replan_timer = self.create_timer(0.01, self._replan_once)
        return SetParametersResult(successful=True)

    def _replan_once(self):
        self.destroy_timer(self._replan_timer)
        self._replan_timer = None
        self.make_plan()


def main(args=None):
    sys.exit(run_node(CoveragePlannerNode, args))


if __name__ == '__main__':
    main()
