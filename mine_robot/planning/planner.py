"""Lane-based coverage planning with the wheel-safe turn primitive.

Every corner of the plan is driven as: point turn in place, back up ``robot.post_turn_backup``
metres along the new heading (a ``direction: reverse`` transit segment), then forward. A forward
straight move is wheel-safe because the detector leads the wheels and is wider than the track; at
a corner the point-turn circle of the wheels lies inside the band the previous leg swept, and the
backup lets the detector sweep the strip between that band and its near edge before the wheels
roll onto it. So the plan needs no headland laps: the robot may turn wherever the ground around it
was swept by the leg it arrived on (mine_robot.planning.safety replays every plan to prove it).

Plan structure (map frame; lanes computed in a frame rotated so they run along x):

1. **Distances** from the robot and config: lanes and lane-end connectors keep base_link
   ``e_out = swath/2 - edge_overlap`` from the outer boundary (the connector's band reaches the
   boundary; the detector head overhangs it by up to ``coil reach - e_out``, a documented limit);
   around every no-go zone (and hole of the search polygon) **straight edge passes** run on the
   zone's mitred offset, base_link ``swath/2 - zone_overlap`` from each edge (one point turn per zone
   corner), after the cells around the zone; lanes end ``ring + swath - ring_overlap`` from it (the
   connector band meets the edge-pass band, the detector never overhangs the zone along an edge).
2. **Lanes**: lines at ``spacing = swath × (1 − overlap)`` across the lane region (area eroded as
   above), angle chosen by a path-length estimate over candidate directions (or given). A line cut
   by a zone is split, except the outermost cut lane on each side of a zone, which detours along the
   lane region's boundary around the zone (on three square legs where the region allows) so its band
   covers the zone's cap.
3. **Cells**: lanes on consecutive lines that overlap one to one and whose ends can be joined along
   the lane region's boundary form a boustrophedon cell; lane-to-lane connectors are staircases of
   square turns (``_staircase``), else follow that boundary. **Spur passes** cover what a first,
   unchecked emission leaves unswept (``_spur_lines``).
4. **Order**: from the start (on declared safe ground), greedily the nearest cell, zone or spur
   entry; transits run through the transit region (area eroded by ``e_out``, plus safe ground,
   minus zones dilated by the detector's point-turn reach) by a grid search and string pulling.
5. **Emission, checked as it goes** (``_Emitter``): moves are emitted in driving order while a
   ``safety.SweptRaster`` keeps the ground swept so far (declared safe ground to start with).
   Before every corner the point turn, the backup and the start of the next forward move are
   checked with wheel patches grown by ``wheel_margin``; the standard backup is tried first, then
   other lengths, then a **probe** (90 deg to the side, out and back, which sweeps a band across the
   arriving one so that any turn at the corner is on swept ground). Corners that stay unsafe (no
   room for a probe, e.g. between zones) are listed in ``stats['notes']`` and counted
   in ``stats['unsafe_corners']``. Reflex corners of the lane region are mitred, not rounded, so
   connectors turn once there instead of in many short oblique pieces.
6. **Verification** (``verify``): the plan is replayed on a raster (mine_robot.planning.safety.
   raster_check) for swept-ground violations and detector overhang; coverage is the replay raster's
   conservative figure (or exact, ``CoverageTracker``, with ``exact_coverage``). ``safety.fence_check``
   replays it against the safety monitor's geofence rules (wheels inside search area + safe ground,
   body and detector head out of no-go zones: ``stats['fence']``). ``stats['safe_to_drive']`` is
   True only when every check is clean (``stats['unsafe_reasons']`` lists what is not).
7. **Tasks and region plans**: cells, zone edge passes and spur passes are emitted as tasks. A task
   that cannot be reached (no route through the transit region) is left out, never joined by a
   straight line. With ``drop_unsafe`` (default for ``region=`` plans, the mission's re-plans) a task
   that would add a corner the emitter cannot make safe, or whose path crosses a zone or leaves the
   allowed ground, is undone, and a task the final replay finds unsafe is banned and the tour emitted
   again; a pass ending where it cannot turn may first **retreat** (back out over its own track and
   turn there). ``wheels_inside`` (default for region plans) keeps routes and corner checks on the
   geofence's ground. What is left unswept is listed per piece in ``stats['dropped']`` with the reason.
   ``swept=`` declares ground already swept as wheel-safe inside the search area only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
import math
import time

import cv2
import numpy as np
import shapely
from shapely.geometry import LinearRing, LineString, Point, Polygon
from shapely.prepared import prep

from mine_robot.planning.area import SearchArea
from mine_robot.planning.coverage import CoverageTracker, detector_outline
from mine_robot.planning.plan import CoveragePlan, Segment
from mine_robot.planning.safety import SweptRaster, fence_check, raster_check
from mine_robot.robot import RobotGeometry


class PlannerError(ValueError):
    """Planner configuration or inputs that cannot produce a plan."""


@dataclass(frozen=True)
class PlannerConfig:
    swath_width: float = 0.0          # m; 0 = the robot's detector swath
    overlap: float = 0.1              # fraction of the swath shared by neighbouring lanes
    angle_deg: float | None = None    # lane direction (deg CCW from east); None = automatic
    turn_radius: float = 0.0          # m; > 0 = car-like platform (not supported by the primitive)
    # m the connector band reaches past the outer boundary. A post-turn backup toward the boundary
    # puts the rear wheels (half swath - edge_overlap) - (wheel reach + backup) = 0.54 - 0.49 m
    # from it: 5 cm, room for the safety monitor's braking prediction (~1.5 cm) plus tracking error.
    edge_overlap: float = 0.01
    zone_overlap: float = 0.02        # m the ring band reaches over a no-go zone's edge
    ring_overlap: float = 0.05        # m shared by the ring band and the lane-end connector band
    max_outer_overhang: float = 0.55  # m the detector head may reach past the outer boundary
    # mitre limit (× the ring distance) of the straight edge passes around a zone: sharper zone
    # corners are bevelled (two turns) instead of sending the passes far past the corner
    ring_mitre_limit: float = 2.0
    backup_angle_deg: float = 15.0    # turns sharper than this are followed by the backup
    # The safety monitor's geofence holds the WHEELS inside the area (the body may overhang the
    # outer boundary: it is in the air), so lanes run out to the edge by default; True keeps the
    # whole body inside, for sites where the outer boundary is a physical obstacle (costs the
    # edge strip along boundaries parallel to the lanes).
    keep_body_inside: bool = False
    raster_cell: float = 0.02         # m; grid of the swept-ground replay
    # m added around every wheel patch when the planner checks a corner against the ground swept
    # so far (room for the final replay's pixels, the monitor's braking prediction, tracking error)
    wheel_margin: float = 0.03
    verify: bool = True
    # m²: unswept patches at least this big left by the lanes and edge passes get a spur pass (0 = off)
    spur_min_area: float = 0.02
    # coverage_fraction from the exact CoverageTracker (shapely union of the swept footprints, about
    # 0.5 s per 1000 m of plan) instead of the verification raster (eroded by a cell: conservative)
    exact_coverage: bool = False
    # a task (cell, zone edge passes, spur pass) that would add a corner the emitter cannot make
    # wheel-safe, or whose path crosses a zone or leaves the allowed ground, is left out and reported
    # (stats['dropped'], notes) instead of emitted; None = on for region plans (region=...), off for
    # whole-area plans (which keep such corners, named in the notes and counted in unsafe_corners)
    drop_unsafe: bool | None = None
    # hold the wheels to the search area + safe ground everywhere (the safety monitor's geofence):
    # routes keep the wheels' turn circle on it, and the emitter's corner checks count detector
    # sweeps past the outer boundary as no ground for wheels. None = on for region plans. Off, spur
    # passes and entries from the access lane may put wheels outside (stats['fence'] measures it);
    # on, whole-area plans lose coverage at boundary triangles (README, issue 3)
    wheels_inside: bool | None = None

    def validate(self) -> None:
        if self.swath_width < 0:
            raise PlannerError(f'swath_width must be >= 0 (0 = robot swath), got {self.swath_width}')
        if not 0.0 <= self.overlap < 0.9:
            raise PlannerError(f'overlap must be in [0, 0.9), got {self.overlap}')
        if self.angle_deg is not None and not math.isfinite(self.angle_deg):
            raise PlannerError(f'angle_deg must be finite, got {self.angle_deg}')
        if self.turn_radius < 0:
            raise PlannerError(f'turn_radius must be >= 0, got {self.turn_radius}')
        for name in ('edge_overlap', 'zone_overlap', 'ring_overlap'):
            if not 0.0 <= getattr(self, name) < 0.3:
                raise PlannerError(f'{name} must be in [0, 0.3) m, got {getattr(self, name)}')
        if not 0.0 < self.backup_angle_deg <= 90.0:
            raise PlannerError(f'backup_angle_deg must be in (0, 90], got {self.backup_angle_deg}')
        if not 0.005 <= self.raster_cell <= 0.1:
            raise PlannerError(f'raster_cell must be in [0.005, 0.1] m, got {self.raster_cell}')
        if not 0.0 <= self.wheel_margin <= 0.1:
            raise PlannerError(f'wheel_margin must be in [0, 0.1] m, got {self.wheel_margin}')
        if self.max_outer_overhang < 0:
            raise PlannerError(f'max_outer_overhang must be >= 0, got {self.max_outer_overhang}')


# ---------------------------------------------------------------------------------------------
# geometry helpers

def _polys(geom) -> list[Polygon]:
    if geom is None or geom.is_empty:
        return []
    if isinstance(geom, Polygon):
        return [geom]
    return [g for g in getattr(geom, 'geoms', []) if isinstance(g, Polygon) and not g.is_empty]


def _rot(theta: float) -> np.ndarray:
    c, s = math.cos(theta), math.sin(theta)
    return np.array([[c, -s], [s, c]])


def _rotate(geom, theta: float):
    r = _rot(theta)
    return shapely.transform(geom, lambda p: p @ r.T)


def _dedupe(points: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    points = np.asarray(points, dtype=float)
    keep = [0] + [i for i in range(1, len(points)) if np.hypot(*(points[i] - points[i - 1])) > eps]
    return points[keep]


def _simplify(points: np.ndarray, tol: float = 1e-4) -> np.ndarray:
    """Drop collinear vertices (consecutive duplicates too)."""
    points = _dedupe(points)
    if len(points) < 3:
        return points
    return shapely.get_coordinates(shapely.simplify(LineString(points), tol))


class _Rings:
    """The boundary rings of a polygon region, for walking between points on them."""

    def __init__(self, region):
        self.rings = []
        for p in _polys(region):
            for r in [p.exterior, *p.interiors]:
                c = np.asarray(r.coords)
                if len(c) >= 4:
                    self.rings.append((LinearRing(c), c))

    def locate(self, pt, tol: float = 1e-5):
        p = Point(pt)
        for i, (ring, _) in enumerate(self.rings):
            if ring.distance(p) < tol:
                return i, ring.project(p)
        return None

    def arc(self, a, b, max_ratio: float = 2.5, slack: float = 1.0) -> np.ndarray | None:
        """Shorter boundary path from a to b (both on the same ring), or None."""
        la, lb = self.locate(a), self.locate(b)
        if la is None or lb is None or la[0] != lb[0]:
            return None
        ring, coords = self.rings[la[0]]
        total = ring.length
        fwd = (lb[1] - la[1]) % total
        back = total - fwd
        direct = float(np.hypot(*(np.asarray(b) - np.asarray(a))))
        if min(fwd, back) > max_ratio * direct + slack:
            return None
        cum = np.r_[0.0, np.cumsum(np.hypot(*np.diff(coords, axis=0).T))]
        if fwd <= back:
            s0, s1, sign = la[1], la[1] + fwd, 1
        else:
            s0, s1, sign = la[1], la[1] - back, -1
        # vertices strictly between s0 and s1 walking in direction sign (with wrap)
        pts = [np.asarray(a, dtype=float)]
        base = cum[:-1]
        if sign > 0:
            for k in range(2):
                for i, sv in enumerate(base):
                    t = sv + k * total
                    if s0 < t < s1:
                        pts.append(coords[i])
        else:
            for k in (0, -1):
                for i in range(len(base) - 1, -1, -1):
                    t = base[i] + k * total
                    if s1 < t < s0:
                        pts.append(coords[i])
        pts.append(np.asarray(b, dtype=float))
        return _dedupe(np.asarray(pts))


# ---------------------------------------------------------------------------------------------
# lanes and cells (in the rotated frame: lanes run along x)

@dataclass
class _Lane:
    line: int
    y: float
    x0: float
    x1: float
    path: np.ndarray          # base_link polyline from the x0 end to the x1 end
    cell: int = -1


def _lane_lines(region, spacing: float) -> np.ndarray:
    miny, maxy = region.bounds[1], region.bounds[3]
    span = maxy - miny
    if span < 1e-6:
        return np.array([miny])
    n = int(math.ceil(span / spacing - 1e-9)) + 1
    return miny + np.linspace(1e-4, span - 1e-4, n)


def _intervals(region, ys: np.ndarray) -> list[list[tuple[float, float]]]:
    minx, _, maxx, _ = region.bounds
    lines = shapely.linestrings([[(minx - 1, y), (maxx + 1, y)] for y in ys])
    out = []
    for cut in shapely.intersection(lines, region):
        pieces = []
        for g in getattr(cut, 'geoms', [cut]):
            if g.is_empty or g.geom_type != 'LineString' or g.length < 0.05:
                continue
            xs = np.asarray(g.coords)[:, 0]
            pieces.append((float(xs.min()), float(xs.max())))
        out.append(sorted(pieces))
    return out


def _make_lanes(region, rings: _Rings, spacing: float) -> list[_Lane]:
    inside = prep(region.buffer(1e-6))
    ys = _lane_lines(region, spacing)
    ivs = _intervals(region, ys)

    def covered(k, x0, x1):
        """Line k has one interval spanning [x0, x1] (it passes the gap uncut)."""
        if k < 0 or k >= len(ivs):
            return True
        return any(a <= x0 + 1e-6 and b >= x1 - 1e-6 for a, b in ivs[k])

    lanes = []
    for k, (y, pieces) in enumerate(zip(ys, ivs)):
        i = 0
        while i < len(pieces):
            x0, x1 = pieces[i]
            path = [np.array([x0, y]), np.array([x1, y])]
            while i + 1 < len(pieces):
                g0, g1 = x1, pieces[i + 1][0]
                # outermost lane cut by this gap: detour along the region boundary (covers the cap)
                if not (covered(k - 1, g0, g1) or covered(k + 1, g0, g1)):
                    break
                arc = rings.arc((g0, y), (g1, y), max_ratio=4.0, slack=2.0)
                if arc is None:
                    break
                # square detour (three legs, 90 deg turns) where the region allows: the rounded
                # boundary makes oblique turns, which put a wheel on unswept ground
                dy = arc[:, 1] - y
                ext = y + (dy.max() if dy.max() > -dy.min() else dy.min())
                square = np.array([(g0, y), (g0, ext), (g1, ext), (g1, y)])
                if inside.covers(LineString(square)):
                    arc = square
                path = path[:-1] + list(arc) + [np.array([pieces[i + 1][1], y])]
                x1 = pieces[i + 1][1]
                i += 1
            lanes.append(_Lane(k, y, x0, x1, _simplify(np.asarray(path))))
            i += 1
    return lanes


def _cells(lanes: list[_Lane], rings: _Rings) -> tuple[list[list[_Lane]], dict]:
    """Boustrophedon cells and the boundary connectors between consecutive lanes of a cell."""
    by_line: dict[int, list[_Lane]] = {}
    for ln in lanes:
        by_line.setdefault(ln.line, []).append(ln)
    cells: list[list[_Lane]] = []
    links: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}

    def overlaps(a, b):
        return min(a.x1, b.x1) - max(a.x0, b.x0) > 0.3

    for k in sorted(by_line):
        prev = by_line.get(k - 1, [])
        for ln in sorted(by_line[k], key=lambda t: t.x0):
            ups = [p for p in prev if overlaps(p, ln)]
            if len(ups) == 1:
                up = ups[0]
                downs = [q for q in by_line[k] if overlaps(up, q)]
                if len(downs) == 1 and cells[up.cell][-1] is up:
                    left = rings.arc(up.path[0], ln.path[0])
                    right = rings.arc(up.path[-1], ln.path[-1])
                    if left is not None and right is not None:
                        ln.cell = up.cell
                        cells[ln.cell].append(ln)
                        links[(id(up), id(ln))] = (left, right)
                        continue
            ln.cell = len(cells)
            cells.append([ln])
    return cells, links


def _approaches(router: _Router, pos, path: np.ndarray, lane: int) -> list:
    """Ways to reach the start of a lane ``path`` (map frame) from ``pos`` and drive it: along the
    route, or with a last leg square to the lane (a 90 deg turn into the lane is safe on the one band
    that leg swept, an oblique turn is not) or in line with it."""
    a = path[0]
    u = (path[1] - path[0]) / max(float(np.hypot(*(path[1] - path[0]))), 1e-9)
    n = np.array([-u[1], u[0]])
    out = [lambda: [(router.route(pos, a), 'transit', None), (path, 'lane', lane)]]
    for d in (n, -n, -u):
        for length in (1.2, 2.0):
            c = a + length * d
            if router.ok(c, a):
                out.append(lambda c=c: [(router.route(pos, c), 'transit', None),
                                        (np.array([c, a]), 'transit', None), (path, 'lane', lane)])
    return out


def _staircase(conn: np.ndarray, arriving: np.ndarray, leaving: np.ndarray, inside) -> np.ndarray:
    """A lane-to-lane connector made of square turns (rotated frame, lanes along x).

    The boundary connector ``conn`` (from the arriving lane's end P to the next lane's start Q) runs
    along the lane region's boundary, obliquely where the boundary is slanted, and an oblique turn
    cannot keep all four wheels on the one band the arriving lane swept. The staircase instead steps
    across at the shorter lane's end: ``P -> (P.x, Q.y) -> Q`` when Q lies further along the arriving
    direction (the robot drives out along the next lane's line and turns 180 deg at Q), else
    ``P -> (Q.x, P.y) -> Q`` (180 deg at P, back along the arriving lane, then across). Every turn is
    90 or 180 deg on swept ground. Falls back to ``conn`` if the staircase leaves the lane region."""
    p, q = conn[0], conn[-1]
    if len(conn) == 2 and abs(p[0] - q[0]) < 1e-6:
        return conn
    heading = np.sign(arriving[-1, 0] - arriving[-2, 0]) if len(arriving) > 1 else 0.0
    if heading == 0.0 or abs(leaving[1, 0] - leaving[0, 0]) < 1e-9:
        return conn
    corner = np.array([p[0], q[1]]) if heading * (q[0] - p[0]) >= 0 else np.array([q[0], p[1]])
    stairs = np.array([p, corner, q])
    if not inside.covers(LineString(stairs)):
        return conn
    return stairs


def _angle_candidates(q) -> list[float]:
    cands = []
    for p in _polys(q)[:1]:
        c = np.asarray(p.exterior.coords)
        d = np.diff(c, axis=0)
        lengths = np.hypot(*d.T)
        for k in np.argsort(lengths)[::-1][:4]:
            cands.append(math.atan2(d[k, 1], d[k, 0]) % math.pi)
    mrr = np.asarray(q.minimum_rotated_rectangle.exterior.coords)
    e = np.diff(mrr, axis=0)
    k = int(np.argmax(np.hypot(*e.T)))
    cands.append(math.atan2(e[k, 1], e[k, 0]) % math.pi)
    cands += [0.0, math.pi / 2]
    out = []
    for a in cands:
        if all(abs(((a - b + math.pi / 2) % math.pi) - math.pi / 2) > math.radians(2) for b in out):
            out.append(a)
    return out


def _estimate(region, theta: float, spacing: float, turn_cost: float) -> float:
    """Lane length + connector cost per lane end for lanes at theta (proxy for path length)."""
    inner = _rotate(region, -theta)
    ys = _lane_lines(inner, spacing)
    ivs = _intervals(inner, ys)
    length = sum(b - a for iv in ivs for a, b in iv)
    # lane ends on a boundary slanted to the lanes: the connector runs along it (and the ends between
    # connectors leave triangles for spur passes), so count the stagger of consecutive lane ends
    stagger = sum(abs(p[0][0] - n[0][0]) + abs(p[-1][1] - n[-1][1]) for p, n in zip(ivs[:-1], ivs[1:])
                  if p and n)
    return length + sum(len(iv) for iv in ivs) * (spacing + turn_cost) + 0.5 * stagger


# ---------------------------------------------------------------------------------------------
# transit routing

class _NoRouteError(Exception):
    """No route for base_link through the transit region (the target cannot be reached safely)."""


class _Router:
    """Routes for base_link inside the transit region: straight when possible, else a grid search
    (breadth-first by masked dilation) followed by string pulling. A route that does not exist raises
    :class:`_NoRouteError` (counted in ``failures``): never a straight line through whatever lies between."""

    def __init__(self, region, cell: float = 0.25):
        self.region = region
        self.prepared = prep(region.buffer(1e-6)) if not region.is_empty else None
        minx, miny, maxx, maxy = region.bounds if not region.is_empty else (0, 0, 1, 1)
        self.cell = cell
        self.x0, self.y0 = minx - 2 * cell, miny - 2 * cell
        nx = int(math.ceil((maxx - self.x0) / cell)) + 3
        ny = int(math.ceil((maxy - self.y0) / cell)) + 3
        self.free = np.zeros((ny, nx), np.uint8)
        for p in _polys(region.buffer(-cell * 0.5)):
            pts = [np.round(((np.asarray(r.coords) - [self.x0, self.y0]) / cell - 0.5) * 16).astype(np.int32)
                   for r in [p.exterior, *p.interiors]]
            cv2.fillPoly(self.free, pts[:1], 1, cv2.LINE_8, 4)
            if len(pts) > 1:
                cv2.fillPoly(self.free, pts[1:], 0, cv2.LINE_8, 4)
        self.free_idx = np.argwhere(self.free > 0)
        self.failures = 0

    def ok(self, a, b) -> bool:
        return self.prepared is not None and self.prepared.covers(LineString([a, b]))

    def _cell_of(self, p):
        c = (int((p[1] - self.y0) / self.cell), int((p[0] - self.x0) / self.cell))
        if 0 <= c[0] < self.free.shape[0] and 0 <= c[1] < self.free.shape[1] and self.free[c]:
            return c
        if not len(self.free_idx):
            return None
        k = int(np.argmin(np.hypot(self.free_idx[:, 0] - c[0], self.free_idx[:, 1] - c[1])))
        return int(self.free_idx[k, 0]), int(self.free_idx[k, 1])

    def _joins(self, p, c) -> bool:
        """``p`` may join the grid at cell ``c``: inside the region on the way, or within half a metre
        (a backup end just off the region's edge)."""
        centre = self._centre(c)
        return self.ok(p, centre) or float(np.hypot(*(np.asarray(p) - centre))) <= 0.5

    def _centre(self, c):
        return np.array([self.x0 + (c[1] + 0.5) * self.cell, self.y0 + (c[0] + 0.5) * self.cell])

    def route(self, a, b) -> np.ndarray:
        a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
        if self.ok(a, b):
            return np.array([a, b])
        src, dst = self._cell_of(a), self._cell_of(b)
        if src is None or dst is None or not (self._joins(a, src) and self._joins(b, dst)):
            self.failures += 1
            raise _NoRouteError(f'no route from ({a[0]:.1f}, {a[1]:.1f}) to ({b[0]:.1f}, {b[1]:.1f})')
        dist = np.full(self.free.shape, -1, np.int32)
        reached = np.zeros_like(self.free)
        reached[dst] = 1
        dist[dst] = 0
        kernel = np.ones((3, 3), np.uint8)
        step = 0
        while dist[src] < 0:
            step += 1
            grown = cv2.dilate(reached, kernel) & self.free
            new = (grown > 0) & (reached == 0)
            if not new.any():
                break
            dist[new] = step
            reached = grown
        if dist[src] < 0:
            self.failures += 1
            raise _NoRouteError(f'no route from ({a[0]:.1f}, {a[1]:.1f}) to ({b[0]:.1f}, {b[1]:.1f}): the '
                                'transit region between them is cut (zones, boundary)')
        cells = [src]
        c = src
        while dist[c] > 0:
            best = None
            for di in (-1, 0, 1):
                for dj in (-1, 0, 1):
                    n = (c[0] + di, c[1] + dj)
                    if (di or dj) and 0 <= n[0] < dist.shape[0] and 0 <= n[1] < dist.shape[1] \
                            and 0 <= dist[n] < dist[c]:
                        score = (dist[n], abs(di) + abs(dj))
                        if best is None or score < best[0]:
                            best = (score, n)
            c = best[1]
            cells.append(c)
        pts = [a] + [self._centre(c) for c in cells[1:-1]] + [b]
        out, i = [pts[0]], 0
        while i < len(pts) - 1:
            j = len(pts) - 1
            while j > i + 1 and not self.ok(pts[i], pts[j]):
                j -= 1
            out.append(pts[j])
            i = j
        return _dedupe(np.asarray(out))


# ---------------------------------------------------------------------------------------------
# emitting the plan with the turn primitive, checked against the ground swept so far

def _wrap(a: float) -> float:
    return (a + math.pi) % (2 * math.pi) - math.pi


class _Emitter:
    """Emits moves in driving order and keeps the swept ground (``SweptRaster``) up to date.

    Every corner is checked before it is emitted: the point turn, the backup and the start of the
    following forward move must keep the (margin-grown) wheel patches on ground swept earlier or
    declared safe. The standard backup is tried first, then other backup lengths; if none is safe
    a **probe** is inserted: turn 90 deg to the side, back up, drive out ``d`` and back, which
    sweeps a band across the arriving one. The two bands cover the disc (radius 0.75 m) that any
    turn + backup + forward start needs, so the corner becomes safe. A corner that stays unsafe is
    counted (``unsafe``), never hidden: the final replay reports it and the planner adds a note.
    """

    BACKUPS = (0.12, 0.20, 0.08, 0.24, 0.0, 0.30, 0.04, 0.27, 0.34)
    PROBES = (0.6, 1.0, 1.5)

    def __init__(self, backup: float, backup_angle: float, start: np.ndarray, sweeper=None, room=None,
                 check: bool = True):
        self.check = check                # False: sweep only, standard backups (a trial emission)
        self.backup = backup
        self.backup_angle = backup_angle
        self.pos = np.asarray(start, dtype=float)
        self.heading: float | None = None
        self.segments: list[Segment] = []
        self.backups = 0
        self.sweeper = sweeper
        self.room = room                  # prepared region base_link may use for probes
        self.unsafe: list[tuple[float, float]] = []
        self.unsafe_seg: list[int] = []   # segment count when each unsafe corner was emitted
        self.probes = 0
        self.barrier = False              # True: the next move starts a new segment (a new task)
        self.retreats = 0
        self.retreating = False
        # retreats change the path after a corner fails (a diagonal from further back): region plans
        # use them rather than leave a task out; whole-area plans keep the corner (named in the notes)
        # because their spur passes are found on a trial emission without retreats
        self.may_retreat = False
        self.ground = None                # prepared search area + safe ground: backups end on it
        self.reroute = None               # router.route(a, b), for the way on after a retreat

    def _append(self, role: str, pts: np.ndarray, lane, direction: str = 'forward') -> None:
        pts = _dedupe(pts)
        if len(pts) < 2:
            return
        last = self.segments[-1] if self.segments and not self.barrier else None
        self.barrier = False
        if (last is not None and last.role == role and last.direction == direction == 'forward'
                and last.lane == lane):
            last.points = np.vstack([last.points, pts[1:]])
        else:
            self.segments.append(Segment(role, pts, len(self.segments), lane, direction))

    # -- primitive moves (emitted and swept) --------------------------------------------------
    def _straight(self, b, role, lane, direction='forward') -> None:
        a = self.pos
        d = b - a
        dist = float(np.hypot(*d))
        if dist < 1e-9:
            return
        self._append(role, np.array([a, b]), lane, direction)
        if self.sweeper is not None:
            self.sweeper.sweep_straight(a[0], a[1], self.heading, dist, direction == 'reverse')
        self.pos = np.asarray(b, dtype=float).copy()

    def _rotate(self, h: float) -> None:
        if self.heading is not None and self.sweeper is not None:
            dyaw = _wrap(h - self.heading)
            if abs(dyaw) > 1e-9:
                self.sweeper.sweep_turn(self.pos[0], self.pos[1], self.heading, self.heading + dyaw)
        self.heading = h

    # -- corner planning ----------------------------------------------------------------------
    def _corner_ok(self, a, h: float, b: float, ahead: float) -> bool:
        sw = self.sweeper
        dyaw = _wrap(h - self.heading)
        if abs(dyaw) > 1e-9 and not sw.turn_ok(a[0], a[1], self.heading, self.heading + dyaw):
            return False
        u = np.array([math.cos(h), math.sin(h)])
        if b > 0:
            back = a - b * u
            if self.ground is not None and not self.ground.covers(Point(back)):
                return False
            if not sw.straight_ok(a[0], a[1], h, b, reverse=True):
                return False
        else:
            back = a
        return sw.straight_ok(back[0], back[1], h, ahead + b)

    def _choose_backup(self, a, h: float, ahead: float):
        dyaw = abs(_wrap(h - self.heading))
        first = self.backup if dyaw > self.backup_angle else 0.0
        for b in (first, *[c for c in self.BACKUPS if c != first]):
            if self._corner_ok(a, h, b, ahead):
                return b
        return None

    def _try_probe(self, a, h: float, ahead: float):
        """Insert an out-and-back probe across the arriving heading; the backup then safe, or None."""
        sw = self.sweeper
        h0 = self.heading
        side = 1.0 if _wrap(h - h0) >= 0 else -1.0
        for s in (side, -side):
            hp = h0 + s * math.pi / 2
            u = np.array([math.cos(hp), math.sin(hp)])
            for d in self.PROBES:
                if self.room is not None and not self.room.covers(LineString([a, a + d * u])):
                    continue
                if not self._corner_ok(a, hp, self.backup, d):
                    continue
                snap = sw.snapshot(a[0], a[1], d + 2.5)
                state = (len(self.segments), self.segments[-1].points.copy() if self.segments else None,
                         self.pos.copy(), self.heading, self.backups)
                self._rotate(hp)
                self._straight(a - self.backup * u, 'transit', None, 'reverse')
                self._straight(a + d * u, 'transit', None)
                back_h = hp + math.pi
                b2 = self._choose_backup(self.pos, back_h, d)
                if b2 is not None:
                    self._rotate(back_h)
                    if b2 > 0:
                        self._straight(self.pos + b2 * u, 'transit', None, 'reverse')
                    self._straight(a.copy(), 'transit', None)
                    b = self._choose_backup(a, h, ahead)
                    if b is not None:
                        self.backups += 1 + (b2 > 0)
                        self.probes += 1
                        return b
                # undo
                sw.restore(snap)
                n, last, pos, heading, backups = state
                del self.segments[n:]
                if last is not None:
                    self.segments[-1].points = last
                self.pos, self.heading, self.backups = pos, heading, backups
        return None

    def _corner(self, a, h: float, ahead: float, may_fail: bool = False) -> bool:
        """Turn at ``a`` (the current position) to heading ``h``, backing up as needed. A corner that
        cannot be made safe is emitted anyway and counted in ``unsafe``, or (``may_fail``) not emitted:
        returns False."""
        if self.heading is None:
            self.heading = h
            return True
        dyaw = _wrap(h - self.heading)
        if abs(dyaw) < 1e-9:
            return True
        if self.sweeper is None or not self.check:
            b = self.backup if abs(dyaw) > self.backup_angle else 0.0
        else:
            b = self._choose_backup(a, h, ahead)
            if b is None:
                b = self._try_probe(a, h, ahead)
            if b is None and may_fail:
                return False
            if b is None:
                self.unsafe.append((float(a[0]), float(a[1])))
                self.unsafe_seg.append(len(self.segments))
                b = self.backup if abs(dyaw) > self.backup_angle else 0.0
        self._rotate(h)
        if b > 0:
            u = np.array([math.cos(h), math.sin(h)])
            self._straight(a - b * u, 'transit', None, 'reverse')
            self.backups += 1
        return True

    def _retreat(self, b) -> np.ndarray | None:
        """Back straight out (usually over the ground just driven) and turn there towards ``b``, where
        the turn at the current position cannot be made safe (a pass ending in a corner of the area or
        beside a zone). The reverse move is checked like a backup; from its end the robot goes to ``b``
        straight or by the router (``reroute``). Returns the points still to drive to reach ``b`` (the
        reverse move and the turn are emitted), or None when no retreat of up to 2 m works."""
        u = np.array([math.cos(self.heading), math.sin(self.heading)])
        sw = self.sweeper
        for r in (0.3, 0.6, 1.0, 1.5, 2.0):
            c = self.pos - r * u
            if self.room is not None and not self.room.covers(LineString([self.pos, c])):
                continue
            if not sw.straight_ok(self.pos[0], self.pos[1], self.heading, r, reverse=True):
                break
            way = np.array([c, b])
            if self.room is not None and not self.room.covers(LineString(way)):
                if self.reroute is None:
                    continue
                try:
                    way = self.reroute(c, b)
                except _NoRouteError:
                    continue
            d = way[1] - c
            dist = float(np.hypot(*d))
            if dist < 0.3:
                continue
            h = math.atan2(d[1], d[0])
            if abs(_wrap(h - self.heading)) > 1e-9 and self._choose_backup(c, h, dist) is None:
                continue
            self._straight(c, 'transit', None, 'reverse')
            self.retreats += 1
            self._corner(c, h, dist)
            return way[1:]
        return None

    # -- trial emission ------------------------------------------------------------------------
    def _save(self, bounds):
        snap = self.sweeper.snapshot_box(bounds)
        return (len(self.segments), self.segments[-1].points.copy() if self.segments else None,
                self.pos.copy(), self.heading, self.backups, self.probes, len(self.unsafe), snap)

    def _load(self, state) -> None:
        n, last, pos, heading, backups, probes, unsafe, snap = state
        del self.segments[n:]
        if last is not None:
            self.segments[-1].points = last
        self.pos, self.heading, self.backups, self.probes = pos, heading, backups, probes
        del self.unsafe[unsafe:]
        del self.unsafe_seg[unsafe:]
        self.sweeper.restore(snap)

    def choose(self, options) -> None:
        """Emit the first of ``options`` (callables returning [(points, role, lane), ...]) that adds no
        unsafe corner, else the one that adds the fewest. Options without a route are skipped;
        raises :class:`_NoRouteError` when no option has one."""
        made, why = {}, None
        for k, make in enumerate(options):
            try:
                made[k] = make()
            except _NoRouteError as exc:
                why = exc
                continue
            if self.sweeper is None or not self.check:
                break
        if not made:
            raise why or _NoRouteError('no way to the lane')
        if self.sweeper is None or not self.check or len(made) == 1:
            for pts, role, lane in next(iter(made.values())):
                self.drive(pts, role, lane)
            return
        best = None
        for k, option in made.items():
            pts = np.vstack([self.pos[None]] + [np.asarray(p) for p, _, _ in option])
            lo, hi = pts.min(axis=0) - 2.6, pts.max(axis=0) + 2.6     # detector reach, probes
            state = self._save((lo[0], lo[1], hi[0], hi[1]))
            for p, role, lane in option:
                self.drive(p, role, lane)
            added = len(self.unsafe) - state[6]
            if added == 0:
                return
            if best is None or added < best[0]:
                best = (added, k)
            self._load(state)
        for p, role, lane in made[best[1]]:
            self.drive(p, role, lane)

    def save_all(self):
        """State for undoing everything emitted from now on (the whole raster)."""
        g = self.sweeper.grid
        return self._save((g.x0, g.y0, g.x0 + g.nx * g.cell, g.y0 + g.ny * g.cell))

    def drive(self, points, role: str, lane: int | None = None) -> None:
        """Drive forward along ``points`` from the current position (joined if apart)."""
        pts = np.asarray(points, dtype=float)
        if np.hypot(*(pts[0] - self.pos)) > 1e-6:
            pts = np.vstack([self.pos, pts])
        pts = _simplify(pts)
        for a, b in zip(pts[:-1], pts[1:]):
            d = b - a
            dist = float(np.hypot(*d))
            if dist < 1e-9:
                continue
            h = math.atan2(d[1], d[0])
            retreat = self.may_retreat and self.check and self.sweeper is not None and not self.retreating
            if not self._corner(self.pos.copy(), h, dist, may_fail=retreat):
                rest = self._retreat(b)
                if rest is None:
                    self._corner(self.pos.copy(), h, dist)
                else:
                    self.retreating = True
                    try:
                        self.drive(rest, role, lane)
                    finally:
                        self.retreating = False
                    continue
            self._straight(b, role, lane)
            self.pos = b.copy()

def _spur_lines(sweeper: SweptRaster, q, region, spacing: float, min_area: float,
                across: bool = True) -> list:
    """Straight passes over the unswept patches of ``q`` (the sweeper's raster): per pass the two ways
    to drive it, ``[(a, b), (a', b')]`` (base_link start and end, in ``region``).

    Patches less than ~1 m apart (the triangles a slanted boundary leaves between lane ends) share a
    pass. A pass runs along the patch's long axis (moved sideways into ``region`` if needed), from
    where the detector's near edge (0.67 m ahead) starts before the patch to where its front edge
    (0.89 m) has passed its end; a patch wider than ``spacing`` gets parallel passes.
    """
    grid = sweeper.grid
    want = grid.fill(grid.zeros(), q)
    unswept = want & (sweeper.swept == 0).astype(np.uint8)
    # work on the crop around the unswept cells (offsets oi, oj), not the whole raster
    rows, cols = np.nonzero(unswept.any(axis=1))[0], np.nonzero(unswept.any(axis=0))[0]
    if not len(rows):
        return []
    oi, oj = max(int(rows[0]) - 15, 0), max(int(cols[0]) - 15, 0)
    unswept = unswept[oi:int(rows[-1]) + 16, oj:int(cols[-1]) + 16]
    unswept = cv2.morphologyEx(unswept, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    near = cv2.dilate(unswept, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (25, 25)))
    n, labels, cstats, _ = cv2.connectedComponentsWithStats(near, connectivity=8)
    min_cells = min_area / grid.cell ** 2
    inside = prep(region)
    out = []
    for k in range(1, n):
        x0, y0, w, h = (cstats[k, cv2.CC_STAT_LEFT], cstats[k, cv2.CC_STAT_TOP], cstats[k, cv2.CC_STAT_WIDTH],
                        cstats[k, cv2.CC_STAT_HEIGHT])
        ii, jj = np.nonzero((labels[y0:y0 + h, x0:x0 + w] == k) & (unswept[y0:y0 + h, x0:x0 + w] > 0))
        if len(ii) < min_cells:
            continue
        pts = np.column_stack([grid.x0 + (jj + x0 + oj + 0.5) * grid.cell,
                               grid.y0 + (ii + y0 + oi + 0.5) * grid.cell])
        mean = pts.mean(axis=0)
        _, vecs = np.linalg.eigh(np.cov((pts - mean).T)) if len(pts) > 2 else (None, np.eye(2))
        u = vecs[:, 1]
        nrm = np.array([-u[1], u[0]])
        s = (pts - mean) @ u
        t = (pts - mean) @ nrm
        lines = max(1, int(math.ceil((t.max() - t.min()) / spacing - 1e-9)))
        passes = []
        for off in t.min() + (np.arange(lines) + 0.5) * (t.max() - t.min()) / lines:
            passes.append([(u, s.min(), s.max(), off * nrm)])
        if across and s.max() - s.min() <= spacing and lines == 1:
            # a patch short along its long axis is also covered by one pass across it: the ways
            # along both axes are offered, the emitter takes the first that is safe
            passes[0].append((nrm, t.min(), t.max(), 0.5 * (s.max() + s.min()) * u))
        for axes in passes:
            ways = []
            for d0, lo0, hi0, shift in axes:
                for d, lo, hi in ((d0, lo0, hi0), (-d0, -hi0, -lo0)):
                    a = mean + shift + (lo - 0.75) * d
                    b = a + max(float(hi - lo) - 0.05, 0.1) * d
                    seg = _into_region(a, b, region, inside, 6 if across else 1)
                    if seg is not None:
                        ways.append(seg)
            if ways:
                out.append(ways)
    return out


def _spur_moves(em: _Emitter, router: _Router, a, b, lane: int) -> list:
    """The moves of a spur pass a-b driven as a lane, led in backwards along its line to a point whose
    turn circle is already swept (so the turn onto it happens on swept ground) where there is one
    within 4 m: ``[(points, role, lane), ...]`` for :meth:`_Emitter.choose`."""
    d = (b - a) / max(float(np.hypot(*(b - a))), 1e-9)
    start = a
    if em.sweeper is not None:
        for back in np.arange(0.0, 4.01, 0.2):
            c = a - back * d
            if not router.ok(c, a):
                break
            sw = em.sweeper
            if sw.turn_ok(c[0], c[1], 0.0, math.pi) and sw.turn_ok(c[0], c[1], math.pi, 2 * math.pi):
                start = c
                break
    return [(router.route(em.pos, start), 'transit', None), (np.array([start, b]), 'lane', lane)]


def _into_region(a, b, region, inside, steps: int = 6):
    """The segment a-b moved sideways into ``region`` (if needed) and clipped to it, or None.

    The shift starts at the region's nearest point to the segment's middle and grows in 5 cm steps
    (``steps`` - 1 times: up to 25 cm, so the detector band stays over the patch) until the longest
    piece of the segment inside the region keeps 80 % of its length (a ragged region edge, e.g. safe
    ground made of swept footprints, cuts a line just inside it into bits)."""
    line = LineString([a, b])
    if inside.covers(line):
        return np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    length = line.length
    mid = (a + b) / 2
    near = mid if inside.covers(Point(mid)) else \
        np.asarray(shapely.shortest_line(Point(mid), region).coords[-1])
    u = (b - a) / max(np.hypot(*(b - a)), 1e-9)
    nrm = np.array([-u[1], u[0]])
    shift0 = float((near - mid) @ nrm) * 1.02
    sign = 1.0 if shift0 >= 0 else -1.0
    best = None
    for k in range(steps):
        shift = shift0 + sign * 0.05 * k
        piece = LineString([a + shift * nrm, b + shift * nrm]).intersection(region)
        parts = [g for g in getattr(piece, 'geoms', [piece])
                 if g.geom_type == 'LineString' and g.length > 0.05]
        if not parts:
            continue
        g = max(parts, key=lambda g: g.length)
        if best is None or g.length > best.length + 1e-9:
            best = g
        if g.length >= 0.8 * length:
            break
    if best is None:
        return None
    c = np.asarray(best.coords)
    if (c[-1] - c[0]) @ u < 0:
        c = c[::-1]
    return np.asarray(c[0], dtype=float), np.asarray(c[-1], dtype=float)


# ---------------------------------------------------------------------------------------------
# the planner

@dataclass
class _Ring:
    zone: int
    coords: np.ndarray          # closed ring path (first == last)
    entries: list = field(default_factory=list)   # (approach, index, exit)


def plan_coverage(area: SearchArea, robot: RobotGeometry, config: PlannerConfig | None = None,
                  start=None, region=None, swept=None, hazards=None,
                  hazard_clearance: float = 0.25) -> CoveragePlan:
    """Plan a coverage path over ``area`` (or over ``region``, e.g. the unswept remainder).

    ``start`` is the robot's (x, y) in the map frame, or (x, y, yaw) when its heading is known (a
    mission re-plan from where the robot stands): the first turn is then planned and checked like
    every other corner (backed up, probed, or preceded by a retreat along the robot's own track) and
    the plan carries ``start_yaw`` so every replay starts with it. It should be on declared safe
    ground (``safe_access``), where the robot may turn. Default: the point of the safe ground (eroded
    by the wheels' turning circle) nearest to the area, else the area's boundary.

    ``hazards``: known hazards ((N, 2) points) no wheel contact patch may come within
    ``hazard_clearance`` of. Unlike no-go zones they do not keep the detector away: lanes run up to
    a square around each hazard (base_link ``wheel reach + clearance`` from it, so the detector still
    sweeps past the hazard and the lanes on its other side reach back over it), turns and transits
    keep the wheels' turn circle clear of it, and the emitter and the replay treat the discs as ground
    no wheel may touch (``stats['safety']`` items of kind ``hazard``).

    ``swept``: ground the detector has already swept (a mission re-plan): the wheels may use it
    where it lies inside the search area. Unlike ``area.safe`` it never extends the ground the
    wheels may use: swept ground past the outer boundary (detector overhang) stays outside the
    safety monitor's geofence, which holds the wheels inside the search area + declared safe ground.

    Region plans (``region=``) leave out what cannot be driven safely (``PlannerConfig.drop_unsafe``)
    and list it in ``stats['dropped']``; ``stats['safe_to_drive']`` says whether the plan may be
    driven as it is (``stats['unsafe_reasons']`` why not). If nothing of the region can be planned
    safely, PlannerError says why.
    """
    if swept is not None and not swept.is_empty:
        inside = shapely.make_valid(swept).intersection(area.search)
        extra = [p for p in _polys(inside) if p.area > 1e-3]
        if extra:
            area = replace(area, safe=[*area.safe, *extra])
    cfg = config or PlannerConfig()
    cfg.validate()
    hz = np.zeros((0, 2)) if hazards is None else np.asarray(hazards, dtype=float).reshape(-1, 2)
    hz = hz[np.isfinite(hz).all(axis=1)]
    if len(hz) and not hazard_clearance > 0:
        raise PlannerError(f'hazard_clearance must be > 0, got {hazard_clearance}')
    keepout = shapely.union_all(shapely.buffer(shapely.points(hz), hazard_clearance, quad_segs=8)) \
        if len(hz) else None
    if cfg.turn_radius > 0 or robot.drive == 'ackermann':
        raise PlannerError('the wheel-safe turn primitive needs point turns (skid steer); car-like '
                           'platforms (turn_radius > 0 or drive: ackermann) are not supported')
    t0 = time.perf_counter()
    notes: list[str] = []
    w = cfg.swath_width or robot.swath_width
    h = w / 2.0
    spacing = w * (1.0 - cfg.overlap)
    outline = detector_outline(robot)
    coil_swing = float(np.hypot(outline[:, 0], outline[:, 1]).max())
    backup = robot.post_turn_backup
    r_turn = robot.wheel_turn_radius
    e_out = h - cfg.edge_overlap
    if cfg.keep_body_inside:
        # keep the whole body (not only the wheels) inside the area:
        # a point turn sweeps the body's corner circle, a backup toward the boundary its rear
        fp = robot.footprint()
        body_turn = float(np.hypot(fp[:, 0], fp[:, 1]).max())
        e_out = max(e_out, body_turn + 0.01, float(fp[:, 0].max()) + backup + 0.01)
    d_ring = h - cfg.zone_overlap
    d_lane = d_ring + 2 * h - cfg.ring_overlap
    d_transit = coil_swing + 0.05
    if coil_swing - e_out > cfg.max_outer_overhang + 1e-9:
        raise PlannerError(f'the detector head would reach {coil_swing - e_out:.2f} m past the outer '
                           f'boundary in a point turn at a lane end; max_outer_overhang is '
                           f'{cfg.max_outer_overhang:.2f} m (raise it or the edge_overlap)')

    q = area.searchable if region is None else shapely.make_valid(region).intersection(area.searchable)
    q = shapely.union_all(_polys(q)) if _polys(q) else Polygon()
    if q.is_empty or q.area < 1e-4:
        raise PlannerError('nothing to plan: the region is empty')
    outer = Polygon(area.search.exterior)
    zones = [*area.no_go, *[Polygon(r) for r in area.search.interiors]]
    zone_u = shapely.union_all(zones) if zones else Polygon()
    safe = area.safe_ground

    lane_region = outer.buffer(-e_out, join_style="mitre")
    if not zone_u.is_empty:
        lane_region = lane_region.difference(zone_u.buffer(d_lane, quad_segs=4))
    if region is not None:
        lane_region = lane_region.intersection(q.buffer(h))
    lane_region = shapely.make_valid(lane_region)
    lane_region = shapely.union_all([p for p in _polys(lane_region) if p.area > 0.05]) \
        if _polys(lane_region) else Polygon()

    t_area = outer.buffer(-e_out)
    t_safe = safe.buffer(-r_turn) if not safe.is_empty else Polygon()
    # (grown by a micrometre: safe ground drawn as 'a box minus the field' leaves seams along the
    # field's boundary that an erosion would widen into a wall)
    allowed = (shapely.union_all([area.search, safe]) if not safe.is_empty else area.search).buffer(1e-6)
    # the strip between safe ground and the lane area is e_out + r_turn wide: the bridge spans it
    reach = e_out + r_turn + 0.05
    # base_link on the bridge keeps the wheels' turn circle on the allowed ground (the safety
    # monitor's geofence holds the wheels inside the search area + safe ground)
    fenced = cfg.wheels_inside if cfg.wheels_inside is not None else region is not None
    drive_inner = allowed.buffer(-(r_turn + 0.02)) if fenced else allowed
    bridge = t_area.buffer(reach).intersection(t_safe.buffer(reach)).intersection(drive_inner) \
        if not t_safe.is_empty else Polygon()
    transit_region = shapely.union_all([t_area, t_safe, bridge])
    if not zone_u.is_empty:
        transit_region = transit_region.difference(zone_u.buffer(d_transit, quad_segs=4))
    transit_region = shapely.make_valid(transit_region)
    router = _Router(transit_region)

    if len(hz):
        # base_link keeps the wheels' turn circle clear of every hazard (a regular octagon around the
        # circle: its edges are that far away)
        r_hz = (r_turn + hazard_clearance + 0.02) / math.cos(math.pi / 8)
        transit_region = shapely.make_valid(transit_region.difference(shapely.union_all(
            shapely.buffer(shapely.points(hz), r_hz, quad_segs=2))))
        router = _Router(transit_region)

    # start (default: chosen once the first entry is known, below)
    start_given = start is not None
    start_yaw = None
    if start_given:
        start = np.asarray(start, dtype=float).ravel()
        if len(start) >= 3 and math.isfinite(start[2]):
            start_yaw = float(start[2])
        start = start[:2]

    # rings around zones near the ground to sweep
    rings: list[_Ring] = []
    ring_keepout = outer.buffer(-e_out + 0.05)
    for zi, z in enumerate(_polys(zone_u)):
        if not z.buffer(d_lane + h).intersects(q):
            continue
        # mitred offset: straight edge passes, one turn per zone corner (a rounded ring turns in many
        # small steps whose inner wheels cut the corner over ground no detector has swept)
        rp = z.buffer(d_ring, join_style='mitre', mitre_limit=cfg.ring_mitre_limit)
        for p in _polys(rp)[:1]:
            c = _simplify(np.asarray(shapely.geometry.polygon.orient(p, 1.0).exterior.coords), 1e-3)
            if len(c) < 4 or np.hypot(*(c[0] - c[-1])) > 1e-6:
                continue
            ring_line = LineString(c)
            others = zone_u.difference(z) if len(_polys(zone_u)) > 1 else Polygon()
            if not ring_keepout.covers(ring_line) or (not others.is_empty
                                                      and ring_line.distance(others) < d_ring - 0.01):
                notes.append(f'no room for a ring around zone {zi} (near the boundary or another zone): '
                             'its edge is covered by lanes only as far as they reach')
                continue
            ring = _Ring(zi, c)
            n = len(c) - 1
            for i in range(n):
                t_out = c[i + 1] - c[i]
                t_in = c[i] - c[i - 1 if i > 0 else n - 1]
                if np.hypot(*t_out) < 1e-6 or np.hypot(*t_in) < 1e-6:
                    continue
                t_out, t_in = t_out / np.hypot(*t_out), t_in / np.hypot(*t_in)
                app, ex = c[i] - 1.2 * t_out, c[i] + 1.2 * t_in
                if transit_region.covers(Point(app)) and transit_region.covers(Point(ex)) \
                        and LineString([app, c[i]]).distance(z) > d_ring - 0.02 \
                        and LineString([c[i], ex]).distance(z) > d_ring - 0.02:
                    ring.entries.append((app, i, ex))
            if ring.entries:
                rings.append(ring)
            else:
                notes.append(f'ring around zone {zi}: no tangential entry from the transit region')

    # lanes
    if cfg.angle_deg is not None:
        theta = math.radians(cfg.angle_deg)
    elif lane_region.is_empty:
        theta = 0.0
    else:
        cands = _angle_candidates(q)
        theta = min(cands, key=lambda a: _estimate(lane_region, a, spacing, 4 * backup + 0.5))
    rot = _rot(theta)
    lanes: list[_Lane] = []
    cells: list[list[_Lane]] = []
    links: dict = {}
    if not lane_region.is_empty:
        region_r = _rotate(lane_region, -theta)
        if len(hz):
            # lanes (and connectors, square to them) stop where a wheel would come within the clearance
            wheels = robot.wheel_patches()
            half = float(np.abs(wheels).max(axis=(0, 1)).max()) + hazard_clearance + 0.01
            hz_r = hz @ rot
            squares = [shapely.box(px - half, py - half, px + half, py + half) for px, py in hz_r]
            region_r = shapely.make_valid(region_r.difference(shapely.union_all(squares)))
            region_r = shapely.union_all([p for p in _polys(region_r) if p.area > 0.05]) \
                if _polys(region_r) else Polygon()
    if not lane_region.is_empty and not region_r.is_empty:
        inside_r = prep(region_r.buffer(1e-6))
        rings_r = _Rings(region_r)
        lanes = _make_lanes(region_r, rings_r, spacing)
        cells, links = _cells(lanes, rings_r)
    build = time.perf_counter() - t0

    # start: given, or the point of the safe ground with room to turn and to start forward
    # (eroded by the detector's near edge) nearest to the closest entry
    if start is None:
        entries = [np.asarray(p) @ rot.T for c in cells for ln in (c[0], c[-1])
                   for p in (ln.path[0], ln.path[-1])]
        entries += [e[0] for r in rings for e in r.entries]
        room = max(r_turn, float(outline[:, 0].min())) + 0.03
        deep = safe.buffer(-room) if not safe.is_empty else Polygon()
        ground = deep if not deep.is_empty else (t_safe if not t_safe.is_empty else transit_region)
        if ground.is_empty or not entries:
            start = np.asarray(q.representative_point().coords[0])
        else:
            pts = shapely.points(np.asarray(entries))
            k = int(np.argmin(shapely.distance(ground, pts)))
            start = np.asarray(shapely.shortest_line(ground, pts[k]).coords[0])
    turn_ground = safe if keepout is None or safe.is_empty else safe.difference(keepout)
    start_safe = bool(not turn_ground.is_empty
                      and turn_ground.buffer(1e-6).covers(Point(start).buffer(r_turn)))
    drop = cfg.drop_unsafe if cfg.drop_unsafe is not None else region is not None
    allowed_prep = prep(allowed.buffer(1e-6))
    # a start outside the transit region (a mission re-plan from where the robot stands, e.g. close
    # to a hazard) leaves it on a straight leg to its nearest point, if the body and detector stay
    # clear of every zone and the wheels on the allowed ground along the way
    lead = None
    if not transit_region.is_empty and not transit_region.buffer(1e-6).covers(Point(start)):
        near_pt = np.asarray(shapely.shortest_line(Point(start), transit_region).coords[-1])
        d = near_pt - start
        near_pt = near_pt + 0.02 * d / max(float(np.hypot(*d)), 1e-9)
        leg = LineString([start, near_pt])
        clear = zone_u.is_empty or leg.distance(zone_u) > h + 0.05
        if clear and allowed.buffer(1e-6).covers(leg.buffer(r_turn)) \
                and transit_region.covers(Point(near_pt)):
            lead = np.array([start, near_pt])
        else:
            notes.append(f'start ({start[0]:.2f}, {start[1]:.2f}) is off the transit region (zones, '
                         'boundary) and no straight leg leads safely into it')
    if not start_safe:
        notes.append(f'start ({start[0]:.2f}, {start[1]:.2f}) is not on declared safe ground with room '
                     f'to turn ({r_turn:.2f} m): the first moves are reported as swept-ground violations')

    # order and emit
    # the swept ground as the plan is emitted (safe ground to start with), and where base_link
    # may go for a probe: wheels inside the area, detector clear of every zone in any pose
    b = shapely.union_all([area.search, safe]).bounds if not safe.is_empty else area.search.bounds
    sweeper = SweptRaster(robot, b, safe, cell=cfg.raster_cell, margin=cfg.wheel_margin,
                          allowed=allowed if fenced else None, keepout=keepout)
    room = shapely.union_all([outer.buffer(-e_out), t_safe]) if not t_safe.is_empty else outer.buffer(-e_out)
    if not zone_u.is_empty:
        room = room.difference(zone_u.buffer(coil_swing + 0.03, quad_segs=4))
    room = prep(room.buffer(1e-6))

    def world(p):
        return np.asarray(p) @ rot.T

    # a zone's edge passes come after the cells around it: their lane ends and connectors sweep the
    # band just outside the passes' band, which the wheels need at oblique corners (a turn that is not
    # square cannot keep all four wheels inside the one band the arriving pass swept)
    near: dict[int, set] = {}
    cell_lines = [shapely.MultiLineString([world(ln.path) for ln in c]) for c in cells]
    zone_polys = _polys(zone_u)
    if rings and cells:
        for ri, ring in enumerate(rings):
            z = zone_polys[ring.zone]
            d = shapely.distance(z, np.asarray(cell_lines, dtype=object))
            near[ri] = {ci for ci in range(len(cells)) if d[ci] < d_lane + spacing + 0.1}

    def path_fault(pts: np.ndarray) -> str | None:
        """Why a task's base_link path may not be driven (through a zone, off the allowed ground)."""
        if len(pts) < 2:
            return None
        line = LineString(pts)
        if not zone_u.is_empty and line.intersection(zone_u).length > 1e-6:
            return 'its path would cross a no-go zone'
        if not allowed_prep.covers(line):
            return 'its path would leave the search area and the safe ground'
        return None

    def emit(em: _Emitter, spurs: list, banned: dict | None = None, log: list | None = None) -> int:
        """The tour: cells, zone edge passes and spur passes, greedily nearest entry first.

        A task (a cell, a zone's passes, a spur) that cannot be reached is skipped. With ``drop``
        (region plans by default) a task that would add a corner the emitter cannot make wheel-safe, or
        whose path crosses a zone or leaves the allowed ground, is undone; ``log`` gets one
        ``{'task', 'where', 'reason', 'segments'}`` per task ((first, end) segment indices when
        emitted, None when skipped)."""
        lane_no = 0
        todo_cells = list(range(len(cells)))
        todo_rings = list(range(len(rings)))
        todo_spurs = list(range(len(spurs)))

        failed: dict = {}

        def attempt(key, where, run, geom) -> bool:
            failed.clear()
            if banned and key in banned:
                if log is not None:
                    log.append({'task': key, 'where': where, 'geom': geom, 'segments': None,
                                'reason': banned[key]})
                return False
            checked = drop and em.check and em.sweeper is not None
            state = em.save_all() if checked else None
            n0, u0 = len(em.segments), len(em.unsafe)
            p0 = em.pos.copy()
            em.barrier = True
            reason = None
            try:
                run()
            except _NoRouteError as exc:
                reason = f'unreachable: {exc}'
            if reason is None and checked:
                if len(em.unsafe) > u0:
                    failed['unsafe_seg'] = em.unsafe_seg[u0] - n0
                    x, y = em.unsafe[u0]
                    reason = (f'a corner at ({x:.2f}, {y:.2f}) cannot be made wheel-safe (no backup or probe '
                              'keeps the wheels on swept or safe ground)')
                else:
                    pts = [p0[None]] + [sg.points for sg in em.segments[n0:]]
                    reason = path_fault(np.vstack(pts))
            if reason is not None and state is not None:
                em._load(state)
            elif reason is not None and len(em.segments) > n0:      # partial (unchecked) emission: keep it
                reason = None
            if log is not None:
                log.append({'task': key, 'where': where, 'reason': reason, 'geom': geom,
                            'segments': None if reason else (n0, len(em.segments))})
            return reason is None

        while todo_cells or todo_rings or todo_spurs:
            best = None
            for ci in todo_cells:
                cell = cells[ci]
                for rev in (False, True):
                    first = cell[-1] if rev else cell[0]
                    for flip in (False, True):
                        entry = world(first.path[-1] if flip else first.path[0])
                        d = float(np.hypot(*(entry - em.pos)))
                        if best is None or d < best[0]:
                            best = (d, 'cell', ci, rev, flip)
            cells_left = set(todo_cells)
            for ri in todo_rings:
                if near.get(ri, set()) & cells_left:
                    continue
                for app, i, ex in rings[ri].entries:
                    d = float(np.hypot(*(app - em.pos)))
                    if best is None or d < best[0]:
                        best = (d, 'ring', ri, (app, i, ex), None)
            for si in todo_spurs:
                spur = spurs[si]
                if spur['cells'] & cells_left or spur['rings'] & set(todo_rings):
                    continue
                for a, b in spur['ways']:
                    d = float(np.hypot(*(a - em.pos)))
                    if best is None or d < best[0]:
                        best = (d, 'spur', si, (a, b), None)
            if best is None:            # only spurs whose neighbours never come: take them as they are
                for si in todo_spurs:
                    spurs[si]['cells'], spurs[si]['rings'] = set(), set()
                continue
            _, kind, idx, a1, a2 = best
            if kind == 'spur':
                todo_spurs.remove(idx)
                a, b = a1
                ways = sorted(spurs[idx]['ways'], key=lambda w: float(np.hypot(*(w[0] - em.pos))))

                def run_spur(ways=ways, lane=lane_no):
                    em.choose([lambda w=w: _spur_moves(em, router, w[0], w[1], lane) for w in ways])
                if attempt(('spur', idx), (a + b) / 2, run_spur, LineString([a, b])):
                    lane_no += 1
                continue
            if kind == 'ring':
                todo_rings.remove(idx)
                app, i, ex = a1
                c = rings[idx].coords

                def run_ring(app=app, i=i, ex=ex, c=c, lane=lane_no):
                    lap = np.vstack([c[i:-1], c[:i + 1]])
                    em.drive(router.route(em.pos, app), 'transit')
                    em.drive(np.array([app, c[i]]), 'transit')
                    em.drive(lap, 'lane', lane)
                    em.drive(np.array([c[i], ex]), 'transit')
                centre = np.asarray(zone_polys[rings[idx].zone].centroid.coords[0])
                if attempt(('ring', idx), centre, run_ring, LineString(c)):
                    lane_no += 1
                continue
            todo_cells.remove(idx)
            rev, flip = a1, a2
            order = cells[idx][::-1] if rev else cells[idx]

            def run_cell(order=order, flip=flip, n=lane_no, starts=None):
                prev, flip_prev, prev_path = None, False, None
                for ln in order:
                    if starts is not None:
                        starts.append(len(em.segments))
                    path = ln.path[::-1] if flip else ln.path
                    if prev is None:
                        # the first lane of a cell, with the ways to reach its start (see _approaches)
                        em.choose(_approaches(router, em.pos, world(path), n))
                        n += 1
                        prev, flip_prev, prev_path = ln, flip, path
                        flip = not flip
                        continue
                    key = (id(prev), id(ln)) if (id(prev), id(ln)) in links else (id(ln), id(prev))
                    left, right = links[key]
                    conn = right if not flip_prev else left
                    if key[0] != id(prev):
                        conn = conn[::-1]
                    em.drive(world(_staircase(conn, prev_path, path, inside_r)), 'transit')
                    em.drive(world(path), 'lane', n)
                    n += 1
                    prev, flip_prev, prev_path = ln, flip, path
                    flip = not flip
                return n
            n_before = lane_no
            result: dict = {}

            def run_cell_once(run=run_cell, result=result, order=order):
                result['starts'] = []
                result['n'] = run(order=order, starts=result['starts'])
            geom = shapely.MultiLineString([world(ln.path) for ln in order])
            if attempt(('cell', idx), world(order[0].path).mean(axis=0), run_cell_once, geom):
                lane_no = result['n']
            elif 'unsafe_seg' in failed and drop:
                # keep the lanes driven before the corner that could not be made safe
                u = failed['unsafe_seg']                 # segments into the task
                starts = [k - result['starts'][0] for k in result['starts']]
                keep = sum(1 for k in starts[1:] if k <= u)
                lane_no = n_before
                if keep >= 1 and attempt(('cell', idx, keep), world(order[0].path).mean(axis=0),
                                         lambda o=order[:keep]: run_cell_once(order=o), geom):
                    lane_no = result['n']
            else:
                lane_no = n_before
        return lane_no

    # leftovers: unswept patches the lanes and edge passes miss (acute corners of the lane region,
    # boundaries at a small angle to the lanes, lane ends beside zones) get a straight spur pass each.
    # A first, unchecked emission finds them; the spurs then join the tour next to their neighbours.
    spurs: list = []
    if cfg.spur_min_area > 0:
        trial = _Emitter(backup, math.radians(cfg.backup_angle_deg), start,
                         SweptRaster(robot, b, safe, cell=cfg.raster_cell, margin=cfg.wheel_margin,
                                     allowed=allowed if fenced else None, keepout=keepout), room,
                         check=False)
        trial.heading = start_yaw
        if lead is not None:
            trial.drive(lead, 'transit')
        emit(trial, [])
        for ways in _spur_lines(trial.sweeper, q, transit_region, spacing, cfg.spur_min_area, fenced):
            seg = LineString(ways[0])
            dc = shapely.distance(seg, np.asarray(cell_lines, dtype=object)) if cells else np.zeros(0)
            dz = {ri for ri, r in enumerate(rings) if seg.distance(zone_polys[r.zone]) < d_lane + 1.0}
            spurs.append({'ways': ways, 'cells': {ci for ci in range(len(cells)) if dc[ci] < spacing + 1.0},
                          'rings': dz})
    # emission; with ``drop`` a task the final replay still finds unsafe is banned and the tour
    # emitted again without it (a few rounds at most: each round bans at least one task)
    banned: dict = {}
    for _round in range(4):
        em = _Emitter(backup, math.radians(cfg.backup_angle_deg), start, sweeper, room)
        em.heading = start_yaw
        em.reroute, em.may_retreat, em.ground = router.route, drop, allowed_prep
        log: list = []
        if lead is not None:
            em.drive(lead, 'transit')
        emit(em, spurs, dict(banned), log)
        plan = CoveragePlan(em.segments, {}, swath_width=w, spacing=spacing, start_yaw=start_yaw)
        for i, seg in enumerate(plan.segments):
            seg.seq = i
        if not any(sg.role == 'lane' for sg in plan.segments):
            break
        stats = plan_stats(plan, area, robot, q, cfg if cfg.verify else None, details=True, keepout=keepout)
        if not (drop and cfg.verify):
            break
        items = [('swept ground', it) for it in stats['safety']['items_all']] + \
            [(it['rule'], it) for it in stats['fence']['items_all']]
        if not start_safe:       # the robot stands on unswept ground: its first moves are not a task's fault
            items = [(r, it) for r, it in items if np.hypot(it['where'][0] - start[0],
                                                            it['where'][1] - start[1]) > 1.0]
        bad = {it['segment'] for _, it in items}
        culprits = {}
        for e in log:
            if e['segments'] is None:
                continue
            for rule, it in items:
                if e['segments'][0] <= it['segment'] < e['segments'][1] and e['task'] not in culprits:
                    culprits[e['task']] = (f"unsafe in the final replay ({rule}: {it['kind']} at "
                                           f"({it['where'][0]:.2f}, {it['where'][1]:.2f}))")
        if not bad or not culprits:
            break
        banned.update(culprits)
        sweeper = SweptRaster(robot, b, safe, cell=cfg.raster_cell, margin=cfg.wheel_margin,
                          allowed=allowed if fenced else None, keepout=keepout)

    skipped = [e for e in log if e['reason'] is not None]
    if not any(sg.role == 'lane' for sg in plan.segments):
        why = '; '.join(f"{e['task'][0]} at ({e['where'][0]:.1f}, {e['where'][1]:.1f}): {e['reason']}"
                        for e in skipped[:6]) or 'no lane, edge pass or spur pass fits the region'
        raise PlannerError(f'nothing could be planned safely over the area ({q.area:.2f} m²): {why}')
    if em.unsafe:
        where = ', '.join(f'({x:.1f}, {y:.1f})' for x, y in em.unsafe[:8])
        notes.append(f'{len(em.unsafe)} corner(s) could not be made wheel-safe (no backup length and no '
                     f'probe keeps the wheels on swept ground with {cfg.wheel_margin:.2f} m margin, '
                     f'or no room for a probe): {where}')
    for e in skipped:
        notes.append(f"{e['task'][0]} at ({e['where'][0]:.1f}, {e['where'][1]:.1f}) left out: {e['reason']}")
    pieces = stats.pop('_unswept', [])
    stats['dropped'] = _dropped(pieces[:50], skipped, cfg.raster_cell)
    stats['dropped_m2'] = round(sum(a for _, a in pieces), 3)
    stats['safety'].pop('items_all', None)
    stats['fence'].pop('items_all', None)
    stats.update({'angle_deg': round(math.degrees(theta) % 180.0, 2),
                  'planning_time_s': round(time.perf_counter() - t0, 4),
                  'build_time_s': round(build, 4),
                  'cells': len(cells), 'rings': len(rings), 'backups': em.backups,
                  'probes': em.probes, 'spur_passes': len(spurs), 'unsafe_corners': len(em.unsafe),
                  'start': [round(float(start[0]), 3), round(float(start[1]), 3)],
                  'start_on_safe_ground': start_safe, 'route_failures': router.failures,
                  'tasks_left_out': len(skipped), 'drop_unsafe': drop, 'wheels_inside': fenced,
                  'hazards': len(hz),
                  'hazard_clearance': round(float(hazard_clearance), 3) if len(hz) else None,
                  'distances_m': {'lane_to_boundary': round(e_out, 3), 'ring_to_zone': round(d_ring, 3),
                                  'lane_end_to_zone': round(d_lane, 3),
                                  'transit_to_zone': round(d_transit, 3),
                                  'backup': round(backup, 3)},
                  'notes': notes, 'config': {k: v for k, v in asdict(cfg).items()}})
    stats['safe_to_drive'], stats['unsafe_reasons'] = _drivable(stats)
    plan.stats = stats
    return plan


def _dropped(pieces: list, skipped: list, cell: float) -> list[dict]:
    """Unswept pieces of the region with the reason: the left-out task whose passes would have swept
    it (nearest within a swath), else 'not reached by any lane or pass'."""
    out = []
    for (x, y), area_m2 in pieces:
        reason = 'not reached by any lane or pass of the plan'
        best = None
        for e in skipped:
            d = e['geom'].distance(Point(x, y))
            if d < 1.2 and (best is None or d < best[0]):
                best = (d, e)
        if best is not None:
            e = best[1]
            reason = f"{e['task'][0]} left out: {e['reason']}"
        out.append({'where': [round(float(x), 2), round(float(y), 2)], 'area_m2': round(float(area_m2), 3),
                    'reason': reason})
    return out


def _drivable(stats: dict) -> tuple[bool, list[str]]:
    """Whether a plan may be handed to the robot as it is, and what forbids it."""
    why = []
    if stats['safety'].get('method') == 'not verified':
        why.append('not verified (PlannerConfig.verify=False)')
    if stats['safety']['count']:
        why.append(f"{stats['safety']['count']} move(s) put wheels on unswept ground")
    if stats.get('unsafe_corners'):
        why.append(f"{stats['unsafe_corners']} corner(s) could not be made wheel-safe")
    if stats['no_go_m'] > 0:
        why.append(f"{stats['no_go_m']:.2f} m of path inside no-go zones")
    if stats['outside_m'] > 0:
        why.append(f"{stats['outside_m']:.2f} m of path outside the search area and safe ground")
    if stats['gaps']:
        why.append(f"{stats['gaps']} gap(s) between segments")
    fence = stats.get('fence', {})
    if fence.get('wheels_outside_m2', 0) > 0:
        why.append(f"wheels {fence['wheels_outside_m2']:.3f} m² outside the search area and safe ground "
                   '(the geofence would hold the robot)')
    if fence.get('body_in_no_go_m2', 0) > 0:
        why.append(f"body or detector head {fence['body_in_no_go_m2']:.3f} m² over no-go zones "
                   '(the safety monitor would hold the robot)')
    if not stats.get('start_on_safe_ground', True):
        why.append('the start is not on safe ground with room to turn')
    return not why, why


def plan_stats(plan: CoveragePlan, area: SearchArea, robot: RobotGeometry, region=None,
               config: PlannerConfig | None = None, details: bool = False, keepout=None) -> dict:
    """Coverage, length, lower bound, no-go/outside metres, continuity, and (with ``config``) the
    raster swept-ground replay. Coverage is exact (CoverageTracker over the plan's vertex poses)
    without ``config`` or with ``config.exact_coverage``, else the replay raster's conservative
    figure (cells whose neighbours were all swept)."""
    region = area.searchable if region is None else region
    t0 = time.perf_counter()
    check = None
    if config is not None:
        check = raster_check(plan, robot, area, cell=config.raster_cell, region=region, keepout=keepout)
    t_check = time.perf_counter() - t0
    t0 = time.perf_counter()
    if check is None or config.exact_coverage:
        tracker = CoverageTracker(robot, batch=400, fold=8, max_step=1e9, max_gap=1e9)
        tracker.add_poses(plan.vertex_poses()[:, :3])
        coverage = tracker.fraction(region)
        method = 'exact'
    else:
        coverage = check.coverage_fraction_min
        method = f'raster {config.raster_cell * 100:.0f} cm, eroded'
    t_cov = time.perf_counter() - t0
    path = LineString(plan.path()) if len(plan.path()) > 1 else LineString()
    inside = shapely.union_all([area.search, area.safe_ground])
    gaps = sum(1 for a, b in zip(plan.segments[:-1], plan.segments[1:])
               if np.hypot(*(a.points[-1] - b.points[0])) > 1e-6)
    length = plan.length
    lower = region.area / plan.spacing if plan.spacing else float('nan')
    out = {
        'coverage_fraction': round(coverage, 6),
        'coverage_fraction_all': round(coverage, 6),
        'searchable_area_m2': round(region.area, 2),
        'path_length_m': round(length, 2),
        'lane_length_m': round(sum(s.length for s in plan.segments if s.role == 'lane'), 2),
        'reverse_m': round(sum(s.length for s in plan.segments if s.direction == 'reverse'), 2),
        'lower_bound_m': round(lower, 2),
        'length_ratio': round(length / lower, 4) if lower else None,
        'lane_count': len({s.lane for s in plan.segments if s.role == 'lane'}),
        'segment_count': len(plan.segments),
        'no_go_m': round(path.intersection(area.no_go_union).length, 4) if not area.no_go_union.is_empty
        else 0.0,
        'outside_m': round(path.difference(inside.buffer(1e-6)).length, 4),
        'gaps': gaps,
        'coverage_method': method,
        'coverage_time_s': round(t_cov, 4),
    }
    if check is not None:
        zones = shapely.union_all([area.no_go_union, *[Polygon(r) for r in area.search.interiors]])
        t1 = time.perf_counter()
        fence = fence_check(plan, robot, inside.buffer(1e-6), zones)
        out['fence'] = {**fence.summary(), 'items_all': fence.items,
                        'time_s': round(time.perf_counter() - t1, 4)}
        out['_unswept'] = check.unswept_pieces(region, min_area=0.01)
        out.update({'safety': {**check.summary(), 'items_all': [v.as_dict() for v in check.violations]},
                    'coverage_fraction_raster': round(check.coverage_fraction, 6),
                    'overhang_no_go_m2': round(check.overhang_no_go_m2, 4),
                    'overhang_outside_max_m': round(check.overhang_outside_max_m, 3),
                    'verify_time_s': round(t_check, 4)})
    else:
        out['safety'] = {'count': 0, 'metres': 0.0, 'area_m2': 0.0, 'method': 'not verified', 'items': [],
                         'items_all': []}
        out['fence'] = {'wheels_outside_m2': 0.0, 'body_in_no_go_m2': 0.0, 'items': [], 'items_all': [],
                        'method': 'not verified'}
    if not details:        # full item lists and the unswept pieces are for plan_coverage only
        out['safety'].pop('items_all', None)
        out['fence'].pop('items_all', None)
        out.pop('_unswept', None)
    return out

