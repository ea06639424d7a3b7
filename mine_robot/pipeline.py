"""Lockstep runner (DESIGN.md §2): the simulator, a planned sweep, the lane follower, the detection
chain, fusion and the judge on one simulated clock, with no ROS.

It is a step-by-step object so that other drivers (the mission, tests, benchmarks) can run it a
step at a time, look at the state in between and add their own logic::

    run = SweepPipeline(scenario, robot, seed=3)          # plans the sweep with plan_coverage
    while not run.done:
        report = run.step()                                # one control period (dt)
        ...                                                # report.changed: targets updated now
    run.finish()                                           # flush detectors
    result = run.judge()                                   # the simulator's judge, plain dict

The robot pose handed to the detectors is the simulator's true pose at each control step (the
localization EKF is the driving layer's and is tested there); so the detection figures measured
here are those of the detection chain itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import json
import math
from pathlib import Path

import numpy as np

from mine_robot.control.follower import FollowerConfig, FollowPath, PathFollower
from mine_robot.detection.chain import DetectionChain, DetectionSettings, load_detection_settings
from mine_robot.fusion import Target
from mine_robot.robot import RobotGeometry
from mine_robot.sim.judge import Report, RunRecord, judge_run
from mine_robot.sim.scenario import Scenario
from mine_robot.sim.world import SimConfig, SimWorld


class PipelineError(RuntimeError):
    """The lockstep run cannot continue (follower fault, no plan)."""


@dataclass
class StepReport:
    t: float
    pose: tuple[float, float, float]
    v: float
    w: float
    changed: list[Target] = field(default_factory=list)
    state: str = ''


def plan_for(scenario: Scenario, robot: RobotGeometry, **planner_args):
    """The coverage plan of the scenario's area from the planning layer (``plan_coverage``)."""
    from mine_robot.planning.planner import PlannerConfig, plan_coverage
    start = (scenario.robot_start.x, scenario.robot_start.y)
    return plan_coverage(scenario.area, robot, PlannerConfig(**planner_args), start=start)


class SweepPipeline:
    def __init__(self, scenario: Scenario, robot: RobotGeometry, seed: int = 0, plan=None,
                 settings: DetectionSettings | None = None, sim_config: SimConfig | None = None,
                 follower_config: FollowerConfig | None = None, dt: float = 0.02,
                 max_time: float | None = None):
        self.scenario, self.robot, self.dt = scenario, robot, dt
        self.world = SimWorld(scenario, robot, seed=seed, config=sim_config)
        self.plan = plan if plan is not None else plan_for(scenario, robot)
        self.follower = PathFollower(FollowPath.from_plan(self.plan), follower_config)
        if settings is None:
            soil = scenario.soil
            # the GPR depth scale and loss correction need the soil's permittivity/attenuation
            settings = load_detection_settings(permittivity=soil.gpr_permittivity,
                                               attenuation_per_m=soil.gpr_attenuation)
        self.chain = DetectionChain(robot, settings)
        self.max_time = max_time if max_time is not None else 4.0 * self.plan.length / 0.2 + 120.0
        self.v = self.w = 0.0
        self.done = False
        self.finished = False
        self.report_times: dict[int, float] = {}    # target id -> first time reported as a hazard
        self.chain.add_pose(0.0, *self.world.true_pose)

    @property
    def time(self) -> float:
        return self.world.time

    @property
    def targets(self) -> list[Target]:
        return self.chain.fusion.targets

    def step(self) -> StepReport:
        """Advance one control period: sensors -> detectors -> fusion, then the follower."""
        if self.done:
            raise PipelineError('the sweep is finished')
        out = self.world.step(self.dt, self.v, self.w)
        t = out.t
        changed = {tg.id: tg for tg in self.chain.add_pose(t, *out.true_pose)}
        for s in out.md:
            self.chain.add_md(s.t, s.signal)
        for g in out.gpr:
            self.chain.add_gpr(g.t, g.trace)
        for c in out.camera:
            self.chain.add_image(c.t, c.image)
        for tg in self.chain.poll():
            changed[tg.id] = tg
        for tg in changed.values():
            if tg.classification != 'clutter' and tg.id not in self.report_times:
                self.report_times[tg.id] = t
        cmd = self.follower.step(t, *out.true_pose)
        if cmd.fault:
            raise PipelineError(f'follower fault at t={t:.1f} s: {cmd.fault}')
        self.v, self.w = cmd.v, cmd.w
        state = cmd.progress.state
        if state == 'done' or t >= self.max_time:
            self.done = True
        return StepReport(t, out.true_pose, cmd.v, cmd.w, list(changed.values()), state)

    def run(self) -> None:
        while not self.done:
            self.step()
        self.finish()

    def finish(self) -> list[Target]:
        """End of the sweep: let the detectors report what is still in their look-ahead."""
        if self.finished:
            return []
        self.finished = True
        for _ in range(int(1.0 / self.dt)):   # the robot stands still while the last data settles
            out = self.world.step(self.dt, 0.0, 0.0)
            self.chain.add_pose(out.t, *out.true_pose)
        changed = self.chain.poll(flush=True)
        for tg in changed:
            if tg.classification != 'clutter' and tg.id not in self.report_times:
                self.report_times[tg.id] = self.time
        return changed

    # ------------------------------------------------------------------ results
    def run_record(self) -> RunRecord:
        reports = [Report(x=t.x, y=t.y, t=self.report_times.get(t.id), id=str(t.id),
                          classification=t.classification)
                   for t in self.targets if t.classification != 'clutter']
        return RunRecord(reports=reports, track=self.world.track_array(), track_source='truth')

    def judge(self) -> dict:
        return judge_run(self.scenario, self.run_record(), self.robot)

    def detections_geojson(self) -> dict:
        """Every target (clutter included, flagged) as WGS84 points with the evidence."""
        frame = self.scenario.frame
        features = []
        for tg in self.targets:
            lon, lat = frame.to_wgs84(tg.x, tg.y)
            props = tg.to_dict()
            props.pop('x'), props.pop('y')
            props['depth_m'] = None if not math.isfinite(tg.depth) else round(tg.depth, 3)
            props['reported_t'] = self.report_times.get(tg.id)
            features.append({'type': 'Feature',
                             'geometry': {'type': 'Point', 'coordinates': [round(float(lon), 9),
                                                                           round(float(lat), 9)]},
                             'properties': props})
        return {'type': 'FeatureCollection', 'features': features}

    def write(self, out_dir: str | Path) -> dict:
        """Write ``detections.geojson``, ``judge.json`` and ``sim_truth.json``; return the judge."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        result = self.judge()
        _atomic_json(out / 'detections.geojson', self.detections_geojson())
        _atomic_json(out / 'judge.json', result)
        self.world.write_truth(out)
        return result


def _atomic_json(path: Path, data) -> None:
    tmp = path.with_suffix(path.suffix + '.tmp')
    tmp.write_text(json.dumps(data, indent=1, default=_plain))
    tmp.replace(path)


def _plain(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f'not JSON serialisable: {type(value).__name__}')
