"""Swept-ground verification: simulate a plan against the ground swept so far.

The rule (issue 3, "Safe ground"): wheel contact patches may only travel over ground the
detector swept *earlier* in the plan, or declared safe ground. The plan is walked primitive by
primitive — a straight move between two vertices, or an in-place rotation at a vertex — in driving
order. For each primitive the wheel patches' swept region is compared with the union of the
detector sweeps of all earlier primitives (plus safe ground). Within a forward straight move, ground
more than ``detector_min_x`` ahead of the start pose is swept by this same move before any wheel
reaches it (the array is wider than the track), so only the first part of the wheel trail needs
earlier sweeping; for rotations the whole wheel sweep does (the array sweeps an annulus outside
the wheels' circle).
"""

from __future__ import annotations

from dataclasses import dataclass, field
import math

import numpy as np
import shapely
from shapely.geometry import Polygon, box

from mine_robot.planning.coverage import detector_outline, transform
from mine_robot.robot import RobotGeometry

TOLERANCE_M2 = 2e-4          # 2 cm² of wheel patch: numerical noise, not a violation


class SweptIndex:
    """Union of many polygons, stored in square tiles so local queries stay cheap.

    Each added polygon is clipped to the tiles it touches; a tile folds its pieces into one
    polygon when they pile up. A query unions only the tiles under the query's bounding box.
    """

    def __init__(self, base=None, tile: float = 8.0, fold: int = 12):
        self.tile, self.fold = tile, fold
        self.tiles: dict[tuple[int, int], list] = {}
        self.polys: list = []
        if base is not None and not base.is_empty:
            for p in getattr(base, 'geoms', [base]):
                self.add(p)

    def _keys(self, bounds):
        t = self.tile
        i0, j0 = math.floor(bounds[0] / t), math.floor(bounds[1] / t)
        i1, j1 = math.floor(bounds[2] / t), math.floor(bounds[3] / t)
        return [(i, j) for i in range(i0, i1 + 1) for j in range(j0, j1 + 1)]

    def add(self, poly) -> None:
        if poly.is_empty:
            return
        self.polys.append(poly)
        t = self.tile
        keys = self._keys(poly.bounds)
        for key in keys:
            piece = poly if len(keys) == 1 else shapely.clip_by_rect(
                poly, key[0] * t, key[1] * t, (key[0] + 1) * t, (key[1] + 1) * t)
            if piece.is_empty:
                continue
            bucket = self.tiles.setdefault(key, [])
            bucket.append(piece)
            if len(bucket) > self.fold:
                self.tiles[key] = [shapely.union_all(bucket)]

    def _local(self, bounds):
        pieces = []
        for key in self._keys(bounds):
            bucket = self.tiles.get(key)
            if bucket:
                if len(bucket) > 1:
                    bucket[:] = [shapely.union_all(bucket)]
                pieces.append(bucket[0])
        if not pieces:
            return Polygon()
        return shapely.union_all(pieces) if len(pieces) > 1 else pieces[0]

    def uncovered(self, geom):
        """Part of ``geom`` not covered by the union."""
        if geom.is_empty:
            return geom
        b = geom.bounds
        local = self._local(b)
        if local.is_empty:
            return geom
        return geom.difference(shapely.clip_by_rect(local, b[0] - 1e-3, b[1] - 1e-3, b[2] + 1e-3,
                                                    b[3] + 1e-3))

    def covers(self, geom, tol: float = TOLERANCE_M2) -> bool:
        return self.uncovered(geom).area <= tol

    def union(self):
        return shapely.union_all(self.polys) if self.polys else Polygon()


@dataclass
class Violation:
    segment: int
    role: str
    kind: str            # 'straight' | 'turn'
    metres: float
    area_m2: float
    x: float
    y: float
    reason: str

    def as_dict(self) -> dict:
        return {'segment': self.segment, 'role': self.role, 'kind': self.kind,
                'metres': round(self.metres, 3), 'area_m2': round(self.area_m2, 4),
                'where': [round(self.x, 2), round(self.y, 2)], 'reason': self.reason}


@dataclass
class SweepCheck:
    violations: list[Violation] = field(default_factory=list)
    lane_sweep: SweptIndex = field(default_factory=SweptIndex)
    all_sweep: SweptIndex = field(default_factory=SweptIndex)

    @property
    def metres(self) -> float:
        return float(sum(v.metres for v in self.violations))

    def summary(self, limit: int = 20) -> dict:
        return {'count': len(self.violations), 'metres': round(self.metres, 3),
                'area_m2': round(sum(v.area_m2 for v in self.violations), 4),
                'items': [v.as_dict() for v in self.violations[:limit]]}


class SweepChecker:
    """Incremental swept-ground checker, usable while building a plan and on a finished plan."""

    def __init__(self, robot: RobotGeometry, safe=None, yaw_step: float = 0.1):
        self.robot = robot
        self.outline = detector_outline(robot)
        self.wheels = robot.wheel_patches()                     # (4, 4, 2)
        self.det_min_x = float(self.outline[:, 0].min())
        self.yaw_step = yaw_step
        self.safe = safe if safe is not None else Polygon()
        self.result = SweepCheck()
        self.prior = SweptIndex(self.safe)
        self.yaw: float | None = None

    # -- geometry of one primitive -------------------------------------------------------------
    def _hulls(self, points: np.ndarray, poses: np.ndarray) -> list:
        pts = transform(points.reshape(-1, 2), poses)           # (N, K, 2)
        if len(poses) == 1:
            return [Polygon(pts[0])]
        pairs = np.concatenate([pts[:-1], pts[1:]], axis=1)
        idx = np.repeat(np.arange(len(pairs)), pairs.shape[1])
        return list(shapely.convex_hull(shapely.multipoints(pairs.reshape(-1, 2), indices=idx)))

    def _wheel_sweep(self, poses: np.ndarray):
        return shapely.union_all([h for w in self.wheels for h in self._hulls(w, poses)])

    def rotate(self, x: float, y: float, yaw0: float, yaw1: float, segment: int, role: str) -> None:
        dyaw = (yaw1 - yaw0 + math.pi) % (2 * math.pi) - math.pi
        if abs(dyaw) < 1e-6:
            return
        n = max(1, math.ceil(abs(dyaw) / self.yaw_step))
        yaws = yaw0 + dyaw * np.arange(n + 1) / n
        poses = np.column_stack([np.full(n + 1, x), np.full(n + 1, y), yaws])
        need = self.prior.uncovered(self._wheel_sweep(poses))
        if need.area > TOLERANCE_M2:
            c = need.centroid
            self.result.violations.append(Violation(
                segment, role, 'turn', abs(dyaw) * 0.46, need.area, c.x, c.y,
                f'point turn of {math.degrees(dyaw):.0f}° with wheels on unswept ground'))
        det = shapely.union_all(self._hulls(self.outline, poses))
        self._add(det, role)

    def straight(self, a: np.ndarray, b: np.ndarray, segment: int, role: str) -> None:
        d = b - a
        dist = math.hypot(*d)
        if dist < 1e-9:
            return
        yaw = math.atan2(d[1], d[0])
        if self.yaw is not None:
            self.rotate(a[0], a[1], self.yaw, yaw, segment, role)
        poses = np.array([[a[0], a[1], yaw], [b[0], b[1], yaw]])
        wheels = self._wheel_sweep(poses)
        # ground ahead of det_min_x (start frame) is swept by this move before the wheels get there
        c, s = math.cos(yaw), math.sin(yaw)
        big = 4.0 + dist
        local = box(-big, -big, self.det_min_x, big)
        clip = shapely.transform(local, lambda p: np.column_stack(
            [a[0] + c * p[:, 0] - s * p[:, 1], a[1] + s * p[:, 0] + c * p[:, 1]]))
        need = self.prior.uncovered(wheels.intersection(clip))
        if need.area > TOLERANCE_M2:
            # extent of the exposed ground along the move
            xy = shapely.get_coordinates(need)
            along = (xy - a) @ np.array([c, s])
            metres = float(min(dist, max(0.0, along.max() - max(along.min(), 0.0))))
            cen = need.centroid
            self.result.violations.append(Violation(
                segment, role, 'straight', max(metres, 0.01), need.area, cen.x, cen.y,
                'wheels roll onto ground the detector has not swept (move starts without '
                f'{self.det_min_x:.2f} m of swept ground ahead)'))
        self._add(shapely.union_all(self._hulls(self.outline, poses)), role)
        self.yaw = yaw

    def _add(self, det, role: str) -> None:
        self.prior.add(det)
        self.result.all_sweep.add(det)
        if role == 'lane':
            self.result.lane_sweep.add(det)

    def drive(self, points: np.ndarray, segment: int, role: str) -> None:
        if len(points) > 2:     # collinear runs are one move (same rule, less work)
            points = shapely.get_coordinates(shapely.simplify(shapely.linestrings(points), 0.0))
        for a, b in zip(points[:-1], points[1:]):
            self.straight(a, b, segment, role)


def check_plan(plan, robot: RobotGeometry, safe=None) -> SweepCheck:
    """Walk a finished CoveragePlan in order and return violations and the swept ground."""
    checker = SweepChecker(robot, safe)
    for i, seg in enumerate(plan.segments):
        checker.drive(seg.points, i, seg.role)
    return checker.result
