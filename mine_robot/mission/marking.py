"""Marking: where to stop so the nozzle is over a target, and the fire/ack/retry sequence.

The ``marker_nozzle`` rides on a lateral slide behind the detector array (config/robot.yaml:
x and slide limits from config/robot.yaml; the detector head is ahead of it). The robot never
turns to mark: it moves straight along its current lane heading — forward or backing up — so its
wheels stay on ground the array has already swept, and the slide takes the lateral offset. A
target the nozzle cannot reach from where the robot is (beyond the slide, too far behind or
ahead, or a manoeuvre that would bring a wheel next to another hazard) is *deferred*: tried again
from every later pose (the neighbouring lane: lanes overlap, so every point of the swath is within
reach from some lane), and by the mission's mark visit at the end; only then reported failed.

:func:`plan_mark` is the geometry; :class:`MarkingSequence` is the pure, clock-driven sequence
(stop, move along the lane, fire with a command id and duration, wait for the acknowledgement,
retry, then a placed mark at the nozzle's *actual* position or a reported failure — never a silent
skip). :func:`marking_policy` applies the clutter rule from the config.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
import itertools
import math

import numpy as np
from shapely.geometry import Point, Polygon
from shapely.ops import unary_union

from mine_robot.robot import RobotGeometry

HAZARD_CLASSES = ('mine', 'uxo', 'unknown')
# m: a known hazard this close to the target being marked is taken for the same object (fusion
# sometimes keeps a duplicate a few cm away): it does not block the target's own manoeuvre (in the
# ROS demo a duplicate 3 cm from M1 made every stop pose 'unsafe' and M1 went unmarked)
DUPLICATE_RADIUS = 0.06
CLUTTER_POLICIES = ('not_marked', 'mark_distinct', 'mark')


@dataclass(frozen=True)
class MarkingConfig:
    max_backup: float = 3.0          # m the robot may back up along its lane to reach a target
    max_forward: float = 0.5         # m forward: keeps the front wheels behind the swept edge
    stop_tolerance: float = 0.03     # m along-lane error accepted at the stop pose
    # m/s; the marker fires only once the robot has stopped (its estimated speed at most this):
    # a mark started at transit speed with the nozzle already over the target was painted 0.23 m
    # past it while the robot braked (lockstep, 2026-12-06)
    settle_speed: float = 0.02
    move_timeout: float = 20.0       # s to reach the stop pose before the mark is reported failed
    approach_speed: float = 0.15     # m/s for the stop manoeuvre
    wheel_clearance: float = 0.10    # m kept between any wheel patch and a known hazard
    # A target not (yet) settled as clutter that lies in the wheels' path within this many metres
    # ahead of the front wheels is marked at once (stop first, classify later): fusion settles a
    # target only once every sensor has passed it, by which time the wheels would be on it.
    guard_ahead: float = 0.6
    swept_tolerance: float = 0.02    # m of slack allowed when testing wheels against swept ground
    max_start_yaw_rate: float = 0.05  # rad/s; a mark is started only when the robot is not turning
    resend_after: float = 3.0        # s; an outcome the mission has not recorded yet is sent again
    ack_timeout: float = 2.0         # s to wait for the marker's acknowledgement
    retries: int = 2                 # extra fire attempts after the first
    hazard_mode: str = 'paint'
    hazard_duration: float = 0.5     # s
    clutter_policy: str = 'not_marked'   # not_marked | mark_distinct | mark
    clutter_mode: str = 'flag'
    clutter_duration: float = 0.3

    def __post_init__(self):
        if self.clutter_policy not in CLUTTER_POLICIES:
            raise ValueError(f'clutter_policy must be one of {CLUTTER_POLICIES}, '
                             f'got {self.clutter_policy!r}')
        for name in ('max_backup', 'max_forward', 'stop_tolerance', 'move_timeout', 'approach_speed',
                     'settle_speed', 'ack_timeout', 'hazard_duration', 'clutter_duration', 'guard_ahead',
                     'max_start_yaw_rate', 'resend_after'):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f'marking.{name} must be > 0, got {value!r}')
        if self.retries < 0:
            raise ValueError(f'marking.retries must be >= 0, got {self.retries!r}')


@dataclass(frozen=True)
class MarkDecision:
    mark: bool
    mode: str | None
    duration: float
    reason: str


def marking_policy(classification: str, config: MarkingConfig) -> MarkDecision:
    """Whether and how to mark a target of this class (hazards always; clutter by config)."""
    if classification in HAZARD_CLASSES:
        return MarkDecision(True, config.hazard_mode, config.hazard_duration,
                            f'{classification}: hazard')
    if classification == 'clutter':
        if config.clutter_policy == 'not_marked':
            return MarkDecision(False, None, 0.0, 'clutter: recorded, not marked (config)')
        if config.clutter_policy == 'mark_distinct':
            return MarkDecision(True, config.clutter_mode, config.clutter_duration,
                                'clutter: marked distinctly (config)')
        return MarkDecision(True, config.hazard_mode, config.hazard_duration,
                            'clutter: marked like a hazard (config)')
    raise ValueError(f'unknown target classification {classification!r}; '
                     f'expected one of {(*HAZARD_CLASSES, "clutter")}')


@dataclass(frozen=True)
class MarkPlan:
    feasible: bool
    reason: str
    target: tuple[float, float]
    heading: float
    travel: float = 0.0                      # m along the heading; negative = back up
    slide: float = 0.0                       # slide offset (m, base_link y, relative to its zero)
    stop_pose: tuple[float, float, float] = (0.0, 0.0, 0.0)
    nozzle: tuple[float, float] = (0.0, 0.0)  # where the nozzle will be at the stop pose
    defer: bool = False                      # True: not from this pose; try again from another


def nozzle_position(robot: RobotGeometry, pose, slide: float) -> tuple[float, float]:
    """World (x, y) of the nozzle for robot pose (x, y, yaw) and slide offset."""
    x, y, yaw = (float(v) for v in pose[:3])
    nx, ny = robot.marker.xyz[0], robot.marker.xyz[1] + slide
    c, s = math.cos(yaw), math.sin(yaw)
    return (x + c * nx - s * ny, y + s * nx + c * ny)


def _wheel_sweep(robot: RobotGeometry, start: np.ndarray, stop: np.ndarray, heading: float):
    """Union of the ground every wheel patch touches moving straight from start to stop."""
    c, s = math.cos(heading), math.sin(heading)
    rot = np.array([[c, -s], [s, c]])
    polys = []
    for patch in robot.wheel_patches():
        a = patch @ rot.T + start
        b = patch @ rot.T + stop
        polys.append(Polygon(np.vstack([a, b])).convex_hull)
    return unary_union(polys)


def in_wheel_path(robot: RobotGeometry, pose, target, clearance: float, ahead: float) -> bool:
    """True when ``target`` lies where a wheel will roll if the robot drives on straight: laterally
    within ``clearance`` of a wheel track, and between the rear wheels and ``ahead`` metres past the
    front wheels."""
    c, s = math.cos(pose[2]), math.sin(pose[2])
    dx, dy = float(target[0]) - pose[0], float(target[1]) - pose[1]
    along, lateral = dx * c + dy * s, -dx * s + dy * c
    corners = robot.wheel_patches().reshape(-1, 2)
    front, rear = float(corners[:, 0].max()), float(corners[:, 0].min())
    inner, outer = float(np.abs(corners[:, 1]).min()), float(np.abs(corners[:, 1]).max())
    return (rear - clearance <= along <= front + ahead
            and inner - clearance <= abs(lateral) <= outer + clearance)


def plan_mark(robot: RobotGeometry, pose, target, config: MarkingConfig, *,
              heading: float | None = None, swept=None,
              hazards: Iterable[tuple[float, float]] = ()) -> MarkPlan:
    """Plan the stop pose and slide offset that put the nozzle over ``target``.

    ``pose`` is the robot (x, y, yaw) in ``map``; ``heading`` the lane direction (default: the
    robot's yaw); ``swept`` the swept-ground polygon (shapely) — when given, every wheel patch
    must stay on it for the whole manoeuvre; ``hazards`` are known targets (including this one)
    no wheel may come within ``wheel_clearance`` of.
    """
    px, py = float(pose[0]), float(pose[1])
    h = float(pose[2]) if heading is None else float(heading)
    tx, ty = float(target[0]), float(target[1])
    if not all(math.isfinite(v) for v in (px, py, h, tx, ty)):
        raise ValueError(f'non-finite pose {pose!r} or target {target!r}')
    u = np.array([math.cos(h), math.sin(h)])
    n = np.array([-u[1], u[0]])
    d = np.array([tx - px, ty - py])
    along, lateral = float(d @ u), float(d @ n)
    travel = along - robot.marker.xyz[0]
    slide = lateral - robot.marker.xyz[1]
    base = dict(target=(tx, ty), heading=h, travel=travel, slide=slide)
    lo, hi = robot.marker.slide_limits
    if not lo - 1e-9 <= slide <= hi + 1e-9:
        return MarkPlan(False, f'target is {lateral:+.2f} m across the lane, beyond the slide '
                               f'reach [{lo:+.2f}, {hi:+.2f}] m: mark it from the neighbouring lane',
                        defer=True, **base)
    slide = min(max(slide, lo), hi)
    if travel < -config.max_backup:
        return MarkPlan(False, f'target is {-travel:.2f} m behind the nozzle, more than max_backup '
                               f'{config.max_backup:.2f} m', defer=True, **base)
    if travel > config.max_forward:
        return MarkPlan(False, f'target is {travel:.2f} m ahead of the nozzle, more than max_forward '
                               f'{config.max_forward:.2f} m', defer=True, **base)
    start = np.array([px, py])
    stop = start + travel * u
    sweep = _wheel_sweep(robot, start, stop, h)
    if swept is not None and not swept.buffer(config.swept_tolerance).covers(sweep):
        outside = sweep.difference(swept.buffer(config.swept_tolerance)).area
        return MarkPlan(False, f'manoeuvre would put a wheel on unswept ground ({outside:.3f} m² '
                               'outside the swept area)', defer=True, **base)
    for hx, hy in itertools.chain([(tx, ty)], hazards):
        if (hx, hy) != (tx, ty) and math.hypot(hx - tx, hy - ty) < DUPLICATE_RADIUS:
            continue    # the same object reported twice: the target's own clearance applies
        gap = sweep.distance(Point(hx, hy))
        if gap < config.wheel_clearance:
            return MarkPlan(False, f'manoeuvre would bring a wheel within {gap:.2f} m of the hazard at '
                                   f'({hx:.2f}, {hy:.2f}); minimum {config.wheel_clearance:.2f} m',
                            defer=True, **base)
    stop_pose = (float(stop[0]), float(stop[1]), h)
    verb = 'back up' if travel < 0 else 'continue'
    return MarkPlan(True, f'{verb} {abs(travel):.2f} m along the lane, slide {slide:+.2f} m',
                    stop_pose=stop_pose, nozzle=nozzle_position(robot, stop_pose, slide),
                    **{**base, 'slide': slide})


# -- the sequence ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Stop:
    """Pause the lane follower and stand still."""


@dataclass(frozen=True)
class MoveAlong:
    """Drive straight along ``heading`` to ``stop_pose`` (negative travel = reverse)."""
    stop_pose: tuple[float, float, float]
    travel: float
    speed: float


@dataclass(frozen=True)
class Fire:
    """Move the slide to ``slide`` and fire the marker; the driver acknowledges ``command_id``.
    A retry after a lost acknowledgement re-sends the same id (the device de-duplicates it);
    a retry after a refusal uses a new id."""
    command_id: int
    slide: float
    duration: float
    mode: str
    attempt: int


@dataclass(frozen=True)
class Resume:
    """The sequence is over (placed or failed): the follower may continue."""


@dataclass(frozen=True)
class MarkerAck:
    """The marker driver's answer to a Fire command (``slide`` = measured slide position)."""
    command_id: int
    ok: bool
    slide: float | None = None
    error: str = ''


@dataclass(frozen=True)
class MarkOutcome:
    target_id: str
    status: str                     # 'marked' | 'failed' | 'not_marked' | 'deferred' (try again)
    t: float
    x: float | None
    y: float | None
    target: tuple[float, float]
    mode: str | None
    attempts: int
    reason: str


_ids = itertools.count(1)


@dataclass
class MarkingSequence:
    """stop → move along the lane → settle (stand still at the stop pose) → fire → ack (retry on
    timeout/negative ack) → outcome.

    Drive it with :meth:`start`, :meth:`update` (time, pose and the robot's speed, e.g. on every
    odometry message) and :meth:`on_ack`; each returns the actions to carry out. ``outcome`` is set
    exactly once.
    """

    robot: RobotGeometry
    config: MarkingConfig
    target_id: str
    target: tuple[float, float]
    classification: str = 'unknown'
    heading: float | None = None
    swept: object = None
    hazards: tuple = ()
    # m of the robot's straight track behind it on its heading: no longer back-up is started
    backup_room: float = math.inf
    command_ids: Iterator[int] = field(default=_ids)
    state: str = 'new'
    outcome: MarkOutcome | None = None
    plan: MarkPlan | None = None
    attempts: int = 0
    _deadline: float = 0.0
    _command: Fire | None = None
    _decision: MarkDecision | None = None
    _heading: float = 0.0
    _slide: float = 0.0

    def start(self, now: float, pose, speed: float = 0.0) -> list:
        if self.state != 'new':
            raise RuntimeError(f'marking sequence for {self.target_id} already started')
        self._decision = marking_policy(self.classification, self.config)
        if not self._decision.mark:
            self._finish(now, 'not_marked', None, self._decision.reason)
            return []
        self.plan = plan_mark(self.robot, pose, self.target, self.config, heading=self.heading,
                              swept=self.swept, hazards=self.hazards)
        self._heading = self.plan.heading
        room = self.backup_room + self.config.stop_tolerance
        if self.plan.feasible and self.plan.travel < -room:
            self.plan = replace(self.plan, feasible=False, defer=True,
                                reason=f'a {-self.plan.travel:.2f} m back-up would leave the straight track '
                                       f'the robot came by ({self.backup_room:.2f} m of it behind)')
        if not self.plan.feasible:
            if self.plan.defer:
                # not from this pose: the controller tries again from later poses, the mission's
                # mark visit last; the robot has not stopped (no 'started')
                self._finish(now, 'deferred', None, f'not reachable from here: {self.plan.reason}')
                return []
            self._finish(now, 'failed', None, f'cannot reach: {self.plan.reason}')
            return [Resume()]
        self.state = 'moving'
        self._deadline = now + self.config.move_timeout
        if abs(self.plan.travel) <= self.config.stop_tolerance:
            return [Stop(), *self._at_stop_pose(now, pose, speed)]
        return [Stop(), MoveAlong(self.plan.stop_pose, self.plan.travel, self.config.approach_speed)]

    def update(self, now: float, pose, speed: float = 0.0) -> list:
        if self.state in ('moving', 'settling'):
            err = self._along_error(pose)
            if abs(err) <= self.config.stop_tolerance:
                return [Stop(), *self._at_stop_pose(now, pose, speed)]
            if now > self._deadline:
                self._finish(now, 'failed', None, f'did not reach the stop pose within '
                                                  f'{self.config.move_timeout:.0f} s ({err:+.2f} m off)')
                return [Stop(), Resume()]
            if self.state == 'settling':
                # braking carried it past the tolerance: drive back to the stop pose
                self.state = 'moving'
                return [MoveAlong(self.plan.stop_pose, err, self.config.approach_speed)]
            return []
        if self.state == 'firing' and now > self._deadline:
            # re-send the SAME command id: the marker answers a repeated id with its first
            # acknowledgement without firing again, so a lost ack never marks twice
            return self._retry(now, pose, f'no acknowledgement within {self.config.ack_timeout:.1f} s',
                               new_id=False)
        return []

    def on_ack(self, now: float, pose, ack: MarkerAck) -> list:
        if self.state != 'firing' or self._command is None or ack.command_id != self._command.command_id:
            return []  # stale or foreign acknowledgement
        if not ack.ok:
            return self._retry(now, pose, f'marker reported failure: {ack.error or "no reason"}',
                               new_id=True)
        slide = self._command.slide if ack.slide is None else float(ack.slide)
        nx, ny = nozzle_position(self.robot, (pose[0], pose[1], pose[2]), slide)
        err = math.hypot(nx - self.target[0], ny - self.target[1])
        self._finish(now, 'marked', (nx, ny), f'{self._decision.reason}; nozzle {err:.3f} m from '
                                              f'the target estimate, attempt {self.attempts}')
        return [Resume()]

    # -- internals ----------------------------------------------------------------------------------
    def _along_error(self, pose) -> float:
        sx, sy, _ = self.plan.stop_pose
        return (sx - float(pose[0])) * math.cos(self._heading) + (sy - float(pose[1])) * math.sin(
            self._heading)

    def _at_stop_pose(self, now: float, pose, speed: float) -> list:
        """Within the stop tolerance: fire once the robot stands still, else hold and wait."""
        if abs(speed) > self.config.settle_speed:
            self.state = 'settling'
            return []
        return self._arrived(now, pose)

    def _arrived(self, now: float, pose) -> list:
        # re-solve the slide from the pose actually reached (absorbs stop and cross-track error)
        lateral = ((self.target[0] - float(pose[0])) * -math.sin(self._heading)
                   + (self.target[1] - float(pose[1])) * math.cos(self._heading))
        lo, hi = self.robot.marker.slide_limits
        slide = lateral - self.robot.marker.xyz[1]
        if not lo - 0.02 <= slide <= hi + 0.02:
            self._finish(now, 'deferred', None, f'after stopping, target is {slide:+.2f} m across, '
                                                'beyond the slide reach')
            return [Resume()]
        self._slide = min(max(slide, lo), hi)
        return [self._fire(now)]

    def _fire(self, now: float, new_id: bool = True) -> Fire:
        self.state = 'firing'
        self.attempts += 1
        self._deadline = now + self.config.ack_timeout
        cmd_id = next(self.command_ids) if new_id or self._command is None else self._command.command_id
        self._command = Fire(cmd_id, self._slide, self._decision.duration, self._decision.mode,
                             self.attempts)
        return self._command

    def _retry(self, now: float, pose, why: str, new_id: bool) -> list:
        if self.attempts <= self.config.retries:
            return [self._fire(now, new_id)]
        self._finish(now, 'failed', None, f'{why}; gave up after {self.attempts} attempt(s)')
        return [Resume()]

    def _finish(self, now: float, status: str, xy, reason: str) -> None:
        self.state = 'done'
        self.outcome = MarkOutcome(
            self.target_id, status, float(now), None if xy is None else float(xy[0]),
            None if xy is None else float(xy[1]), (float(self.target[0]), float(self.target[1])),
            self._decision.mode if self._decision and status == 'marked' else None,
            self.attempts, reason)


def along_lane_command(pose, stop_pose, heading: float, speed: float,
                       gain: float = 1.5, heading_gain: float = 2.0) -> tuple[float, float]:
    """(v, w) that drives straight along ``heading`` to ``stop_pose``: proportional on the
    along-lane error, limited to ``speed``, with a heading hold so the robot does not turn off
    its lane. Reverse when the stop pose is behind."""
    err = ((stop_pose[0] - pose[0]) * math.cos(heading) + (stop_pose[1] - pose[1]) * math.sin(heading))
    v = max(-speed, min(speed, gain * err))
    yaw_err = (heading - pose[2] + math.pi) % (2 * math.pi) - math.pi
    return v, heading_gain * yaw_err


# -- the marking node's logic on plain data ---------------------------------------------------------

# s between two tries of a deferred target. The window in which the nozzle can reach a target
# just outside a wheel track is short (0.17 m of travel for M2 on the default field's mark visit:
# behind it the wheels are already next to the target); tried every 0.5 s at 0.4 m/s the robot
# stepped over it and left M2 for marking by hand
RETRY_PERIOD = 0.1
# m: a deferred target is tried again when the nozzle is at most this far past it along the robot's
# heading (a short back-up on the piece of path the robot is on, not a long reverse along a heading
# that may be a transit's)
RETRY_BACKUP = 0.3
# A back-up runs only over the straight track the robot came by on its current heading (its wheels
# have just rolled there). One started right after a lane-end point turn, for a target confirmed
# during the turn, would have reversed 0.85 m along the new heading, off the search area: the
# geofence held the robot until the mark failed (crash-resume batch, 2026-12-06). The run ends
# where the heading turned more than RUN_TURN or the robot left its line by more than RUN_OFFSET.
RUN_TURN = math.radians(5.0)
RUN_OFFSET = 0.1                 # m
MARK_STATES = ('sweeping', 'resweep', 'investigating')   # mission states in which marks are made
HOLD_STATES = ('paused', 'aborted', 'fault')               # mission states that hold the robot still


@dataclass
class MarkingStep:
    """What the marking node publishes after one input or control period."""
    cmd: tuple[float, float] | None = None       # (v, w) on the mux's marking input; None: nothing
    fires: list[dict] = field(default_factory=list)   # marker/command bodies
    events: list[dict] = field(default_factory=list)  # marking/events bodies
    log: list[tuple[str, str]] = field(default_factory=list)   # (level, text)


class MarkingController:
    """One target at a time: which target to mark next, the :class:`MarkingSequence` for it, and
    the commands it needs (the ``marking`` node and the lockstep mission both run this).

    Inputs: ``on_status`` (the mission's status: state, ``pending_marks``, ``hazards``),
    ``on_targets`` (fusion's targets, for the wheel-path guard), ``on_pose`` and ``on_marker``
    (the marker's ``done``/``ack`` answers); ``step(now)`` once per control period.

    The mission is the authority on what is marked: a target is chosen from its
    ``pending_marks``, except that a target not (yet) settled as clutter lying in the wheels' path
    ahead (:func:`in_wheel_path`) is marked at once, before the wheels reach it. A target the
    mission lists as ``handled`` (or this controller already finished) is never started again.
    """

    def __init__(self, robot: RobotGeometry, config: MarkingConfig, command_ids=None):
        self.robot, self.config = robot, config
        self.ids = command_ids if command_ids is not None else itertools.count(1)
        self.seq: MarkingSequence | None = None
        self.status: dict = {}
        self.pose: tuple[float, float, float] | None = None
        self.done: set[str] = set()      # outcomes sent, waiting for the mission to record them
        self.finished: dict[str, list] = {}   # target id -> [outcome event, time last sent]
        self.candidates: dict[str, dict] = {}
        self.guarded: set[str] = set()   # targets the wheel-path guard already handled
        self._announced: str | None = None   # target of the last 'started' event
        self.generation: dict[str, int] = {}   # target id -> the mission's re-mark count of it
        self.deferred: dict[str, dict] = {}   # target id -> {'t': last try, 'reason': why not}
        self._unfixed: list[dict] = []        # deferral events to send (position not fixed yet)
        self.moving: MoveAlong | None = None
        self.sent = 0
        self.yaw_rate = 0.0
        self.speed = 0.0                      # m/s along the robot's x (the EKF's estimate)
        self._run: tuple | None = None        # straight run: (x0, y0, heading, min along, max along)

    def on_status(self, status: dict) -> None:
        self.status = status
        pending = {str(p['id']) for p in status.get('pending_marks', [])}
        self.done &= pending    # recorded by the mission: forget
        for p in status.get('pending_marks', []):
            tid = str(p['id'])
            entry = self.finished.get(tid)
            generation = int(p.get('remark', 0))
            if generation > self.generation.get(tid, 0):
                # the mission superseded the mark (the estimate moved away from it): a new target
                # to mark for this controller
                self.generation[tid] = generation
                self.finished.pop(tid, None)
                self.done.discard(tid)
                self.guarded.discard(tid)
                self.deferred.pop(tid, None)
                continue
            if entry is not None and entry[0].get('status') == 'not_marked' and \
                    marking_policy(str(p.get('classification', 'unknown')), self.config).mark:
                # left unmarked as clutter, reclassified a hazard since: the mission lists it
                # again, and it is marked like any other (the old outcome is not re-sent)
                del self.finished[tid]
                self.done.discard(tid)

    def on_targets(self, targets: list[dict]) -> None:
        self.candidates = {str(t['id']): t for t in targets}

    def on_pose(self, pose, yaw_rate: float = 0.0, speed: float = 0.0) -> None:
        self.pose = (float(pose[0]), float(pose[1]), float(pose[2]))
        self.yaw_rate = float(yaw_rate)
        self.speed = float(speed)
        x, y, yaw = self.pose
        if self._run is not None:
            x0, y0, yaw0, lo, hi = self._run
            c, s = math.cos(yaw0), math.sin(yaw0)
            along, off = (x - x0) * c + (y - y0) * s, -(x - x0) * s + (y - y0) * c
            if abs(math.remainder(yaw - yaw0, 2.0 * math.pi)) <= RUN_TURN and abs(off) <= RUN_OFFSET:
                self._run = (x0, y0, yaw0, min(lo, along), max(hi, along))
                return
        self._run = (x, y, yaw, 0.0, 0.0)

    def backup_room(self) -> float:
        """How far (m) the robot's straight track on its current heading reaches behind it."""
        if self._run is None or self.pose is None:
            return 0.0
        x0, y0, yaw0, lo, _ = self._run
        along = (self.pose[0] - x0) * math.cos(yaw0) + (self.pose[1] - y0) * math.sin(yaw0)
        return max(0.0, along - lo)

    def on_marker(self, now: float, answer: dict) -> MarkingStep:
        """``marker/status`` body: ``done`` (fired; slide_mm measured) or a refusing ``ack``."""
        out = MarkingStep()
        if self.seq is None or self.pose is None:
            return out
        kind = answer.get('type')
        if kind == 'done':
            slide = answer.get('slide_mm')
            ack = MarkerAck(int(answer['cmd_id']), True, None if slide is None else slide / 1000.0)
        elif kind == 'ack' and not answer.get('ok', False):
            ack = MarkerAck(int(answer['cmd_id']), False, error=str(answer.get('error', '')))
        else:
            return out    # accepted ('firing started') or a status report: wait for 'done'
        self._apply(now, self.seq.on_ack(now, self.pose, ack), out)
        return out

    def step(self, now: float) -> MarkingStep:
        out = MarkingStep()
        self._resend(now, out)
        if self.seq is None:
            self._maybe_begin(now, out)
            return out
        if self.seq.state in ('moving', 'settling') and self.seq.target_id in self._mission_handled() \
                and self.seq.target_id not in self.finished:
            # the mission says this target is handled already (after a restart it matched fusion's
            # new id to a target marked before): stop the manoeuvre, do not fire a second time
            out.log.append(('info', f'target {self.seq.target_id}: already handled by the mission '
                                    '(marked before a restart): not marked again'))
            self.guarded.add(self.seq.target_id)
            self.seq, self.moving = None, None
            out.cmd = (0.0, 0.0)
            return out
        holding = self.status.get('state') in HOLD_STATES
        if holding:
            out.cmd = (0.0, 0.0)     # hold still; the sequence times out if it must
        elif self.pose is not None:
            self._apply(now, self.seq.update(now, self.pose, self.speed), out)
        if self.seq is not None and self.moving is not None and self.pose is not None and not holding:
            out.cmd = along_lane_command(self.pose, self.moving.stop_pose, self.seq.plan.heading,
                                         self.moving.speed)
        elif self.seq is not None:
            # firing / waiting for the acknowledgement: keep holding the mux input (it times out,
            # and the lane follower underneath would drive off with the nozzle)
            out.cmd = (0.0, 0.0)
        return out

    def _resend(self, now: float, out: MarkingStep) -> None:
        """An outcome the mission still lists as a mark to make did not reach it (its manager was
        restarting): sent again every ``resend_after`` s until the mission records it."""
        for p in self.status.get('pending_marks', []):
            entry = self.finished.get(str(p['id']))
            if entry is not None and now - entry[1] >= self.config.resend_after:
                entry[1] = now
                out.events.append(entry[0])
                out.log.append(('warn', f"target {p['id']}: outcome sent again (not recorded yet)"))

    def _mission_handled(self) -> set[str]:
        """Target ids the mission lists as handled (marked, failed or not marked)."""
        return set(map(str, self.status.get('handled', ())))

    def _guard_target(self) -> dict | None:
        handled = self._mission_handled() | set(self.finished)
        for tid, t in self.candidates.items():
            if tid in self.guarded or tid in self.done or tid in handled or tid in self.deferred:
                continue
            if t.get('settled', True) and t.get('classification') == 'clutter':
                continue
            # 5 cm more than the wheel clearance for estimate error; not for a fit on the array's
            # outermost coil, whose error is outward only (the object is at least that far out)
            margin = 0.0 if self._position_unfixed(t) else 0.05
            if in_wheel_path(self.robot, self.pose, (float(t['x']), float(t['y'])),
                             self.config.wheel_clearance + margin, self.config.guard_ahead):
                return {'id': tid, 'x': float(t['x']), 'y': float(t['y']),
                        'classification': t.get('classification', 'unknown')
                        if t.get('settled', True) else 'unknown'}
        return None

    def _maybe_begin(self, now: float, out: MarkingStep) -> None:
        if self.status.get('state') not in MARK_STATES or self.pose is None:
            return
        if abs(self.yaw_rate) > self.config.max_start_yaw_rate:
            # turning in place: the manoeuvre runs along the robot's heading, which only means
            # "along the lane" once the turn is over (one that started mid-turn backed the robot
            # diagonally off its lanes and left it held on unswept ground)
            return
        target = self._guard_target()
        if target is not None:
            # stop before the wheels reach it; the mark is made now, as 'unknown' if unsettled
            self.guarded.add(target['id'])
            out.log.append(('info', f"target {target['id']} in the wheels' path: stopping to mark it "
                                    f"({target['classification']})"))
        else:
            hazards = tuple(tuple(h) for h in self.status.get('hazards', []))
            todo = [p for p in self.status.get('pending_marks', [])
                    if str(p['id']) not in self.done
                    and (str(p['id']) not in self.guarded or str(p['id']) in self.deferred)
                    and self._may_try(now, p, hazards)]
            out.events += self._unfixed
            out.log += [('warn', f"target {e['target_id']}: mark deferred ({e['reason']})")
                        for e in self._unfixed]
            self._unfixed = []
            if not todo:
                return
            x, y = self.pose[0], self.pose[1]
            target = min(todo, key=lambda p: (p['x'] - x) ** 2 + (p['y'] - y) ** 2)
        hazards = tuple(tuple(h) for h in self.status.get('hazards', []))
        self.seq = MarkingSequence(self.robot, self.config, str(target['id']),
                                   (float(target['x']), float(target['y'])),
                                   str(target.get('classification', 'unknown')), hazards=hazards,
                                   backup_room=self.backup_room(), command_ids=self.ids)
        actions = self.seq.start(now, self.pose, self.speed)
        if self.seq.state != 'done':
            # the robot stops for this mark (a target not to be marked, e.g. clutter by policy,
            # or one deferred because it cannot be reached from here gets no 'started')
            out.events.append({'event': 'started', 'target_id': self.seq.target_id})
            self._announced = self.seq.target_id
        self._apply(now, actions, out)

    def _hits(self, tid: str) -> int:
        """Detections that can fix a position across the track: metal fits and camera blobs (a GPR
        echo on the outermost antenna is no better placed than the metal fit there)."""
        ev = (self.candidates.get(tid) or {}).get('evidence') or {}
        return sum(int((ev.get(k) or {}).get('hits') or 0) for k in ('metal', 'camera'))

    def _position_unfixed(self, pending: dict) -> str | None:
        """Why a target's position is not good enough to mark yet, or None: seen in one metal
        detector fit only, at or beyond the outermost coil of the array (no coil outside it brackets
        the response: such fits sat on the edge coil, 0.13-0.16 m from an object further out). The
        neighbouring lane, or the mark visit, sees it inside the array and fixes it."""
        tid = str(pending['id'])
        ev = (self.candidates.get(tid) or {}).get('evidence') or {}
        metal = ev.get('metal') or {}
        others = sum(int((e or {}).get('hits') or 0) for k, e in ev.items() if k != 'metal')
        if int(metal.get('hits') or 0) != 1 or others:
            return None
        c, s = math.cos(self.pose[2]), math.sin(self.pose[2])
        lateral = -(float(pending['x']) - self.pose[0]) * s + (float(pending['y']) - self.pose[1]) * c
        md = self.robot.metal_detector
        if abs(lateral - md.xyz[1]) < max(abs(v) for v in md.coil_y) - 0.05:
            return None
        return (f'position not fixed yet: one metal fit, {lateral:+.2f} m across the lane, at or '
                'beyond the outermost coil (marked once a pass sees it inside the array)')

    def _may_try(self, now: float, pending: dict, hazards) -> bool:
        """A deferred target is tried again (at most every ``RETRY_PERIOD`` s) once the nozzle can reach it
        from the robot's current pose by backing up along its own track (a forward move after a
        turn could take the front wheels past the ground swept so far)."""
        tid = str(pending['id'])
        entry = self.deferred.get(tid)
        if entry is not None and not marking_policy(str(pending.get('classification', 'unknown')),
                                                    self.config).mark:
            # settled since as a class not to mark (clutter by policy): its outcome, at once
            del self.deferred[tid]
            return True
        if entry is not None and 'hits' in entry:
            hits = self._hits(tid)
            if hits != entry.setdefault('last_hits', entry['hits']):
                entry['last_hits'], entry['changed'] = hits, now
            if hits <= entry['hits'] or now - entry.get('changed', now) < 2.0:
                return False
            # seen again, and no new detection for 2 s (fusion has the whole pass): an ordinary
            # mark to make from here on
            del self.deferred[tid]
            entry = None
        if entry is None:
            why = self._position_unfixed(pending)
            if why is None:
                return True
            self.deferred[tid] = {'t': now, 'reason': why, 'hits': self._hits(tid)}
            self._unfixed.append({'event': 'outcome', 'target_id': tid, 'status': 'deferred', 't': float(now),
                                  'x': None, 'y': None, 'target': (float(pending['x']), float(pending['y'])),
                                  'mode': None, 'attempts': 0, 'reason': why})
            return False
        if now - entry['t'] < RETRY_PERIOD:
            return False
        entry['t'] = now
        plan = plan_mark(self.robot, self.pose, (float(pending['x']), float(pending['y'])), self.config,
                         hazards=hazards)
        back = min(RETRY_BACKUP, self.backup_room() + self.config.stop_tolerance)
        return plan.feasible and -back <= plan.travel <= self.config.stop_tolerance

    def _apply(self, now: float, actions, out: MarkingStep) -> None:
        for action in actions:
            if isinstance(action, Stop):
                self.moving = None
                out.cmd = (0.0, 0.0)
            elif isinstance(action, MoveAlong):
                self.moving = action
            elif isinstance(action, Fire):
                self.sent += 1
                out.fires.append({'cmd_id': action.command_id, 'name': 'FIRE',
                                  'target': self.seq.target_id,
                                  'duration_ms': int(round(action.duration * 1000)),
                                  'slide_mm': int(round(action.slide * 1000)), 'mode': action.mode})
            elif isinstance(action, Resume):
                self.moving = None
        if self.seq is not None and self.seq.outcome is not None and self.seq.outcome.status == 'deferred':
            o = self.seq.outcome
            first = o.target_id not in self.deferred
            self.deferred[o.target_id] = {'t': now, 'reason': o.reason}
            if first or self._announced == o.target_id:
                # the first deferral, or one after a 'started' (the mission is in marking and
                # waits for this outcome: left unsent, a second deferral of a target during its
                # mark visit held the mission in marking for good)
                # the mission records the deferral (an event; the target stays a mark to make)
                out.events.append({'event': 'outcome', **asdict(o)})
                out.log.append(('warn', f'target {o.target_id}: mark deferred ({o.reason})'))
            self.seq = None
            self.moving = None
            self._announced = None
        if self.seq is not None and self.seq.outcome is not None:
            o = self.seq.outcome
            self.deferred.pop(o.target_id, None)
            out.events.append({'event': 'outcome', **asdict(o)})
            self.done.add(o.target_id)
            self.finished[o.target_id] = [out.events[-1], now]
            if o.status == 'failed':
                out.log.append(('error', f'target {o.target_id}: mark FAILED ({o.reason})'))
            else:
                out.log.append(('info', f'target {o.target_id}: {o.status} ({o.reason})'))
            self.seq = None
            self.moving = None
            self._announced = None
