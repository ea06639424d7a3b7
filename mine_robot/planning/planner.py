"""Lane-based coverage planning with the swept-ground rule.

Plan structure (all in the local ``map`` frame):

1. **Entry** from declared safe ground: a straight run that joins the first headland pass along its
   tangent, so the robot never turns on unswept ground.
2. **Headland**: ``headland_passes`` laps around every boundary of the searchable area (outer edge
   first, then each no-go zone, reached by straight approach runs that join the lap tangentially).
   Convex corners are rounded to ``corner_radius`` (an arc that wide keeps the wheels inside the
   band the detector sweeps ahead of them); passes are joined by shallow lane changes.
3. **Lanes**: parallel lines at ``spacing = swath × (1 − overlap)``, sweep angle chosen to minimise
   path length (or given). Each line is cut into strips of the still-unswept interior; strips are
   grouped into boustrophedon cells (consecutive strips that overlap one to one). A lane's base path
   starts far enough back that the detector starts at the strip's edge and ends inside the swept
   headland, so every turn happens on swept ground.
4. **Transitions** between lanes and cells: a straight move if it stays on swept ground, otherwise
   the shortest route over a graph of the headland transit rings and finished lanes; never through
   a no-go zone or outside the area (plus safe ground).
5. **Verification**: the whole plan is replayed primitive by primitive against the ground swept so
   far (mine_robot.planning.safety); violations go to ``stats['safety']`` with where and why.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
import heapq
import math
import time

import numpy as np
import shapely
from shapely.geometry import LinearRing, LineString, Point, Polygon, box
from shapely.prepared import prep

from mine_robot.planning.area import SearchArea
from mine_robot.planning.coverage import _without_slivers
from mine_robot.planning.plan import CoveragePlan, Segment
from mine_robot.planning.safety import SweepChecker, check_plan
from mine_robot.robot import RobotGeometry


class PlannerError(ValueError):
    """Planner configuration or inputs that cannot produce a plan."""


@dataclass(frozen=True)
class PlannerConfig:
    swath_width: float = 0.0          # m; 0 = the robot's detector swath
    overlap: float = 0.1              # fraction of the swath shared by neighbouring lanes
    angle_deg: float | None = None    # lane direction (deg CCW from east); None = automatic
    headland_passes: int = 2
    corner_radius: float = 3.0        # m; arcs at headland corners (skid steer)
    turn_radius: float = 0.0          # m; > 0 = car-like platform (no point turns)
    edge_margin: float = 0.02         # m the swath reaches past the boundary
    lane_margin: float = 0.05         # m the detector overlaps into swept ground at lane ends
    min_gap_width: float = 0.15       # m; unswept slivers narrower than this are ignored
    verify: bool = True

    def validate(self) -> None:
        if self.swath_width < 0:
            raise PlannerError(f'swath_width must be >= 0 (0 = robot swath), got {self.swath_width}')
        if not 0.0 <= self.overlap < 0.9:
            raise PlannerError(f'overlap must be in [0, 0.9), got {self.overlap}')
        if self.headland_passes < 1 or self.headland_passes > 5:
            raise PlannerError(f'headland_passes must be 1..5, got {self.headland_passes}')
        if self.corner_radius < 0 or self.turn_radius < 0:
            raise PlannerError('corner_radius and turn_radius must be >= 0')
        if self.angle_deg is not None and not math.isfinite(self.angle_deg):
            raise PlannerError(f'angle_deg must be finite, got {self.angle_deg}')


# ---------------------------------------------------------------------------------------------
# small geometry helpers

def _polys(geom) -> list[Polygon]:
    if geom.is_empty:
        return []
    if isinstance(geom, Polygon):
        return [geom]
    return [g for g in getattr(geom, 'geoms', []) if isinstance(g, Polygon) and not g.is_empty]


def _rings(geom) -> list[np.ndarray]:
    out = []
    for p in _polys(geom):
        for ring in [p.exterior, *p.interiors]:
            c = np.asarray(ring.coords)[:-1]
            if len(c) >= 3:
                out.append(c)
    return out


def _rounded(q, offset: float, radius: float):
    """Region at ``offset`` inside q with convex and reflex corners rounded to ``radius``."""
    g = q.buffer(-(offset + radius), quad_segs=12)
    if radius > 0 and not g.is_empty:
        g = g.buffer(radius, quad_segs=12)
    return shapely.make_valid(g)


def _resample_ring(coords: np.ndarray, step: float) -> np.ndarray:
    """Ring vertices plus extra points on long edges (corner arcs keep their own vertices)."""
    ring = shapely.segmentize(LinearRing(coords), step)
    return np.asarray(ring.coords)[:-1]


def _signed_area(c: np.ndarray) -> float:
    x, y = c[:, 0], c[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def _lap(coords: np.ndarray, start: int, ccw: bool) -> np.ndarray:
    """Closed lap around a ring starting and ending at vertex ``start`` in the given sense."""
    c = coords if (_signed_area(coords) > 0) == ccw else coords[::-1]
    if (_signed_area(coords) > 0) != ccw:
        start = len(coords) - 1 - start
    c = np.roll(c, -start, axis=0)
    return np.vstack([c, c[:1]])


def _dedupe(points: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    keep = [0] + [i for i in range(1, len(points)) if np.hypot(*(points[i] - points[i - 1])) > eps]
    return points[keep]


def _fillet(points: np.ndarray, radius: float, step: float = 0.25) -> np.ndarray:
    """Round polyline corners with arcs of ``radius`` where the legs are long enough."""
    if radius <= 0 or len(points) < 3:
        return points
    out = [points[0]]
    for i in range(1, len(points) - 1):
        p0, p1, p2 = out[-1], points[i], points[i + 1]
        u, v = p1 - p0, p2 - p1
        lu, lv = np.hypot(*u), np.hypot(*v)
        if lu < 1e-9 or lv < 1e-9:
            continue
        u, v = u / lu, v / lv
        turn = math.atan2(u[0] * v[1] - u[1] * v[0], float(u @ v))
        if abs(turn) < 1e-3:
            out.append(p1)
            continue
        t = radius * math.tan(abs(turn) / 2)
        if t > min(lu, lv / 2 if i < len(points) - 2 else lv):
            out.append(p1)      # no room: keep the corner (reported by the turn-radius check)
            continue
        a = p1 - u * t
        normal = np.array([-u[1], u[0]]) * math.copysign(1.0, turn)
        centre = a + normal * radius
        n = max(2, math.ceil(abs(turn) * radius / step))
        ang0 = math.atan2(a[1] - centre[1], a[0] - centre[0])
        for k in range(n + 1):
            ang = ang0 + turn * k / n
            out.append(centre + radius * np.array([math.cos(ang), math.sin(ang)]))
    out.append(points[-1])
    return _dedupe(np.asarray(out))


# ---------------------------------------------------------------------------------------------
# lanes

@dataclass
class _Lane:
    line: int          # index of the sweep line
    x0: float          # base path start/end along the line (rotated frame), x0 < x1
    x1: float
    y: float
    cell: int = -1


def _rot(theta: float) -> np.ndarray:
    c, s = math.cos(theta), math.sin(theta)
    return np.array([[c, -s], [s, c]])


def _lanes(interior, core, theta: float, spacing: float, det_min: float, det_max: float,
           margin: float, back: float) -> list[_Lane]:
    """Lane base paths over ``interior`` for lanes at angle theta (rotated frame x along lanes)."""
    if interior.is_empty:
        return []
    r = _rot(-theta)
    inner = shapely.transform(interior, lambda p: p @ r.T)
    core_r = shapely.transform(core, lambda p: p @ r.T)
    minx, miny, maxx, maxy = inner.bounds
    n = max(1, math.ceil((maxy - miny) / spacing))
    y0 = (miny + maxy) / 2 - (n - 1) * spacing / 2
    lanes = []
    for k in range(n):
        y = y0 + k * spacing
        strip = inner.intersection(box(minx - 1, y - spacing / 2 - 1e-6, maxx + 1, y + spacing / 2 + 1e-6))
        for comp in _polys(strip):
            if comp.area < 1e-3:
                continue
            sx0, _, sx1, _ = comp.bounds
            # detector from sx0 to sx1: base from sx0 - det_min - margin to sx1 - det_max + margin,
            # then on into swept headland so the turn at the end is on swept ground
            want0, want1 = sx0 - det_min - margin, max(sx1 + back, sx0 - det_min + margin)
            line = LineString([(minx - 50, y), (maxx + 50, y)]).intersection(core_r)
            best = None
            for piece in getattr(line, 'geoms', [line]):
                if piece.is_empty or piece.length < 1e-6:
                    continue
                px0, _, px1, _ = piece.bounds
                ov = min(px1, want1) - max(px0, want0)
                if best is None or ov > best[0]:
                    best = (ov, max(px0, want0), min(px1, want1))
            if best is None or best[2] - best[1] < 0.05:
                continue
            lanes.append(_Lane(k, best[1], best[2], y))
    return lanes


def _cells(lanes: list[_Lane]) -> list[list[_Lane]]:
    """Boustrophedon cells: chains of lanes on consecutive lines overlapping one to one."""
    by_line: dict[int, list[_Lane]] = {}
    for ln in lanes:
        by_line.setdefault(ln.line, []).append(ln)
    cells: list[list[_Lane]] = []

    def overlaps(a, b):
        return min(a.x1, b.x1) - max(a.x0, b.x0) > 0.3
    for k in sorted(by_line):
        prev = by_line.get(k - 1, [])
        for ln in sorted(by_line[k], key=lambda t: t.x0):
            ups = [p for p in prev if overlaps(p, ln)]
            if len(ups) == 1:
                downs = [q for q in by_line[k] if overlaps(ups[0], q)]
                if len(downs) == 1 and cells[ups[0].cell][-1] is ups[0]:
                    ln.cell = ups[0].cell
                    cells[ln.cell].append(ln)
                    continue
            ln.cell = len(cells)
            cells.append([ln])
    return cells


# ---------------------------------------------------------------------------------------------
# the planner

class _Builder:
    def __init__(self, area: SearchArea, robot: RobotGeometry, cfg: PlannerConfig, region=None):
        self.area, self.robot, self.cfg = area, robot, cfg
        self.q = shapely.make_valid(region) if region is not None else area.searchable
        self.safe = area.safe_ground
        self.w = cfg.swath_width or robot.swath_width
        self.s = self.w * (1.0 - cfg.overlap)
        md = robot.metal_detector
        self.det_min = md.xyz[0] - md.coil_radius
        self.det_max = md.xyz[0] + md.coil_radius
        patches = robot.wheel_patches().reshape(-1, 2)
        self.reach = float(np.hypot(patches[:, 0], patches[:, 1]).max())   # wheel disc of a turn
        self.car = cfg.turn_radius > 0 or robot.drive == 'ackermann'
        self.turn_radius = max(cfg.turn_radius, robot.min_turn_radius)
        self.corner_radius = max(cfg.corner_radius, self.turn_radius)
        # where base_link may go: inside the area with the wheels' turning disc, or on safe ground
        # close hairline gaps between safe ground and the area (GIS polygons that "touch")
        allowed = shapely.union_all([self.area.search, self.safe]).buffer(0.05).buffer(-0.05)
        self.allowed = shapely.make_valid(allowed.difference(self.area.no_go_union))
        self.core = shapely.union_all([self.q.buffer(-self.reach * 0.75), self.safe.buffer(-self.reach)])
        self.checker = SweepChecker(robot, self.safe)
        self.points: list[np.ndarray] = []      # current segment points
        self.segments: list[Segment] = []
        self.pos: np.ndarray | None = None
        self.graph_rings: list[np.ndarray] = []
        self.all_rings: list[np.ndarray] = []
        self.graph_edges: list[np.ndarray] = []
        self.graph_links: list[tuple[int, int]] = []
        self._ring_nodes: np.ndarray | None = None
        self._edge_nodes = 0
        self._allowed_core = None
        self.notes: list[str] = []
        self.lane_id = 0

    # -- emitting ------------------------------------------------------------------------------
    def emit(self, role: str, pts, lane: int | None = None) -> None:
        pts = np.asarray(pts, dtype=float)
        if self.pos is not None and np.hypot(*(pts[0] - self.pos)) > 1e-6:
            pts = np.vstack([self.pos, pts])
        pts = _dedupe(pts)
        if len(pts) < 2:
            return
        if self.segments and self.segments[-1].role == role == 'transit':
            last = self.segments[-1]
            last.points = _dedupe(np.vstack([last.points, pts[1:]]))
        else:
            self.segments.append(Segment(role, pts, len(self.segments), lane))
        self.checker.drive(pts, len(self.segments) - 1, role)
        self.pos = pts[-1].copy()

    def drivable(self, pts: np.ndarray) -> bool:
        """A polyline the robot can drive (with turns) on swept/safe ground, inside the area."""
        line = LineString(pts) if len(pts) > 1 else Point(pts[0])
        if not self.allowed.buffer(1e-6).covers(line):
            return False
        return self.checker.prior.covers(line.buffer(self.reach, quad_segs=4), tol=5e-3)

    # -- transit ---------------------------------------------------------------------------------
    def inside(self, pts: np.ndarray) -> bool:
        """Base path stays inside the area (or safe ground) and clear of no-go zones."""
        if self._allowed_core is None:
            self._allowed_core = prep(self.allowed.buffer(-0.3).buffer(1e-6))
        return self._allowed_core.covers(LineString(pts))

    def route(self, goal: np.ndarray, swept_only: bool = True) -> np.ndarray:
        """Polyline from the current position to goal over swept ground (straight if possible);
        with ``swept_only`` False, any route inside the area that avoids the no-go zones."""
        a = self.pos
        direct = np.array([a, goal])
        ok = self.drivable if swept_only else self.inside
        if ok(direct):
            return direct
        nodes: list[np.ndarray] = [a, goal]
        adj: dict[int, list[tuple[int, float]]] = {0: [], 1: []}

        def add_edge(i, j):
            d = float(np.hypot(*(nodes[i] - nodes[j])))
            adj.setdefault(i, []).append((j, d))
            adj.setdefault(j, []).append((i, d))
        ring_bases = []
        for ring in (self.graph_rings if swept_only else self.all_rings):
            base = len(nodes)
            ring_bases.append(base)
            nodes.extend(ring)
            m = len(ring)
            for k in range(m):
                add_edge(base + k, base + (k + 1) % m)
        for edge in self.graph_edges:
            i = len(nodes)
            nodes.extend(edge)
            for k in range(len(edge) - 1):
                add_edge(i + k, i + k + 1)
        arr = np.asarray(nodes)
        # join start and goal to nearby graph nodes they can reach directly; lane ends were joined to
        # their ring when the lane was added
        for special in (0, 1):
            d = np.hypot(*(arr - arr[special]).T)
            tried = 0
            for j in np.argsort(d)[2:]:
                if d[j] > 15.0 or tried >= 8:
                    break
                tried += 1
                if ok(np.array([arr[special], arr[j]])):
                    add_edge(special, int(j))
        if swept_only:
            n_ring = sum(len(r) for r in self.graph_rings)
            for i, j in self.graph_links:
                add_edge(2 + n_ring + i, 2 + j)
        else:
            for ring, base in zip(self.all_rings, ring_bases):   # fallback rings are not pre-linked
                for k in range(0, len(ring), max(1, len(ring) // 12)):
                    i = base + k
                    d = np.hypot(*(arr - ring[k]).T)
                    for j in np.argsort(d)[1:10]:
                        if d[j] < 15.0 and ok(np.array([ring[k], arr[j]])):
                            add_edge(i, int(j))
        dist = {0: 0.0}
        prev: dict[int, int] = {}
        heap = [(0.0, 0)]
        while heap:
            dd, u = heapq.heappop(heap)
            if u == 1:
                break
            if dd > dist.get(u, math.inf):
                continue
            for v, w in adj.get(u, []):
                nd = dd + w
                if nd < dist.get(v, math.inf):
                    dist[v], prev[v] = nd, u
                    heapq.heappush(heap, (nd, v))
        if 1 not in dist:
            if swept_only:
                self.notes.append(f'no swept route to ({goal[0]:.1f}, {goal[1]:.1f}); route crosses '
                                  'unswept ground')
                return self.route(goal, swept_only=False)
            return self.grid_route(goal)
        path, u = [arr[1]], 1
        while u != 0:
            u = prev[u]
            path.append(arr[u])
        return _dedupe(np.asarray(path[::-1]))

    def remember(self, pts: np.ndarray) -> None:
        """Add a driven polyline to the transit graph, linked to its nearest ring nodes."""
        n_ring = sum(len(r) for r in self.graph_rings)
        if self._ring_nodes is None or len(self._ring_nodes) != n_ring:
            self._ring_nodes = (np.vstack(self.graph_rings) if self.graph_rings else np.zeros((0, 2)))
        base = self._edge_nodes        # index among edge nodes; rings come first in route()
        self.graph_edges.append(pts)
        self._edge_nodes += len(pts)
        if not len(self._ring_nodes):
            return
        for k in (0, len(pts) - 1):
            d = np.hypot(*(self._ring_nodes - pts[k]).T)
            for j in np.argsort(d)[:3]:
                if d[j] < 6.0 and self.drivable(np.array([pts[k], self._ring_nodes[j]])):
                    self.graph_links.append((base + k, int(j)))
                    break

    def grid_route(self, goal: np.ndarray, cell: float = 0.4) -> np.ndarray:
        """Last resort: shortest 8-connected path on a raster of the allowed ground, string-pulled."""
        import cv2

        a = self.pos
        core = self.allowed.buffer(-0.3)
        minx, miny, maxx, maxy = core.bounds
        nx, ny = int((maxx - minx) / cell) + 3, int((maxy - miny) / cell) + 3
        grid = np.zeros((ny, nx), np.uint8)
        for poly in _polys(core):
            rings = [poly.exterior, *poly.interiors]
            pts = [np.round((np.asarray(r.coords) - [minx - cell, miny - cell]) / cell).astype(np.int32)
                   for r in rings]
            cv2.fillPoly(grid, pts[:1], 1)
            if len(pts) > 1:
                cv2.fillPoly(grid, pts[1:], 0)
        grid = cv2.erode(grid, np.ones((2, 2), np.uint8))

        def cell_of(p):
            return (int(round((p[1] - miny + cell) / cell)), int(round((p[0] - minx + cell) / cell)))
        free = np.argwhere(grid > 0)
        if not len(free):
            return np.array([a, goal])

        def nearest_free(c):
            k = int(np.argmin(np.hypot(free[:, 0] - c[0], free[:, 1] - c[1])))
            return (int(free[k, 0]), int(free[k, 1]))
        src, dst = nearest_free(cell_of(a)), nearest_free(cell_of(goal))
        dist = {src: 0.0}
        prev = {}
        heap = [(0.0, src)]
        steps = [(di, dj, math.hypot(di, dj)) for di in (-1, 0, 1) for dj in (-1, 0, 1) if di or dj]
        while heap:
            d, u = heapq.heappop(heap)
            if u == dst:
                break
            if d > dist[u]:
                continue
            for di, dj, w in steps:
                v = (u[0] + di, u[1] + dj)
                if 0 <= v[0] < ny and 0 <= v[1] < nx and grid[v] and d + w < dist.get(v, math.inf):
                    dist[v], prev[v] = d + w, u
                    heapq.heappush(heap, (d + w, v))
        if dst not in dist:
            self.notes.append(f'no route inside the area to ({goal[0]:.1f}, {goal[1]:.1f}); the region is '
                              'split by no-go zones')
            return np.array([a, goal])
        cells, u = [dst], dst
        while u != src:
            u = prev[u]
            cells.append(u)
        origin = np.array([minx - cell, miny - cell])
        pts = [a] + [origin + cell * np.array([c[1], c[0]]) for c in cells[::-1][1:-1]]
        pts.append(goal)
        out, i = [pts[0]], 0
        while i < len(pts) - 1:          # string pulling: furthest point still visible
            j = len(pts) - 1
            while j > i + 1 and not self.inside(np.array([pts[i], pts[j]])):
                j -= 1
            out.append(pts[j])
            i = j
        return _dedupe(np.asarray(out))

    def go(self, goal: np.ndarray) -> None:
        if self.pos is None:
            self.pos = np.asarray(goal, dtype=float)
            return
        path = self.route(np.asarray(goal, dtype=float))
        if not self.inside(path):        # never through a no-go zone or out of the area
            path = self.grid_route(np.asarray(goal, dtype=float))
        if self.car:
            path = _fillet(path, self.turn_radius)
        self.emit('transit', path)
        if self._ring_nodes is not None or self.graph_rings:
            self.remember(path)

    # -- headland ----------------------------------------------------------------------------------
    def approach(self, loop_coords: np.ndarray, entry_region, start_hint) -> tuple | None:
        """Best (entry point e, join index i, ccw) to join a loop tangentially from entry_region."""
        best = None
        n = len(loop_coords)
        stride = max(1, n // 120)
        for i in range(0, n, stride):
            p = loop_coords[i]
            for ccw in (True, False):
                lap = _lap(loop_coords, i, ccw)
                t = lap[1] - lap[0]
                if np.hypot(*t) < 1e-9:
                    continue
                t = t / np.hypot(*t)
                ray = LineString([p, p - 80.0 * t])
                hit = ray.intersection(entry_region)
                if hit.is_empty:
                    continue
                pts = shapely.get_coordinates(hit)
                dd = np.hypot(*(pts - p).T)
                k = int(np.argmin(dd))
                e = pts[k] - 0.05 * t
                if not self.allowed.buffer(1e-6).covers(LineString([e, p])):
                    continue
                cost = dd[k] + (0.3 * float(np.hypot(*(e - start_hint))) if start_hint is not None else 0)
                if best is None or cost < best[0]:
                    best = (cost, e, i, ccw)
        return None if best is None else best[1:]

    def launch_region(self):
        """Where the robot may stand, turn and start a forward run: swept/safe ground with room."""
        ground = shapely.union_all([self.checker.prior.union()])
        return shapely.make_valid(ground.buffer(-(self.det_min + 0.08)).intersection(self.allowed))

    def headland(self, start) -> None:
        cfg = self.cfg
        d0 = self.w / 2 - cfg.edge_margin
        levels = []
        for k in range(cfg.headland_passes):
            g = _rounded(self.q, d0 + k * self.s, self.corner_radius)
            levels.append([_resample_ring(c, 1.0) for c in _rings(g)])
        t_r = d0 + (cfg.headland_passes - 1) * self.s / 2
        transit = _rounded(self.q, max(t_r, self.reach + 0.05), self.corner_radius)
        # group loops: each level-0 loop with its nearest loop on every deeper level
        groups = []
        for loop in levels[0]:
            group = [loop]
            mid = Polygon(loop).exterior
            for deeper in levels[1:]:
                if not deeper:
                    break
                dist = [LinearRing(c).distance(mid) for c in deeper]
                j = int(np.argmin(dist))
                if dist[j] > self.s * 1.6:
                    break
                group.append(deeper[j])
            groups.append(group)
        transit_rings = [_resample_ring(c, 1.0) for c in _rings(transit)]
        self.all_rings = transit_rings
        # outer boundary first, then the rest by nearest approach
        groups.sort(key=lambda g: -abs(_signed_area(g[0])))
        pending = list(range(len(groups)))
        while pending:
            region = self.launch_region()
            choice = None
            for gi in pending:
                found = self.approach(groups[gi][0], region, self.pos if self.pos is not None else start)
                if found is not None:
                    cost = float(np.hypot(*(found[0] - (self.pos if self.pos is not None else start))))
                    if choice is None or cost < choice[0]:
                        choice = (cost, gi, found)
            if choice is None:
                gi = pending[0]
                loop = groups[gi][0]
                ref = self.pos if self.pos is not None else start
                i = int(np.argmin(np.hypot(*(loop - ref).T)))
                found = (loop[i], i, True)
                self.notes.append('no tangential approach from swept or safe ground to a headland loop; '
                                  'entering directly')
            else:
                _, gi, found = choice
            pending.remove(gi)
            e, i, ccw = found
            self.go(e)
            group = groups[gi]
            lap = _lap(group[0], i, ccw)
            self.emit('lane', np.vstack([e, lap]), lane=self.next_lane())
            for deeper in group[1:]:
                # shallow lane change: join the next loop ~6 m further on
                here = self.pos
                ahead_idx = min(len(lap) - 1, 24)
                target_hint = lap[ahead_idx]
                j = int(np.argmin(np.hypot(*(deeper - target_hint).T)))
                lap = _lap(deeper, j, ccw)
                change = np.array([here, lap[0]])
                self.emit('transit', change if self.inside(change) else self.route(lap[0], False))
                self.emit('lane', lap, lane=self.next_lane())
            near = self.s * 2.5 * self.cfg.headland_passes
            for ring in transit_rings:
                close = LinearRing(ring).distance(Polygon(group[0]).exterior) < near
                if close and not any(ring is r for r in self.graph_rings):
                    self.graph_rings.append(ring)

    def next_lane(self) -> int:
        self.lane_id += 1
        return self.lane_id - 1

    # -- lanes -----------------------------------------------------------------------------------
    def interior(self):
        swept = self.checker.prior.union()
        rest = shapely.make_valid(self.q.difference(swept))
        return _without_slivers(rest, self.cfg.min_gap_width)

    def lanes(self, theta: float) -> None:
        interior = self.interior()
        if interior.is_empty:
            return
        core = self.allowed.buffer(-self.reach * 0.75)
        lanes = _lanes(interior, core, theta, self.s, self.det_min, self.det_max, self.cfg.lane_margin,
                       back=0.6)
        cells = _cells(lanes)
        r = _rot(theta)
        remaining = list(range(len(cells)))
        while remaining:
            # nearest cell entry (first or last lane, either end)
            best = None
            for ci in remaining:
                cell = cells[ci]
                for rev in (False, True):
                    order = cell[::-1] if rev else cell
                    for flip in (False, True):
                        ln = order[0]
                        a = np.array([ln.x1 if flip else ln.x0, ln.y]) @ r.T
                        d = float(np.hypot(*(a - self.pos))) if self.pos is not None else 0.0
                        if best is None or d < best[0]:
                            best = (d, ci, rev, flip)
            _, ci, rev, flip = best
            remaining.remove(ci)
            order = cells[ci][::-1] if rev else cells[ci]
            for ln in order:
                a = np.array([ln.x1 if flip else ln.x0, ln.y]) @ r.T
                b = np.array([ln.x0 if flip else ln.x1, ln.y]) @ r.T
                self.go(a)
                self.emit('lane', np.array([a, b]), lane=self.next_lane())
                self.remember(np.array([a, b]))
                flip = not flip
        # leftovers (narrow gaps, corners) get short extra lanes at the best local angle
        self.notes.append(f'{len(lanes)} lanes in {len(cells)} cells')


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
    out = []
    for a in cands:
        if all(abs(((a - b + math.pi / 2) % math.pi) - math.pi / 2) > math.radians(3) for b in out):
            out.append(a)
    return out


def _estimate(interior, theta, spacing) -> float:
    """Lane length + one turn per lane for lanes at theta (cheap proxy for path length)."""
    r = _rot(-theta)
    inner = shapely.transform(interior, lambda p: p @ r.T)
    minx, miny, maxx, maxy = inner.bounds
    n = max(1, math.ceil((maxy - miny) / spacing))
    ys = (miny + maxy) / 2 + (np.arange(n) - (n - 1) / 2) * spacing
    lines = shapely.linestrings([[(minx - 1, y), (maxx + 1, y)] for y in ys])
    cut = shapely.intersection(lines, inner)
    pieces = sum(len(getattr(c, 'geoms', [c])) for c in cut if not c.is_empty)
    return float(shapely.length(cut).sum()) + pieces * (spacing + 3.2)


def plan_coverage(area: SearchArea, robot: RobotGeometry, config: PlannerConfig | None = None,
                  start=None, region=None) -> CoveragePlan:
    """Plan a coverage path over ``area`` (or over ``region``, e.g. the unswept remainder).

    ``start`` is the robot's (x, y) in the map frame (default: a point of the safe ground nearest
    to the area, else the area's boundary).
    """
    cfg = config or PlannerConfig()
    cfg.validate()
    t0 = time.perf_counter()
    b = _Builder(area, robot, cfg, region)
    if b.q.is_empty:
        raise PlannerError('nothing to plan: the region is empty')
    if start is None:
        if not b.safe.is_empty:
            core = b.safe.buffer(-b.reach)
            target = core if not core.is_empty else b.safe
            start = np.asarray(shapely.shortest_line(target, b.q).coords[0])
        else:
            start = np.asarray(b.q.exterior.coords[0] if isinstance(b.q, Polygon)
                               else _polys(b.q)[0].exterior.coords[0])
    start = np.asarray(start, dtype=float)
    b.pos = start
    b.headland(start)
    if cfg.angle_deg is not None:
        theta = math.radians(cfg.angle_deg)
    else:
        interior = b.interior()
        cands = _angle_candidates(b.q)
        theta = min(cands, key=lambda a: _estimate(interior, a, b.s)) if not interior.is_empty else cands[0]
    b.lanes(theta)
    plan_time = time.perf_counter() - t0
    plan = CoveragePlan(b.segments, {}, swath_width=b.w, spacing=b.s)
    stats = plan_stats(plan, area, robot, b.q, b.checker.result if cfg.verify else None)
    stats.update({'angle_deg': round(math.degrees(theta) % 180.0, 2),
                  'planning_time_s': round(time.perf_counter() - t0, 4),
                  'build_time_s': round(plan_time, 4), 'notes': b.notes,
                  'config': {k: v for k, v in asdict(cfg).items()}})
    plan.stats = stats
    return plan


def plan_stats(plan: CoveragePlan, area: SearchArea, robot: RobotGeometry, region=None, check=None) -> dict:
    """Coverage, length, lower bound, no-go/outside metres, continuity and swept-ground safety."""
    region = area.searchable if region is None else region
    if check is None:
        check = check_plan(plan, robot, area.safe_ground)
    lane_cover = check.lane_sweep.union()
    all_cover = check.all_sweep.union()
    path = LineString(plan.path()) if len(plan.path()) > 1 else LineString()
    inside = shapely.union_all([area.search, area.safe_ground])
    gaps = sum(1 for a, b in zip(plan.segments[:-1], plan.segments[1:])
               if np.hypot(*(a.points[-1] - b.points[0])) > 1e-6)
    length = plan.length
    lower = region.area / plan.spacing if plan.spacing else float('nan')
    return {
        'coverage_fraction': round(region.intersection(lane_cover).area / region.area, 6),
        'coverage_fraction_all': round(region.intersection(all_cover).area / region.area, 6),
        'searchable_area_m2': round(region.area, 2),
        'path_length_m': round(length, 2),
        'lane_length_m': round(sum(s.length for s in plan.segments if s.role == 'lane'), 2),
        'lower_bound_m': round(lower, 2),
        'length_ratio': round(length / lower, 4) if lower else None,
        'lane_count': sum(1 for s in plan.segments if s.role == 'lane'),
        'segment_count': len(plan.segments),
        'no_go_m': round(path.intersection(area.no_go_union).length, 4) if not area.no_go_union.is_empty
        else 0.0,
        'outside_m': round(path.difference(inside.buffer(1e-6)).length, 4),
        'gaps': gaps,
        'safety': check.summary(),
    }
