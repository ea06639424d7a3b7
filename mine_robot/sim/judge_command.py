"""``mine-robot judge SCENARIO OUTPUT_DIR``: score a finished sweep folder, write judge.json."""

from __future__ import annotations

import argparse
import sys

from mine_robot.robot import RobotConfigError, load_robot
from mine_robot.sim.judge import JudgeError, judge_folder
from mine_robot.sim.scenario import ScenarioError, load_scenario


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('scenario', help='scenario YAML (or packaged scenario name)')
    parser.add_argument('output_dir', help='sweep output folder (marks.geojson, track.geojson, ...)')
    parser.add_argument('--robot', help='robot.yaml (default: the package config)')
    parser.add_argument('--time-base', type=float, default=None,
                        help='POSIX seconds of sim time 0 (default: from sim_truth.json)')
    parser.add_argument('--json', action='store_true', help='print the whole result as JSON')


def run(args: argparse.Namespace) -> int:
    try:
        scenario = load_scenario(args.scenario)
        robot = load_robot(args.robot)
        result = judge_folder(scenario, args.output_dir, robot, args.time_base)
    except (ScenarioError, JudgeError, RobotConfigError) as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 1
    if args.json:
        import json
        print(json.dumps(result, indent=2))
        return 0

    def pct(v):
        return 'n/a' if v is None else f'{100 * v:.1f} %'
    me = result['marking_error_m']
    print(f"scenario {result['scenario']}: {result['hazards']} hazards, track {result['track_source']}")
    print(f"  detection   PD(0.5 m) {pct(result['pd'])} ({result['detected']}/{result['hazards']}), "
          f"PD(0.25 m) {pct(result['pd_025'])}")
    print(f"  false alarms {result['false_alarms']} ({result['false_alarms_near_clutter']} near clutter), "
          f"{result['false_alarms_per_m2']} per m² searched")
    print(f"  coverage    {pct(result['coverage_fraction'])} of {result['searchable_area_m2']} m²")
    mh = result['marking_error_per_hazard_m']
    print(f"  marking     {me['count']} marks, error mean {me['mean']} m, max {me['max']} m; per marked "
          f"hazard ({mh['count']}) p95 {mh['p95']} m, max {mh['max']} m; "
          f"{result['extra_marks_near_hazards']} extra mark(s) beside a marked hazard")
    print(f"  wheel passes over undetected hazards: {result['wheel_passes_over_undetected_hazards']}")
    print(f"  wheel passes over known hazards: {result['wheel_passes_over_known_hazards']}")
    print(f"wrote {args.output_dir}/judge.json")
    return 0
