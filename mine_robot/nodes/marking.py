"""marking: put the marker nozzle over each confirmed target and fire it.

Reads the targets to mark from the latched ``mission/status`` (the mission manager is the one
authority on what is already marked, also across restarts), the pose from ``odometry/filtered``
and the marker's answers from ``marker/status``. For one target at a time it runs
:class:`mine_robot.mission.marking.MarkingSequence`: drive straight along the lane on
``cmd_vel_topic`` (a mux input above the follower), send ``marker/command``, wait for the
acknowledgement, retry, and publish the outcome on ``marking/events`` (the mission records it).

``marker/command`` (std_msgs/String JSON): ``{"cmd_id", "name": "FIRE", "target", "duration_ms",
"slide_mm", "mode"}``; ``marker/status`` answers: ``{"type": "ack", "cmd_id", "ok", "error"}`` and
``{"type": "done", "cmd_id", "slide_mm"}`` (firing finished; the mark is recorded then, at the
measured slide position).
"""

from __future__ import annotations

from dataclasses import fields
import functools
import json
import sys

from geometry_msgs.msg import Twist
from nav_msgs.msg import Odometry
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from std_msgs.msg import String

from mine_robot.mission.marking import CLUTTER_POLICIES, MarkingConfig, MarkingController, MarkingStep
from mine_robot.nodes._driving import load_robot_param, odometry_to_pose, twist
from mine_robot.ros import qos
from mine_robot.ros.diagnostics import OK, WARN, Diagnostics
from mine_robot.ros.params import ConfigError, declare
from mine_robot.ros.runner import run_node


class MarkingNode(Node):
    def __init__(self, **kwargs):
        super().__init__('marking', **kwargs)
        self.group = MutuallyExclusiveCallbackGroup()  # one sequence, one thread at a time
        robot_config = declare(self, 'robot_config', '', 'robot.yaml (default: package config)')
        cmd_topic = declare(self, 'cmd_vel_topic', 'cmd_vel/marking',
                            'velocity output while manoeuvring to a stop pose (a twist_mux input '
                            'with priority above the follower)')
        rate = declare(self, 'control_rate', 20.0, 'sequence/manoeuvre rate (Hz)', range=(1.0, 100.0))
        values = {}
        for f in fields(MarkingConfig):
            default = getattr(MarkingConfig(), f.name)
            kw = {'choices': CLUTTER_POLICIES} if f.name == 'clutter_policy' else {}
            if isinstance(default, float):
                kw['range'] = (0.0, 100.0)
            values[f.name] = declare(self, f.name, default, f'marking: {f.name.replace("_", " ")}', **kw)
        try:
            self.config = MarkingConfig(**values)
            self.robot = load_robot_param(robot_config)
        except ValueError as exc:
            raise ConfigError(f'marking: {exc}') from exc
        self.ctl = MarkingController(self.robot, self.config)
        self.diag = Diagnostics(self)
        self.cmd_pub = self.create_publisher(Twist, cmd_topic, qos.RELIABLE)
        self.marker_pub = self.create_publisher(String, 'marker/command', qos.RELIABLE)
        self.events_pub = self.create_publisher(String, 'marking/events', qos.RELIABLE)
        sub = functools.partial(self.create_subscription, callback_group=self.group)
        sub(String, 'mission/status', self._json_input('mission/status', self.ctl.on_status), qos.LATCHED)
        sub(Odometry, 'odometry/filtered', self._on_odom, qos.RELIABLE)
        sub(String, 'marker/status', self._on_marker, qos.RELIABLE)
        sub(String, 'targets/json', self._json_input(
            'targets/json', lambda d: self.ctl.on_targets(d['targets'] if isinstance(d, dict) else d)),
            qos.RELIABLE)
        self.create_timer(1.0 / rate, self._step, callback_group=self.group)

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _json_input(self, topic: str, handler):
        def callback(msg: String) -> None:
            try:
                handler(json.loads(msg.data))
            except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
                self.get_logger().error(f'{topic} ignored: {exc}', throttle_duration_sec=5.0)
        return callback

    def _on_odom(self, msg: Odometry) -> None:
        p = odometry_to_pose(msg)
        self.ctl.on_pose((p.x, p.y, p.yaw), p.w, p.v)

    def _on_marker(self, msg: String) -> None:
        try:
            out = self.ctl.on_marker(self._now(), json.loads(msg.data))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
            self.get_logger().error(f'marker/status ignored: {exc}', throttle_duration_sec=5.0)
            return
        self._publish(out)

    def _step(self) -> None:
        out = self.ctl.step(self._now())
        self._publish(out)
        if self.ctl.seq is None and not out.events:
            self.diag.update(OK, 'idle', {'marks_sent': self.ctl.sent})

    def _publish(self, out: MarkingStep) -> None:
        for body in out.fires:
            self.marker_pub.publish(String(data=json.dumps(body)))
        if out.cmd is not None:
            self.cmd_pub.publish(twist(*out.cmd))
        for event in out.events:
            self.events_pub.publish(String(data=json.dumps(event)))
            if event['event'] == 'outcome':
                level = OK if event['status'] != 'failed' else WARN
                self.diag.update(level, f"{event['target_id']}: {event['status']}: {event['reason']}",
                                 force=True)
        for level, text in out.log:
            getattr(self.get_logger(), level)(text)


def main(args=None):
    sys.exit(run_node(MarkingNode, args))
