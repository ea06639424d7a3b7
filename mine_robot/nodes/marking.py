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

from dataclasses import asdict, fields
import functools
import itertools
import json
import sys

from geometry_msgs.msg import Twist
from nav_msgs.msg import Odometry
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from std_msgs.msg import String

from mine_robot.mission.marking import (
    CLUTTER_POLICIES,
    Fire,
    MarkerAck,
    MarkingConfig,
    MarkingSequence,
    MoveAlong,
    Resume,
    Stop,
    along_lane_command,
    in_wheel_path,
)
from mine_robot.nodes._driving import load_robot_param, odometry_to_pose, twist
from mine_robot.ros import qos
from mine_robot.ros.diagnostics import OK, WARN, Diagnostics
from mine_robot.ros.params import ConfigError, declare
from mine_robot.ros.runner import run_node

_MARK_STATES = ('sweeping', 'resweep', 'investigating')


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
        self.ids = itertools.count(1)
        self.seq: MarkingSequence | None = None
        self.status: dict = {}
        self.pose = None
        self.done: set[str] = set()   # outcomes published, waiting for the mission to record them
        self.candidates: dict[str, dict] = {}   # fusion's targets (targets/json), by id
        self.guarded: set[str] = set()          # targets the wheel-path guard already handled
        self.diag = Diagnostics(self)
        self.cmd_pub = self.create_publisher(Twist, cmd_topic, qos.RELIABLE)
        self.marker_pub = self.create_publisher(String, 'marker/command', qos.RELIABLE)
        self.events_pub = self.create_publisher(String, 'marking/events', qos.RELIABLE)
        sub = functools.partial(self.create_subscription, callback_group=self.group)
        sub(String, 'mission/status', self._on_status, qos.LATCHED)
        sub(Odometry, 'odometry/filtered', self._on_odom, qos.RELIABLE)
        sub(String, 'marker/status', self._on_marker, qos.RELIABLE)
        sub(String, 'targets/json', self._on_targets, qos.RELIABLE)
        self.create_timer(1.0 / rate, self._step, callback_group=self.group)
        self._moving: MoveAlong | None = None

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _on_status(self, msg: String) -> None:
        try:
            self.status = json.loads(msg.data)
        except json.JSONDecodeError as exc:
            self.get_logger().error(f'mission/status is not JSON: {exc}')
            return
        pending = {str(p['id']) for p in self.status.get('pending_marks', [])}
        self.done &= pending  # recorded by the mission: forget

    def _on_targets(self, msg: String) -> None:
        try:
            data = json.loads(msg.data)
            targets = data['targets'] if isinstance(data, dict) else data
            self.candidates = {str(t['id']): t for t in targets}
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            self.get_logger().error(f'targets/json ignored: {exc}', throttle_duration_sec=5.0)

    def _guard_target(self) -> dict | None:
        """A target in the wheels' path ahead that is not settled clutter and not handled yet."""
        for tid, t in self.candidates.items():
            if tid in self.guarded or tid in self.done:
                continue
            if t.get('settled', True) and t.get('classification') == 'clutter':
                continue
            if in_wheel_path(self.robot, self.pose, (float(t['x']), float(t['y'])),
                             self.config.wheel_clearance + 0.05, self.config.guard_ahead):
                return {'id': tid, 'x': float(t['x']), 'y': float(t['y']),
                        'classification': t.get('classification', 'unknown')
                        if t.get('settled', True) else 'unknown'}
        return None

    def _on_odom(self, msg: Odometry) -> None:
        p = odometry_to_pose(msg)
        self.pose = (p.x, p.y, p.yaw)

    def _on_marker(self, msg: String) -> None:
        if self.seq is None or self.pose is None:
            return
        try:
            data = json.loads(msg.data)
            kind = data.get('type')
            if kind == 'done':
                slide = data.get('slide_mm')
                ack = MarkerAck(int(data['cmd_id']), True, None if slide is None else slide / 1000.0)
            elif kind == 'ack' and not data.get('ok', False):
                ack = MarkerAck(int(data['cmd_id']), False, error=str(data.get('error', '')))
            else:
                return  # accepted ('firing started') or a status report: wait for 'done'
        except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
            self.get_logger().error(f'marker/status ignored: {exc}', throttle_duration_sec=5.0)
            return
        self._apply(self.seq.on_ack(self._now(), self.pose, ack))

    def _step(self) -> None:
        now = self._now()
        if self.seq is None:
            self._maybe_begin(now)
            return
        if self.status.get('state') in ('paused', 'aborted', 'fault'):
            self.cmd_pub.publish(twist(0.0, 0.0))  # hold still; the sequence times out if it must
        elif self.pose is not None:
            self._apply(self.seq.update(now, self.pose))
        if self.seq is not None and self._moving is not None and self.pose is not None \
                and self.status.get('state') not in ('paused', 'aborted', 'fault'):
            v, w = along_lane_command(self.pose, self._moving.stop_pose, self.seq.plan.heading,
                                      self._moving.speed)
            self.cmd_pub.publish(twist(v, w))
        elif self.seq is not None:
            # firing / waiting for the acknowledgement: keep holding the mux input (it times out
            # after 0.5 s, and the lane follower underneath would drive off with the nozzle)
            self.cmd_pub.publish(twist(0.0, 0.0))

    def _maybe_begin(self, now: float) -> None:
        if self.status.get('state') not in _MARK_STATES or self.pose is None:
            return
        target = self._guard_target()
        if target is not None:
            # stop before the wheels reach it; the mark is made now, as 'unknown' if unsettled
            self.guarded.add(target['id'])
            self.get_logger().info(f"target {target['id']} in the wheels' path: stopping to mark it "
                                   f"({target['classification']})")
        else:
            todo = [p for p in self.status.get('pending_marks', [])
                    if str(p['id']) not in self.done and str(p['id']) not in self.guarded]
            if not todo:
                self.diag.update(OK, 'idle', {'marks_sent': next(self.ids) - 1})
                return
            x, y = self.pose[0], self.pose[1]
            target = min(todo, key=lambda p: (p['x'] - x) ** 2 + (p['y'] - y) ** 2)
        hazards = tuple(tuple(h) for h in self.status.get('hazards', []))
        self.seq = MarkingSequence(self.robot, self.config, str(target['id']),
                                   (float(target['x']), float(target['y'])),
                                   str(target.get('classification', 'unknown')), hazards=hazards,
                                   command_ids=self.ids)
        self.events_pub.publish(String(data=json.dumps({'event': 'started',
                                                         'target_id': self.seq.target_id})))
        self._apply(self.seq.start(now, self.pose))

    def _apply(self, actions) -> None:
        for action in actions:
            if isinstance(action, Stop):
                self._moving = None
                self.cmd_pub.publish(twist(0.0, 0.0))
            elif isinstance(action, MoveAlong):
                self._moving = action
            elif isinstance(action, Fire):
                self.marker_pub.publish(String(data=json.dumps({
                    'cmd_id': action.command_id, 'name': 'FIRE', 'target': self.seq.target_id,
                    'duration_ms': int(round(action.duration * 1000)),
                    'slide_mm': int(round(action.slide * 1000)), 'mode': action.mode})))
            elif isinstance(action, Resume):
                self._moving = None
        if self.seq is not None and self.seq.outcome is not None:
            out = self.seq.outcome
            self.events_pub.publish(String(data=json.dumps({'event': 'outcome', **asdict(out)})))
            self.done.add(out.target_id)
            level = OK if out.status != 'failed' else WARN
            self.diag.update(level, f'{out.target_id}: {out.status}: {out.reason}', force=True)
            if out.status == 'failed':
                self.get_logger().error(f'target {out.target_id}: mark FAILED ({out.reason})')
            else:
                self.get_logger().info(f'target {out.target_id}: {out.status} ({out.reason})')
            self.seq = None
            self._moving = None


def main(args=None):
    sys.exit(run_node(MarkingNode, args))
