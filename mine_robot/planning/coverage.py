"""Coverage accounting: the ground the metal-detector array has swept, from driven robot poses.

Footprint model (documented in README "Coverage planning"): the coil array is treated as one
continuous sensing bar — the segment joining the outer coil centres, dilated by the coil radius (a
stadium, ``swath_width`` wide and one coil diameter deep, 0.84..1.06 m ahead of ``base_link`` for
the default robot). Between two consecutive poses the swept ground is the convex hull of the two
stadia; pose pairs that rotate more than ``max_dyaw`` or move more than ``max_step`` are
sub-divided first, and pairs further apart than ``max_gap`` (a localisation jump) are not joined.
The stadium is approximated by a polygon inscribed in its round ends, so the result never claims
ground the coils did not pass over by more than the inscribed-polygon error (< 1 mm).

The tracker is incremental: poses are buffered and unioned in batches (``batch`` poses per union),
and batch unions are folded into the main polygon every ``fold`` batches, so each ``add_pose`` is
O(1) and the cost of a union stays bounded by the local geometry rather than the whole sweep.
"""

from __future__ import annotations

import math

import numpy as np
import shapely
from shapely.geometry import MultiPolygon, Polygon
from shapely.prepared import prep

from mine_robot.robot import RobotGeometry


def detector_outline(robot: RobotGeometry, arc_points: int = 5) -> np.ndarray:
    """(K, 2) polygon (CCW) of the detector stadium in base_link."""
    md = robot.metal_detector
    coils = md.coil_positions()
    r = md.coil_radius
    x = float(coils[:, 0].mean())
    y_left, y_right = float(coils[:, 1].max()), float(coils[:, 1].min())
    a = np.linspace(0.0, math.pi, arc_points)
    left = np.column_stack([x + r * np.cos(a), y_left + r * np.sin(a)])          # front -> back
    right = np.column_stack([x - r * np.cos(a), y_right - r * np.sin(a)])       # back -> front
    return np.vstack([left, right])


def transform(points: np.ndarray, poses: np.ndarray) -> np.ndarray:
    """Base-frame points (K, 2) placed at poses (N, 3) -> (N, K, 2) map-frame points."""
    poses = np.atleast_2d(poses)
    c, s = np.cos(poses[:, 2])[:, None], np.sin(poses[:, 2])[:, None]
    px, py = points[None, :, 0], points[None, :, 1]
    return np.stack([poses[:, 0:1] + c * px - s * py, poses[:, 1:2] + s * px + c * py], axis=-1)


def densify(poses: np.ndarray, max_step: float = 0.25, max_dyaw: float = 0.1,
            max_gap: float = 2.0) -> list[np.ndarray]:
    """Split a pose track (N, 3) into runs (lists of poses) with bounded steps.

    Consecutive poses further apart than ``max_gap`` start a new run; others are interpolated so
    no step exceeds ``max_step`` metres or ``max_dyaw`` radians.
    """
    poses = np.atleast_2d(np.asarray(poses, dtype=float))[:, :3]
    if len(poses) < 2:
        return [poses]
    d = np.diff(poses[:, :2], axis=0)
    dist = np.hypot(d[:, 0], d[:, 1])
    dyaw = (np.diff(poses[:, 2]) + math.pi) % (2 * math.pi) - math.pi
    runs, current = [], [poses[:1]]
    for i in range(len(dist)):
        if dist[i] > max_gap:
            runs.append(np.vstack(current))
            current = [poses[i + 1:i + 2]]
            continue
        n = max(1, math.ceil(dist[i] / max_step), math.ceil(abs(dyaw[i]) / max_dyaw))
        if n == 1:
            current.append(poses[i + 1:i + 2])
        else:
            t = np.arange(1, n + 1)[:, None] / n
            step = np.column_stack([d[i:i + 1], dyaw[i:i + 1]])
            current.append(poses[i:i + 1] + t * step)
    runs.append(np.vstack(current))
    return runs


def sweep_pieces(outline: np.ndarray, poses: np.ndarray) -> np.ndarray:
    """Array of convex polygons: the footprint swept between consecutive poses of one run."""
    pts = transform(outline, poses)
    if len(poses) == 1:
        return np.array([Polygon(pts[0])], dtype=object)
    pairs = np.concatenate([pts[:-1], pts[1:]], axis=1)          # (N-1, 2K, 2)
    k = pairs.shape[1]
    flat = pairs.reshape(-1, 2)
    idx = np.repeat(np.arange(len(pairs)), k)
    return shapely.convex_hull(shapely.multipoints(flat, indices=idx))


def swept_by_poses(robot: RobotGeometry, poses: np.ndarray, outline: np.ndarray | None = None,
                   **densify_kw):
    """Ground swept by the detector along a pose track (N, >=3); stateless."""
    outline = detector_outline(robot) if outline is None else outline
    pieces = [p for run in densify(poses, **densify_kw) for p in sweep_pieces(outline, run)]
    return shapely.union_all(pieces) if pieces else Polygon()


def wheel_outlines(robot: RobotGeometry) -> np.ndarray:
    """(4, 4, 2) wheel contact rectangles in base_link."""
    return robot.wheel_patches()


def wheel_polygons(robot: RobotGeometry, x: float, y: float, yaw: float) -> list[Polygon]:
    """The four wheel contact patches at a pose, as map-frame polygons."""
    patches = robot.wheel_patches()
    pts = transform(patches.reshape(-1, 2), np.array([[x, y, yaw]]))[0].reshape(patches.shape)
    return [Polygon(p) for p in pts]


def _without_slivers(geom, min_width: float):
    """Components of ``geom`` that contain a disc of diameter ``min_width`` (others dropped)."""
    if geom.is_empty or min_width <= 0:
        return geom
    parts = list(geom.geoms) if hasattr(geom, 'geoms') else [geom]
    keep = [p for p in parts if isinstance(p, Polygon) and not p.buffer(-min_width / 2).is_empty]
    if not keep:
        return Polygon()
    return keep[0] if len(keep) == 1 else MultiPolygon(keep)


class CoverageTracker:
    """Accumulates the swept footprint from driven ``base_link`` poses (map frame).

    ``add_pose``/``add_poses`` may be called at 20–50 Hz; ``swept()``, ``fraction()`` and
    ``unswept()`` flush the buffer. ``max_gap`` (m) breaks the track at localisation jumps.
    """

    def __init__(self, robot: RobotGeometry, batch: int = 50, fold: int = 16, max_step: float = 0.25,
                 max_dyaw: float = 0.1, max_gap: float = 2.0):
        self.robot = robot
        self.outline = detector_outline(robot)
        self._batch, self._fold = batch, fold
        self._densify = {'max_step': max_step, 'max_dyaw': max_dyaw, 'max_gap': max_gap}
        self._pending: list[tuple[float, float, float]] = []
        self._last: tuple[float, float, float] | None = None
        self._main = Polygon()
        self._recent: list = []
        self._cache = None
        self._prepared = None
        self._fraction_memo = None
        self.pose_count = 0

    def add_pose(self, x: float, y: float, yaw: float) -> None:
        self._pending.append((float(x), float(y), float(yaw)))
        self.pose_count += 1
        if len(self._pending) >= self._batch:
            self._flush()

    def add_poses(self, poses) -> None:
        poses = np.atleast_2d(np.asarray(poses, dtype=float))
        if poses.size == 0:
            return
        if poses.shape[1] < 3:
            raise ValueError(f'poses must be (N, 3) [x, y, yaw], got shape {poses.shape}')
        self._pending.extend(map(tuple, poses[:, :3]))
        self.pose_count += len(poses)
        if len(self._pending) >= self._batch:
            self._flush()

    def break_track(self) -> None:
        """Do not join the next pose to the previous one (e.g. after a relocalisation)."""
        self._flush()
        self._last = None

    def _flush(self) -> None:
        if not self._pending:
            return
        track = ([self._last] if self._last is not None else []) + self._pending
        self._last = self._pending[-1]
        self._pending = []
        pieces = [p for run in densify(np.array(track), **self._densify)
                  for p in sweep_pieces(self.outline, run)]
        # tolerance 0 only drops collinear vertices: the shape is unchanged, unions stay cheap
        self._recent.append(shapely.simplify(shapely.union_all(pieces), 0.0))
        if len(self._recent) >= self._fold:
            self._main = shapely.union_all([self._main, *self._recent])
            self._recent = []
        self._cache = None
        self._prepared = None

    def swept(self, flush: bool = True):
        """The swept ground so far (Polygon or MultiPolygon, map frame); ``flush=False``: as of
        the last batch of poses (at most ``batch`` poses behind, and much cheaper to ask often)."""
        if flush:
            self._flush()
        if self._cache is None:
            self._cache = shapely.union_all([self._main, *self._recent]) if self._recent else self._main
            if self._recent:
                self._main, self._recent = self._cache, []
        return self._cache

    def swept_area(self) -> float:
        return self.swept().area

    def fraction(self, region, flush: bool = True) -> float:
        """Swept fraction of ``region`` (0..1); 0 for an empty region. ``flush=False``: as of the
        last batch of poses, remembered for the same region until the next batch (a status
        display asking twice a second no longer unions and intersects the whole field each time)."""
        if region.is_empty or region.area <= 0:
            return 0.0
        if not flush:
            if self._fraction_memo is not None and self._fraction_memo[0] is region \
                    and self._fraction_memo[1] is self._cache:
                return self._fraction_memo[2]
            swept = self.swept(flush=False)
            value = float(region.intersection(swept).area / region.area)
            self._fraction_memo = (region, swept, value)
            return value
        return float(region.intersection(self.swept()).area / region.area)

    def unswept(self, region, min_width: float = 0.0):
        """Parts of ``region`` not swept yet, dropping slivers narrower than ``min_width`` metres."""
        return _without_slivers(shapely.make_valid(region.difference(self.swept())), min_width)

    def wheel_exposure(self, x: float, y: float, yaw: float, safe=None) -> float:
        """m² of wheel contact patch at this pose on ground neither swept nor in ``safe``."""
        swept = self.swept()
        if self._prepared is None:
            self._prepared = prep(swept)
        wheels = wheel_polygons(self.robot, x, y, yaw)
        exposed = 0.0
        for w in wheels:
            if self._prepared.contains(w):
                continue
            rest = w.difference(swept)
            if safe is not None and not safe.is_empty:
                rest = rest.difference(safe)
            exposed += rest.area
        return exposed
