"""mission_manager: the operator's mission (start/pause/resume/abort), progress and records.

Services (std_srvs/Trigger): ``mission/start|pause|resume|abort``. The area comes from the
``area_file`` parameter. Inputs: ``coverage/plan`` (plan JSON), ``odometry/filtered``,
``detections/<sensor>`` (recorded), ``targets/json`` (fusion), ``marking/events`` (marking
node), ``<follower>/progress`` (path done) and ``marker/status`` (health). Outputs: latched
``mission/status`` (JSON: state, progress, the marks to make), ``/diagnostics``, the re-sweep
plan, and pause/resume calls to the lane follower.
All logic is in :class:`mine_robot.mission.mission.Mission`.
"""

from __future__ import annotations

from dataclasses import fields
import functools
import json
import math
from pathlib import Path
import sys
import time
import zlib

from nav_msgs.msg import Odometry
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from sensor_msgs.msg import PointCloud2
import shapely
from std_msgs.msg import String
from std_srvs.srv import Trigger

from mine_robot.mission.mission import Mission, MissionConfig
from mine_robot.mission.records import interrupted_state
from mine_robot.mission.state_machine import DRIVING, MissionError, State
from mine_robot.nodes._driving import load_robot_param, odometry_to_pose
from mine_robot.ros import qos
from mine_robot.ros.conversions import cloud_to_fields, stamp_to_sec
from mine_robot.ros.diagnostics import ERROR, OK, WARN, Diagnostics
from mine_robot.ros.params import ConfigError, declare
from mine_robot.ros.runner import run_node

_RANGES = {'cleared_depth_m': (0.01, 2.0), 'coverage_goal': (0.5, 1.0), 'resweep_min_width': (0.0, 2.0),
           'max_resweeps': (0, 10), 'lane_done_fraction': (0.5, 1.0), 'mark_confidence': (0.0, 1.0),
           'sweep_speed': (0.01, 5.0), 'safety_stall_timeout': (0.0, 3600.0),
           'hazard_detour_after': (0.0, 600.0), 'swept_detour_after': (0.0, 600.0),
           'hazard_zone_radius': (0.05, 5.0), 'max_detours': (0, 1000),
           'sidestep_clearance': (0.0, 2.0), 'sidestep_margin': (0.0, 1.0), 'follower_recoveries': (0, 100),
           'mark_visit_rounds': (0, 10), 'visit_clearance': (0.0, 1.0), 'remark_distance': (0.0, 5.0),
           'max_remarks': (0, 10),
           'resume_match_radius': (0.0, 2.0)}
_DESCRIPTIONS = {
    'output_dir': 'sweep output folder (mission.db, GeoJSON layers, report.json/png)',
    'organisation': 'organisation name written into the exports (MDR field)',
    'cleared_depth_m': 'search depth guaranteed by the detector set-up (m, MDR cleared depth)',
    'coverage_goal': 'fraction of the searchable area to reach before completing',
    'resweep_min_width': 'unswept slivers narrower than this (m) are not re-swept',
    'max_resweeps': 'how many re-sweep rounds of missed strips at most',
    'lane_done_fraction': 'fraction of a lane strip that must be swept for the lane to count',
    'mark_confidence': 'settled targets with at least this confidence are marked',
    'sweep_speed': 'lane speed used for the ETA (m/s)',
    'export_png': 'render report.png (matplotlib) at the end',
    'time_base': 'POSIX seconds of ROS time 0 for the exports; <= 0: the offset measured at start '
                 '(right for a wall-clock robot; under sim time pass the simulator\'s time_base)',
    'safety_stall_timeout': 'fault the mission when the safety monitor holds the robot this long '
                            '(s; 0 = never)',
    'hazard_detour_after': 'a known hazard holding the robot this long (s) makes the mission re-plan '
                           'the unswept ground around it',
    'swept_detour_after': 'the swept-ground rule alone holding the robot this long (s) makes the mission '
                          're-plan the unswept ground from where it stands (0 = never)',
    'hazard_zone_radius': 'clearance (m) kept from every wheel to every known hazard in mission re-plans',
    'max_detours': 'how many hazard detours at most before the mission faults',
    'sidestep': 'a hazard detour first tries a sidestep beside the lane (on swept ground) and keeps '
                'the rest of the plan; false: always re-plan',
    'sidestep_clearance': 'closest a wheel may pass a known hazard in a sidestep (m, >= the safety '
                          "monitor's hazard_clearance)",
    'sidestep_margin': 'extra lateral room for tracking error in a sidestep (m)',
    'mark_visit_rounds': 'rounds of mark visits (a plan bringing the nozzle over each target still '
                         'unmarked after the sweep) before those are reported for marking by hand',
    'visit_clearance': 'a mark visit that leaves a target unmarkable keeping the wheels hazard_zone_radius '
                       'from known hazards is planned again keeping them this far (m, >= the marking '
                       "node's wheel_clearance; 0 = no second try)",
    'remark_distance': 'a marked target whose estimate later moves further than this (m) from its mark '
                       'is marked again and the old mark recorded superseded (0 = never)',
    'max_remarks': 'how many times at most one target is marked again',
    'resume_match_radius': 'after a restart, a target fusion reports within this distance (m) of one '
                           'recorded before it is that target (not marked again; 0 = off)',
    'follower_recoveries': 'lane-follower faults per plan recovered by re-acquiring the path from the '
                           'robot pose (the follower ~/resume) before the mission faults',
}


class MissionManagerNode(Node):
    def __init__(self, **kwargs):
        super().__init__('mission_manager', **kwargs)
        self.group = MutuallyExclusiveCallbackGroup()  # the mission and its database are single-threaded
        self.area_file = declare(self, 'area_file', '', 'search area GeoJSON (WGS84, RFC 7946)')
        self.autostart = declare(self, 'autostart', False, 'start the mission as soon as the node is up')
        resume_on_start = declare(self, 'resume_on_start', True,
                                  'at start-up, resume a mission that was running when this node '
                                  'stopped (output_dir/mission.db: a crash or power cut)')
        robot_config = declare(self, 'robot_config', '', 'robot.yaml (default: package config)')
        follower = declare(self, 'follower', 'lane_follower',
                           'lane follower node name (its ~/pause, ~/resume, ~/progress); empty: none')
        resweep_topic = declare(self, 'resweep_plan_topic', 'coverage/plan',
                                'where the re-sweep plan of missed strips is published (latched)')
        detection_topics = declare(self, 'detection_topics',
                                   ['detections/metal', 'detections/gpr', 'detections/camera'],
                                   'detection clouds to record (PointCloud2 x y z confidence strength '
                                   'id depth sigma)')
        status_rate = declare(self, 'status_rate', 2.0, 'mission/status and diagnostics rate (Hz)',
                              range=(0.1, 50.0))
        values = {}
        defaults = MissionConfig()
        for f in fields(MissionConfig):
            default = getattr(defaults, f.name)
            values[f.name] = declare(self, f.name, default, _DESCRIPTIONS.get(f.name, f.name),
                                     range=_RANGES.get(f.name))
        try:
            if values['time_base'] <= 0.0:
                values['time_base'] = time.time() - self._now()
            self.config = MissionConfig(**values)
            self.robot = load_robot_param(robot_config)
        except ValueError as exc:
            raise ConfigError(f'mission_manager: {exc}') from exc
        self.mission = Mission(self.robot, self.config)
        self.diag = Diagnostics(self, period=1.0 / status_rate)
        self.status_pub = self.create_publisher(String, 'mission/status', qos.LATCHED)
        self.resweep_pub = self.create_publisher(String, resweep_topic, qos.LATCHED)
        # the ground swept so far: a restarted safety monitor starts from it, not from nothing
        self.swept_pub = self.create_publisher(String, 'mission/swept', qos.LATCHED)
        self._swept_sent = (-1, -math.inf)       # (tracker pose count, time) of the last one
        def sub(msg_type, topic, callback, qos_profile):
            return self.create_subscription(msg_type, topic, self._guarded(topic, callback), qos_profile,
                                            callback_group=self.group)
        sub(String, 'coverage/plan', self._on_plan, qos.LATCHED)
        sub(Odometry, 'odometry/filtered', self._on_odom, qos.RELIABLE)
        sub(String, 'targets/json', self._on_targets, qos.RELIABLE)
        sub(String, 'marking/events', self._on_marking, qos.RELIABLE)
        sub(String, 'marker/status', self._on_marker_status, qos.RELIABLE)
        sub(String, 'safety/status', self._on_safety, 10)
        for topic in detection_topics:
            sub(PointCloud2, topic, functools.partial(self._on_detections, topic.rsplit('/', 1)[-1]),
                qos.RELIABLE)
        self.marker_status = {}
        self.follower_clients = {}
        if follower:
            sub(String, f'{follower}/progress', self._on_progress, 10)
            for action in ('pause', 'resume'):
                self.follower_clients[action] = self.create_client(Trigger, f'{follower}/{action}')
        for name in ('start', 'pause', 'resume', 'abort'):
            self.create_service(Trigger, f'mission/{name}', self._service(name), callback_group=self.group)
        self.create_timer(1.0 / status_rate, self._publish_status, callback_group=self.group)
        self._last_plan = None
        interrupted = interrupted_state(Path(self.config.output_dir) / 'mission.db')
        self._auto_start = None
        if self.autostart or (resume_on_start and interrupted):
            # started from a status tick once the clock runs (under sim time it reads 0 until
            # /clock arrives, and the records would say the mission restarted at t = 0)
            self._auto_start = 'autostart' if self.autostart else \
                f'resuming the mission interrupted in {interrupted}'
        self._publish_status()

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _guarded(self, topic: str, callback):
        """An input the mission cannot take in its current state is logged, never fatal."""
        def run(msg):
            try:
                callback(msg)
            except MissionError as exc:
                self.get_logger().error(f'{topic}: {exc}', throttle_duration_sec=5.0)
        return run

    # -- services -----------------------------------------------------------------------------------
    def _service(self, name):
        action = {'start': self._start, 'pause': self._pause, 'resume': self._resume,
                  'abort': self._abort}[name]

        def handler(_request, response):
            response.success, response.message = action()
            if response.success:
                self.get_logger().info(f'mission/{name}: {response.message}')
            else:
                self.get_logger().warning(f'mission/{name} refused: {response.message}')
            self._publish_status()
            return response
        return handler

    def _start(self):
        if self._now() <= 0.0 and self.get_parameter('use_sim_time').value:
            # records stamped 0 in a resumed mission would put time backwards in mission.db
            return False, 'cannot start yet: the clock is not running (waiting for /clock)'
        try:
            tr = self.mission.start(self._now(), self.area_file)
        except MissionError as exc:
            return False, str(exc)
        if self._last_plan is not None:  # the latched plan may have arrived before start
            self._after(self.mission.on_plan(self._now(), self._last_plan))
        return True, f'{tr.target}: {tr.reason}'

    def _pause(self):
        try:
            tr = self.mission.pause(self._now())
        except MissionError as exc:
            return False, str(exc)
        self._sync_follower()
        return True, f'paused (was {tr.source})'

    def _resume(self):
        try:
            tr = self.mission.resume(self._now())
        except MissionError as exc:
            return False, str(exc)
        self._sync_follower()
        return True, f'resumed: {tr.target}'

    def _abort(self):
        try:
            self.mission.abort(self._now())
        except MissionError as exc:
            return False, str(exc)
        self._sync_follower()
        return True, f'aborted; records and exports in {self.config.output_dir}'

    # -- inputs -----------------------------------------------------------------------------------
    def _on_plan(self, msg: String) -> None:
        if msg.data == getattr(self, '_published_resweep', None):
            return  # our own re-sweep plan echoed on a shared topic
        self._last_plan = msg.data
        self._after(self.mission.on_plan(self._now(), msg.data))

    def _on_odom(self, msg: Odometry) -> None:
        p = odometry_to_pose(msg)
        # the pose's own time (as for detections): on a starved machine this node's /clock stood
        # at one value for 6 s of poses, and the recorded track showed the robot standing still
        # where it had driven 1.7 m (crash-resume batch, 2026-12-06)
        stamp = stamp_to_sec(msg.header.stamp)
        self._after(self.mission.on_pose(stamp if stamp > 0 else self._now(), p.x, p.y, p.yaw))

    def _on_detections(self, sensor: str, msg: PointCloud2) -> None:
        f = cloud_to_fields(msg)
        t = stamp_to_sec(msg.header.stamp)
        n = len(f.get('x', ()))
        rows = [{'t': t, 'x': float(f['x'][i]), 'y': float(f['y'][i]),
                 **{k: float(f[k][i]) for k in ('depth', 'confidence', 'strength', 'sigma') if k in f},
                 **({'det_id': int(f['id'][i])} if 'id' in f else {})} for i in range(n)]
        self.mission.on_detections(self._now(), sensor, rows)

    def _on_targets(self, msg: String) -> None:
        try:
            data = json.loads(msg.data)
            targets = data['targets'] if isinstance(data, dict) else data
            self.mission.on_targets(self._now(), list(targets))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            self.get_logger().error(f'targets/json ignored: {exc}', throttle_duration_sec=5.0)

    def _on_marking(self, msg: String) -> None:
        try:
            event = json.loads(msg.data)
            if event['event'] == 'started':
                self.mission.on_mark_started(self._now(), str(event['target_id']))
            elif event['event'] == 'outcome':
                self.mission.on_mark_outcome(self._now(), event)
        except (json.JSONDecodeError, KeyError, TypeError, ValueError, MissionError) as exc:
            self.get_logger().error(f'marking/events ignored: {exc}')
        self._after(None)

    def _on_safety(self, msg: String) -> None:
        try:
            status = json.loads(msg.data)
        except json.JSONDecodeError:
            self.get_logger().warning('safety/status is not JSON', throttle_duration_sec=10.0)
            return
        tr = self.mission.on_safety(self._now(), bool(status.get('stop')), list(status.get('reasons') or []))
        if tr is not None:
            self.get_logger().error(f'mission fault: {self.mission.message}')
        self._after(tr)

    def _on_marker_status(self, msg: String) -> None:
        try:
            self.marker_status = json.loads(msg.data)
        except json.JSONDecodeError:
            self.get_logger().warning('marker/status is not JSON', throttle_duration_sec=10.0)

    def _on_progress(self, msg: String) -> None:
        try:
            progress = json.loads(msg.data)
            state = progress.get('state')
        except (json.JSONDecodeError, AttributeError):
            return
        crc = progress.get('plan_crc')
        driving = self.mission.plan_json
        if state == 'done' and crc is not None and driving is not None and \
                crc != zlib.crc32(driving.encode()):
            # the end of a plan the mission no longer drives: the new one is on its way (a latched
            # topic delivers it within a moment; a mismatch lasting 5 s, e.g. after a restart of
            # this node, is taken as the end of the plan being driven)
            since = self._stale_done_since = getattr(self, '_stale_done_since', None) or self._now()
            if self._now() - since < 5.0:
                return
        self._stale_done_since = None
        if state == 'done' and self.mission.sm.state in DRIVING:
            self._after(self.mission.finish_lanes(self._now()))
        elif state == 'fault' and self.mission.on_follower_fault(self._now(), str(progress.get('fault', ''))):
            client = self.follower_clients.get('resume')   # re-acquires the path from the pose
            if client is not None and client.service_is_ready():
                self.get_logger().warning(f'{self.mission.message}')
                client.call_async(Trigger.Request())
        elif state == 'fault' and self.mission.sm.state == State.FAULT:
            self._after(None)

    # -- effects ------------------------------------------------------------------------------------
    def _after(self, _result) -> None:
        """After any input: plan a pending re-sweep and keep the follower in step."""
        m = self.mission
        notes, plan_notes = len(m.sidestep_notes), len(m.plan_notes)
        plan = m.plan_pending(self._now())
        for note in m.sidestep_notes[notes:]:
            self.get_logger().info(f'detour: {note}')
        for note in m.plan_notes[plan_notes:]:
            self.get_logger().warning(f're-plan: {note}')
        if plan is not None:
            self._published_resweep = plan
            self.resweep_pub.publish(String(data=plan))
        self._sync_follower()

    def _sync_follower(self) -> None:
        state = self.mission.sm.state
        want = 'resume' if state in (*DRIVING, State.INVESTIGATING) else 'pause'
        if want == getattr(self, '_follower_state', None) or state in (State.IDLE, State.PLANNING):
            return
        client = self.follower_clients.get(want)
        if client is None:
            return
        if not client.service_is_ready():
            self.get_logger().warning(f'follower {want} service not available',
                                      throttle_duration_sec=5.0)
            return
        client.call_async(Trigger.Request())  # never block an executor thread
        self._follower_state = want

    def _publish_status(self) -> None:
        if self._auto_start is not None and self._now() > 0.0:
            why, self._auto_start = self._auto_start, None
            ok, message = self._start()
            if ok:
                self.get_logger().warning(f'{why}: {message}')
            else:
                self.get_logger().error(f'{why} failed: {message}')
        m = self.mission
        status = m.status()
        status['area_file'] = self.area_file
        status['output_dir'] = self.config.output_dir
        status['stamp'] = self.get_clock().now().nanoseconds * 1e-9     # node (sim) time
        self.status_pub.publish(String(data=json.dumps(status)))
        self._publish_swept()
        level = ERROR if m.sm.state == State.FAULT else WARN if status['marks_failed'] else OK
        self.diag.update(level, f"{status['state']}: {status['message']}",
                         {k: v for k, v in status.items() if k not in ('pending_marks', 'hazards')})

    def _publish_swept(self, period: float = 1.0) -> None:
        """``mission/swept``: the detector's swept ground (WKT, map frame, mm, holes kept), at most
        every ``period`` s and only when it grew."""
        tracker = self.mission.tracker
        now = self._now()
        if tracker is None or tracker.pose_count == self._swept_sent[0] or now - self._swept_sent[1] < period:
            return
        self._swept_sent = (tracker.pose_count, now)
        self.swept_pub.publish(String(data=shapely.to_wkt(tracker.swept(), rounding_precision=3)))

    def close(self) -> None:
        unwritten = self.mission.close()
        if unwritten:
            self.get_logger().error(f'{unwritten} mission record(s) could not be written')


def main(args=None):
    sys.exit(run_node(MissionManagerNode, args))
