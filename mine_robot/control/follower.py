"""Path follower for a skid-steer robot: Stanley-class tracking on straight legs, point turns at
corners, a speed profile per segment role, pause/resume at a path index and a progress report.

The path is the concatenation of the plan's segments (``lane`` and ``transit``, in order). It is
split into *legs* at every vertex where the heading turns by more than ``corner_angle``; a leg is
driven with

    w = heading_gain * wrap(theta_path - f * atan2(cross_track_gain * e, v + softening_speed) - yaw)

(``e`` = signed cross-track error, left positive; ``f = min(1, |v| / softening_speed)`` fades the
correction in with speed, and is 0 on reverse legs) and ends with a stop on the corner, where the
robot turns in place to the next leg's heading. Speed follows the role of the segment being driven
(``sweep_speed`` on lanes, ``transit_speed`` on transits), ramps with ``linear_accel`` and brakes
to stop exactly on corners, pause points and the end (``_braking_speed``: constant deceleration,
creeping the last centimetres).

Progress is tracked monotonically along the current leg only (a search window around the last
projection), so the robot never "jumps" to a neighbouring parallel lane that is closer.

Reverse legs (plan segments with ``direction: reverse``, e.g. the planner's post-turn backup) are
driven backwards: the robot faces away from the direction of travel, ``v`` is negative and the same
Stanley law steers the direction of travel (``yaw + pi``); they run at ``reverse_speed``. A leg
boundary is placed wherever the direction changes, so the robot stops, and the point turn before a
backup turns to the heading the robot will have while backing up.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
import math

import numpy as np

from mine_robot.geo import wrap_angle


class FollowerError(ValueError):
    """An empty/degenerate path or an invalid follower configuration."""


@dataclass(frozen=True)
class FollowerConfig:
    sweep_speed: float = 0.3          # m/s on lanes
    transit_speed: float = 0.4        # m/s on transits
    reverse_speed: float = 0.25       # m/s on reverse (backup) legs
    max_angular: float = 0.9          # rad/s
    linear_accel: float = 0.4         # m/s^2
    linear_decel: float = 0.4         # m/s^2 (braking into corners and pause points)
    # s; the last centimetres before a stop point are approached at v ~ d / final_approach_time
    # (see _braking_speed), so the safety monitor's braking prediction (latency + lookahead) never
    # reaches more than ~5 mm past the stop point (which the planner may put 5 cm from a boundary)
    final_approach_time: float = 0.3
    angular_accel: float = 1.2        # rad/s^2
    heading_gain: float = 2.5         # 1/s
    # Stanley gain (1/s) and softening speed (m/s). Gentle on purpose: the detector head is 0.78 m
    # ahead and 1.1 m wide, so every degree of heading swing moves its outer coil ~1.4 cm sideways
    # and dents the swept band the wheels rely on (gain 2 / softening 0.1 swung 14 deg on a 3.5 cm
    # offset). At 0.3 m/s an offset still halves every ~1.4 s.
    cross_track_gain: float = 1.0
    softening_speed: float = 0.3
    preview_distance: float = 0.2     # m; path heading taken this far ahead (curvature feed-forward)
    reverse_track_min_length: float = 0.5   # m; shorter reverse legs hold heading, no cross-track
    corner_angle: float = 0.35        # rad; sharper vertices are point turns
    turn_tolerance: float = 0.02      # rad; point turn done
    turn_gain: float = 2.0            # 1/s
    min_turn_rate: float = 0.05       # rad/s, so a point turn always finishes
    align_angle: float = 0.5          # rad; heading error above which the robot stops and turns
    goal_tolerance: float = 0.02      # m; leg end reached
    # m; a robot that ran further than this past a corner (a late command on a starved computer
    # left one 0.11 m past a corner 0.5 m from the boundary: its point turn there would have put
    # a wheel outside, the safety monitor held it for good) first drives back to the corner along
    # the ground it just covered, then turns
    overshoot_tolerance: float = 0.04
    search_window: float = 0.6        # m around the last progress for the projection
    max_cross_track: float = 0.5      # m; beyond this the follower stops with a fault

    def __post_init__(self):
        for name, value in self.__dict__.items():
            if not (math.isfinite(value) and value > 0):
                raise FollowerError(f'FollowerConfig.{name} must be > 0, got {value!r}')


@dataclass(frozen=True)
class Progress:
    index: int                 # path vertex index the robot has passed (edge start)
    distance: float            # m along the whole path
    cross_track: float         # m, signed, left of the path positive
    heading_error: float       # rad
    segment: int               # index of the plan segment being driven
    role: str                  # 'lane' | 'transit'
    direction: str             # 'forward' | 'reverse'
    leg: int
    state: str                 # 'align' | 'track' | 'turn' | 'paused' | 'done' | 'fault'
    remaining: float           # m to the end of the path

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Command:
    v: float
    w: float
    progress: Progress
    fault: str = ''


class FollowPath:
    """A polyline with a role and a segment number per edge, split into legs at corners."""

    def __init__(self, points: np.ndarray, roles: Sequence[str], segments: Sequence[int],
                 corner_angle: float = 0.35, directions: Sequence[str] | None = None):
        pts = np.asarray(points, dtype=float)
        if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) < 2:
            raise FollowerError(f'a path needs at least 2 points of (x, y), got shape {pts.shape}')
        if not np.all(np.isfinite(pts)):
            raise FollowerError('path has non-finite coordinates')
        directions = ['forward'] * (len(pts) - 1) if directions is None else list(directions)
        if len(roles) != len(pts) - 1 or len(segments) != len(pts) - 1 or len(directions) != len(pts) - 1:
            raise FollowerError('roles/segments/directions must give one value per path edge')
        if any(d not in ('forward', 'reverse') for d in directions):
            raise FollowerError(f"directions must be 'forward' or 'reverse', got {sorted(set(directions))}")
        keep = np.r_[True, np.linalg.norm(np.diff(pts, axis=0), axis=1) > 1e-6]
        edge_keep = keep[1:]
        self.points = pts[keep]
        if len(self.points) < 2:
            raise FollowerError('path has zero length')
        self.roles = [r for r, k in zip(roles, edge_keep) if k]
        self.segments = [int(s) for s, k in zip(segments, edge_keep) if k]
        self.directions = [d for d, k in zip(directions, edge_keep) if k]
        self.reverse = np.array([d == 'reverse' for d in self.directions])
        self.swept_lanes = False     # lanes over swept ground (a mark visit): transit speed
        # original (input) vertex index of each kept vertex, for progress in the caller's indices
        self.source_index = np.flatnonzero(keep)
        d = np.diff(self.points, axis=0)
        self.edge_len = np.linalg.norm(d, axis=1)
        self.edge_dir = d / self.edge_len[:, None]
        self.edge_heading = np.arctan2(d[:, 1], d[:, 0])
        self.cum = np.r_[0.0, np.cumsum(self.edge_len)]
        self.length = float(self.cum[-1])
        # heading of the robot body on each edge (opposite to travel when reversing)
        self.body_heading = wrap_angle(self.edge_heading + np.where(self.reverse, math.pi, 0.0))
        turns = np.abs(wrap_angle(np.diff(self.body_heading)))
        flips = np.diff(self.reverse.astype(int)) != 0
        corners = np.flatnonzero((turns > corner_angle) | flips) + 1   # vertex indices
        bounds = [0, *corners.tolist(), len(self.points) - 1]
        self.legs = [(bounds[i], bounds[i + 1]) for i in range(len(bounds) - 1)]  # vertex ranges

    @classmethod
    def from_segments(cls, segments: Sequence[tuple], corner_angle: float = 0.35) -> FollowPath:
        """Concatenate ``(role, (n, 2) points[, direction])`` segments (consecutive duplicates are
        merged); ``direction`` is ``'forward'`` (default) or ``'reverse'``."""
        pts, roles, segs, dirs = [], [], [], []
        for k, item in enumerate(segments):
            role, points = item[0], item[1]
            direction = item[2] if len(item) > 2 else 'forward'
            p = np.asarray(points, dtype=float).reshape(-1, 2)
            if role not in ('lane', 'transit'):
                raise FollowerError(f"segment {k}: role must be 'lane' or 'transit', got {role!r}")
            if direction not in ('forward', 'reverse'):
                raise FollowerError(f"segment {k}: direction must be 'forward' or 'reverse', "
                                    f'got {direction!r}')
            if len(p) == 0:
                continue
            start = 0 if not pts else 1 if np.allclose(pts[-1], p[0]) else 0
            if pts and start == 0:
                roles.append('transit')  # connect disjoint segments with a transit edge
                segs.append(k)
                dirs.append('forward')
            for q in p[start:]:
                if pts:
                    roles.append(role)
                    segs.append(k)
                    dirs.append(direction)
                pts.append(q)
        if len(pts) < 2:
            raise FollowerError('the plan has fewer than 2 path points')
        return cls(np.array(pts), roles, segs, corner_angle, dirs)

    @classmethod
    def from_plan(cls, plan, corner_angle: float = 0.35) -> FollowPath:
        """From a ``mine_robot.planning.plan.CoveragePlan`` (segments with role, points and
        direction)."""
        path = cls.from_segments([(s.role, s.points, getattr(s, 'direction', 'forward'))
                                  for s in plan.segments], corner_angle)
        path.swept_lanes = bool(getattr(plan, 'swept_lanes', False))
        return path

    def edge_at(self, s: float) -> int:
        return int(np.clip(np.searchsorted(self.cum, s, side='right') - 1, 0, len(self.edge_len) - 1))

    def index_of_distance(self, s: float) -> int:
        return int(self.source_index[self.edge_at(s)])

    def distance_of_index(self, index: int) -> float:
        """Distance along the path of input vertex ``index``."""
        if index < 0 or index > self.source_index[-1]:
            raise FollowerError(f'path index {index} is outside 0..{int(self.source_index[-1])}')
        kept = int(np.searchsorted(self.source_index, index, side='right') - 1)
        return float(self.cum[kept])

    def project(self, x: float, y: float, v0: int, v1: int, s_lo: float, s_hi: float):
        """Closest point on vertices v0..v1 within [s_lo, s_hi]: (s, cross_track, edge)."""
        best = (math.inf, 0.0, 0.0, v0)
        p = np.array([x, y])
        for e in range(v0, v1):
            if self.cum[e + 1] < s_lo or self.cum[e] > s_hi:
                continue
            rel = p - self.points[e]
            along = float(np.clip(rel @ self.edge_dir[e], max(0.0, s_lo - self.cum[e]),
                                  min(self.edge_len[e], s_hi - self.cum[e])))
            foot = self.points[e] + along * self.edge_dir[e]
            dist = float(np.hypot(*(p - foot)))
            if dist < best[0]:
                cross = float(self.edge_dir[e][0] * rel[1] - self.edge_dir[e][1] * rel[0])
                best = (dist, self.cum[e] + along, cross, e)
        return best[1], best[2], best[3]


class PathFollower:
    """Stateful controller: ``step(t, x, y, yaw)`` -> :class:`Command` every control period."""

    def __init__(self, path: FollowPath, config: FollowerConfig | None = None):
        self.path = path
        self.config = config or FollowerConfig()
        self.leg = 0
        self.s = 0.0
        self.state = 'align'
        self.pause_distance: float | None = None
        self.paused = False
        self._v = 0.0
        self._w = 0.0
        self._t: float | None = None
        self.fault = ''
        self._reacquire = False
        self._return_to: tuple | None = None    # (corner, direction, heading, reverse) to go back to

    # ---------------------------------------------------------------- pause / resume
    def pause(self) -> None:
        """Stop as soon as braking allows and hold until ``resume()``."""
        self.paused = True

    def pause_at(self, index: int) -> None:
        """Brake to a stop exactly on input vertex ``index`` and hold until ``resume()``."""
        self.pause_distance = self.path.distance_of_index(index)

    def resume(self) -> None:
        """Continue after a pause. While paused something else may have moved the robot (the
        marking manoeuvre backs up along its heading, an operator drives it): the first step after
        resuming re-acquires the current leg from the pose, as :meth:`reset_fault` does."""
        self.paused = False
        self.pause_distance = None
        if self.state == 'paused':
            self.state = 'align'
            self._reacquire = True

    def reset_fault(self, x: float, y: float, yaw: float | None = None) -> bool:
        """Leave the ``fault`` state: re-acquire the path from pose (x, y) and re-align.

        The pose is projected onto the current leg and every later one; the leg it lies closest to
        is taken (of legs within 5 cm of the closest, the one whose heading is nearest ``yaw``, then
        the earliest), and the distance along it is re-projected over the whole leg (it may move
        back, e.g. after the robot was driven by hand). A follower started afresh on a plan the
        robot is already half way through (the whole graph restarted mid-field) so finds its place
        instead of its first leg, metres away. Then the follower turns to the path heading before
        tracking again. Returns False (nothing changed) when not faulted.
        """
        if self.state != 'fault':
            return False
        self._locate(float(x), float(y), yaw)
        self._project_leg(x, y)
        self.state = 'align'
        self.fault = ''
        self.paused = False
        self._v = self._w = 0.0
        self._t = None
        return True

    def _locate(self, x: float, y: float, yaw: float | None) -> None:
        """Set ``leg`` to the current or a later leg that pose (x, y[, yaw]) lies closest to."""
        path, found = self.path, []
        for leg in range(self.leg, len(path.legs)):
            v0, v1 = path.legs[leg]
            _, cross, edge = path.project(x, y, v0, v1, float(path.cum[v0]), float(path.cum[v1]))
            turn = 0.0 if yaw is None else abs(float(wrap_angle(float(path.body_heading[edge]) - yaw)))
            found.append((abs(float(cross)), turn, leg))
        if not found:
            return
        best = min(d for d, _, _ in found)
        self.leg = min((f for f in found if f[0] <= best + 0.05), key=lambda f: (f[1], f[2]))[2]

    def _project_leg(self, x: float, y: float) -> None:
        """Distance along the path re-projected over the whole current leg (it may move back)."""
        v0, v1 = self.path.legs[self.leg]
        s, _, _ = self.path.project(float(x), float(y), v0, v1, float(self.path.cum[v0]),
                                    float(self.path.cum[v1]))
        self.s = float(s)

    # ---------------------------------------------------------------- control
    def _braking_speed(self, to_go: float) -> float:
        """Speed limit ``to_go`` metres before a stop point: ``sqrt(2a(d + d0)) - sqrt(2a d0)``
        with ``d0 = a T^2 / 2`` (a = linear_decel, T = final_approach_time). Far out it is the
        constant-deceleration curve; near the point it becomes ``v ~ d / T``, so the robot creeps
        onto the point instead of arriving at speed; its slope never asks for more than ``a``, so
        the ramp can follow it exactly."""
        a = self.config.linear_decel
        d0 = 0.5 * a * self.config.final_approach_time ** 2
        return math.sqrt(2.0 * a * (to_go + d0)) - math.sqrt(2.0 * a * d0)

    def _ramp(self, v: float, w: float, dt: float) -> tuple[float, float]:
        c = self.config
        # no time elapsed (the first step): no change either, the base cannot jump to speed
        dv = v - self._v
        limit = (c.linear_accel if abs(v) > abs(self._v) else c.linear_decel) * dt
        v = self._v + float(np.clip(dv, -limit, limit))
        w = self._w + float(np.clip(w - self._w, -c.angular_accel * dt, c.angular_accel * dt))
        self._v, self._w = v, w
        return v, w

    def _progress(self, cross: float, heading_error: float) -> Progress:
        e = self.path.edge_at(self.s)
        return Progress(index=self.path.index_of_distance(self.s), distance=self.s, cross_track=cross,
                        heading_error=heading_error, segment=self.path.segments[e],
                        role=self.path.roles[e], direction=self.path.directions[e],
                        leg=self.leg, state=self.state,
                        remaining=max(self.path.length - self.s, 0.0))

    def step(self, t: float, x: float, y: float, yaw: float) -> Command:
        c, path = self.config, self.path
        dt = 0.0 if self._t is None else max(float(t) - self._t, 0.0)
        self._t = float(t)
        if self.state in ('done', 'fault'):
            self._v = self._w = 0.0
            return Command(0.0, 0.0, self._progress(0.0, 0.0), self.fault)
        if self.state == 'paused':
            # held: whatever moves the robot now (marking, an operator) is not a tracking error
            v, w = self._ramp(0.0, 0.0, dt)
            return Command(v, w, self._progress(0.0, 0.0))
        if self._reacquire:
            self._reacquire = False
            self._project_leg(x, y)
        v0, v1 = path.legs[self.leg]
        s, cross, edge = path.project(x, y, v0, v1, self.s - c.search_window, self.s + c.search_window)
        self.s = max(self.s, s)
        leg_end = float(path.cum[v1])
        heading = float(path.body_heading[edge])
        heading_error = float(wrap_angle(heading - yaw))
        if abs(cross) > c.max_cross_track:
            self.state = 'fault'
            self.fault = f'cross-track error {cross:+.2f} m exceeds {c.max_cross_track:.2f} m'
            self._v = self._w = 0.0
            return Command(0.0, 0.0, self._progress(cross, heading_error), self.fault)

        # Leg finished? (within tolerance of the corner, or past it along the last edge)
        past = float((np.array([x, y]) - path.points[v1]) @ path.edge_dir[v1 - 1])
        if self.state in ('track', 'align') and (leg_end - self.s < c.goal_tolerance or past > 0.0):
            self.s = leg_end
            if self.leg == len(path.legs) - 1:
                self.state = 'done'
                self._v = self._w = 0.0
                return Command(0.0, 0.0, self._progress(cross, heading_error))
            self.state = 'turn'
            self.leg += 1
            v0, v1 = path.legs[self.leg]
            edge = v0
            heading = float(path.body_heading[v0])
            heading_error = float(wrap_angle(heading - yaw))

        if self.state == 'turn' and self.leg > 0 and abs(heading_error) > c.turn_tolerance:
            # before (or while) turning at a corner: ran past it? (the leg may have been declared
            # done within goal_tolerance of the corner at speed, and the braking ramp carried the
            # robot on: 0.17 m at the end of a lane in one run)
            e_last = v0 - 1
            past_corner = float((np.array([x, y]) - path.points[v0]) @ path.edge_dir[e_last])
            if past_corner > c.overshoot_tolerance:
                self._return_to = (path.points[v0].copy(), path.edge_dir[e_last].copy(),
                                   float(path.body_heading[e_last]), bool(path.reverse[e_last]))
                self.state = 'return'

        if self.state == 'return':
            corner, direction, body_heading, was_reverse = self._return_to
            back = float((np.array([x, y]) - corner) @ direction)    # still past the corner by
            if back <= c.goal_tolerance:
                self.state, self._return_to = 'turn', None
            else:
                # back along the last edge, against its direction of travel, holding its heading
                speed = min(c.reverse_speed, self._braking_speed(back))
                w = float(np.clip(c.heading_gain * wrap_angle(body_heading - yaw), -c.max_angular,
                                  c.max_angular))
                v, w = self._ramp(speed if was_reverse else -speed, w, dt)
                return Command(v, w, self._progress(cross, heading_error))

        if self.state == 'paused' or (self.paused and abs(self._v) < 1e-3 and self.state != 'turn'):
            self.state = 'paused'
            v, w = self._ramp(0.0, 0.0, dt)
            return Command(v, w, self._progress(cross, heading_error))

        if self.state in ('turn', 'align'):
            if self.state == 'align' and abs(heading_error) <= c.align_angle:
                self.state = 'track'
            elif abs(heading_error) <= c.turn_tolerance:
                self.state = 'track'
            else:
                w = float(np.clip(c.turn_gain * heading_error, -c.max_angular, c.max_angular))
                w = math.copysign(max(abs(w), c.min_turn_rate), w)
                v, w = self._ramp(0.0, w, dt)
                if abs(heading_error) < 0.1:   # do not overshoot through the ramp
                    self._w = w = float(np.clip(w, -abs(c.turn_gain * heading_error) - c.min_turn_rate,
                                                abs(c.turn_gain * heading_error) + c.min_turn_rate))
                return Command(v, w, self._progress(cross, heading_error))

        # Tracking a leg.
        if abs(heading_error) > c.align_angle:
            self.state = 'turn'
            v, w = self._ramp(0.0, float(np.clip(c.turn_gain * heading_error, -c.max_angular,
                                                  c.max_angular)), dt)
            return Command(v, w, self._progress(cross, heading_error))
        reverse = bool(path.reverse[edge])
        if reverse:
            role_speed = c.reverse_speed
        else:
            lane = path.roles[edge] == 'lane' and not path.swept_lanes
            role_speed = c.sweep_speed if lane else c.transit_speed
        stop_at = leg_end
        if self.pause_distance is not None and self.pause_distance >= self.s - c.goal_tolerance:
            stop_at = min(stop_at, self.pause_distance)
            if stop_at - self.s < c.goal_tolerance:
                self.paused = True
        braking = self._braking_speed(max(stop_at - self.s, 0.0))
        v_ref = min(role_speed, braking) * max(math.cos(heading_error), 0.0)
        if self.paused:
            v_ref = 0.0
        # Stanley on the direction of travel (yaw + pi when backing up; cross-track is measured
        # left of the direction of travel either way). The path heading is previewed
        # ``preview_distance`` ahead (within the leg), a curvature feed-forward on curved transits.
        ahead = path.edge_at(min(self.s + c.preview_distance, leg_end - 1e-6))
        travel = float(path.body_heading[max(ahead, edge)]) + (math.pi if reverse else 0.0)
        travel_yaw = yaw + (math.pi if reverse else 0.0)
        # The cross-track term fades in with speed: turning on the spot cannot reduce a lateral
        # offset, it only swings the body. Short reverse legs (the post-turn backups) hold the
        # heading only: steering a 0.16 m backup onto the line swung the body 15 deg and its rear
        # corners toward the boundary, and the next forward leg corrects the offset anyway.
        short_reverse = reverse and leg_end - float(path.cum[v0]) < c.reverse_track_min_length
        fade = 0.0 if short_reverse else min(1.0, abs(self._v) / c.softening_speed)
        correction = math.atan2(c.cross_track_gain * cross, abs(self._v) + c.softening_speed) * fade
        w = float(np.clip(c.heading_gain * wrap_angle(travel - correction - travel_yaw),
                          -c.max_angular, c.max_angular))
        v, w = self._ramp(-v_ref if reverse else v_ref, w, dt)
        if self.paused and abs(v) < 1e-3:
            self.state = 'paused'
        return Command(v, w, self._progress(cross, heading_error))
