"""Sidestep: a short wheel-safe way around known hazards that block the lane being swept.

When a hazard the robot has found lies in one of its wheel tracks, continuing the lane would roll a
wheel over it. Re-planning all the unswept ground from the middle of the field routes transits over
ground nobody has swept; the sidestep instead leaves the lane locally and comes back to it:

    back up B  ->  point turn by a  ->  diagonal to lateral offset s  ->  turn back to the lane
    heading  ->  offset pass until the rear wheels are past every blocking hazard  ->  turn  ->
    diagonal back to the lane line  ->  turn  ->  the rest of the lane

``s`` puts every blocking hazard outside the wheel tracks with ``clearance + margin`` to spare (the
detector, wider than the track, still passes over it). Each candidate (offset side and size,
diagonal angle, backup) is replayed on a raster of the ground already swept
(:class:`~mine_robot.planning.safety.SweptRaster`, the planner's own wheel-safety rule: wheel
patches only on swept ground, the detector sweeping ahead of the wheels as the robot moves), and
sampled for hazard clearance, area and no-go limits; the shortest candidate that passes is chosen.
The ground the sidestep leaves unswept beside the hazard is left for the mission's re-sweep.
"""

from __future__ import annotations

from dataclasses import dataclass
import math

import numpy as np
import shapely
from shapely.prepared import prep

from mine_robot.planning.coverage import detector_outline, transform
from mine_robot.planning.plan import Segment
from mine_robot.planning.safety import SweptRaster
from mine_robot.robot import RobotGeometry


@dataclass
class Sidestep:
    """The moves (map frame) from the robot's pose to ``rejoin`` on the lane line."""
    segments: list[Segment]     # transit segments, the first one possibly in reverse
    rejoin: np.ndarray          # (2,) point on the lane where lane following resumes
    offset: float               # m, lateral offset of the pass (left of the lane positive)
    angle_out_deg: float        # diagonal away from the lane
    angle_back_deg: float       # diagonal back to it
    backup: float
    min_hazard_distance: float  # m, closest wheel patch to a hazard along the moves (after backing)
    length: float


def _wrap(a: float) -> float:
    return (a + math.pi) % (2 * math.pi) - math.pi


def plan_sidestep(robot: RobotGeometry, pose, lane, hazards, swept, *, clearance: float = 0.20,
                  margin: float = 0.08, inside=None, no_go=None, angles_deg=(12.0, 20.0, 35.0, 50.0, 65.0),
                  backups=(0.0, 0.2, 0.4, 0.6), cell: float = 0.02,
                  wheel_margin: float = 0.02, post_backups=(0.0, 0.1, 0.2, 0.3, 0.45, 0.6),
                  extra_offsets=(0.0, 0.1, 0.2, 0.3, 0.4), max_candidates: int = 600,
                  why_not: dict | None = None) -> Sidestep | None:
    """A sidestep around the hazards blocking the straight ``lane`` ((x, y) start, (x, y) end)
    from the robot at ``pose`` (x, y, yaw): on that lane, or near it with another heading (held in
    the turn onto it, or on the lane before it), in which case the moves first bring it onto the
    lane line.

    ``hazards``: (N, 2) known hazard positions; ``swept``: the ground already swept or declared
    safe (shapely geometry); ``inside``: where the body may be (search area plus safe ground);
    ``no_go``: where the detector head may not go. When no hazard blocks the lane line ahead but the
    robot is off it or turned away from it (a hazard holds the turn onto it), the answer is a plain
    rejoin (offset 0): back up, go to the lane line ahead, turn onto it. None when no candidate
    passes every check (or the robot is on the lane, facing along it, and nothing blocks it).
    """
    px, py, yaw = (float(v) for v in pose)
    start, end = (np.asarray(p, dtype=float) for p in lane)
    hz = np.asarray(hazards, dtype=float).reshape(-1, 2)
    heading = math.atan2(end[1] - start[1], end[0] - start[0])
    c, s_ = math.cos(heading), math.sin(heading)
    along = (px - start[0]) * c + (py - start[1]) * s_
    x0, y0 = start[0] + along * c, start[1] + along * s_        # the robot's foot on the lane line
    remaining = float(np.hypot(end[0] - x0, end[1] - y0)) if along < np.hypot(*(end - start)) else 0.0
    if not len(hz) or remaining < 0.5:
        return None
    y_robot = (py - y0) * c - (px - x0) * s_                    # lateral offset of the robot
    turned = _wrap(yaw - heading)
    rel = hz - [x0, y0]
    hx, hy = rel @ [c, s_], rel @ [-s_, c]                      # lane frame at that foot
    patches = robot.wheel_patches()
    reach_x = float(np.abs(patches[:, :, 0]).max())
    lat_out = float(np.abs(patches[:, :, 1]).max())
    keep = lat_out + clearance + margin                          # |hazard y - pass y| needed
    lat_in = float(np.abs(patches[:, :, 1]).min())                # inner wheel edge
    ahead = (hx > -reach_x - clearance) & (hx < remaining)
    near = ahead & (np.abs(hy) < keep + 0.05)
    blocking = ahead & (np.abs(hy) > lat_in - clearance) & (np.abs(hy) < lat_out + clearance)
    bx, by = hx[near], hy[near]
    if blocking.any():
        # just clear of the hazards, or further out (e.g. onto the middle of the lane swept before,
        # where point turns stay on swept ground)
        offsets = sorted({round(float(v), 3) for e in extra_offsets
                          for v in np.concatenate([by + keep + e, by - keep - e])}, key=abs)
        offsets = [s for s in offsets if np.all(np.abs(by - s) >= keep - 1e-9) and abs(s) <= 1.5]
        x_clear = float(bx.max()) + reach_x + clearance + margin    # base_link x with rear wheels past
    elif abs(y_robot) > 0.05 or abs(turned) > math.radians(10.0):
        offsets, x_clear = [0.0], -math.inf                      # a plain rejoin of the lane line
    else:               # on the lane, straight on: no wheel comes within clearance of a hazard
        return None
    if not offsets:
        return None

    outline = detector_outline(robot)
    fp = robot.footprint()
    pad = 3.0
    bounds = (min(px, end[0]) - pad, min(py, end[1]) - pad, max(px, end[0]) + pad, max(py, end[1]) + pad)
    raster = SweptRaster(robot, bounds, swept, cell=cell, margin=wheel_margin)
    base = raster.swept.copy()
    inside_p = prep(inside.buffer(1e-6)) if inside is not None else None
    no_go_g = no_go if no_go is not None and not no_go.is_empty else None
    hazard_pts = shapely.points(hz)
    d_start = _wheel_distance(patches, np.array([[px, py, yaw]]), hazard_pts)[0]

    def world(p):
        return np.array([x0 + c * p[0] - s_ * p[1], y0 + s_ * p[0] + c * p[1]])

    # candidates, shortest first: the first that passes every check is the answer
    cands = []
    for s in offsets:
        for b in backups:
            # the backup runs along the robot's own heading (its track), not the lane's
            bx0 = -b * math.cos(turned)
            by0 = y_robot - b * math.sin(turned)
            for a_out in angles_deg:
                run_out = abs(s - by0) / math.tan(math.radians(a_out))
                x1 = bx0 + run_out
                if s == 0.0 and not blocking.any():                # plain rejoin: onto the line
                    if x1 > remaining - 0.8 or math.hypot(x1 - bx0, by0) < 0.1:
                        continue
                    cands.append((b + math.hypot(run_out, s - by0), s, a_out, a_out, b, [(x1, 0.0)]))
                    continue
                for a_ret in angles_deg:
                    run_ret = abs(s) / math.tan(math.radians(a_ret))
                    x2 = max(x_clear, x1)
                    if x2 + run_ret > remaining - 0.3:
                        continue
                    length = b + math.hypot(run_out, s - by0) + (x2 - x1) + math.hypot(run_ret, s)
                    pts = [(x1, s)] + ([(x2, s)] if x2 > x1 + 1e-6 else []) + [(x2 + run_ret, 0.0)]
                    cands.append((length, s, a_out, a_ret, b, pts))
    cands.sort(key=lambda c: c[0])
    rejected: dict[str, int] = {}
    for _, s, a_out, a_ret, b, pts in cands[:max_candidates]:
        raster.swept[...] = base
        pieces, dist, why = _replay(raster, np.array([px, py]), yaw, b, [world(p) for p in pts],
                                    heading, patches, hazard_pts, d_start, clearance + margin / 2,
                                    post_backups)
        if why is None:
            why = _limits(pieces, fp, outline, inside_p, no_go_g)
        if why is not None:
            rejected[why] = rejected.get(why, 0) + 1
            continue
        length = sum(float(np.hypot(*np.diff(q, axis=0).T).sum()) for q, _ in pieces)
        segs = [Segment('transit', q, 0, direction=d) for q, d in pieces]
        return Sidestep(segs, segs[-1].points[-1].copy(), s, a_out, a_ret, b, dist, length)
    if why_not is not None:
        why_not.update(rejected)
    return None


def _wheel_distance(patches: np.ndarray, poses: np.ndarray, hazard_pts) -> np.ndarray:
    """Per pose, the smallest distance from a wheel contact patch to a hazard."""
    wp = transform(patches.reshape(-1, 2), poses).reshape(len(poses), 4, 4, 2)
    polys = shapely.polygons(wp.reshape(-1, 4, 2))
    d = shapely.distance(polys[:, None], hazard_pts[None, :]).min(axis=1)
    return d.reshape(len(poses), 4).min(axis=1)


def _poses_along(a, b, yaw, step: float = 0.05) -> np.ndarray:
    n = max(1, math.ceil(float(np.hypot(*(b - a))) / step))
    f = np.arange(n + 1)[:, None] / n
    p = a + f * (b - a)
    return np.column_stack([p, np.full(len(p), yaw)])


def _turn_poses(p, yaw0: float, yaw1: float, step: float = 0.08) -> np.ndarray:
    n = max(1, math.ceil(abs(yaw1 - yaw0) / step))
    return np.column_stack([np.full(n + 1, p[0]), np.full(n + 1, p[1]),
                            yaw0 + (yaw1 - yaw0) * np.arange(n + 1) / n])


class _Track:
    """The pieces (points, direction) of the manoeuvre and the poses along it, built move by move."""

    def __init__(self, pos, yaw: float):
        self.pos, self.yaw = np.asarray(pos, dtype=float), yaw
        self.pieces: list[tuple[list, str]] = []
        self.poses: list[np.ndarray] = []

    def add(self, b, direction: str) -> None:
        b = np.asarray(b, dtype=float)
        if direction == 'forward' and self.pieces and self.pieces[-1][1] == direction:
            self.pieces[-1][0].append(b)        # forward polyline: point turns at its corners
        else:
            self.pieces.append(([self.pos.copy(), b], direction))
        self.poses.append(_poses_along(self.pos, b, self.yaw))
        self.pos = b

    def turn(self, yaw1: float) -> None:
        self.poses.append(_turn_poses(self.pos, self.yaw, yaw1))
        self.yaw = yaw1


def _forward(raster: SweptRaster, tr: _Track, b, post_backups) -> str | None:
    """Turn toward ``b`` and drive to it; after the turn, back up first if the ground between the
    wheels and the detector is not swept yet (the detector sweeps it going back)."""
    a = tr.pos
    d = float(np.hypot(*(b - a)))
    h1 = tr.yaw + _wrap(math.atan2(b[1] - a[1], b[0] - a[0]) - tr.yaw)
    if abs(h1 - tr.yaw) > 1e-6:
        if not raster.turn_ok(a[0], a[1], tr.yaw, h1):
            return 'turn on unswept ground'
        raster.sweep_turn(a[0], a[1], tr.yaw, h1)
        tr.turn(h1)
    u = np.array([math.cos(h1), math.sin(h1)])
    for back in post_backups:
        if back > 0 and not raster.straight_ok(a[0], a[1], h1, back, reverse=True):
            continue
        snap = raster.swept.copy()
        if back > 0:
            raster.sweep_straight(a[0], a[1], h1, back, reverse=True)
        start = a - back * u
        if raster.straight_ok(start[0], start[1], h1, d + back):
            if back > 0:
                tr.add(start, 'reverse')
            raster.sweep_straight(start[0], start[1], h1, d + back)
            tr.add(b, 'forward')
            return None
        raster.swept[...] = snap
    return 'straight move onto unswept ground'


def _replay(raster: SweptRaster, p0, yaw0: float, backup: float, targets, lane_yaw: float, patches,
            hazard_pts, d_start: float, need: float, post_backups):
    """Replay backup, moves to ``targets`` and the turn back onto the lane on the swept raster:
    (pieces, closest wheel-to-hazard distance, None) or (pieces, nan, the reason it fails)."""
    tr = _Track(p0, yaw0)
    if backup > 0:
        if not raster.straight_ok(p0[0], p0[1], yaw0, backup, reverse=True):
            return [], math.nan, 'backup onto unswept ground'
        b = p0 - backup * np.array([math.cos(yaw0), math.sin(yaw0)])
        if _wheel_distance(patches, _poses_along(p0, b, yaw0), hazard_pts).min() < min(d_start, need) - 1e-3:
            return [], math.nan, 'backing brings a wheel closer to a hazard'
        raster.sweep_straight(p0[0], p0[1], yaw0, backup, reverse=True)
        tr.add(b, 'reverse')
        tr.poses.clear()            # the backup is checked above: it only has to not get closer
    for b in targets:
        why = _forward(raster, tr, np.asarray(b, dtype=float), post_backups)
        if why is not None:
            return [], math.nan, why
    # back onto the lane heading, and the lane's first half metre
    rejoin = tr.pos.copy()
    ahead = rejoin + 0.5 * np.array([math.cos(lane_yaw), math.sin(lane_yaw)])
    why = _forward(raster, tr, ahead, post_backups)
    if why is not None:
        return [], math.nan, f'lane restart: {why}'
    dist = float(_wheel_distance(patches, np.vstack(tr.poses), hazard_pts).min())
    if dist < need:
        return [], math.nan, f'a wheel within {dist:.2f} m of a hazard'
    pieces = [(np.asarray(q), d) for q, d in tr.pieces]
    # the lane restart is the lane's own: end the manoeuvre at the rejoin point (a backup there
    # stays part of it)
    last, d = pieces[-1]
    if d == 'forward' and np.allclose(last[-1], ahead):
        last = last[:-1]
        pieces = pieces[:-1] + ([(last, d)] if len(last) >= 2 else [])
    return pieces, dist, None


def _limits(pieces, fp, outline, inside_p, no_go) -> str | None:
    """Body inside the area and detector out of no-go zones at every vertex and along each move."""
    if inside_p is None and no_go is None:
        return None
    poses = []
    for q, d in pieces:
        for a, b in zip(q[:-1], q[1:]):
            yaw = math.atan2(b[1] - a[1], b[0] - a[0]) + (math.pi if d == 'reverse' else 0.0)
            poses.append(_poses_along(a, b, yaw, step=0.1))
    if not poses:
        return None
    poses = np.vstack(poses)
    if inside_p is not None and not all(inside_p.covers(p) for p in shapely.polygons(transform(fp, poses))):
        return 'body outside the area'
    if no_go is not None and shapely.intersects(shapely.polygons(transform(outline, poses)), no_go).any():
        return 'detector into a no-go zone'
    return None
