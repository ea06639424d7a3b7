"""Safety rules, each usable on its own, and :class:`SafetyMonitor` that combines them.

Rules (every stop carries a ``Reason(rule, message)``):
- ``estop``: latched; set by an asserted e-stop, cleared only by ``EstopLatch.reset()`` (the node's
  reset service) and only once the e-stop request is released.
- ``geofence``: the WHEEL contact patches, on the poses the robot passes through until it could
  stop (see *Prediction*), must stay on search area + safe-access ground. The body and the
  detector head may overhang the outer boundary (they are in the air: only wheels touch ground).
- ``no_go``: the body footprint and the detector head (and so the wheels, which are under the
  body) on the same poses may not enter a no-go zone (obstacles).
- ``swept_ground``: the wheel contact patches on the same predicted poses may not roll onto ground
  that is neither swept by the detector nor declared safe. The swept ground is the coverage
  tracker's polygon (refreshed periodically) plus an exact swath of the most recent poses
  (``SweptGroundRule.add_pose``), so the rule never lags behind the detector.
- ``hazard``: no wheel contact patch on the same predicted poses may come closer than
  ``hazard_clearance`` to a known hazard (a confirmed target not classified as clutter). Swept
  ground is not safe ground where the detector found something: the robot stops short of a mine it
  has just found instead of rolling over it (the mission then re-plans around it).
- ``pose_stale`` / ``pose_covariance``: no pose for ``pose_timeout`` s, or its 1-sigma position
  uncertainty above ``max_pose_sigma`` (RTK lost).
- ``input_stale``: a command input that was moving the robot went silent.
- ``sensor_silent``: a sensor the mission needs stopped publishing.
Speed and acceleration limits are enforced where the command is produced, in the mux
(:class:`mine_robot.control.mux.VelocityLimiter`).

Prediction: each moving candidate (the command about to be executed, and the estimated motion) is
rolled forward along the trajectory the base would drive if told to stop now: the candidate
(v, w) held for ``latency`` (command path delay), then v and w each braking to zero at ``decel``
and ``angular_decel`` (the limiter's deceleration), integrated exactly per step. The last pose is
pushed ``min_lookahead`` further along the direction of travel as a margin. So the check covers the
braking distance ``|v| latency + v^2 / (2 decel)`` and braking angle, no more: a robot that
brakes into a stop point near a boundary (the post-turn backup, a lane end) is not stopped early
by a prediction that assumes it keeps its speed, and a fast one is still stopped in time.

Motion rules compare the predicted poses with the current one: a command is stopped when it makes a
violation *worse* (more footprint area outside the allowed ground). A robot that somehow ended up
outside may therefore still be driven back in, but not further out.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
import math

import cv2
import numpy as np
import shapely
from shapely.geometry import Polygon
from shapely.ops import unary_union

AREA_EPS = 1e-4   # m^2; smaller changes of violating area are numerical noise


class SafetyError(ValueError):
    """Invalid safety configuration."""


@dataclass(frozen=True)
class Reason:
    rule: str
    message: str

    def __str__(self) -> str:
        return f'{self.rule}: {self.message}'


@dataclass(frozen=True)
class SafetyConfig:
    decel: float = 0.5                # m/s^2 the base brakes at on a zero command (robot.yaml accel)
    angular_decel: float = 1.5        # rad/s^2
    latency: float = 0.1              # s from the check to the base obeying a stop (2 control periods)
    max_horizon: float = 3.0          # s; cap of the predicted stopping time
    horizon_step: float = 0.05        # s between predicted poses
    min_lookahead: float = 0.01       # m; margin added along the direction of travel
    pose_timeout: float = 0.5         # s
    max_pose_sigma: float = 0.05      # m, 1-sigma (lanes overlap 0.1 m)
    input_timeout: float = 0.5        # s, for an input whose last command moved the robot
    moving_epsilon: float = 1e-3      # m/s or rad/s considered "moving"
    estop_enabled: bool = True
    geofence_enabled: bool = True
    swept_ground_enabled: bool = True
    hazard_enabled: bool = True
    hazard_clearance: float = 0.20    # m from a wheel contact patch to a known hazard (judge: 0.15)
    pose_watchdog_enabled: bool = True
    input_watchdog_enabled: bool = True
    sensor_watchdog_enabled: bool = True

    def __post_init__(self):
        for name in ('decel', 'angular_decel', 'latency', 'max_horizon', 'horizon_step', 'min_lookahead',
                     'pose_timeout', 'max_pose_sigma', 'input_timeout', 'moving_epsilon',
                     'hazard_clearance'):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise SafetyError(f'SafetyConfig.{name} must be > 0, got {value!r}')
        if self.horizon_step > self.max_horizon:
            raise SafetyError('SafetyConfig.horizon_step must not exceed max_horizon')

    def stopping_time(self, v: float, w: float) -> float:
        """Seconds from now until the base stands still after a stop command (capped)."""
        t = 0.0
        if abs(v) > 1e-9:
            t = max(t, self.latency + abs(v) / self.decel)
        if abs(w) > 1e-9:
            t = max(t, self.latency + abs(w) / self.angular_decel)
        return min(t, self.max_horizon)

    def braking_poses(self, x: float, y: float, yaw: float, v: float, w: float) -> np.ndarray:
        """(k, 3) poses along the stop trajectory from (v, w) (see the module docstring)."""
        return braking_poses(x, y, yaw, v, w, latency=self.latency, decel=self.decel,
                             angular_decel=self.angular_decel, step=self.horizon_step,
                             max_horizon=self.max_horizon, lookahead=self.min_lookahead)


# ------------------------------------------------------------------------------ geometry helpers
def predict_poses(x: float, y: float, yaw: float, v: float, w: float, horizon: float, step: float,
                  min_lookahead: float = 0.0) -> np.ndarray:
    """(k, 3) poses along the constant-(v, w) arc at step, 2*step, ... and at horizon (exact unicycle)."""
    ts = np.arange(step, horizon + 1e-9, step)
    if not len(ts) or ts[-1] < horizon - 1e-9:
        ts = np.r_[ts, horizon]
    if min_lookahead > 0 and 0 < abs(v) * horizon < min_lookahead:
        ts = np.r_[ts, min_lookahead / abs(v)]
    yaws = yaw + w * ts
    if abs(w) > 1e-9:
        xs = x + v / w * (np.sin(yaws) - math.sin(yaw))
        ys = y - v / w * (np.cos(yaws) - math.cos(yaw))
    else:
        xs = x + v * ts * math.cos(yaw)
        ys = y + v * ts * math.sin(yaw)
    return np.column_stack([xs, ys, yaws])


def braking_poses(x: float, y: float, yaw: float, v: float, w: float, *, latency: float,
                  decel: float, angular_decel: float, step: float, max_horizon: float,
                  lookahead: float = 0.0) -> np.ndarray:
    """Poses of a base that holds (v, w) for ``latency`` s, then brakes v and w to zero at
    ``decel`` / ``angular_decel`` (each on its own, as the velocity limiter does); sampled every
    ``step`` s up to standstill (at most ``max_horizon``). The final pose is moved ``lookahead``
    further along the direction of travel. Integration is exact per step for constant (v, w) at
    the step's mean speeds."""
    t_v = latency + abs(v) / decel if abs(v) > 1e-9 else 0.0
    t_w = latency + abs(w) / angular_decel if abs(w) > 1e-9 else 0.0
    horizon = min(max(t_v, t_w), max_horizon)
    if horizon <= 0.0:
        return np.zeros((0, 3))
    n = max(1, int(math.ceil(horizon / step - 1e-9)))
    # the speed profiles are piecewise linear with kinks at the latency and the two stop times:
    # with those on the grid the per-step mean speeds (trapezoid) integrate them exactly
    kinks = [k for k in (latency, t_v, t_w) if 0.0 < k < horizon]
    ts = np.unique(np.r_[np.linspace(0.0, horizon, n + 1), kinks])
    n = len(ts) - 1

    def speed(t, v0, a):
        if abs(v0) <= 1e-9:
            return np.zeros_like(t)
        left = np.maximum(abs(v0) - a * np.maximum(t - latency, 0.0), 0.0)
        return math.copysign(1.0, v0) * left

    vs, ws = speed(ts, v, decel), speed(ts, w, angular_decel)
    out = np.empty((n, 3))
    px, py, pyaw = float(x), float(y), float(yaw)
    for i in range(n):
        dt = ts[i + 1] - ts[i]
        vm, wm = 0.5 * (vs[i] + vs[i + 1]), 0.5 * (ws[i] + ws[i + 1])
        if abs(wm) > 1e-9:
            nyaw = pyaw + wm * dt
            px += vm / wm * (math.sin(nyaw) - math.sin(pyaw))
            py -= vm / wm * (math.cos(nyaw) - math.cos(pyaw))
            pyaw = nyaw
        else:
            px += vm * dt * math.cos(pyaw)
            py += vm * dt * math.sin(pyaw)
        out[i] = (px, py, pyaw)
    if lookahead > 0.0 and abs(v) > 1e-9:
        d = math.copysign(lookahead, v)
        out[-1, 0] += d * math.cos(out[-1, 2])
        out[-1, 1] += d * math.sin(out[-1, 2])
    return out


def place(local: np.ndarray, pose) -> np.ndarray:
    """Transform (n, 2) base_link points to map at pose (x, y, yaw)."""
    c, s = math.cos(pose[2]), math.sin(pose[2])
    return local @ np.array([[c, s], [-s, c]]) + np.array([pose[0], pose[1]])


def footprint_polygon(footprint: np.ndarray, pose) -> Polygon:
    return Polygon(place(footprint, pose))


def wheels_geometry(patches: np.ndarray, pose):
    return shapely.MultiPolygon([Polygon(place(p, pose)) for p in patches])


# ------------------------------------------------------------------------------ rules
class EstopLatch:
    """Latched e-stop. ``request(True)`` latches; ``reset()`` clears only when released."""

    def __init__(self):
        self.latched = False
        self.asserted = False
        self.reset_count = 0
        self.reason = ''

    def request(self, asserted: bool, source: str = 'estop topic') -> None:
        self.asserted = bool(asserted)
        if asserted:
            self.latched = True
            self.reason = f'e-stop asserted ({source})'

    def reset(self) -> tuple[bool, str]:
        if self.asserted:
            return False, 'e-stop is still asserted: release it before resetting'
        if not self.latched:
            return True, 'e-stop was not latched'
        self.latched = False
        self.reset_count += 1
        self.reason = ''
        return True, 'e-stop reset'


class Geofence:
    """Wheels inside search area + safe ground (``outside``); body/head out of no-go (``in_no_go``).

    The polygons answer single queries exactly; the monitor's per-period checks use rasters of
    the same polygons (``allowed_grid``, ``no_go_grid``, cell ``cell`` m; see :mod:`swept_grid`).
    """

    def __init__(self, search, safe: Iterable = (), no_go: Iterable = (), cell: float = 0.01):
        from mine_robot.control.swept_grid import SweptGrid, cell_for
        self.allowed = unary_union([search, *safe])
        if self.allowed.is_empty:
            raise SafetyError('geofence: the allowed area (search + safe) is empty')
        self.no_go = unary_union(list(no_go)) if no_go else Polygon()
        shapely.prepare(self.allowed)
        if not self.no_go.is_empty:
            shapely.prepare(self.no_go)
        self.cell = cell_for(self.allowed.bounds, cell)
        self.allowed_grid = SweptGrid(self.cell)
        self.allowed_grid.fill_polygon(self.allowed)
        self.no_go_grid = SweptGrid(self.cell)
        self.no_go_grid._ensure(*self.allowed.bounds)
        if not self.no_go.is_empty:
            self.no_go_grid.fill_polygon(self.no_go)

    @classmethod
    def from_area(cls, area) -> Geofence:
        """From ``mine_robot.planning.area.SearchArea`` (search, safe, no_go polygons)."""
        return cls(area.search, area.safe, area.no_go)

    def outside(self, poly) -> float:
        """m^2 of ``poly`` (the wheel patches) off the search + safe ground."""
        return 0.0 if self.allowed.contains(poly) else float(poly.difference(self.allowed).area)

    def in_no_go(self, poly) -> float:
        """m^2 of ``poly`` (body footprint + detector head) inside a no-go zone."""
        if self.no_go.is_empty or not self.no_go.intersects(poly):
            return 0.0
        return float(poly.intersection(self.no_go).area)


class SweptGroundRule:
    """Wheel patches must stay on swept or safe ground (a raster, :mod:`swept_grid`).

    ``add_pose`` fills the detector ``outline`` swept since the previous pose (so ground swept a
    moment ago counts at once); ``set_swept`` adds a polygon (a resumed mission's coverage, the
    tracker's polygon); safe ground is filled once. Swept ground only grows.

    ``unswept(pose)`` is the m^2 of the wheel patches at ``pose`` on cells that are neither. Unswept
    ground under a wheel narrower than ``2 * tolerance`` is ignored: unions of swaths leave
    pinholes and slivers a few millimetres wide (one 4 mm x 3 cm hole held the robot for good),
    rasterisation is exact only to half a cell, and a coil senses a little past its rim, so a strip
    that narrow cannot hide a mine under the wheel. Real unswept ground still trips the rule once
    the predicted overlap is ``2 * tolerance`` deep.
    """

    def __init__(self, patches: np.ndarray, safe: Iterable = (), outline: np.ndarray | None = None,
                 max_gap: float = 2.0, tolerance: float = 0.01, cell: float = 0.01, bounds=None):
        from mine_robot.control.swept_grid import SweptGrid, cell_for
        if not 0.0 <= tolerance < 0.05:
            raise SafetyError(f'swept-ground tolerance must be in [0, 0.05) m, got {tolerance}')
        if bounds is not None:           # a big field gets a coarser grid (and tolerance)
            cell = cell_for(bounds, cell)
            tolerance = max(tolerance, cell) if tolerance else 0.0
        if tolerance and cell > tolerance:
            raise SafetyError(f'swept-ground grid cell ({cell} m) must not exceed the tolerance '
                              f'({tolerance} m)')
        self.patches = np.asarray(patches, dtype=float)
        self.outline = None if outline is None else np.asarray(outline, dtype=float)
        self.tolerance = float(tolerance)
        self.grid = SweptGrid(cell)
        self._kernel = np.ones((max(1, round(2 * tolerance / cell)),) * 2, np.uint8)
        self._max_gap = float(max_gap)
        self._last: tuple[float, float, float] | None = None
        for poly in safe or ():
            self.grid.fill_polygon(poly)

    def set_swept(self, swept) -> None:
        if swept is not None and not swept.is_empty:
            self.grid.fill_polygon(swept)

    def add_pose(self, x: float, y: float, yaw: float) -> None:
        if self.outline is None:
            raise SafetyError('SweptGroundRule.add_pose needs the detector outline')
        from mine_robot.planning.coverage import densify
        pose = (float(x), float(y), float(yaw))
        if self._last is None:
            self.grid.fill_convex(place(self.outline, pose))
        else:
            for run in densify(np.array([self._last, pose]), max_step=0.05, max_dyaw=0.05,
                               max_gap=self._max_gap):
                if len(run) == 1:
                    self.grid.fill_convex(place(self.outline, run[0]))
                for a, b in zip(run[:-1], run[1:]):
                    pts = np.vstack([place(self.outline, a), place(self.outline, b)])
                    self.grid.fill_convex(cv2.convexHull(pts.astype(np.float32))[:, 0, :])
        self._last = pose

    def _thin(self, bad: np.ndarray) -> bool:
        """True when the not-ok cells are narrower than 2 x tolerance everywhere."""
        return self._kernel.shape[0] > 1 and not cv2.erode(bad.astype(np.uint8), self._kernel).any()

    def change(self, now_polys, path_polys) -> tuple[float, float]:
        """(m^2 unswept under the wheels now, m^2 of *new* unswept ground the wheels would roll
        over along ``path_polys``); slivers under the tolerance count as 0. Polygons as
        (N, K, 2) arrays (see ``SweptGrid.window``)."""
        (now, path), ok = self.grid.window([now_polys, path_polys])
        bad_now = now & ~ok
        new = path & ~ok & ~bad_now
        a = self.grid.cell ** 2
        un0 = 0.0 if not bad_now.any() or self._thin(bad_now) else float(bad_now.sum()) * a
        worst = 0.0 if not new.any() or self._thin(new) else float(new.sum()) * a
        return un0, worst

    def unswept(self, pose) -> float:
        bad = self.grid.not_ok([place(p, pose) for p in self.patches])
        if not bad.any():
            return 0.0
        if self._kernel.shape[0] > 1 and not cv2.erode(bad.astype(np.uint8), self._kernel).any():
            return 0.0
        return float(bad.sum()) * self.grid.cell ** 2


class HazardRule:
    """Known hazards as points; distances from wheel contact patches to the nearest of them."""

    def __init__(self, near: float = 3.0):
        self.near = near                  # m; hazards farther than this from the robot are skipped
        self._points: dict[str, tuple[float, float]] = {}
        self._xy = np.zeros((0, 2))
        self._ids: list[str] = []

    def __len__(self) -> int:
        return len(self._points)

    def set(self, key: str, x: float, y: float) -> bool:
        """Add or move hazard ``key``; non-finite positions are ignored. True when it changed."""
        x, y = float(x), float(y)
        if not (math.isfinite(x) and math.isfinite(y)) or self._points.get(key) == (x, y):
            return False
        self._points[key] = (x, y)
        self._reindex()
        return True

    def _reindex(self) -> None:
        self._ids = list(self._points)
        self._xy = np.array([self._points[k] for k in self._ids], dtype=float).reshape(-1, 2)

    def remove(self, key: str) -> bool:
        """Forget hazard ``key`` (e.g. fusion now calls it clutter). True when it was known."""
        if self._points.pop(key, None) is None:
            return False
        self._reindex()
        return True

    def from_targets(self, targets: list[dict]) -> list[str]:
        """Fusion's target list (``targets/json``): every target not classified clutter is a
        hazard; one now called clutter is forgotten (fusion follows the evidence). Returns the
        keys of hazards added or moved."""
        changed = []
        for t in targets:
            key = f"target {t['id']}"
            if t.get('classification') == 'clutter':
                self.remove(key)
            elif self.set(key, t['x'], t['y']):
                changed.append(key)
        return changed

    def from_mission(self, hazards) -> list[str]:
        """The mission's recorded hazards (``[[x, y], ...]`` in ``mission/status``): they survive a
        restart of fusion or of the monitor. The list is the mission's current one: recorded
        hazards no longer in it are forgotten. Returns the keys added or moved."""
        recorded = {f'recorded at {float(x):.2f},{float(y):.2f}': (x, y) for x, y in hazards}
        for key in [k for k in self._points if k.startswith('recorded at ') and k not in recorded]:
            self.remove(key)
        return [key for key, (x, y) in recorded.items() if self.set(key, x, y)]

    def nearest(self, polys: np.ndarray, centre) -> tuple[float, str | None]:
        """Smallest distance from any of the (m, k, 2) polygons to a hazard near ``centre``, and
        that hazard's key; (inf, None) without one."""
        if not len(self._xy) or not len(polys):
            return math.inf, None
        near = np.hypot(self._xy[:, 0] - centre[0], self._xy[:, 1] - centre[1]) <= self.near
        if not near.any():
            return math.inf, None
        idx = np.flatnonzero(near)
        d = shapely.distance(shapely.polygons(polys)[None, :], shapely.points(self._xy[idx])[:, None])
        i, _ = np.unravel_index(int(np.argmin(d)), d.shape)
        return float(d.min()), self._ids[int(idx[i])]


class Watchdog:
    """Named channels with timeouts; ``stale(t)`` lists the silent ones."""

    def __init__(self):
        self._timeout: dict[str, float] = {}
        self._last: dict[str, float | None] = {}

    def add(self, name: str, timeout: float) -> None:
        if not (math.isfinite(timeout) and timeout > 0):
            raise SafetyError(f'watchdog {name!r}: timeout must be > 0, got {timeout}')
        self._timeout[name] = float(timeout)
        self._last.setdefault(name, None)

    def feed(self, name: str, t: float) -> None:
        self._last[name] = float(t)

    def stale(self, t: float) -> list[tuple[str, float | None]]:
        """[(name, age or None if never heard)] for channels older than their timeout."""
        out = []
        for name, timeout in self._timeout.items():
            last = self._last[name]
            if last is None:
                out.append((name, None))
            elif t - last > timeout:
                out.append((name, t - last))
        return out


# ------------------------------------------------------------------------------ monitor
@dataclass(frozen=True)
class PoseSample:
    t: float
    x: float
    y: float
    yaw: float
    v: float = 0.0
    w: float = 0.0
    sigma: float = 0.0


@dataclass(frozen=True)
class SafetyStatus:
    stop: bool
    estop: bool
    reasons: tuple[Reason, ...]
    warnings: tuple[Reason, ...] = ()
    values: dict = field(default_factory=dict)

    @property
    def message(self) -> str:
        if self.reasons:
            return 'STOP: ' + '; '.join(str(r) for r in self.reasons)
        if self.warnings:
            return 'ok with warnings: ' + '; '.join(str(r) for r in self.warnings)
        return 'ok'


def _worst_increase(grid, polys, per_pose: int, now_area: float, cell_area: float,
                    outside: bool) -> float:
    """Largest per-pose overlap (cells of ``per_pose`` polygons per pose off the grid when
    ``outside``, on it otherwise) minus ``now_area``: the old "no worse at any pose" test, used
    only while the robot already violates a rule, so it can be driven back out."""
    if polys is None or not len(polys):
        return 0.0
    worst = -math.inf
    for i in range(0, len(polys), per_pose):
        (mask,), values = grid.window([polys[i:i + per_pose]])
        hit = mask & ~values if outside else mask & values
        worst = max(worst, float(hit.sum()) * cell_area - now_area)
    return worst


class SafetyMonitor:
    """Evaluates every enabled rule against the latest pose, command and channel times."""

    def __init__(self, config: SafetyConfig, robot, geofence: Geofence | None = None,
                 swept: SweptGroundRule | None = None):
        if config.geofence_enabled and geofence is None:
            raise SafetyError('geofence rule enabled but no search area was given')
        if config.swept_ground_enabled and swept is None:
            raise SafetyError('swept-ground rule enabled but no coverage/safe ground was given')
        self.config = config
        from mine_robot.planning.coverage import detector_outline
        self.footprint = robot.footprint()
        self.head = detector_outline(robot)
        self.patches = robot.wheel_patches()
        self.geofence = geofence
        self.swept = swept
        self.hazards = HazardRule()
        self.estop = EstopLatch()
        self.pose: PoseSample | None = None
        self.sensors = Watchdog()
        self._inputs: dict[str, tuple[float, float, float]] = {}   # name -> (v, w, t)
        self.command = (0.0, 0.0)
        self._area_cache = None        # (inputs, (reasons, warnings, values), wheels) of _area_rules

    # ---- inputs
    def add_sensor(self, name: str, timeout: float) -> None:
        self.sensors.add(name, timeout)

    def sensor_seen(self, name: str, t: float) -> None:
        self.sensors.feed(name, t)

    def set_pose(self, pose: PoseSample) -> None:
        self.pose = pose

    def set_input(self, name: str, v: float, w: float, t: float) -> None:
        """A command seen on a mux input (used for the input watchdog)."""
        self._inputs[name] = (float(v), float(w), float(t))

    def set_command(self, v: float, w: float) -> None:
        """The command about to be executed (what the mux would select without stops)."""
        self.command = (float(v), float(w))

    def command_differs(self, v: float, w: float, dv: float = 0.05, dw: float = 0.1) -> bool:
        """Whether (v, w) differs from the command of the last evaluation enough to evaluate again
        at once: it starts or stops motion, reverses a direction, or changes speed by more than
        ``dv`` m/s or turn rate by more than ``dw`` rad/s. A follower's small corrections at 20 Hz
        wait for the next pose (25 Hz) or heartbeat instead: each evaluation rasterises the
        braking trajectories, and evaluating on every command doubled the monitor's CPU."""
        eps = self.config.moving_epsilon
        v0, w0 = self.command
        v, w = float(v), float(w)
        if (abs(v) > eps or abs(w) > eps) != (abs(v0) > eps or abs(w0) > eps):
            return True
        return v * v0 < 0.0 or w * w0 < 0.0 or abs(v - v0) > dv or abs(w - w0) > dw

    # ---- evaluation
    def _motion_rules(self, reasons: list, warnings: list, values: dict) -> None:
        """Geofence, no-go and swept-ground rules over the braking trajectories (rasters), then
        the hazard rule.

        Every cell a wheel patch (or the body / detector head) would cover anywhere along the
        trajectory counts, not only at the stopping pose; cells already covered at the current
        pose are not *new*, so a robot that ended up outside may drive back in but not further out.
        The raster rules' answer is reused while pose, command, configuration and swept ground
        are unchanged (the heartbeat and repeated commands between two poses).
        """
        c, p = self.config, self.pose
        # the config is frozen and the geofence/swept rule compared by identity: no per-call repr
        key = (p.x, p.y, p.yaw, p.v, p.w, self.command, c, self.geofence, self.swept,
               None if self.swept is None else self.swept.grid.revision)
        if self._area_cache is None or self._area_cache[0] != key:
            found: tuple[list, list, dict] = ([], [], {})
            wheels = self._area_rules(*found)
            self._area_cache = (key, found, wheels)
        _, (cached_reasons, cached_warnings, cached_values), (wheels_now, wheels_path, within) = \
            self._area_cache
        reasons.extend(cached_reasons)
        warnings.extend(cached_warnings)
        values.update(cached_values)
        if c.hazard_enabled and len(self.hazards):
            d_now, _ = self.hazards.nearest(wheels_now, (p.x, p.y, p.yaw))
            d_path, hazard_id = self.hazards.nearest(wheels_path, (p.x, p.y, p.yaw))
            if math.isfinite(d_now):
                values['hazard_wheel_distance_m'] = round(d_now, 3)
            # closer than the clearance AND closer than now: a wheel may back away from a hazard
            if d_path < c.hazard_clearance and d_path < d_now - 1e-3:
                reasons.append(Reason('hazard', f'a wheel would come within {d_path:.2f} m of known '
                                      f'hazard {hazard_id} (clearance {c.hazard_clearance:g} m) {within}'))
            if d_now < c.hazard_clearance:
                warnings.append(Reason('hazard', f'a wheel is {d_now:.2f} m from a known hazard'))

    def _area_rules(self, reasons: list, warnings: list, values: dict):
        """Geofence, no-go and swept-ground rules; returns (wheels now, wheels along the braking
        trajectories, the horizon phrase) for the hazard rule."""
        c, p = self.config, self.pose
        now = (p.x, p.y, p.yaw)
        candidates = [self.command]
        if abs(p.v) > c.moving_epsilon or abs(p.w) > c.moving_epsilon:
            candidates.append((p.v, p.w))
        poses, horizon = [], 0.0
        for v, w in candidates:
            if abs(v) > c.moving_epsilon or abs(w) > c.moving_epsilon:
                horizon = max(horizon, c.stopping_time(v, w))
                poses.append(c.braking_poses(*now, v, w))
        poses = np.vstack(poses) if poses else np.zeros((0, 3))
        values['prediction_horizon_s'] = round(horizon, 3)
        within = f'before it could stop ({horizon:.2f} s)'
        from mine_robot.planning.coverage import transform
        n_patch, k_patch = self.patches.shape[:2]
        wheels_now = transform(self.patches.reshape(-1, 2), np.array([now]))[0].reshape(n_patch, k_patch, 2)
        wheels_path = transform(self.patches.reshape(-1, 2), poses).reshape(-1, k_patch, 2) \
            if len(poses) else wheels_now[:0]
        if self.geofence is not None and c.geofence_enabled:
            g = self.geofence
            a = g.cell ** 2
            (w_now, w_path), allowed = g.allowed_grid.window([wheels_now, wheels_path])
            out_now = w_now & ~allowed
            out0 = float(out_now.sum()) * a
            worst_out = float((w_path & ~allowed & ~out_now).sum()) * a
            if out0 > AREA_EPS and worst_out > AREA_EPS:      # already out: may it get back in?
                worst_out = _worst_increase(g.allowed_grid, wheels_path, len(self.patches), out0, a,
                                            outside=True)
            nogo0 = worst_nogo = 0.0
            if not g.no_go.is_empty:
                all_poses = np.vstack([np.array([now]), poses])
                body = [transform(self.footprint, all_poses), transform(self.head, all_poses)]
                (fp_now, hd_now, fp_path, hd_path), zone = g.no_go_grid.window(
                    [body[0][:1], body[1][:1], body[0][1:], body[1][1:]])
                in_now = (fp_now | hd_now) & zone
                nogo0 = float(in_now.sum()) * a
                worst_nogo = float(((fp_path | hd_path) & zone & ~in_now).sum()) * a
                if nogo0 > AREA_EPS and worst_nogo > AREA_EPS:
                    # already inside (a teleop slip, a late zone): a move that reduces the overlap
                    # at every step (backing out) is allowed although it touches new cells
                    worst_nogo = max(
                        _worst_increase(g.no_go_grid, body[0][1:], 1, nogo0, a, outside=False),
                        _worst_increase(g.no_go_grid, body[1][1:], 1, nogo0, a, outside=False))
            values.update(wheels_outside_m2=round(out0, 4), body_in_no_go_m2=round(nogo0, 4))
            if worst_out > AREA_EPS:
                reasons.append(Reason('geofence', f'command would take {worst_out:.4f} m^2 of wheel '
                                      f'contact outside the search/safe area {within}'))
            if worst_nogo > AREA_EPS:
                reasons.append(Reason('no_go', f'command would put {worst_nogo:.3f} m^2 of the body or '
                                      f'detector head into a no-go zone {within}'))
            if out0 > AREA_EPS:
                warnings.append(Reason('geofence', f'wheels are {out0:.4f} m^2 outside the area'))
            if nogo0 > AREA_EPS:
                warnings.append(Reason('no_go', f'body/detector is {nogo0:.3f} m^2 inside a no-go zone'))
        if self.swept is not None and c.swept_ground_enabled:
            un0, worst = self.swept.change(wheels_now, wheels_path)
            if un0 > AREA_EPS and worst > AREA_EPS:   # already on unswept ground: may it get off?
                worst = max((self.swept.unswept(pose) for pose in poses), default=0.0) - un0
            values['wheels_on_unswept_m2'] = round(un0, 4)
            if worst > AREA_EPS:
                reasons.append(Reason('swept_ground', f'a wheel would roll onto {worst:.4f} m^2 of '
                                      f'unswept ground {within}'))
            if un0 > AREA_EPS:
                warnings.append(Reason('swept_ground', f'wheels are on {un0:.4f} m^2 of unswept ground'))

        return wheels_now, wheels_path, within

    def body_geometry(self, pose):
        """Body footprint and detector head at ``pose`` (what must stay out of no-go zones)."""
        return shapely.MultiPolygon([Polygon(place(self.footprint, pose)), Polygon(place(self.head, pose))])

    def evaluate(self, t: float) -> SafetyStatus:
        c = self.config
        reasons: list[Reason] = []
        warnings: list[Reason] = []
        values: dict = {}
        if c.estop_enabled and self.estop.latched:
            reasons.append(Reason('estop', self.estop.reason or 'e-stop latched'))
        pose_ok = self.pose is not None and t - self.pose.t <= c.pose_timeout
        if c.pose_watchdog_enabled:
            if self.pose is None:
                reasons.append(Reason('pose_stale', 'no pose received yet'))
            elif not pose_ok:
                reasons.append(Reason('pose_stale', f'no pose for {t - self.pose.t:.2f} s '
                                      f'(limit {c.pose_timeout:g} s)'))
            elif self.pose.sigma > c.max_pose_sigma:
                reasons.append(Reason('pose_covariance', f'position sigma {self.pose.sigma:.3f} m '
                                      f'exceeds {c.max_pose_sigma:g} m (RTK lost?)'))
        if self.pose is not None:
            values['pose_sigma_m'] = round(self.pose.sigma, 4)
            self._motion_rules(reasons, warnings, values)
        if c.input_watchdog_enabled:
            for name, (v, w, t_in) in sorted(self._inputs.items()):
                moving = abs(v) > c.moving_epsilon or abs(w) > c.moving_epsilon
                if moving and t - t_in > c.input_timeout:
                    reasons.append(Reason('input_stale', f'{name} went silent {t - t_in:.2f} s ago '
                                          f'while commanding motion'))
        if c.sensor_watchdog_enabled:
            for name, age in self.sensors.stale(t):
                what = 'never heard' if age is None else f'silent for {age:.2f} s'
                reasons.append(Reason('sensor_silent', f'{name} {what}'))
        values['estop_latched'] = self.estop.latched
        values['estop_reset_count'] = self.estop.reset_count
        return SafetyStatus(bool(reasons), self.estop.latched, tuple(reasons), tuple(warnings), values)
