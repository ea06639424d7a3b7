"""``mine-robot``: the operator's and developer's command line.

Each subcommand lives in the layer it belongs to and is loaded only when used, so ``--help``
stays fast and a subcommand that starts a ROS graph is the only one that imports rclpy.
A subcommand module provides ``add_arguments(parser)`` and ``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help). Add a subcommand by adding a line here.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    'sweep': ('mine_robot.ros.sweep',
              'run a whole autonomous sweep in the built-in simulator (the ROS graph, one command)'),
    'plan': ('mine_robot.planning.command', 'plan coverage lanes over an area GeoJSON -> PLAN.geojson'),
    'robot': ('mine_robot.robot_command', 'show the robot geometry (frames, swath, wheels)'),
    'replay': ('mine_robot.drivers.replay_command', 'parse a recorded raw device byte stream (raw_log_path)'),
    'scenario': ('mine_robot.sim.scenario_command', 'generate, check or list simulation scenarios'),
    'judge': ('mine_robot.sim.judge_command', 'score a finished sweep folder against its scenario'),
    'gazebo-world': ('mine_robot.sim.gazebo_world',
                     'write a Gazebo world SDF whose visible objects match a scenario'),
    'evaluate': ('mine_robot.evaluate_command',
                 'run the detection chain over a simulated sweep (no ROS); write detections + judge'),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='mine-robot',
        description='Robotic clearance platform for humanitarian mine action (ROS 2).')
    sub = parser.add_subparsers(dest='command', metavar='COMMAND', required=True)
    for name, (_module, help_text) in SUBCOMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv or argv[0] not in SUBCOMMANDS:
        parser.parse_args(argv)  # prints help or the usage error and exits
        return 2
    name = argv[0]
    module = importlib.import_module(SUBCOMMANDS[name][0])
    sub = argparse.ArgumentParser(prog=f'mine-robot {name}', description=SUBCOMMANDS[name][1])
    module.add_arguments(sub)
    args = sub.parse_args(argv[1:])
    try:
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        print('interrupted', file=sys.stderr)
        return 130


if __name__ == '__main__':
    sys.exit(main())
