"""The whole mission in lockstep, without ROS: what ``mine-robot sweep --sim`` runs as a graph of
node processes, here as the same pure classes on one simulated clock.

One control period (``dt``, the nodes' 20 Hz) does what the graph does in that period:

1. the simulator (:class:`~mine_robot.sim.world.SimWorld`) drives the robot with the last command
   and returns GNSS, IMU, odometry, metal-detector, GPR and camera samples;
2. localization (:class:`~mine_robot.control.ekf.PoseEkf`) fuses GNSS, odometry and the gyro;
3. the detection chain and fusion see the samples with the *estimated* pose (as the detector nodes
   read ``odometry/filtered``); the mission records every detection and target;
4. the mission (:class:`~mine_robot.mission.mission.Mission`) gets the pose, targets, marking
   events, the follower's "path done" and the safety monitor's verdict, and plans re-sweeps and
   detours (:meth:`Mission.plan_pending`);
5. marking (:class:`~mine_robot.mission.marking.MarkingController`) and a virtual marker that fires
   at the nozzle's true position; the lane follower (:class:`~mine_robot.control.follower.PathFollower`)
   paused and resumed as the mission manager does;
6. the safety monitor (every rule, the known-hazard rule from fusion's targets and the mission's
   list) on the selected command, then the twist mux and its limiter.

Every parameter comes from the same node configs the graph uses (``GraphPlan.node_parameters``),
so a change to ``config/*.yaml`` changes both. What differs from the graph is timing only: no
transport latency, no lost best-effort samples, status delivered at the mission's status rate.
It is a development and benchmark tool (``mine-robot sweep --sim --lockstep``,
``bench/bench_mission.py``), deterministic for a given scenario and seed.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
import math
from pathlib import Path
import shutil
import tempfile
import time

import numpy as np

from mine_robot.control.ekf import EkfConfig, PoseEkf
from mine_robot.control.follower import FollowerConfig, FollowPath, PathFollower
from mine_robot.control.mux import DEFAULT_INPUTS, Limits, MuxInput, TwistMux, VelocityLimiter
from mine_robot.control.safety import Geofence, PoseSample, SafetyConfig, SafetyMonitor, SweptGroundRule
from mine_robot.control.stack import MODE_STATUS
from mine_robot.mission.marking import MarkingConfig, MarkingController
from mine_robot.mission.mission import Mission, MissionConfig
from mine_robot.mission.state_machine import DRIVING, State
from mine_robot.robot import RobotGeometry

FINAL = (State.COMPLETE, State.FAULT, State.ABORTED)


def _pick(cls, params: dict, **extra):
    """``cls(**...)`` from the node parameters that are fields of the dataclass ``cls``."""
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in params.items() if k in names}, **extra)


class VirtualMarker:
    """The marker actuator: a FIRE command lands a mark at the nozzle's true position once its
    duration has passed, then answers ``done`` with the slide position (as the virtual serial
    marker the graph uses). A repeated command id is answered again without firing twice."""

    def __init__(self, world):
        self.world = world
        self._queue: list[tuple[float, dict]] = []
        self._answered: dict[int, dict] = {}

    def fire(self, now: float, body: dict) -> None:
        done = self._answered.get(int(body['cmd_id']))
        if done is not None:
            self._queue.append((now, done))
            return
        self._queue.append((now + body['duration_ms'] / 1000.0, body))

    def update(self, now: float) -> list[dict]:
        due = [b for t, b in self._queue if t <= now]
        self._queue = [(t, b) for t, b in self._queue if t > now]
        answers = []
        for body in due:
            if body.get('type') == 'done':        # a repeated id: the first answer again
                answers.append(body)
                continue
            slide = body['slide_mm'] / 1000.0
            self.world.mark(slide, str(body.get('target', '')))
            answer = {'type': 'done', 'cmd_id': int(body['cmd_id']), 'slide_mm': body['slide_mm']}
            self._answered[int(body['cmd_id'])] = answer
            answers.append(answer)
        return answers


@dataclass
class LockstepResult:
    state: str
    message: str
    sim_time: float
    wall_time: float
    status: dict
    judge: dict | None
    output_dir: Path


class MissionRun:
    """One autonomous sweep of ``scenario`` (a packaged name or a YAML path), written to
    ``output_dir`` (made fresh) exactly as the graph writes it, and scored by the judge.

    ``overrides`` maps node names to parameter values that replace the config's (for example
    ``{'safety_monitor': {'hazard_enabled': True}}``); ``step()`` advances one control period and
    ``run()`` goes until the mission ends or ``max_time`` (simulated s) passes.
    """

    def __init__(self, scenario: str, output_dir: str | Path, *, seed: int = 0,
                 overrides: dict[str, dict] | None = None, robot: RobotGeometry | None = None,
                 dt: float = 0.05, max_time: float | None = None, status_rate: float | None = None):
        from mine_robot.detection.chain import load_detection_settings
        from mine_robot.launch_support import GraphPlan
        from mine_robot.planning.area import load_area
        from mine_robot.resources import resource
        from mine_robot.robot import load_robot
        from mine_robot.sim.world import SimWorld, load_sim_config
        self.out = Path(output_dir).resolve()
        if self.out.exists():
            shutil.rmtree(self.out)
        self.out.mkdir(parents=True)
        self._tmp = tempfile.TemporaryDirectory(prefix='mine_robot_lockstep_')
        graph = GraphPlan.from_arguments({
            'simulator': 'builtin', 'scenario': scenario, 'use_sim_time': 'true',
            'virtual_devices': 'false', 'config_dir': str(resource('config')),
            'output_dir': str(self.out), 'seed': str(seed)})
        self.scenario = graph.scenario()
        params = {}
        for node in ('localization', 'lane_follower', 'safety_monitor', 'mission_manager', 'marking',
                     'coverage_planner'):
            params[node] = {**graph.node_parameters(node), **(overrides or {}).get(node, {})}
        self.params = params
        self.robot = robot or load_robot(params['mission_manager'].get('robot_config') or None)
        self.dt = dt
        self.time_base = round(time.time(), 3)
        soil = self.scenario.soil
        self.world = SimWorld(self.scenario, self.robot, seed=seed, config=load_sim_config())
        self.frame = self.scenario.frame

        loc = params['localization']
        self.ekf = PoseEkf(_pick(EkfConfig, loc, lever_arm=tuple(self.robot.gnss.xyz[:2])))
        if math.isfinite(loc.get('initial_yaw', math.nan)):
            self.ekf.set_heading(loc['initial_yaw'], loc.get('initial_yaw_sigma', 0.05))

        fol = params['lane_follower']
        self.follower_config = _pick(FollowerConfig, fol)
        self.start_sigma = (fol['start_max_sigma'], fol['start_max_yaw_sigma'])
        self.follower: PathFollower | None = None
        self._follower_plan: str | None = None
        self._follower_state: str | None = None
        self.converged = False

        sm = params['safety_monitor']
        area = load_area(params['mission_manager']['area_file'], self.frame)
        safe = list(area.safe)
        from mine_robot.planning.coverage import detector_outline
        self.monitor = SafetyMonitor(
            _pick(SafetyConfig, sm), self.robot, Geofence(area.search, safe, area.no_go),
            SweptGroundRule(self.robot.wheel_patches(), safe, detector_outline(self.robot),
                            tolerance=sm['swept_tolerance'], cell=sm['swept_grid_cell']))
        self._sensors = []
        for spec in [s for s in sm.get('required_sensors', []) if s.strip()]:
            topic, _type, timeout = spec.split()
            self.monitor.add_sensor(topic, float(timeout))
            self._sensors.append(topic)
        self.selector = TwistMux([MuxInput('teleop', 20, sm['input_timeout']),
                                  MuxInput('marking', 15, sm['input_timeout']),
                                  MuxInput('autonomy', 10, sm['input_timeout'])])
        self.mux = TwistMux(DEFAULT_INPUTS)
        self.limiter = VelocityLimiter(Limits.from_robot(self.robot))

        self.chain_settings = load_detection_settings(permittivity=soil.gpr_permittivity,
                                                      attenuation_per_m=soil.gpr_attenuation)
        from mine_robot.detection.chain import DetectionChain
        self.chain = DetectionChain(self.robot, self.chain_settings)
        self._detections_seen = 0

        mm = params['mission_manager']
        self.mission = Mission(self.robot, _pick(MissionConfig, {**mm, 'output_dir': str(self.out),
                                                                 'time_base': self.time_base}))
        self.status_period = 1.0 / (status_rate or mm.get('status_rate', 2.0))
        self._next_status = 0.0
        self.marking = MarkingController(self.robot, _pick(MarkingConfig, params['marking']))
        self.marker = VirtualMarker(self.world)

        cp = params['coverage_planner']
        from mine_robot.planning.planner import PlannerConfig
        self.planner_config = PlannerConfig(
            swath_width=cp.get('swath_width', 0.0), overlap=cp.get('overlap', 0.1),
            angle_deg=None if cp.get('angle_deg', -1.0) < 0 else cp['angle_deg'],
            turn_radius=cp.get('turn_radius', 0.0), max_outer_overhang=cp.get('max_outer_overhang', 0.55),
            edge_overlap=cp.get('edge_overlap', 0.01))
        self.area_file = mm['area_file']
        self.area = area
        self.max_time = max_time
        self.v = self.w = 0.0
        self.autonomy = (0.0, 0.0)
        self.marking_cmd: tuple[float, float] | None = None
        self.marking_cmd_t = -math.inf
        self.last_status: dict = {}
        self.stops = 0
        self.stop_reasons: dict[str, int] = {}

    # ------------------------------------------------------------------ the run
    @property
    def time(self) -> float:
        return self.world.time

    @property
    def state(self) -> State:
        return self.mission.sm.state

    def start(self) -> None:
        """Start the mission (the operator's ``mission/start``) and give it the planner's plan."""
        from mine_robot.planning.planner import plan_coverage
        self.mission.start(self.time, self.area_file)
        plan = plan_coverage(self.area, self.robot, self.planner_config)
        self.mission.on_plan(self.time, plan.to_json())
        self._after()

    def run(self) -> LockstepResult:
        wall = time.monotonic()
        if self.state == State.IDLE:
            self.start()
        limit = self.max_time if self.max_time is not None else math.inf
        while self.state not in FINAL and self.time < limit:
            self.step()
        if self.state not in FINAL:
            self.mission.abort(self.time, f'lockstep limit of {limit:.0f} s simulated reached')
        return self.finish(time.monotonic() - wall)

    def step(self) -> None:
        t_prev = self.time
        out = self.world.step(self.dt, self.v, self.w)
        t = out.t
        self._localize(out, t)
        pose = self._pose(t)
        if pose is not None:
            self._detect(out, t, pose)
            self.mission.on_pose(t, pose.x, pose.y, pose.yaw)
            self.marking.on_pose((pose.x, pose.y, pose.yaw), pose.w, pose.v)
        if t >= self._next_status or t_prev == 0.0:
            self._publish_status()
            self._next_status = t + self.status_period
        self._mark(t)
        self._follow(t, pose)
        self._safety_and_mux(t, pose)
        self._after()

    def finish(self, wall: float = 0.0) -> LockstepResult:
        from mine_robot.sim.judge import JudgeError, judge_folder
        self.world.write_truth(self.out, time_base=self.time_base)
        status = self.mission.progress()
        self.mission.close()
        judge = None
        if (self.out / 'detections.geojson').exists():
            try:
                judge = judge_folder(self.scenario, self.out, self.robot)
            except (JudgeError, OSError, ValueError) as exc:
                status['judge_error'] = str(exc)
        self._tmp.cleanup()
        return LockstepResult(str(self.state), self.mission.message, self.time, wall, status, judge,
                              self.out)

    # ------------------------------------------------------------------ one period, by node
    def _localize(self, out, t: float) -> None:
        for f in out.gnss:
            if f.mode == 'none':
                self.ekf.update_gnss(f.t, math.nan, math.nan, None, MODE_STATUS['none'])
            else:
                east, north = self.frame.to_local(f.lon, f.lat)
                cov = np.eye(2) * f.sigma_h ** 2 if math.isfinite(f.sigma_h) else None
                self.ekf.update_gnss(f.t, float(east), float(north), cov, MODE_STATUS.get(f.mode, -1))
            self._seen('gnss/fix', t)
        for o in out.odom:
            self.ekf.update_odometry(o.t, o.v, o.w)
        for i in out.imu:
            self.ekf.update_yaw_rate(i.t, i.gyro[2])
            self._seen('imu/data', t)
        if out.md:
            self._seen('metal_detector/signal', t)

    def _seen(self, topic: str, t: float) -> None:
        if topic in self._sensors:
            self.monitor.sensor_seen(topic, t)

    def _pose(self, t: float) -> PoseSample | None:
        if not self.ekf.initialised:
            return None
        x, y, yaw, v, w = (float(c) for c in self.ekf.x[:5])
        return PoseSample(t, x, y, yaw, v, w, self.ekf.pose_sigma())

    def _detect(self, out, t: float, pose: PoseSample) -> None:
        changed = bool(self.chain.add_pose(t, pose.x, pose.y, pose.yaw))
        for s in out.md:
            self.chain.add_md(s.t, s.signal)
        for g in out.gpr:
            self.chain.add_gpr(g.t, g.trace)
        for c in out.camera:
            self.chain.add_image(c.t, c.image)
        changed |= bool(self.chain.poll())
        new = self.chain.detections[self._detections_seen:]
        self._detections_seen = len(self.chain.detections)
        by_sensor: dict[str, list[dict]] = {}
        for d in new:
            by_sensor.setdefault(d.sensor, []).append(
                {'t': d.t, 'x': d.x, 'y': d.y, 'depth': d.depth, 'confidence': d.confidence,
                 'strength': d.strength, 'sigma': d.sigma, 'det_id': d.id})
        for sensor, rows in by_sensor.items():
            self.mission.on_detections(t, sensor, rows)
        if changed:
            targets = [tg.to_dict() for tg in self.chain.fusion.targets]
            self.mission.on_targets(t, targets)
            self.marking.on_targets(targets)
            self.monitor.hazards.from_targets(targets)

    def _publish_status(self) -> None:
        status = self.mission.status()
        self.last_status = status
        self.marking.on_status(status)
        self.monitor.hazards.from_mission(status['hazards'])

    def _mark(self, t: float) -> None:
        for answer in self.marker.update(t):
            self._marking_output(t, self.marking.on_marker(t, answer))
        self._marking_output(t, self.marking.step(t))

    def _marking_output(self, t: float, out) -> None:
        for body in out.fires:
            self.marker.fire(t, body)
        if out.cmd is not None:
            self.marking_cmd, self.marking_cmd_t = out.cmd, t
        for event in out.events:
            if event['event'] == 'started':
                self.mission.on_mark_started(t, str(event['target_id']))
            else:
                self.mission.on_mark_outcome(t, event)
            self._publish_status()

    def _follow(self, t: float, pose: PoseSample | None) -> None:
        plan = self.mission.plan_json
        if plan is not None and plan != self._follower_plan:
            from mine_robot.planning.plan import CoveragePlan
            self._follower_plan = plan
            self.follower = PathFollower(FollowPath.from_plan(CoveragePlan.from_json(plan),
                                                              self.follower_config.corner_angle),
                                         self.follower_config)
            self._follower_state = None
        if self.follower is None or pose is None:
            self.autonomy = (0.0, 0.0)
            return
        want = 'resume' if self.state in (*DRIVING, State.INVESTIGATING) else 'pause'
        if want != self._follower_state:
            (self.follower.resume if want == 'resume' else self.follower.pause)()
            self._follower_state = want
        if not self.converged:
            yaw_sigma = math.sqrt(max(float(self.ekf.P[2, 2]), 0.0))
            self.converged = pose.sigma <= self.start_sigma[0] and yaw_sigma <= self.start_sigma[1]
            if not self.converged:
                self.autonomy = (0.0, 0.0)
                return
        if self.follower.state == 'done':
            self.autonomy = (0.0, 0.0)
            return
        cmd = self.follower.step(t, pose.x, pose.y, pose.yaw)
        if cmd.fault and self.mission.on_follower_fault(t, cmd.fault):
            self.follower.reset_fault(pose.x, pose.y, pose.yaw)   # what lane_follower/resume does
            self.follower.resume()
        self.autonomy = (cmd.v, cmd.w)
        if cmd.progress.state == 'done' and self.state in DRIVING:
            self.mission.finish_lanes(t)

    def _safety_and_mux(self, t: float, pose: PoseSample | None) -> None:
        mon = self.monitor
        if pose is not None:
            mon.set_pose(pose)
            mon.swept.add_pose(pose.x, pose.y, pose.yaw)
        marking_live = self.marking_cmd is not None and t - self.marking_cmd_t < 0.5 - 1e-9
        inputs = (('autonomy', self.autonomy), ('marking', self.marking_cmd if marking_live else None))
        for name, cmd in inputs:
            if cmd is not None:
                mon.set_input(name, cmd[0], cmd[1], t)
                self.selector.set_command(name, cmd[0], cmd[1], t)
                self.mux.set_command(name, cmd[0], cmd[1], t)
        d = self.selector.select(t)
        mon.set_command(d.v, d.w)
        status = mon.evaluate(t)
        if status.stop:
            self.stops += 1
            for r in status.reasons:
                self.stop_reasons[r.rule] = self.stop_reasons.get(r.rule, 0) + 1
        self.mission.on_safety(t, status.stop, [str(r) for r in status.reasons])
        self.mux.set_lock('estop', status.estop, 'e-stop latched', t)
        self.mux.set_lock('safety', status.stop and not status.estop, status.message, t)
        dec = self.mux.select(t)
        self.v, self.w = self.limiter.stop(t) if dec.stopped else self.limiter.limit(dec.v, dec.w, t)

    def _after(self) -> None:
        if self.mission.plan_pending(self.time) is not None:
            self._publish_status()
