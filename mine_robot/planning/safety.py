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

import cv2
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
    kind: str            # 'straight' | 'turn' | 'hazard' (a wheel in a keep-out, raster_check)
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

    def straight(self, a: np.ndarray, b: np.ndarray, segment: int, role: str,
                 reverse: bool = False) -> None:
        d = b - a
        dist = math.hypot(*d)
        if dist < 1e-9:
            return
        yaw = math.atan2(d[1], d[0]) + (math.pi if reverse else 0.0)
        if self.yaw is not None:
            self.rotate(a[0], a[1], self.yaw, yaw, segment, role)
        poses = np.array([[a[0], a[1], yaw], [b[0], b[1], yaw]])
        wheels = self._wheel_sweep(poses)
        if reverse:
            # backing up: the detector trails the wheels, so every wheel position needs earlier sweeping
            need = self.prior.uncovered(wheels)
        else:
            # ground ahead of det_min_x (start frame) is swept by this move before the wheels get there
            c, s = math.cos(yaw), math.sin(yaw)
            big = 4.0 + dist
            local = box(-big, -big, self.det_min_x, big)
            clip = shapely.transform(local, lambda p: np.column_stack(
                [a[0] + c * p[:, 0] - s * p[:, 1], a[1] + s * p[:, 0] + c * p[:, 1]]))
            need = self.prior.uncovered(wheels.intersection(clip))
        if need.area > TOLERANCE_M2:
            # extent of the exposed ground along the move
            c, s = math.cos(yaw), math.sin(yaw)
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

    def drive(self, points: np.ndarray, segment: int, role: str, direction: str = 'forward') -> None:
        if len(points) > 2:     # collinear runs are one move (same rule, less work)
            points = shapely.get_coordinates(shapely.simplify(shapely.linestrings(points), 0.0))
        for a, b in zip(points[:-1], points[1:]):
            self.straight(a, b, segment, role, reverse=direction == 'reverse')


def check_plan(plan, robot: RobotGeometry, safe=None) -> SweepCheck:
    """Walk a finished CoveragePlan in order with exact (shapely) geometry; violations and the
    swept ground. Exact but slow on big fields: the planner uses :func:`raster_check`."""
    checker = SweepChecker(robot, safe)
    for i, seg in enumerate(plan.segments):
        checker.drive(seg.points, i, seg.role, seg.direction)
    return checker.result


# ------------------------------------------------------------------------------ raster replay
class Grid:
    """A square-cell raster over a bounding box (map frame); cell centres sample the ground."""

    def __init__(self, bounds, cell: float, pad: float = 2.0):
        self.cell = float(cell)
        self.x0, self.y0 = bounds[0] - pad, bounds[1] - pad
        self.nx = int(math.ceil((bounds[2] + pad - self.x0) / cell))
        self.ny = int(math.ceil((bounds[3] + pad - self.y0) / cell))

    def zeros(self) -> np.ndarray:
        return np.zeros((self.ny, self.nx), np.uint8)

    def pix(self, pts: np.ndarray) -> np.ndarray:
        """Map points -> fixed-point pixel coordinates (cv2 ``shift`` = 4) of cell centres."""
        u = (np.asarray(pts)[..., 0] - self.x0) / self.cell - 0.5
        v = (np.asarray(pts)[..., 1] - self.y0) / self.cell - 0.5
        return np.round(np.stack([u, v], axis=-1) * 16).astype(np.int32)

    def fill(self, mask: np.ndarray, geom, value: int = 1) -> np.ndarray:
        """Rasterise a shapely (Multi)Polygon (holes cleared) into ``mask``."""
        for p in getattr(geom, 'geoms', [geom]):
            if p.is_empty or p.geom_type != 'Polygon':
                continue
            cv2.fillPoly(mask, [self.pix(np.asarray(p.exterior.coords))], value, cv2.LINE_8, 4)
            holes = [self.pix(np.asarray(r.coords)) for r in p.interiors]
            if holes:
                cv2.fillPoly(mask, holes, 0, cv2.LINE_8, 4)
        return mask

    def convex(self, mask: np.ndarray, pts: np.ndarray, value: int = 1) -> None:
        hull = cv2.convexHull(self.pix(pts).reshape(-1, 1, 2))
        cv2.fillConvexPoly(mask, hull, value, cv2.LINE_8, 4)

    def centre(self, i: int, j: int) -> tuple[float, float]:
        return self.x0 + (j + 0.5) * self.cell, self.y0 + (i + 0.5) * self.cell


class WheelTest:
    """Which unswept raster cells the wheel contact patches would cover in a point turn or a short
    straight move, tested per cell centre (no polygon filling): cells are only tested where the ground
    is unswept, so a move over swept ground costs one window scan.

    A point turn is tested exactly in polar coordinates about the turn centre: a wheel rectangle that
    lies in one quadrant of base_link covers, at radius ``r``, one interval of bearings
    ``[lo(r), hi(r)]``; turning from ``yaw0`` to ``yaw1`` it covers bearings
    ``[min(yaw) + lo, max(yaw) + hi]``. ``grow`` enlarges every rectangle (margin, pixel size).
    """

    def __init__(self, robot: RobotGeometry, grid: Grid, grow: float):
        w = robot.wheel_patches()
        self.grid = grid
        self.rects = np.column_stack([w[:, :, 0].min(axis=1) - grow, w[:, :, 0].max(axis=1) + grow,
                                      w[:, :, 1].min(axis=1) - grow, w[:, :, 1].max(axis=1) + grow])
        x0, x1, y0, y1 = self.rects.T
        self.polar = bool(np.all((x0 > 0) | (x1 < 0)) and np.all((y0 > 0) | (y1 < 0)))
        self.sx = np.where(x0 > 0, 1.0, -1.0)
        self.sy = np.where(y0 > 0, 1.0, -1.0)
        ax = np.sort(np.abs(self.rects[:, :2]), axis=1)
        ay = np.sort(np.abs(self.rects[:, 2:]), axis=1)
        self.ax0, self.ax1, self.ay0, self.ay1 = ax[:, 0:1], ax[:, 1:2], ay[:, 0:1], ay[:, 1:2]
        corners = np.array([[a, b] for a in (x0, x1) for b in (y0, y1)])     # (4, 2, n)
        self.reach = float(np.hypot(corners[:, 0], corners[:, 1]).max())

    def _unswept_cells(self, swept, xmin, ymin, xmax, ymax):
        """Centres (m, 2) of the unswept cells in a box, or None when the box leaves the raster."""
        g = self.grid
        j0 = int(math.floor((xmin - g.x0) / g.cell))
        i0 = int(math.floor((ymin - g.y0) / g.cell))
        j1 = int(math.ceil((xmax - g.x0) / g.cell)) + 1
        i1 = int(math.ceil((ymax - g.y0) / g.cell)) + 1
        if i0 < 0 or j0 < 0 or i1 > g.ny or j1 > g.nx:
            return None
        ii, jj = np.nonzero(swept[i0:i1, j0:j1] == 0)
        return np.column_stack([g.x0 + (jj + j0 + 0.5) * g.cell, g.y0 + (ii + i0 + 0.5) * g.cell])

    def turn(self, swept, x, y, yaw0, yaw1) -> int:
        """Unswept cells under the wheels in a point turn at (x, y) from yaw0 to yaw1 (|dyaw| <= pi)."""
        r_max = self.reach
        pts = self._unswept_cells(swept, x - r_max, y - r_max, x + r_max, y + r_max)
        if pts is None:
            return 1 << 30
        if not len(pts):
            return 0
        d = pts - (x, y)
        r = np.hypot(d[:, 0], d[:, 1])
        keep = r <= r_max
        if not keep.any():
            return 0
        r, phi = r[keep][None, :], np.arctan2(d[keep, 1], d[keep, 0])[None, :]
        with np.errstate(invalid='ignore', divide='ignore'):
            lo = np.maximum(np.arccos(np.clip(self.ax1 / r, -1, 1)), np.arcsin(np.clip(self.ay0 / r, -1, 1)))
            hi = np.minimum(np.arccos(np.clip(self.ax0 / r, -1, 1)), np.arcsin(np.clip(self.ay1 / r, -1, 1)))
        valid = lo <= hi
        sx, sy = self.sx[:, None], self.sy[:, None]
        # map the first-quadrant interval to the wheel's quadrant
        # (x, y) = (sx |x|, sy |y|): bearing t' in the first quadrant is sx>0,sy>0: t'; sx<0,sy>0:
        # pi - t'; sx<0,sy<0: pi + t'; sx>0,sy<0: -t' (mirrors reverse the interval)
        mirror = (sx * sy) < 0
        lo_q = np.where(mirror, np.where(sx > 0, -hi, math.pi - hi), np.where(sx > 0, lo, math.pi + lo))
        span_q = hi - lo
        a0, span = min(yaw0, yaw1), abs(yaw1 - yaw0)
        off = np.mod(phi - a0 - lo_q, 2 * math.pi)
        hit = valid & (off <= span + span_q)
        return int(np.count_nonzero(hit.any(axis=0)))

    def straight(self, swept, x, y, yaw, lo_x, hi_x) -> int:
        """Unswept cells under the wheel rectangles stretched along x to [lo_x[k], hi_x[k]] (base_link
        of the pose (x, y, yaw))."""
        c, s = math.cos(yaw), math.sin(yaw)
        y0, y1 = self.rects[:, 2], self.rects[:, 3]
        ok = hi_x > lo_x
        if not ok.any():
            return 0
        corners = np.concatenate([np.column_stack([lo_x[ok], y0[ok]]), np.column_stack([hi_x[ok], y1[ok]]),
                                  np.column_stack([lo_x[ok], y1[ok]]), np.column_stack([hi_x[ok], y0[ok]])])
        wx = x + c * corners[:, 0] - s * corners[:, 1]
        wy = y + s * corners[:, 0] + c * corners[:, 1]
        pts = self._unswept_cells(swept, wx.min(), wy.min(), wx.max(), wy.max())
        if pts is None:
            return 1 << 30
        if not len(pts):
            return 0
        d = pts - (x, y)
        lx = (c * d[:, 0] + s * d[:, 1])[None, :]
        ly = (-s * d[:, 0] + c * d[:, 1])[None, :]
        inside = ((lx >= lo_x[ok, None]) & (lx <= hi_x[ok, None]) & (ly >= y0[ok, None])
                  & (ly <= y1[ok, None]))
        return int(np.count_nonzero(inside.any(axis=0)))


@dataclass
class RasterCheck:
    """Outcome of :func:`raster_check` (areas in m², lengths in m)."""
    violations: list[Violation]
    coverage_fraction: float
    overhang_no_go_m2: float
    overhang_outside_max_m: float
    grid: Grid
    swept: np.ndarray
    coverage_fraction_min: float = 0.0     # eroded by one cell: never credits a partly swept cell

    def summary(self, limit: int = 20) -> dict:
        return {'count': len(self.violations), 'metres': round(sum(v.metres for v in self.violations), 3),
                'area_m2': round(sum(v.area_m2 for v in self.violations), 4),
                'method': f'raster {self.grid.cell * 100:.0f} cm',
                'items': [v.as_dict() for v in self.violations[:limit]]}


    def unswept_pieces(self, region, min_area: float = 0.01) -> list[tuple[tuple[float, float], float]]:
        """((x, y) centroid, m²) of each connected unswept piece of ``region`` of at least ``min_area``
        (pixel noise along the edges removed by an opening), largest first."""
        g = self.grid
        want = g.fill(g.zeros(), region)
        left = want & (self.swept ^ 1)
        rows, cols = np.nonzero(left.any(axis=1))[0], np.nonzero(left.any(axis=0))[0]
        if not len(rows):
            return []
        i0, j0 = max(int(rows[0]) - 2, 0), max(int(cols[0]) - 2, 0)      # components of the crop only
        left = cv2.morphologyEx(left[i0:int(rows[-1]) + 3, j0:int(cols[-1]) + 3], cv2.MORPH_OPEN,
                                np.ones((2, 2), np.uint8))
        n, _, st, cen = cv2.connectedComponentsWithStats(left, connectivity=8)
        out = []
        for k in range(1, n):
            a = float(st[k, cv2.CC_STAT_AREA]) * g.cell * g.cell
            if a >= min_area:
                out.append(((g.x0 + (cen[k, 0] + j0 + 0.5) * g.cell,
                             g.y0 + (cen[k, 1] + i0 + 0.5) * g.cell), a))
        return sorted(out, key=lambda p: -p[1])


def _parts(geom) -> list:
    if geom.is_empty:
        return []
    return [g for g in getattr(geom, 'geoms', [geom]) if g.geom_type == 'Polygon']


def _moves(plan):
    """(kind, segment, role, x, y, yaw0, yaw1_or_yaw, dist, reverse) primitives of a plan (with the
    point turn from ``plan.start_yaw`` when the plan has one)."""
    yaw = getattr(plan, 'start_yaw', None)
    for i, seg in enumerate(plan.segments):
        rev = seg.direction == 'reverse'
        for a, b in zip(seg.points[:-1], seg.points[1:]):
            d = b - a
            dist = math.hypot(*d)
            if dist < 1e-9:
                continue
            h = math.atan2(d[1], d[0]) + (math.pi if rev else 0.0)
            if yaw is not None:
                dyaw = (h - yaw + math.pi) % (2 * math.pi) - math.pi
                if abs(dyaw) > 1e-6:
                    yield 'turn', i, seg.role, a[0], a[1], yaw, yaw + dyaw, 0.0, rev
                h = yaw + dyaw
            yield 'straight', i, seg.role, a[0], a[1], h, h, dist, rev
            yaw = h


def raster_check(plan, robot: RobotGeometry, area, cell: float = 0.02, region=None,
                 yaw_step: float = 0.1, keepout=None) -> RasterCheck:
    """Replay a plan on a raster: swept-ground violations, swept fraction of ``region`` (default the
    searchable area), detector overhang into no-go zones and past the search area's outer boundary.

    Same rule as :class:`SweepChecker`, on ``cell``-sized pixels: the detector's swept area is filled
    move by move; before each move the wheel patches' sweep (for a forward straight move only the
    part behind the detector's near edge in the start frame, which the detector does not sweep
    first) must lie on pixels already swept or declared safe. Wheel patches are shrunk by half a
    cell so pixel rounding on both sides does not report touching edges.

    ``keepout``: ground no wheel may touch at all (discs around known hazards); every move whose
    wheels touch it, over its whole length, is a violation (``kind`` ``hazard``).
    """
    region = area.searchable if region is None else region
    path = plan.path()
    xs = np.r_[path[:, 0], area.search.bounds[0], area.search.bounds[2]]
    ys = np.r_[path[:, 1], area.search.bounds[1], area.search.bounds[3]]
    grid = Grid((xs.min(), ys.min(), xs.max(), ys.max()), cell)
    # 1 = declared safe ground, 3 = swept by the detector (bit 2: detected)
    swept = grid.fill(grid.zeros(), area.safe_ground) if not area.safe_ground.is_empty else grid.zeros()
    outline = detector_outline(robot)
    det_min = float(outline[:, 0].min())
    shrink = cell / 2
    wheels = robot.wheel_patches()
    centres = wheels.mean(axis=1, keepdims=True)
    shrunk = centres + np.sign(wheels - centres) * np.maximum(np.abs(wheels - centres) - shrink, 0.0)
    wx0 = wheels[:, :, 0].min(axis=1) + shrink
    wx1 = wheels[:, :, 0].max(axis=1) - shrink
    wy0 = wheels[:, :, 1].min(axis=1) + shrink
    wy1 = wheels[:, :, 1].max(axis=1) - shrink
    scratch = grid.zeros()
    free = grid.fill(grid.zeros(), keepout) ^ 1 if keepout is not None and not keepout.is_empty else None
    violations: list[Violation] = []
    extremes = []          # detector outline points at every pose and turn step (overhang)

    def place(pts, x, y, yaws):
        """(K, 2) base-frame points at (x, y) and each yaw -> (len(yaws), K, 2)."""
        c, s = np.cos(yaws)[:, None], np.sin(yaws)[:, None]
        return np.stack([x + c * pts[None, :, 0] - s * pts[None, :, 1],
                         y + s * pts[None, :, 0] + c * pts[None, :, 1]], axis=-1)

    def fill_all(mask, polys_pix, value=1, offset=(0, 0)):
        for poly in polys_pix:
            shifted = (poly - [offset[1] * 16, offset[0] * 16]).astype(np.int32)
            hull = cv2.convexHull(shifted.reshape(-1, 1, 2))
            cv2.fillConvexPoly(mask, hull, value, cv2.LINE_8, 4)

    def check(polys_pix, kind, seg, role, x, y, metres, reason, bad=None):
        if bad is None:
            flat = polys_pix.reshape(-1, 2) / 16.0
            j0, i0 = np.maximum(np.floor(flat.min(axis=0)).astype(int) - 1, 0)
            j1, i1 = np.ceil(flat.max(axis=0)).astype(int) + 2
            sub = scratch[i0:i1, j0:j1]
            sub[:] = 0
            fill_all(sub, polys_pix, 1, (i0, j0))
            bad = np.count_nonzero(sub & (swept[i0:i1, j0:j1] == 0))
        if bad:
            violations.append(Violation(seg, role, kind, metres, bad * cell * cell, x, y, reason))

    # cell-centre tests of the (unshrunk) wheel rectangles where the robot allows them (the same
    # tolerance as the shrunk polygons filled with their edge cells)
    test = WheelTest(robot, grid, 0.0)
    test = test if test.polar else None
    raw_x0, raw_x1 = wx0 - shrink, wx1 + shrink
    hazard_reason = 'a wheel within the clearance of a known hazard'
    for kind, seg, role, x, y, y0, y1, dist, rev in _moves(plan):
        if free is not None:
            if test is None:
                raise ValueError('raster_check: keepout needs a robot whose wheels allow the polar test')
            if kind == 'turn':
                hit = test.turn(free, x, y, y0, y1) if abs(y1 - y0) <= math.pi + 1e-9 else \
                    test.turn(free, x, y, y0, (y0 + y1) / 2) + test.turn(free, x, y, (y0 + y1) / 2, y1)
            else:
                lo = raw_x0 - dist if rev else raw_x0
                hi = raw_x1 if rev else raw_x1 + dist
                hit = test.straight(free, x, y, y0, lo, hi)
            if hit:
                violations.append(Violation(seg, role, 'hazard', dist if kind == 'straight' else 0.0,
                                            hit * cell * cell, x, y, hazard_reason))
        if kind == 'turn':
            n = max(1, math.ceil(abs(y1 - y0) / yaw_step))
            yaws = y0 + (y1 - y0) * np.arange(n + 1) / n
            reason = f'point turn of {math.degrees(y1 - y0):.0f}° with wheels on unswept ground'
            metres = abs(y1 - y0) * robot.wheel_turn_radius
            if test is not None and abs(y1 - y0) <= math.pi + 1e-9:
                check(None, 'turn', seg, role, x, y, metres, reason, test.turn(swept, x, y, y0, y1))
            else:
                wp = grid.pix(place(shrunk.reshape(-1, 2), x, y, yaws).reshape(n + 1, 4, 4, 2))
                polys = np.concatenate([wp[:-1], wp[1:]], axis=2).reshape(-1, 8, 2)   # (n*4, 8, 2)
                check(polys, 'turn', seg, role, x, y, metres, reason)
            det = place(outline, x, y, yaws)
            extremes.append(det.reshape(-1, 2))
            dp = grid.pix(det)
            fill_all(swept, np.concatenate([dp[:-1], dp[1:]], axis=1), 3)
            continue
        metres = dist if rev else min(dist, det_min)
        reason = ('wheels back onto ground the detector has not swept' if rev else
                  'wheels roll onto ground the detector has not swept (move starts without '
                  f'{det_min:.2f} m of swept ground ahead)')
        if test is not None:
            lo = raw_x0 - dist if rev else raw_x0
            hi = raw_x1 if rev else np.minimum(raw_x1 + dist, det_min)
            check(None, 'straight', seg, role, x, y, metres, reason, test.straight(swept, x, y, y0, lo, hi))
        else:
            rects = []
            for k in range(4):
                lo, hi = (wx0[k] - dist, wx1[k]) if rev else (wx0[k], min(wx1[k] + dist, det_min))
                if hi > lo:
                    rects.append([[lo, wy0[k]], [hi, wy0[k]], [hi, wy1[k]], [lo, wy1[k]]])
            if rects:
                pts = place(np.asarray(rects).reshape(-1, 2), x, y, np.array([y0]))[0]
                check(grid.pix(pts).reshape(-1, 4, 2), 'straight', seg, role, x, y, metres, reason)
        sign = -1.0 if rev else 1.0
        det = place(np.vstack([outline, outline + [sign * dist, 0.0]]), x, y, np.array([y0]))[0]
        extremes.append(det)
        fill_all(swept, grid.pix(det)[None], 3)
    detected = (swept >> 1) & 1
    want = grid.fill(grid.zeros(), region)
    n_want = np.count_nonzero(want)
    cover = float(np.count_nonzero(want & detected) / n_want) if n_want else 0.0
    # conservative: a cell counts only when its 8 neighbours were swept too or lie outside the region
    # (no credit for the edge cells of an unswept patch)
    eroded = cv2.erode(detected | (want ^ 1), np.ones((3, 3), np.uint8))
    cover_min = float(np.count_nonzero(want & eroded) / n_want) if n_want else 0.0
    overhang_no_go = 0.0
    obstacles = [*_parts(area.no_go_union), *[Polygon(r) for r in area.search.interiors]]
    for zone in obstacles:
        b = grid.pix(np.array([[zone.bounds[0], zone.bounds[1]], [zone.bounds[2], zone.bounds[3]]])) // 16
        j0, i0 = np.maximum(b[0] - 1, 0)
        j1, i1 = b[1] + 2
        sub = np.zeros((max(i1 - i0, 0), max(j1 - j0, 0)), np.uint8)
        if sub.size:
            pts = [grid.pix(np.asarray(zone.exterior.coords)) - [j0 * 16, i0 * 16]]
            cv2.fillPoly(sub, [p.astype(np.int32) for p in pts], 1, cv2.LINE_8, 4)
            overhang_no_go += float(np.count_nonzero(sub & detected[i0:i1, j0:j1])) * cell * cell
    over_out = 0.0
    if extremes:
        pts = shapely.points(np.concatenate(extremes))
        outer = Polygon(area.search.exterior)
        free = shapely.union_all([outer, area.safe_ground]) if not area.safe_ground.is_empty else outer
        shapely.prepare(free)
        out = pts[~shapely.covers(free, pts)]
        if len(out):
            over_out = float(shapely.distance(free, out).max())
    return RasterCheck(violations, cover, overhang_no_go, over_out, grid, detected, cover_min)


# ------------------------------------------------------------------ incremental raster (planners)
class SweptRaster:
    """The rule of :func:`raster_check`, incrementally, for a planner that emits moves one by one.

    ``swept`` starts as the declared safe ground; ``sweep_turn`` / ``sweep_straight`` add the
    detector's sweep of a move, ``turn_ok`` / ``straight_ok`` say whether the wheel patches of a
    move (grown by ``margin`` on every side, so the final replay, the safety monitor's braking
    prediction and tracking error have room) stay on swept ground. ``snapshot`` / ``restore``
    undo trial moves inside a window.
    """

    def __init__(self, robot: RobotGeometry, bounds, safe=None, cell: float = 0.02,
                 margin: float = 0.03, yaw_step: float = 0.1, pad: float = 3.0, allowed=None,
                 keepout=None):
        self.grid = Grid(bounds, cell, pad=pad)
        self.swept = self.grid.zeros()
        if safe is not None and not safe.is_empty:
            self.grid.fill(self.swept, safe)
        # ground the wheels may use at all (the geofence: search area + safe ground): detector sweeps
        # past it (overhang at the outer boundary) are not kept as ground the wheels may roll on
        self.allowed = None
        if allowed is not None and not allowed.is_empty:
            self.allowed = self.grid.fill(self.grid.zeros(), allowed)
        # ground no wheel may touch however well it was swept (discs around known hazards): never
        # swept, and a forward move is tested against it over its whole length, not only the part
        # behind the detector
        self.free = None
        if keepout is not None and not keepout.is_empty:
            self.free = self.grid.fill(self.grid.zeros(), keepout) ^ 1
            self.allowed = self.free if self.allowed is None else self.allowed & self.free
        if self.allowed is not None:
            self.swept &= self.allowed
        self.outline = detector_outline(robot)
        self.det_min = float(self.outline[:, 0].min())
        wheels = robot.wheel_patches()
        self.wx0 = wheels[:, :, 0].min(axis=1) - margin
        self.wx1 = wheels[:, :, 0].max(axis=1) + margin
        self.wy0 = wheels[:, :, 1].min(axis=1) - margin
        self.wy1 = wheels[:, :, 1].max(axis=1) + margin
        self.grown = np.stack([np.column_stack([a, b]) for a, b in (
            (self.wx1, self.wy1), (self.wx0, self.wy1), (self.wx0, self.wy0), (self.wx1, self.wy0))],
            axis=1)                                                        # (4, 4, 2)
        self.yaw_step = yaw_step
        self.scratch = self.grid.zeros()
        # cell-centre tests, grown by half a cell (a filled polygon also takes the cells it touches)
        self.wheel_test = WheelTest(robot, self.grid, margin + cell / 2)
        if not self.wheel_test.polar:
            self.wheel_test = None

    @staticmethod
    def _place(pts, x, y, yaws):
        c, s = np.cos(yaws)[:, None], np.sin(yaws)[:, None]
        return np.stack([x + c * pts[None, :, 0] - s * pts[None, :, 1],
                         y + s * pts[None, :, 0] + c * pts[None, :, 1]], axis=-1)

    @staticmethod
    def _fill(mask, polys_pix, offset=(0, 0)):
        for poly in polys_pix:
            shifted = (poly - [offset[1] * 16, offset[0] * 16]).astype(np.int32)
            cv2.fillConvexPoly(mask, cv2.convexHull(shifted.reshape(-1, 1, 2)), 1, cv2.LINE_8, 4)

    def _unswept(self, polys_pix) -> int:
        flat = polys_pix.reshape(-1, 2) / 16.0
        lo = np.floor(flat.min(axis=0)).astype(int) - 1
        hi = np.ceil(flat.max(axis=0)).astype(int) + 2
        if lo.min() < 0 or hi[0] > self.grid.nx or hi[1] > self.grid.ny:
            return 1 << 30                       # off the raster: never swept
        j0, i0 = lo
        j1, i1 = hi
        sub = self.scratch[i0:i1, j0:j1]
        sub[:] = 0
        self._fill(sub, polys_pix, (i0, j0))
        return int(np.count_nonzero(sub & (self.swept[i0:i1, j0:j1] ^ 1)))

    def _turn_yaws(self, yaw0, yaw1):
        n = max(1, math.ceil(abs(yaw1 - yaw0) / self.yaw_step))
        return yaw0 + (yaw1 - yaw0) * np.arange(n + 1) / n

    def turn_ok(self, x, y, yaw0, yaw1) -> bool:
        if self.wheel_test is not None and abs(yaw1 - yaw0) <= math.pi + 1e-9:
            return self.wheel_test.turn(self.swept, x, y, yaw0, yaw1) == 0
        yaws = self._turn_yaws(yaw0, yaw1)
        wp = self.grid.pix(self._place(self.grown.reshape(-1, 2), x, y, yaws).reshape(len(yaws), 4, 4, 2))
        polys = np.concatenate([wp[:-1], wp[1:]], axis=2).reshape(-1, 8, 2)
        return self._unswept(polys) == 0

    def straight_ok(self, x, y, yaw, dist, reverse=False) -> bool:
        if self.free is not None and not reverse and not self._clear_of_keepout(x, y, yaw, dist):
            return False
        if self.wheel_test is not None:
            half = self.grid.cell / 2
            lo = (self.wx0 - dist if reverse else self.wx0) - half
            hi = (self.wx1 if reverse else np.minimum(self.wx1 + dist, self.det_min)) + half
            return self.wheel_test.straight(self.swept, x, y, yaw, lo, hi) == 0
        rects = []
        for k in range(4):
            lo, hi = (self.wx0[k] - dist, self.wx1[k]) if reverse else \
                (self.wx0[k], min(self.wx1[k] + dist, self.det_min))
            if hi > lo:
                rects.append([[lo, self.wy0[k]], [hi, self.wy0[k]], [hi, self.wy1[k]], [lo, self.wy1[k]]])
        if not rects:
            return True
        pts = self._place(np.asarray(rects).reshape(-1, 2), x, y, np.array([yaw]))[0]
        return self._unswept(self.grid.pix(pts).reshape(-1, 4, 2)) == 0

    def _clear_of_keepout(self, x, y, yaw, dist) -> bool:
        """The wheels' whole trail of a forward move of ``dist`` stays off the keep-out ground."""
        if self.wheel_test is not None:
            half = self.grid.cell / 2
            return self.wheel_test.straight(self.free, x, y, yaw, self.wx0 - half,
                                            self.wx1 + dist + half) == 0
        rects = [[[self.wx0[k], self.wy0[k]], [self.wx1[k] + dist, self.wy0[k]],
                  [self.wx1[k] + dist, self.wy1[k]], [self.wx0[k], self.wy1[k]]] for k in range(4)]
        pts = self._place(np.asarray(rects).reshape(-1, 2), x, y, np.array([yaw]))[0]
        saved, self.swept = self.swept, self.free
        try:
            return self._unswept(self.grid.pix(pts).reshape(-1, 4, 2)) == 0
        finally:
            self.swept = saved

    def _clip(self, pix) -> None:
        """Keep only allowed ground among the cells a fill of ``pix`` may have set."""
        if self.allowed is None:
            return
        flat = pix.reshape(-1, 2) // 16
        j0, i0 = np.maximum(flat.min(axis=0) - 1, 0)
        j1, i1 = flat.max(axis=0) + 2
        self.swept[i0:i1, j0:j1] &= self.allowed[i0:i1, j0:j1]

    def sweep_turn(self, x, y, yaw0, yaw1) -> None:
        dp = self.grid.pix(self._place(self.outline, x, y, self._turn_yaws(yaw0, yaw1)))
        self._fill(self.swept, np.concatenate([dp[:-1], dp[1:]], axis=1))
        self._clip(dp)

    def sweep_straight(self, x, y, yaw, dist, reverse=False) -> None:
        sign = -1.0 if reverse else 1.0
        det = self._place(np.vstack([self.outline, self.outline + [sign * dist, 0.0]]), x, y,
                          np.array([yaw]))[0]
        pix = self.grid.pix(det)
        self._fill(self.swept, pix[None])
        self._clip(pix)

    def snapshot(self, x, y, radius):
        i0, j0 = self._index(x - radius, y - radius)
        i1, j1 = self._index(x + radius, y + radius)
        return (i0, i1 + 1, j0, j1 + 1, self.swept[i0:i1 + 1, j0:j1 + 1].copy())

    def snapshot_box(self, bounds):
        i0, j0 = self._index(bounds[0], bounds[1])
        i1, j1 = self._index(bounds[2], bounds[3])
        return (i0, i1 + 1, j0, j1 + 1, self.swept[i0:i1 + 1, j0:j1 + 1].copy())

    def restore(self, snap) -> None:
        i0, i1, j0, j1, data = snap
        self.swept[i0:i1, j0:j1] = data

    def _index(self, x, y):
        i = int(np.clip((y - self.grid.y0) / self.grid.cell, 0, self.grid.ny - 1))
        j = int(np.clip((x - self.grid.x0) / self.grid.cell, 0, self.grid.nx - 1))
        return i, j


# ------------------------------------------------------------------ geofence replay (exact)
@dataclass
class FenceCheck:
    """Outcome of :func:`fence_check`: what the safety monitor's geofence would refuse."""
    wheels_outside_m2: float
    body_in_no_go_m2: float
    items: list[dict]

    def summary(self, limit: int = 20) -> dict:
        return {'wheels_outside_m2': round(self.wheels_outside_m2, 4),
                'body_in_no_go_m2': round(self.body_in_no_go_m2, 4), 'items': self.items[:limit]}


def fence_check(plan, robot: RobotGeometry, allowed, no_go, yaw_step: float = 0.1) -> FenceCheck:
    """Replay a plan against the safety monitor's geofence rules (mine_robot.control.safety):
    the wheel contact patches stay inside ``allowed`` (search area + declared safe ground) and the
    body footprint and the detector head stay out of ``no_go``, on every move and every point-turn
    step. Exact (shapely); moves whose reach (wheels 0.47 m, detector 1.06 m for the default robot)
    is clear of every edge are skipped without geometry work.
    """
    wheels = robot.wheel_patches()                                    # (4, 4, 2)
    shapes = [robot.footprint(), detector_outline(robot)]
    w_reach = float(np.hypot(wheels[..., 0], wheels[..., 1]).max())
    b_reach = max(float(np.hypot(s[:, 0], s[:, 1]).max()) for s in shapes)
    inner = allowed.buffer(-w_reach - 1e-3) if not allowed.is_empty else Polygon()
    shapely.prepare(inner)
    far = None
    if no_go is not None and not no_go.is_empty:
        shapely.prepare(no_go)
        far = no_go
    out_m2, nogo_m2, items = 0.0, 0.0, []

    def hull_pairs(pts, poses):
        """Convex hulls of ``pts`` (K, 2) at consecutive poses (one hull for a single pose)."""
        p = transform(pts, poses)
        if len(poses) == 1:
            return shapely.polygons(p)
        pairs = np.concatenate([p[:-1], p[1:]], axis=1)
        idx = np.repeat(np.arange(len(pairs)), pairs.shape[1])
        return shapely.convex_hull(shapely.multipoints(pairs.reshape(-1, 2), indices=idx))

    moves = list(_moves(plan))
    if not moves:
        return FenceCheck(0.0, 0.0, [])
    mv = np.array([m[3:8] for m in moves], dtype=float)                   # x, y, yaw0, yaw1, dist
    rev = np.array([m[8] for m in moves], dtype=bool)
    turn = np.array([m[0] == 'turn' for m in moves], dtype=bool)
    sign = np.where(rev, -1.0, 1.0)
    ends = mv[:, :2] + (sign * mv[:, 4])[:, None] * np.column_stack([np.cos(mv[:, 2]), np.sin(mv[:, 2])])
    probes = np.where(turn, shapely.points(mv[:, :2]),
                      shapely.linestrings(np.stack([mv[:, :2], ends], axis=1)))
    check_w = ~shapely.covers(inner, probes) if not inner.is_empty else np.ones(len(moves), bool)
    # straight moves near the edge: their wheel patches stay within the base_link segment grown by the
    # wheels' reach along and across it (square caps), often still inside
    near = np.nonzero(check_w & ~turn)[0]
    if len(near):
        ax = float(np.abs(wheels[..., 0]).max())
        ay = float(np.abs(wheels[..., 1]).max())
        if abs(ax - ay) < 1e-9:
            shapely.prepare(allowed)
            boxes = shapely.buffer(probes[near], ax, cap_style='square', join_style='mitre')
            check_w[near[shapely.covers(allowed, boxes)]] = False
    check_b = shapely.distance(far, probes) < b_reach + 1e-3 if far is not None \
        else np.zeros(len(moves), bool)
    for i in np.nonzero(check_w | check_b)[0]:
        kind, seg, role, x, y, y0, y1, dist, _ = moves[i]
        if kind == 'turn':
            n = max(1, math.ceil(abs(y1 - y0) / yaw_step))
            yaws = y0 + (y1 - y0) * np.arange(n + 1) / n
            poses = np.column_stack([np.full(n + 1, x), np.full(n + 1, y), yaws])
        else:
            poses = np.array([[x, y, y0], [ends[i, 0], ends[i, 1], y0]])
        where = [round(float(x), 2), round(float(y), 2)]
        if check_w[i]:
            w = shapely.union_all(np.concatenate([hull_pairs(wp, poses) for wp in wheels]))
            a = float(w.difference(allowed).area)
            if a > TOLERANCE_M2:
                out_m2 += a
                items.append({'segment': seg, 'role': role, 'kind': kind, 'rule': 'geofence',
                              'area_m2': round(a, 4), 'where': where})
        if check_b[i]:
            body = shapely.union_all(np.concatenate([hull_pairs(sh, poses) for sh in shapes]))
            a = float(body.intersection(far).area)
            if a > TOLERANCE_M2:
                nogo_m2 += a
                items.append({'segment': seg, 'role': role, 'kind': kind, 'rule': 'no_go',
                              'area_m2': round(a, 4), 'where': where})
    return FenceCheck(out_m2, nogo_m2, items)
