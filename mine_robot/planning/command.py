"""``mine-robot plan``: plan coverage of an area file and write PLAN.geojson (and a PNG)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
import sys

import numpy as np

from mine_robot.planning.area import AreaError, load_area
from mine_robot.planning.plan import CoveragePlan
from mine_robot.planning.planner import PlannerConfig, PlannerError, plan_coverage
from mine_robot.robot import RobotConfigError, load_robot


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('area', help='area GeoJSON (WGS84; roles search_area, no_go, safe_access)')
    parser.add_argument('--swath-width', type=float, default=0.0,
                        help='detector swath in m (default: from the robot config)')
    parser.add_argument('--overlap', type=float, default=0.1, help='lane overlap fraction (default 0.1)')
    parser.add_argument('--angle', type=float, default=None, help='lane direction, degrees CCW from east '
                        '(default: chosen to minimise path length)')
    parser.add_argument('--turn-radius', type=float, default=0.0,
                        help='minimum turning radius in m for car-like platforms (default 0: point turns; '
                        '> 0 is rejected: the wheel-safe turn primitive needs point turns)')
    parser.add_argument('--max-outer-overhang', type=float, default=0.55,
                        help='m the detector head may reach past the outer boundary (default 0.55)')
    parser.add_argument('--start', default=None, help='start position LON,LAT (default: on safe ground)')
    parser.add_argument('--robot', default=None, help='robot.yaml (default: the package config)')
    parser.add_argument('-o', '--output', required=True, help='PLAN.geojson to write')
    parser.add_argument('--png', default=None, help='also draw the plan to this PNG')


def run(args: argparse.Namespace) -> int:
    try:
        robot = load_robot(args.robot)
        area = load_area(args.area)
        start = None
        if args.start:
            try:
                lon, lat = (float(v) for v in args.start.split(','))
            except ValueError:
                print(f'error: --start must be LON,LAT in degrees, got {args.start!r}', file=sys.stderr)
                return 2
            start = np.array(area.frame.to_local(lon, lat))
        config = PlannerConfig(swath_width=args.swath_width, overlap=args.overlap, angle_deg=args.angle,
                               turn_radius=args.turn_radius, max_outer_overhang=args.max_outer_overhang)
        plan = plan_coverage(area, robot, config, start=start)
    except (AreaError, PlannerError, RobotConfigError) as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 1
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(plan.to_geojson(area.frame), indent=1) + '\n')
    s = plan.stats
    print(f'{out}: {s["lane_count"]} lanes, {s["path_length_m"]:.1f} m '
          f'({s["length_ratio"]:.3f} × lower bound), coverage {100 * s["coverage_fraction"]:.2f} %, '
          f'no-go {s["no_go_m"]:.2f} m, planned in {s["planning_time_s"]:.2f} s')
    safety = s['safety']
    if safety['count']:
        print(f'WARNING: {safety["count"]} places ({safety["metres"]:.2f} m) where wheels would roll on '
              'unswept ground; see stats.safety in the plan file', file=sys.stderr)
    if args.png:
        draw_plan(plan, area, args.png)
        print(f'{args.png}: drawn')
    return 0


def draw_plan(plan: CoveragePlan, area, path) -> None:
    """Area, no-go zones, safe ground, lanes and transits (and any swept-ground violations)."""
    import matplotlib
    matplotlib.use('Agg')
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 9))

    def fill(poly, **kw):
        for p in getattr(poly, 'geoms', [poly]):
            if p.is_empty:
                continue
            x, y = p.exterior.xy
            ax.fill(x, y, **kw)
            for hole in p.interiors:
                hx, hy = hole.xy
                ax.fill(hx, hy, color='white')
    fill(area.search, color='#e8f0d8', label='search area')
    for z in area.safe:
        fill(z, color='#cde3f5', label='safe access')
    for z in area.no_go:
        fill(z, color='#e08080', label='no-go')
    for seg in plan.segments:
        if seg.direction == 'reverse':
            style = dict(color='#c00000', lw=1.2, label='backup (reverse)')
        elif seg.role == 'lane':
            style = dict(color='#1f5fbf', lw=1.0, label='lane')
        else:
            style = dict(color='#f08c00', lw=0.8, ls='--', label='transit')
        ax.plot(seg.points[:, 0], seg.points[:, 1], **style)
    first = plan.segments[0].points[0] if plan.segments else None
    if first is not None:
        ax.plot(*first, 'go', ms=8, label='start')
    for v in plan.stats.get('safety', {}).get('items', []):
        ax.plot(*v['where'], 'rx', ms=8)
    handles, labels = ax.get_legend_handles_labels()
    uniq = dict(zip(labels, handles))
    ax.legend(uniq.values(), uniq.keys(), loc='upper right', fontsize=8)
    s = plan.stats
    ax.set_title(f'{area.name}: {s.get("lane_count")} lanes, {s.get("path_length_m")} m, coverage '
                 f'{100 * s.get("coverage_fraction", 0):.2f} %, unsafe {s.get("safety", {}).get("metres")} m',
                 fontsize=9)
    ax.set_aspect('equal')
    ax.set_xlabel('x east (m)')
    ax.set_ylabel('y north (m)')
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
