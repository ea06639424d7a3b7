"""``mine-robot robot``: print the robot geometry the software uses."""

from __future__ import annotations

import argparse
import json

from mine_robot.robot import RobotConfigError, load_robot


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--config', help='robot.yaml to read (default: the package config)')
    parser.add_argument('--json', action='store_true', help='print machine-readable JSON')


def run(args: argparse.Namespace) -> int:
    try:
        robot = load_robot(args.config)
    except RobotConfigError as exc:
        print(f'error: {exc}')
        return 1
    md = robot.metal_detector
    summary = {
        'name': robot.name, 'drive': robot.drive,
        'swath_width_m': round(robot.swath_width, 3),
        'coils': {f: [round(v, 3) for v in p] for f, p in zip(md.coil_frames, md.coil_positions())},
        'coil_radius_m': md.coil_radius, 'coil_height_m': md.coil_height,
        'wheel_contacts': {n: [round(v, 3) for v in p]
                           for n, p in zip(robot.wheels.names, robot.wheels.contact_centres())},
        'marker_nozzle': list(robot.marker.xyz), 'marker_slide_limits': list(robot.marker.slide_limits),
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        for key, value in summary.items():
            print(f'{key:22s} {value}')
    return 0
