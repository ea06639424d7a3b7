"""``mine-robot evaluate SCENARIO.yaml -o OUT``: run the simulator and the detection chain over a
planned sweep in the lockstep pipeline (no ROS) and write ``detections.geojson`` and the judge's
``judge.json``."""

from __future__ import annotations

import argparse
import json
import time

from mine_robot.detection.types import DetectionError
from mine_robot.fusion import FusionError
from mine_robot.robot import RobotConfigError, load_robot
from mine_robot.sim.scenario import ScenarioError, load_scenario


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('scenario', help='scenario YAML (sim/scenarios/*.yaml or generated)')
    parser.add_argument('-o', '--output', required=True, help='output folder')
    parser.add_argument('--seed', type=int, default=0, help='simulator seed (default 0)')
    parser.add_argument('--robot', help='robot.yaml (default: the package config)')
    parser.add_argument('--detection-config', help='detection.yaml (default: the package config)')
    parser.add_argument('--mission', action='store_true',
                        help='run the whole mission in lockstep instead of a plain planned sweep: '
                             'localization, safety, marking, re-sweeps, records and exports '
                             '(mine_robot.mission.lockstep, as `mine-robot sweep --sim --lockstep`)')


def run(args: argparse.Namespace) -> int:
    if args.mission:
        return _run_mission(args)
    from mine_robot.detection.chain import load_detection_settings
    from mine_robot.pipeline import PipelineError, SweepPipeline
    try:
        robot = load_robot(args.robot)
        scenario = load_scenario(args.scenario)
        soil = scenario.soil
        settings = load_detection_settings(args.detection_config, permittivity=soil.gpr_permittivity,
                                           attenuation_per_m=soil.gpr_attenuation)
        pipe = SweepPipeline(scenario, robot, seed=args.seed, settings=settings)
    except (RobotConfigError, ScenarioError, DetectionError, FusionError, OSError) as exc:
        print(f'error: {exc}')
        return 1
    started = time.monotonic()
    try:
        pipe.run()
    except PipelineError as exc:
        print(f'error: {exc}')
        return 1
    result = pipe.write(args.output)
    wall = time.monotonic() - started
    summary = {k: result.get(k) for k in ('pd', 'pd_025', 'false_alarms', 'false_alarms_per_m2',
                                          'coverage_fraction')}
    summary.update(targets=len(pipe.targets), sim_time_s=round(pipe.time, 1), wall_time_s=round(wall, 1))
    print(json.dumps(summary))
    return 0


def _run_mission(args: argparse.Namespace) -> int:
    from mine_robot.launch_support import LaunchConfigError
    from mine_robot.mission.lockstep import MissionRun
    if args.robot or args.detection_config:
        print('error: --mission takes the robot and detection settings from the package config')
        return 2
    started = time.monotonic()
    try:
        result = MissionRun(args.scenario, args.output, seed=args.seed).run()
    except (LaunchConfigError, ScenarioError, OSError, ValueError) as exc:
        print(f'error: {exc}')
        return 1
    judge = result.judge or {}
    summary = {k: judge.get(k) for k in ('pd', 'pd_025', 'false_alarms', 'false_alarms_per_m2',
                                         'coverage_fraction')}
    summary.update(state=result.state, marks=result.status.get('targets_marked'),
                   sim_time_s=round(result.sim_time, 1), wall_time_s=round(time.monotonic() - started, 1))
    print(json.dumps(summary))
    return 0 if result.state == 'complete' else 1
