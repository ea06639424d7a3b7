"""The mission: state machine + records + coverage accounting + progress, driven by plain events.

The ``mission_manager`` node and the lockstep pipeline both drive one :class:`Mission` with the
same calls: ``start(t, area_path)``, ``on_plan(t, plan_json)``, ``on_pose(t, x, y, yaw)``,
``on_targets(t, targets)``, ``on_mark_started``/``on_mark_outcome`` from the marking node,
``pause``/``resume``/``abort``, and ``finish_lanes(t)`` when the follower reports its path done.
Every accepted transition is written to the records before the call returns; a records I/O error
puts the mission in its fault state (the rows already committed stay, see records.py).
"""

from __future__ import annotations

from dataclasses import dataclass
import json
import math
from pathlib import Path

import numpy as np
from shapely.geometry import LineString

from mine_robot.mission.exports import ExportContext, write_outputs
from mine_robot.mission.marking import HAZARD_CLASSES
from mine_robot.mission.records import MissionRecords, RecordsDataError, RecordsError, RecordsIOError
from mine_robot.mission.state_machine import DRIVING, MissionError, MissionStateMachine, State, Transition
from mine_robot.robot import RobotGeometry


@dataclass(frozen=True)
class MissionConfig:
    output_dir: str = 'out/mission'
    organisation: str = ''
    cleared_depth_m: float = 0.13       # search depth the detector set-up guarantees (MDR field)
    coverage_goal: float = 0.995        # fraction of the searchable area to reach by re-sweeping
    resweep_min_width: float = 0.10     # m; unswept slivers narrower than this are ignored
    max_resweeps: int = 2
    lane_done_fraction: float = 0.98    # a lane is done when its swath is this much swept
    mark_confidence: float = 0.0        # settled targets at/above this get a marking decision
    sweep_speed: float = 0.3            # m/s, for the ETA
    export_png: bool = True
    time_base: float = 0.0              # POSIX seconds added to mission times in the exports
    # The safety monitor holding the robot this long (mission time) while it should be driving
    # lanes is a mission fault naming the rule, instead of a sweep that waits forever; 0 = never.
    safety_stall_timeout: float = 90.0
    # A known hazard in the path (the safety monitor's 'hazard' stop, held this long while driving
    # lanes and not marking) is a detour: a sidestep or rejoin that keeps the plan, else the ground
    # still unswept is re-planned from where the robot stands (after backing out along its own
    # track) with every wheel kept hazard_zone_radius (m) from every known hazard.
    hazard_detour_after: float = 3.0
    # The swept-ground rule holding the robot this long (a sliver the detector missed by a few cm
    # of tracking error under the next wheel move, which going on can never sweep) is a detour
    # too: the unswept ground is re-planned from where the robot stands, and the planner's
    # corner checks sweep the sliver or avoid it; 0 = wait for safety_stall_timeout.
    swept_detour_after: float = 10.0
    hazard_zone_radius: float = 0.25
    max_detours: int = 20
    # Before re-planning, a detour first tries a sidestep (mine_robot.planning.sidestep): leave
    # the lane sideways on swept ground, pass the hazard with every wheel at least
    # sidestep_clearance (>= the safety monitor's hazard_clearance) plus sidestep_margin away,
    # and rejoin the lane; the rest of the plan is kept. false: always re-plan.
    sidestep: bool = True
    sidestep_clearance: float = 0.20
    sidestep_margin: float = 0.08
    # A lane-follower fault while driving (e.g. cross-track beyond its limit) is recovered by
    # re-acquiring the path from where the robot stands, at most this many times per plan; then
    # the mission faults with the follower's reason (a faulted follower holds the robot still).
    follower_recoveries: int = 3
    # Targets still unmarked after the sweep get this many mark-visit rounds (a plan bringing the
    # nozzle over each); targets first deferred during a visit (new, weak re-detections) wait for
    # the next round, so this bounds the time spent; what is left is reported for marking by hand.
    mark_visit_rounds: int = 1
    # A mark visit whose lanes (wheels kept hazard_zone_radius, and sidestep_clearance, from every
    # known hazard) leave a target unmarkable is planned again keeping them only this far (m; the
    # marking node's own wheel_clearance, 0.10, plus 2 cm): a target 0.58 m from a false alarm was
    # left for marking by hand because the planner's square around the false alarm cut the only
    # lane over it, while the nozzle could mark it from most headings (crash-resume batch,
    # 2026-12-06). 0 = no second try.
    visit_clearance: float = 0.12
    # A marked target whose fused estimate later moves more than this from its mark (a new pass
    # fitted it better: the first fit of a large UXO from the neighbouring lane was 0.29 m off) is
    # marked again, at most max_remarks times; the old mark is recorded 'superseded'. 0 = off.
    remark_distance: float = 0.10
    max_remarks: int = 1
    # After a restart of the whole graph fusion starts afresh with new target ids: a target it
    # reports within this distance of one recorded before the restart is that target (its reports
    # update it; it is not marked a second time). 0 = off.
    resume_match_radius: float = 0.15

    def __post_init__(self):
        if not 0.0 < self.coverage_goal <= 1.0:
            raise ValueError(f'coverage_goal must be in (0, 1], got {self.coverage_goal}')
        if not 0.0 < self.lane_done_fraction <= 1.0:
            raise ValueError(f'lane_done_fraction must be in (0, 1], got {self.lane_done_fraction}')
        if self.safety_stall_timeout < 0:
            raise ValueError(f'safety_stall_timeout must be >= 0, got {self.safety_stall_timeout}')
        if self.hazard_detour_after < 0 or self.hazard_zone_radius <= 0 or self.max_detours < 0 \
                or self.swept_detour_after < 0:
            raise ValueError('hazard_detour_after and max_detours must be >= 0, hazard_zone_radius > 0')
        if self.sidestep_clearance < 0 or self.sidestep_margin < 0:
            raise ValueError('sidestep_clearance and sidestep_margin must be >= 0')
        if self.mark_visit_rounds < 0:
            raise ValueError(f'mark_visit_rounds must be >= 0, got {self.mark_visit_rounds}')
        if self.visit_clearance < 0:
            raise ValueError(f'visit_clearance must be >= 0, got {self.visit_clearance}')
        if self.resume_match_radius < 0:
            raise ValueError(f'resume_match_radius must be >= 0, got {self.resume_match_radius}')
        if self.remark_distance < 0 or self.max_remarks < 0:
            raise ValueError('remark_distance and max_remarks must be >= 0')
        if self.follower_recoveries < 0:
            raise ValueError(f'follower_recoveries must be >= 0, got {self.follower_recoveries}')
        if self.sweep_speed <= 0 or self.max_resweeps < 0 or self.cleared_depth_m <= 0:
            raise ValueError('sweep_speed and cleared_depth_m must be > 0, max_resweeps >= 0')


# m; the planner's wheel margin for a re-plan that finds nothing with the configured one
TIGHT_WHEEL_MARGIN = 0.01


@dataclass
class Lane:
    lane: int
    line: LineString
    done: bool = False


# the reason of a retired duplicate's 'not_marked' row (read back on resume)
RETIRED_REASON = 'duplicate of target'


def evidence_hits(evidence) -> int:
    """Detections behind a target: the hits of every sensor in its evidence (0 if unknown)."""
    if not isinstance(evidence, dict):
        return 0
    total = 0
    for ev in evidence.values():
        try:
            total += int(ev.get('hits', 0)) if isinstance(ev, dict) else 0
        except (TypeError, ValueError):
            continue
    return total


def lanes_from_plan_json(plan_json: str) -> list[tuple[int, list]]:
    """[(lane number, points)] of the lane segments of a CoveragePlan JSON (docs/interfaces.md).

    Lanes are numbered by their driving order among the plan's lane segments: a planner may split
    one lane into several segments (around a no-go zone) or reuse a lane label, and the mission
    records need one number per driven lane segment.
    """
    try:
        data = json.loads(plan_json)
        segs = data['segments']
        out = []
        for seg in segs:
            if seg.get('role') == 'lane':
                out.append((len(out), [tuple(map(float, p)) for p in seg['points']]))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise MissionError(f'coverage plan is not valid CoveragePlan JSON: {exc}') from exc
    if not out:
        raise MissionError('coverage plan has no lane segments')
    return out


def _not_escaping(badness: np.ndarray, bad: np.ndarray, slack: float = -1e-9) -> np.ndarray:
    """``bad`` without the plan's opening run of poses whose ``badness`` decreases (the robot getting
    out of a bad place it starts in): by more than ``-slack`` at every pose (``slack`` > 0 also lets
    it stay level, as the safety monitor's hazard rule does: no wheel closer than it already is)."""
    out = bad.copy()
    k = 0
    while k < len(out) and out[k] and (k == 0 or badness[k] < badness[k - 1] + slack):
        out[k] = False
        k += 1
    return out


class Mission:
    def __init__(self, robot: RobotGeometry, config: MissionConfig):
        self.robot = robot
        self.config = config
        self.sm = MissionStateMachine()
        self.records: MissionRecords | None = None
        self.area = None
        self.tracker = None
        self.plan_id: int | None = None
        self.lanes: list[Lane] = []
        self.plan_json: str | None = None      # the plan being driven
        self.resweeps = 0
        self.targets: dict[str, dict] = {}
        self.handled: dict[str, str] = {}      # target id -> final mark status
        self.marking: str | None = None        # target being marked
        self.last_pose: tuple[float, float, float, float] | None = None
        self.faults: list[str] = []
        self._stall_since: float | None = None
        self._hazard_since: float | None = None
        self._swept_since: float | None = None
        self.detours = 0
        self.sidestep_notes: list[str] = []    # what each detour's sidestep attempt found
        self.plan_notes: list[str] = []        # re-plans cut short or dropped, and why
        self._all_done_at_start = False        # every lane of the current plan swept before it
        self.follower_faults = 0               # follower faults recovered on the current plan
        self._gap_from = None                  # last recorded pose of a resumed mission
        self._recent_track = np.zeros((0, 3))  # a resumed mission's last recorded poses (x, y, yaw)
        self._follower_fault_t = -math.inf
        self._pending_kind = 'resweep'         # what the pending missed-strip plan is for
        self.message = 'idle: load an area and start'
        self.report: dict | None = None
        self.pending_resweep = None            # missed strips waiting for a re-sweep plan
        self.detections = 0
        self.deferred: dict[str, str] = {}     # target id -> why its mark was deferred (latest)
        self.mark_visits = 0                   # mark-visit plans made
        self._visited: set[str] = set()        # targets a mark visit was planned for
        self.mark_xy: dict[str, tuple[float, float]] = {}   # target id -> its placed mark
        self.remarks: dict[str, int] = {}      # target id -> marks superseded so far
        self.prior: dict[str, tuple[float, float]] = {}   # targets recorded before a restart
        self.prior_hits: dict[str, int] = {}   # their detection count then
        # marked targets fusion later found another's remainder (their mark retired): one object
        # with that target; a restarted fusion that has not yet seen the object calls them
        # 'unknown' again, and that must not bring them back as marks to make
        self.retired: set[str] = set()
        # sweep, re-sweeps and detours are over: no sensor will pass an unsettled target again
        self.lanes_over = False
        self.aliases: dict[str, str] = {}      # fusion's id after a restart -> the recorded target

    # -- operator requests ------------------------------------------------------------------------
    def start(self, t: float, area_path: str) -> Transition:
        """Load the area, open (or resume) the records and go to planning. A bad area file or a
        database of another area is rejected with MissionError; the state does not change."""
        from mine_robot.planning.area import AreaError, load_area
        from mine_robot.planning.coverage import CoverageTracker
        if self.sm.running:
            self.sm.request('start', t)  # raises the 'already running' message
        if not area_path:
            raise MissionError('no area file given (parameter area_file)')
        try:
            area = load_area(area_path)
            area_obj = json.loads(Path(area_path).read_text())
        except (AreaError, OSError, ValueError) as exc:
            raise MissionError(f'cannot start: {exc}') from exc
        out = Path(self.config.output_dir)
        try:
            records = MissionRecords(out / 'mission.db', area_obj, organisation=self.config.organisation)
        except (RecordsError, RecordsIOError) as exc:
            raise MissionError(f'cannot start: {exc}') from exc
        if self.records is not None:
            self.records.close()
        self.records, self.area = records, area
        self.tracker = CoverageTracker(self.robot)
        self.targets, self.handled, self.lanes, self.plan_id, self.marking = {}, {}, [], None, None
        self.resweeps, self.detours, self.report = 0, 0, None
        self.deferred, self._visited, self.mark_visits = {}, set(), 0
        self.mark_xy, self.remarks, self.prior, self.aliases = {}, {}, {}, {}
        self.prior_hits, self.lanes_over, self.retired = {}, False, set()
        reason = 'operator start'
        if records.resumed:
            track = records.track()
            if len(track):
                self.tracker.add_poses(track[:, 1:4])
                self.last_pose = tuple(track[-1])
                self._gap_from = tuple(track[-1])   # bridged by the first pose after the restart
                self._recent_track = np.asarray(track[-400:, 1:4], dtype=float)
            for tg in records.targets():
                self.targets[tg.id] = {'id': tg.id, 'x': tg.x, 'y': tg.y, 'depth': tg.depth,
                                       'confidence': tg.confidence, 'classification': tg.classification}
                if tg.status in ('marked', 'failed', 'not_marked'):
                    self.handled[tg.id] = tg.status
            self.prior = {tid: (tg['x'], tg['y']) for tid, tg in self.targets.items()}
            self.prior_hits = {tg.id: evidence_hits(tg.evidence) for tg in records.targets()}
            self.aliases = records.aliases()
            for m in records.marks():
                if m.status == 'not_marked' and (m.reason or '').startswith(RETIRED_REASON):
                    self.retired.add(m.target_id)
                if m.status == 'marked':
                    self.mark_xy[m.target_id] = (m.x, m.y)
                elif m.status == 'superseded':
                    self.remarks[m.target_id] = self.remarks.get(m.target_id, 0) + 1
            self.resweeps = sum(1 for _, kind, _ in records.plans() if kind == 'resweep')
            self.detours = sum(1 for _, kind, _ in records.plans() if kind == 'detour')
            self.lanes_over = any(kind == 'mark_visit' for _, kind, _ in records.plans())
            for ev in records.events():
                # why each target still to mark was deferred (the 'failed' record at the end says it)
                tid, _, why = str(ev['reason']).partition(': ')
                if ev['event'] == 'mark_deferred' and tid in self.targets and tid not in self.handled:
                    self.deferred[tid] = why
            prev, _ = records.last_state()
            reason = (f'resumed from {out / "mission.db"} (was {prev}; {len(track)} poses, '
                      f'{len(self.targets)} targets, {len(self.handled)} handled)')
        return self._go('start', t, reason)

    def pause(self, t: float, reason: str = 'operator pause') -> Transition:
        return self._go('pause', t, reason)

    def resume(self, t: float, reason: str = 'operator resume') -> Transition:
        return self._go('resume', t, reason)

    def abort(self, t: float, reason: str = 'operator abort') -> Transition:
        tr = self._go('abort', t, reason)
        self._export_safely(t)
        return tr

    def fault(self, t: float, source: str, message: str) -> Transition | None:
        self.faults.append(f'{source}: {message}')
        self.message = f'fault: {source}: {message}'
        if self.records is not None:
            try:
                self.records.add_fault(t, source, message)
            except RecordsIOError as exc:
                self.faults.append(f'records: {exc}')
        if self.sm.state == State.FAULT:
            return None
        tr = self._go('fault', t, f'{source}: {message}', record=True)
        if source not in ('records', 'exports'):
            # the operator gets the output folder of what was done so far, as after an abort
            self._export_safely(t)
        return tr

    # -- inputs -----------------------------------------------------------------------------------
    def on_plan(self, t: float, plan_json: str) -> Transition | None:
        """A coverage plan (CoveragePlan JSON). Accepted in planning; later plans are ignored."""
        if self.sm.state != State.PLANNING:
            return None
        try:
            lanes = lanes_from_plan_json(plan_json)
        except MissionError as exc:
            return self.fault(t, 'planner', str(exc))
        self._set_lanes(t, plan_json, lanes, 'main')
        if self.sm.state != State.PLANNING:      # recording the plan failed: already in fault
            return None
        done = sum(1 for lane in self.lanes if lane.done)
        tr = self._go('plan_ready', t, f'plan with {len(self.lanes)} lanes ({done} already swept)')
        return tr

    def _strip(self, line: LineString):
        """The searchable ground the detector array sweeps while base_link drives ``line``
        (the lane shifted forward by the detector offset, 90 % of the swath wide)."""
        pts = np.asarray(line.coords, dtype=float)
        seg = np.diff(pts, axis=0)
        seg /= np.maximum(np.linalg.norm(seg, axis=1, keepdims=True), 1e-9)
        dirs = np.vstack([seg, seg[-1:]])
        shifted = LineString(pts + self.robot.metal_detector.xyz[0] * dirs)
        strip = shifted.buffer(self.robot.swath_width / 2.0 * 0.9, cap_style='flat')
        return strip.intersection(self.area.searchable)

    def _lane_swept(self, lane: Lane) -> bool:
        strip = self._strip(lane.line)
        return strip.is_empty or self.tracker.fraction(strip) >= self.config.lane_done_fraction

    def _set_lanes(self, t, plan_json, lanes, kind):
        self.plan_json = plan_json
        self.lanes = [Lane(n, LineString(pts)) for n, pts in lanes]
        for lane in self.lanes:  # on resume, lanes already swept count as done
            # (a mark visit drives over swept ground on purpose: its lanes are done when driven)
            lane.done = kind != 'mark_visit' and self.tracker.pose_count > 0 and self._lane_swept(lane)
        self._all_done_at_start = all(lane.done for lane in self.lanes)
        self.follower_faults, self._follower_fault_t = 0, -math.inf
        if self.records is not None:
            self._rec(lambda: setattr(self, 'plan_id', self.records.add_plan(
                t, plan_json, [lane.lane for lane in self.lanes], kind)), t)
            for lane in self.lanes:
                if lane.done and self.plan_id is not None:
                    self._rec(lambda lane=lane: self.records.lane_done(self.plan_id, lane.lane, t), t)

    def on_safety(self, t: float, stop: bool, reasons: list[str]) -> Transition | None:
        """The safety monitor's verdict. A stop that lasts ``safety_stall_timeout`` while the
        robot should be sweeping becomes a fault with the monitor's reason: the operator must
        look (the robot is held, e.g. by unswept ground ahead of a wheel), not wait for ever."""
        driving = self.sm.state in DRIVING
        if not (stop and driving):
            self._stall_since = self._hazard_since = self._swept_since = None
            return None
        if self._stall_since is None:
            self._stall_since = t
        if any(r.startswith('hazard') for r in reasons) and self.marking is None:
            if self._hazard_since is None:
                self._hazard_since = t
            if t - self._hazard_since >= self.config.hazard_detour_after:
                self._stall_since = self._hazard_since = self._swept_since = None
                return self.detour(t, '; '.join(r for r in reasons if r.startswith('hazard')))
        else:
            self._hazard_since = None
        after = self.config.swept_detour_after
        if after > 0 and self.marking is None and reasons and \
                all(r.startswith('swept_ground') for r in reasons):
            if self._swept_since is None:
                self._swept_since = t
            if t - self._swept_since >= after:
                self._stall_since = self._hazard_since = self._swept_since = None
                return self.detour(t, '; '.join(reasons), what='unswept ground under the next wheel move')
        else:
            self._swept_since = None
        limit = self.config.safety_stall_timeout
        if limit > 0 and t - self._stall_since >= limit:
            self._stall_since = None
            why = '; '.join(reasons) or 'no reason given'
            return self.fault(t, 'safety', f'robot held by the safety monitor for {limit:.0f} s: {why}')
        return None

    def on_follower_fault(self, t: float, reason: str) -> bool:
        """The lane follower reports a fault (its progress state ``fault``). While driving, the
        first ``follower_recoveries`` faults of a plan are recovered: True tells the caller to
        resume the follower, which re-acquires the path from the robot's pose; after that the
        mission faults naming the follower's reason. Repeats within 2 s of a recovery are the
        same fault still being reported (False)."""
        if self.sm.state not in DRIVING or t - self._follower_fault_t < 2.0:
            return False
        self._follower_fault_t = t
        self.follower_faults += 1
        if self.follower_faults > self.config.follower_recoveries:
            self.fault(t, 'follower', f'{reason} ({self.follower_faults - 1} recoveries already tried)')
            return False
        why = f'lane follower fault ({reason}): re-acquiring the path from the robot pose'
        self.message = f'{self.sm.state}: {why}'
        self._rec(lambda: self.records.add_event(t, self.sm.state, self.sm.state, 'follower_fault', why), t)
        return True

    def on_pose(self, t: float, x: float, y: float, yaw: float) -> list[Transition]:
        if not all(math.isfinite(v) for v in (t, x, y, yaw)):
            return []
        self.last_pose = (t, x, y, yaw)
        if self.sm.state not in (*DRIVING, State.INVESTIGATING, State.MARKING, State.PAUSED):
            return []
        if self._gap_from is not None:
            self._bridge_gap(t, x, y, yaw)
        self.tracker.add_pose(x, y, yaw)
        self._rec(lambda: self.records.add_pose(t, x, y, yaw), t)
        return self._check_lanes(t, x, y)

    def _bridge_gap(self, t: float, x: float, y: float, yaw: float) -> None:
        """The first pose after a restart of this process: the robot went on following its plan
        meanwhile, and those poses were never recorded. If it can only have driven straight ahead
        between the last recorded pose and this one (same heading within 5 degrees, at most 5 cm
        off the line, not faster than the robot's speed limit), the straight segment is recorded
        as swept, as it was; otherwise the gap stays unswept and is re-swept."""
        t0, x0, y0, yaw0 = self._gap_from
        self._gap_from = None
        dx, dy = x - x0, y - y0
        along = dx * math.cos(yaw0) + dy * math.sin(yaw0)
        lateral = abs(-dx * math.sin(yaw0) + dy * math.cos(yaw0))
        dyaw = abs((yaw - yaw0 + math.pi) % (2 * math.pi) - math.pi)
        dt = t - t0
        if math.hypot(dx, dy) < 0.05:
            return
        if dt > 0 and dyaw <= math.radians(5.0) and lateral <= 0.05 and \
                0.0 < abs(along) <= self.robot.max_linear * dt + 0.05:
            n = max(2, int(math.ceil(math.hypot(dx, dy) / 0.05)))
            for k in range(1, n):
                f = k / n
                px, py = x0 + f * dx, y0 + f * dy
                ph = yaw0 + f * ((yaw - yaw0 + math.pi) % (2 * math.pi) - math.pi)
                self.tracker.add_pose(px, py, ph)
                tk = t0 + f * dt
                self._rec(lambda tk=tk, px=px, py=py, ph=ph: self.records.add_pose(tk, px, py, ph), t)
            why = (f'track gap of {dt:.1f} s while restarting bridged: {math.hypot(dx, dy):.2f} m straight '
                   'ahead on the heading it had')
        else:
            why = (f'track gap of {dt:.1f} s while restarting not bridged ({math.hypot(dx, dy):.2f} m, '
                   f'heading change {math.degrees(dyaw):.0f} deg, {lateral:.2f} m off line): re-swept')
        self._rec(lambda: self.records.add_event(t, self.sm.state, self.sm.state, 'track_gap', why), t)

    def _check_lanes(self, t, x, y) -> list[Transition]:
        # a pending lane is done when the robot is at its end and its strip is swept (checked
        # only near lane ends, so this stays cheap at odometry rate)
        for lane in self.lanes:
            if lane.done:
                continue
            end = lane.line.coords[-1]
            if math.hypot(end[0] - x, end[1] - y) <= 0.6 and self._lane_swept(lane):
                lane.done = True
                self._rec(lambda lane=lane: self.records.lane_done(self.plan_id, lane.lane, t), t)
        if self.lanes and all(lane.done for lane in self.lanes) and self.sm.state in DRIVING:
            # the plan is over when the robot reaches the end of its last lane (the follower's
            # "done" says the same): a lane counts done 0.6 m before its end, and ending the
            # sweep there left the last 0.6 m of the last lane unswept; a resumed plan whose lanes
            # were all swept before is over at once
            end = self.lanes[-1].line.coords[-1]
            if self._all_done_at_start or math.hypot(end[0] - x, end[1] - y) <= 0.05:
                return self.finish_lanes(t)
        return []

    def detour(self, t: float, why: str, what: str = 'known hazard in the path') -> Transition | None:
        """A known hazard (or a sliver of unswept ground) blocks the path: drop the rest of the
        current plan and re-plan the unswept ground from where the robot stands, around every known
        hazard (see ``hazard_detour_after``, ``swept_detour_after``)."""
        if self.detours >= self.config.max_detours:
            return self.fault(t, 'safety', f'held ({what}) after {self.detours} detours: {why}')
        self.detours += 1
        reason = f'{what} ({why}): re-planning the unswept ground from here'
        if self.sm.state == State.SWEEPING:
            tr = self._go('lanes_done', t, reason)
        else:   # already re-sweeping: the state stays, the event is recorded
            tr = None
            self.message = f'{self.sm.state}: {reason}'
            self._rec(lambda: self.records.add_event(t, self.sm.state, self.sm.state, 'detour', reason), t)
        missed = self.missed_strips()
        if missed.is_empty:
            return self._complete(t, 'nothing left unswept after the hazard stop')
        self.pending_resweep, self._pending_kind = missed, 'detour'
        return tr

    def finish_lanes(self, t: float) -> list[Transition]:
        """The follower has driven the whole plan: go to re-sweep (or complete)."""
        out = []
        if self.sm.state == State.SWEEPING:
            out.append(self._go('lanes_done', t, f'{self.lanes_done}/{len(self.lanes)} lanes done'))
        if self.sm.state == State.RESWEEP and self.pending_resweep is None:
            out += self._plan_or_complete_resweep(t)
        return out

    def missed_strips(self):
        return self.tracker.unswept(self.area.searchable, self.config.resweep_min_width)

    def _plan_or_complete_resweep(self, t: float) -> list[Transition]:
        fraction = self.tracker.fraction(self.area.searchable)
        missed = self.missed_strips()
        if not (fraction >= self.config.coverage_goal or missed.is_empty) and \
                self.resweeps < self.config.max_resweeps:
            self.resweeps += 1
            self.pending_resweep, self._pending_kind = missed, 'resweep'
            return []
        self.lanes_over = True
        visit = self._mark_visit_region(t)
        if visit is not None:
            self.mark_visits += 1
            self.pending_resweep, self._pending_kind = visit, 'mark_visit'
            return []
        if fraction >= self.config.coverage_goal or missed.is_empty:
            return [self._complete(t, f'coverage {100 * fraction:.2f} % ≥ goal')]
        return [self._complete(t, f'coverage {100 * fraction:.2f} % after {self.resweeps} '
                                  're-sweeps (goal not reached; missed strips in coverage.geojson)')]

    def _mark_visit_region(self, t: float):
        """The ground to re-drive so the nozzle can reach the targets still unmarked at the end of the
        sweep (deferred: beyond the slide from every lane driven after they were confirmed, or a
        manoeuvre next to another hazard): a 0.2 m square around each, planned like missed strips
        but without the target itself among the planner's hazards (the lane then runs over it,
        between the wheels, and the marking node stops with the nozzle over it). At most one visit
        per target, at most ``mark_visit_rounds`` rounds; None when there is nothing (more) to visit."""
        import shapely
        from shapely.geometry import box

        todo = [tid for tid in self.pending_marks() if tid not in self._visited]
        if not todo or self.mark_visits >= self.config.mark_visit_rounds:
            return None
        boxes = []
        for tid in todo:
            self._visited.add(tid)
            x, y = self.targets[tid]['x'], self.targets[tid]['y']
            b = box(x - 0.1, y - 0.1, x + 0.1, y + 0.1).intersection(self.area.searchable)
            if b.area >= 1e-3:
                boxes.append(b)
        if not boxes:
            return None
        why = (f'{len(todo)} target(s) not marked yet ({", ".join(todo)}): planning a visit so the '
               'nozzle can reach them')
        self.message = f'{self.sm.state}: {why}'
        self._rec(lambda: self.records.add_event(t, self.sm.state, self.sm.state, 'mark_visit', why), t)
        return shapely.union_all(boxes)

    def _close_unmarked(self, t: float) -> None:
        """At the end: every target still waiting for a mark gets a recorded 'failed' mark with the
        reason (never a silent skip: the report lists it for marking by hand)."""
        for tid in self.pending_marks():
            tg = self.targets[tid]
            why = self.deferred.get(tid, 'no stop pose was reached')
            if tg['classification'] == 'clutter':
                status = 'not_marked'
                reason = (f'clutter at the end, no mark made ({why}); if clutter_policy marks clutter, '
                          'mark it by hand')
            else:
                status = 'failed'
                reason = (f'not marked: no pose on the lanes driven (and the mark visit) let the nozzle '
                          f'reach it ({why}); mark it by hand')
            self._rec(lambda tid=tid, tg=tg, status=status, reason=reason: self.records.add_mark(
                tid, t, status, x=None, y=None, target_x=tg['x'], target_y=tg['y'], mode=None,
                attempts=0, reason=reason), t)
            self.handled[tid] = status

    def on_resweep_plan(self, t: float, plan_json: str) -> None:
        """The plan that drives the missed strips (see :meth:`make_resweep_plan`)."""
        if self.sm.state != State.RESWEEP:
            raise MissionError(f'a re-sweep plan is only accepted in resweep (state {self.sm.state})')
        self._set_lanes(t, plan_json, lanes_from_plan_json(plan_json), self._pending_kind)
        self.pending_resweep = None

    def plan_pending(self, t: float) -> str | None:
        """In re-sweep with missed strips pending: plan them and drive that plan (its JSON is
        returned, for the follower), or, when nothing drivable can be planned, complete with the
        strips reported unsearched (None). Nothing to do otherwise (None)."""
        if self.sm.state != State.RESWEEP or self.pending_resweep is None:
            return None
        try:
            plan = self.make_resweep_plan()
        except ImportError as exc:
            plan = None
            self.faults.append(f'resweep: planner not available: {exc}')
        if plan is None:
            if self._pending_kind == 'mark_visit':
                self.pending_resweep = None
                note = (self.plan_notes or self.faults or ['no plannable visit'])[-1]
                self.faults.append(f'mark visit not planned: {note}')
                fraction = self.tracker.fraction(self.area.searchable)
                self._complete(t, f'coverage {100 * fraction:.2f} %; mark visit could not be planned '
                                  f'({note})')
                return None
            self.resweep_unplannable(t)
            return None
        self.on_resweep_plan(t, plan)
        return plan

    def known_hazards(self) -> list[tuple[float, float]]:
        """(x, y) of every target not classified clutter (what the safety monitor's rule keeps the
        wheels away from)."""
        return [(tg['x'], tg['y']) for tg in self.targets.values() if tg['classification'] != 'clutter']

    def make_resweep_plan(self, planner_config=None, start=None) -> str | None:
        """Plan lanes over the pending missed strips with the planning layer
        (``plan_coverage(..., region=missed)``) from where the robot stands (position and heading),
        keeping every wheel ``hazard_zone_radius`` from every known hazard (``hazards=``: lanes stop
        short of it, turns and transits keep clear, the detector may still pass over it); a detour
        backs out along the robot's own track first when it stands too close to a hazard to turn
        (:meth:`_escapes`). None when nothing could be planned."""
        import shapely

        missed = self.pending_resweep
        if missed is None or missed.is_empty:
            return None
        if start is None and self.last_pose is not None:
            start = self.last_pose[1:4]
        if self._pending_kind == 'detour' and self.config.sidestep:
            plan = self.sidestep_plan()
            if plan is not None:
                return plan
        hazards = self.known_hazards()
        if self._pending_kind == 'mark_visit':
            # the lane must run over the targets to mark (between the wheels), not stop short
            inside = missed.buffer(1e-6)
            hazards = [h for h in hazards if not inside.contains(shapely.Point(h))]
        # the ground swept so far is safe for the wheels inside the search area (``swept=``; swept
        # ground past the outer boundary stays outside the safety monitor's geofence): the planner
        # turns and transits on it instead of counting every corner there unsafe
        swept = self.tracker.swept().buffer(-0.02)
        swept = shapely.union_all([p for p in getattr(swept, 'geoms', [swept]) if p.area >= 0.5])
        # from where the robot stands, else after backing out along its own track: first far enough
        # for a point turn clear of every hazard, then further (the first plan with a drivable lane wins)
        escapes = self._escapes(hazards) if self.last_pose is not None and hazards else []
        starts = escapes + [None] if escapes and escapes[0] is not None else [None] + escapes[1:]
        if self._pending_kind == 'mark_visit':
            todo = [tid for tid in self.pending_marks() if tid in self._visited]
            return self._plan_visit(planner_config, missed, start, swept, hazards, todo)
        for config in self._margins(planner_config):
            for escape in starts:
                at = start if escape is None else (*escape[1], self.last_pose[3])
                plan = self._plan_missed(config, missed, at, swept, hazards, escape)
                if plan is not None:
                    return plan.to_json()
        return None

    def _margins(self, planner_config):
        """The planner config, then the same with ``TIGHT_WHEEL_MARGIN``: the robot that ended a sweep
        on the outermost lane stands ~4 cm inside the boundary's point-turn limit, less than the
        planner's margin plus one raster cell, so no re-plan could start there (the default field's
        mark visit, 2026-12-06); the safety monitor still checks every move."""
        from dataclasses import replace

        from mine_robot.planning.planner import PlannerConfig
        base = planner_config or PlannerConfig()
        yield base
        if base.wheel_margin > TIGHT_WHEEL_MARGIN:
            self.plan_notes.append(f're-planning with a {TIGHT_WHEEL_MARGIN:.2f} m wheel margin '
                                   f'(none with {base.wheel_margin:.2f} m)')
            yield replace(base, wheel_margin=TIGHT_WHEEL_MARGIN)

    def _plan_visit(self, planner_config, region, start, swept, hazards, todo=()) -> str | None:
        """The mark-visit plan: lanes at the automatic angle, then east-west, north-south and the
        two diagonals; the plan that leaves the fewest targets unmarkable from its lanes wins
        (:meth:`_visit_unmarkable`: the lane over a target may run in a direction where the
        nozzle over it puts a wheel next to a neighbouring hazard), then the one that leaves out
        the least of the targets' squares (a corner the planner cannot make wheel-safe drops a
        square). When every one leaves a target unmarkable, the same again with the wheels kept only
        ``visit_clearance`` from the known hazards (the marking node's own rule decides then)."""
        from dataclasses import replace

        best, best_score = None, (math.inf, math.inf)
        clearances = [self.config.hazard_zone_radius]
        if 0 < self.config.visit_clearance < self.config.hazard_zone_radius:
            clearances.append(self.config.visit_clearance)
        for clearance in clearances:
            if best is not None and best_score[0] == 0:
                break
            if clearance != clearances[0]:
                self.plan_notes.append(f'mark visit: {best_score[0] if best else len(todo)} target(s) '
                                       f'unmarkable from lanes keeping the wheels {clearances[0]:.2f} m '
                                       f'from known hazards: planning with {clearance:.2f} m')
            found = False
            for base in self._margins(planner_config):
                for angle in (base.angle_deg, 0.0, 90.0, 45.0, 135.0):
                    plan = self._plan_missed(replace(base, angle_deg=angle), region, start, swept,
                                             hazards, None, clearance=clearance)
                    if plan is not None:
                        found = True
                        score = self._visit_score(plan, todo)
                        if score < best_score:
                            best, best_score = plan, score
                        if score[0] == 0 and score[1] <= 1e-9:
                            break
                if found:
                    break
        if best is None:
            return None
        # its lanes run over ground swept already (the targets' squares): driven at transit speed
        best.swept_lanes = True
        return best.to_json()

    def _visit_score(self, plan, todo) -> tuple[int, float]:
        """(targets its lanes leave unmarkable, area of the targets' squares left out)."""
        left = sum(float(d.get('area_m2', 0.0)) for d in plan.stats.get('dropped') or [])
        if 'cut' in plan.stats:
            left += 1.0         # cut short: some squares are not reached at all
        return self._visit_unmarkable(plan, todo), left

    def _visit_unmarkable(self, plan, todo) -> int:
        """How many of the targets ``todo`` no lane of ``plan`` lets the nozzle mark: for each, a lane
        piece on which, driven in the plan's direction, the nozzle comes abeam the target (or the
        robot starts at most ``RETRY_BACKUP`` past it: the marking node backs up that far) with the
        slide reaching it and the wheels clear of every other known hazard (the marking node's
        check, :func:`mine_robot.mission.marking.plan_mark`, with its default clearances)."""
        from mine_robot.mission.marking import RETRY_BACKUP, MarkingConfig, plan_mark
        config = MarkingConfig()
        known = self.known_hazards()
        marker_x = float(self.robot.marker.xyz[0])
        pieces = []
        for seg in plan.segments:
            if seg.role != 'lane':
                continue
            for a, b in zip(seg.points[:-1], seg.points[1:]):
                length = float(np.hypot(*(b - a)))
                if length > 1e-6:
                    pieces.append((a, (b - a) / length, length))
        unmarkable = 0
        for tid in todo:
            target = np.array([self.targets[tid]['x'], self.targets[tid]['y']])
            markable = False
            for a, u, length in pieces:
                # where base_link is on the piece when the nozzle is abeam the target
                along = float((target - a) @ u) - marker_x
                if not -RETRY_BACKUP <= along <= length + config.stop_tolerance:
                    continue
                pose = a + min(max(along, 0.0), length) * u
                heading = math.atan2(u[1], u[0])
                mark = plan_mark(self.robot, (pose[0], pose[1], heading), target, config,
                                 heading=heading, hazards=known)
                if mark.feasible and -RETRY_BACKUP <= mark.travel <= config.stop_tolerance:
                    markable = True
                    break
            unmarkable += not markable
        return unmarkable

    def _plan_missed(self, planner_config, missed, start, swept, hazards, escape, clearance=None):
        """One re-plan of ``missed`` from ``start`` (after the reverse move ``escape``, if any) keeping
        every wheel ``clearance`` (default ``hazard_zone_radius``) from the known ``hazards``: its
        drivable prefix, or None (reasons in ``plan_notes`` / ``faults``)."""
        from mine_robot.planning.planner import PlannerConfig, plan_coverage
        clearance = self.config.hazard_zone_radius if clearance is None else clearance
        try:
            plan = plan_coverage(self.area, self.robot, planner_config or PlannerConfig(),
                                 start=start, region=missed, swept=swept, hazards=hazards or None,
                                 hazard_clearance=clearance)
        except ValueError as exc:  # PlannerError / AreaError derive from ValueError
            self.faults.append(f'resweep: missed strips ({missed.area:.2f} m²) not planned: {exc}')
            return None
        if escape is not None:
            from mine_robot.planning.plan import Segment
            for seg in plan.segments:
                seg.seq += 1
            plan.segments.insert(0, Segment('transit', np.array(escape), 0, direction='reverse'))
            for item in (plan.stats.get('safety') or {}).get('items') or []:
                if 'segment' in item:       # the planner's findings name its own segments
                    item['segment'] = int(item['segment']) + 1
        if plan.start_yaw is not None and self.last_pose is not None:
            plan.start_yaw = float(self.last_pose[3])
        for piece in plan.stats.get('dropped') or []:
            self.plan_notes.append(f"re-plan left out {piece['area_m2']:.2f} m² at ({piece['where'][0]:.2f}, "
                                   f"{piece['where'][1]:.2f}): {piece['reason']}")
        return self.drivable_prefix(plan, hazards, min(clearance, self.config.sidestep_clearance))

    def _leaving_by_its_track(self, poses, near, close):
        """``close`` without the opening run of poses by which a robot standing next to a hazard
        leaves it: each either retraces the track it came by (within 5 cm, heading within 0.1 rad
        either way: its wheels roll where they just rolled) or takes no wheel closer to the
        hazard, until every wheel is ``sidestep_clearance`` away. A robot resumed after a restart
        where it had straddled two targets could otherwise not move at all."""
        track = self._recent_track
        if not len(track):
            return close
        out = close.copy()
        for k in range(len(poses)):
            if near[k] >= self.config.sidestep_clearance:
                break
            d = np.hypot(track[:, 0] - poses[k, 0], track[:, 1] - poses[k, 1])
            dyaw = np.abs(np.remainder(track[:, 2] - poses[k, 2] + np.pi / 2, np.pi) - np.pi / 2)
            retraces = bool(np.any((d <= 0.05) & (dyaw <= 0.1)))
            if not (retraces or (k > 0 and near[k] >= near[k - 1] - 1e-3)):
                break
            out[k] = False
        return out

    def _starts_next_to_hazard(self, plan, hazards) -> bool:
        """Whether a wheel stands within ``hazard_zone_radius`` of a known hazard at the plan's
        first pose."""
        import shapely

        from mine_robot.planning.coverage import transform
        poses = plan.poses(step=0.05, yaw_step=0.05)
        if not len(poses):
            return False
        wheels = shapely.polygons(transform(self.robot.wheel_patches().reshape(-1, 2),
                                            poses[:1, :3]).reshape(-1, 4, 2))
        pts = shapely.points(np.asarray(hazards, dtype=float))
        return float(np.min(shapely.distance(wheels[:, None], pts[None, :]))) < \
            self.config.hazard_zone_radius

    def drivable_prefix(self, plan, hazards=(), clearance=None):
        """The part of a re-plan the robot may drive: the segments before the first move that the
        planner itself reports unsafe (``stats.safety.items``: wheels on unswept ground) or that
        would put a wheel contact patch off the search area + safe ground, a wheel within
        ``clearance`` (default ``sidestep_clearance``) of a known hazard, or the body or detector
        head into a no-go zone.
        The safety monitor would hold the robot at such a move until the mission faults, so the
        plan is cut there; what it leaves unswept is re-planned in the next round or reported.
        None (with the reason in ``plan_notes``) when no lane is left before the cut."""
        import shapely

        from mine_robot.planning.coverage import detector_outline, transform
        safety = plan.stats.get('safety') or {}
        items = list(safety.get('items') or [])
        starts_near = bool(len(hazards)) and self._starts_next_to_hazard(plan, hazards)
        if starts_near:
            # the robot stands within a hazard's zone (it straddled a target it had just marked
            # when the graph restarted): the planner flags every move from there; the check below
            # lets the robot leave the hazard, as the safety monitor does
            items = [i for i in items if 'known hazard' not in str(i.get('reason', ''))]
        bad = {int(i['segment']): f"{i.get('reason', 'unsafe')} at ({i['where'][0]:.2f}, "
               f"{i['where'][1]:.2f})" if i.get('where') else i.get('reason', 'unsafe')
               for i in items if 'segment' in i}
        if int(safety.get('count', 0) or 0) > len(items) and items:
            # the summary lists only the first violations: nothing after the last listed is known safe
            last = max(int(i['segment']) for i in items if 'segment' in i)
            bad.setdefault(last + 1, 'more unsafe moves than the plan summary lists')
        cut = min(bad) if bad else len(plan.segments)
        reason = bad.get(cut, '')
        poses = plan.poses(step=0.05, yaw_step=0.05)
        poses = poses[poses[:, 3] < cut]
        if len(poses):
            allowed = self.area.search if self.area.safe_ground.is_empty else shapely.union_all(
                [self.area.search, self.area.safe_ground])
            no_go = self.area.no_go_union
            patches = self.robot.wheel_patches()
            wheels = transform(patches.reshape(-1, 2), poses[:, :3]).reshape(len(poses), *patches.shape)
            wheel_polys = shapely.polygons(wheels)                             # (P, 4)
            # as the safety monitor does, the robot may leave a bad place it stands in (back away
            # from a hazard, bring a wheel back onto the area): from the plan's first pose, poses
            # getting strictly better are allowed; any other bad pose cuts the plan
            outside = shapely.area(shapely.difference(wheel_polys, allowed)).sum(axis=1)
            why = np.where(_not_escaping(outside, outside > 1e-4),
                           'a wheel off the search area and safe ground', '')
            if len(hazards):
                pts = shapely.points(np.asarray(hazards, dtype=float))
                near = np.min(shapely.distance(wheel_polys[:, :, None], pts[None, None, :]), axis=(1, 2))
                keep = self.config.sidestep_clearance if clearance is None else clearance
                close = _not_escaping(-near, near < keep, slack=1e-3)
                if starts_near:
                    close = self._leaving_by_its_track(poses, near, close)
                why = np.where((why == '') & close, 'a wheel next to a known hazard', why)
            if not no_go.is_empty:
                into = np.zeros(len(poses), dtype=bool)
                for outline in (self.robot.footprint(), detector_outline(self.robot)):
                    into |= shapely.intersects(shapely.polygons(transform(outline, poses[:, :3])), no_go)
                why = np.where((why == '') & into, 'body or detector in a no-go zone', why)
            hit = np.flatnonzero(why != '')
            if len(hit):
                k = int(hit[0])
                cut, reason = int(poses[k, 3]), f'{why[k]} at ({poses[k, 0]:.2f}, {poses[k, 1]:.2f})'
        if cut >= len(plan.segments):
            return plan
        kept = plan.segments[:cut]
        note = (f're-plan cut before segment {cut} of {len(plan.segments)}: {reason}')
        self.plan_notes.append(note)
        if not any(s.role == 'lane' for s in kept):
            self.plan_notes.append('nothing drivable before the cut')
            return None
        plan.segments = kept
        plan.stats = {**plan.stats, 'cut': {'segment': cut, 'reason': reason}}
        return plan

    def sidestep_plan(self) -> str | None:
        """The plan being driven with a sidestep around the hazards that hold the robot
        (:func:`mine_robot.planning.sidestep.plan_sidestep`), spliced in where the robot stands:
        the sidestep's moves, the rest of that lane from the rejoin point, the rest of the plan.
        Tried on the straight piece the robot is on, then on the next straight forward pieces of the
        plan (the robot held in the turn onto a lane, or by a hazard next to that turn, rejoins the
        lane further on). None when no sidestep is safe (the reason is kept in ``sidestep_notes``)."""
        import shapely

        from mine_robot.planning.plan import CoveragePlan, PlanError, Segment
        from mine_robot.planning.sidestep import plan_sidestep
        if self.plan_json is None or self.last_pose is None:
            return None
        try:
            plan = CoveragePlan.from_json(self.plan_json)
        except PlanError:
            return None
        _, x, y, yaw = self.last_pose
        pieces = [(k, i, seg.points[i], seg.points[i + 1]) for k, seg in enumerate(plan.segments)
                  for i in range(len(seg.points) - 1)]
        here = None
        for n, (k, _i, a, b) in enumerate(pieces):
            d = b - a
            length = float(np.hypot(*d))
            if length < 1e-6:
                continue
            u = d / length
            along = float(np.clip((x - a[0]) * u[0] + (y - a[1]) * u[1], 0.0, length))
            off = float(np.hypot(x - a[0] - along * u[0], y - a[1] - along * u[1]))
            face = math.atan2(u[1], u[0]) + (math.pi if plan.segments[k].direction == 'reverse' else 0.0)
            dyaw = abs((face - yaw + math.pi) % (2 * math.pi) - math.pi)
            score = off + 0.1 * dyaw
            if off <= 0.4 and (here is None or score < here[0] - 1e-6):
                here = (score, n)
        if here is None:
            self.sidestep_notes.append('not on the plan (more than 0.4 m from every piece)')
            return None
        # candidates: the piece the robot is on, then forward pieces starting within 3 m of the plan ahead
        cands, ahead = [], 0.0
        for n in range(here[1], len(pieces)):
            k, i, a, b = pieces[n]
            length = float(np.hypot(*(b - a)))
            if plan.segments[k].direction == 'forward' and length >= 0.5:
                cands.append(n)
            ahead += length if n > here[1] else 0.0
            if ahead > 3.0 or len(cands) >= 4:
                break
        hazards = self.known_hazards()
        safe = self.area.safe_ground
        swept = shapely.union_all([self.tracker.swept(), safe]) if not safe.is_empty else self.tracker.swept()
        inside = shapely.union_all([self.area.search, safe]) if not safe.is_empty else self.area.search
        why: dict = {}
        step = None
        for n in cands:
            k, i, a, b = pieces[n]
            step = plan_sidestep(self.robot, (x, y, yaw), (a, b), hazards, swept,
                                 clearance=self.config.sidestep_clearance, margin=self.config.sidestep_margin,
                                 inside=inside, no_go=self.area.no_go_union, why_not=why)
            if step is not None:
                break
        if step is None:
            self.sidestep_notes.append('no safe sidestep: ' + (', '.join(f'{n} x {r}' for r, n in
                                                                          sorted(why.items())) or
                                                               'no hazard blocks the plan ahead'))
            return None
        seg = plan.segments[k]
        rest = Segment(seg.role, np.vstack([step.rejoin, seg.points[i + 1:]]), 0, lane=seg.lane)
        segments = [*step.segments, rest, *plan.segments[k + 1:]]
        for m, s in enumerate(segments):
            s.seq = m
        out = CoveragePlan(segments, {'kind': 'sidestep', 'offset_m': round(step.offset, 3),
                                      'min_wheel_to_hazard_m': round(step.min_hazard_distance, 3),
                                      'sidestep_length_m': round(step.length, 2)},
                           swath_width=plan.swath_width, spacing=plan.spacing, start_yaw=yaw)
        what = 'rejoin of' if step.offset == 0.0 else f'sidestep {step.offset:+.2f} m beside'
        self.sidestep_notes.append(f'{what} {seg.role} {seg.lane if seg.lane is not None else k}, '
                                   f'{step.length:.1f} m, wheels >= {step.min_hazard_distance:.2f} m '
                                   'from every hazard')
        return out.to_json()

    def _escapes(self, hazards) -> list[tuple[tuple[float, float], tuple[float, float]]]:
        """Straight reverse moves back along the robot's heading (its own track), on swept ground and
        inside the area: the shortest after which a point turn keeps every wheel ``hazard_zone_radius``
        from every known hazard (base_link that far plus the wheels' turn radius away, the planner's
        own keep-off), then 0.5, 1.0 and 1.5 m ones (a re-plan that finds no safe way on from the
        first start tries the next). Starts with None when the robot may already turn where it is."""
        import shapely

        from mine_robot.planning.coverage import wheel_polygons
        _, x, y, yaw = self.last_pose
        pts = np.asarray(hazards, dtype=float).reshape(-1, 2)
        keep_off = self.robot.wheel_turn_radius + self.config.hazard_zone_radius + 0.02
        need = keep_off / math.cos(math.pi / 8) + 0.02
        d = np.arange(41) * 0.05
        px, py = x - d * math.cos(yaw), y - d * math.sin(yaw)
        clear = np.hypot(px[:, None] - pts[None, :, 0], py[:, None] - pts[None, :, 1]).min(axis=1)
        ok = np.flatnonzero(clear >= need)
        picks = sorted({int(ok[0]) if len(ok) else 0, 10, 20, 30} - {0})
        ground = shapely.union_all([self.tracker.swept(), self.area.safe_ground]).buffer(0.02)
        inside = shapely.union_all([self.area.search, self.area.safe_ground]).buffer(1e-6)
        out = []
        for k in picks:
            trail = shapely.union_all([shapely.convex_hull(shapely.union_all([a, b])) for a, b in zip(
                wheel_polygons(self.robot, x, y, yaw), wheel_polygons(self.robot, px[k], py[k], yaw))])
            if not (ground.covers(trail) and inside.covers(trail)):
                break           # the track behind is not all swept (or leaves the area): no further
            out.append(((x, y), (float(px[k]), float(py[k]))))
        # [None, ...]: the robot may turn where it stands (a re-plan from there comes first)
        return [None, *out] if clear[0] >= need else out

    def resweep_unplannable(self, t: float, reason: str | None = None) -> Transition:
        """No plan could be made for the missed strips: complete, reporting them as not searched
        (``reason``: default, the last of ``plan_notes`` or ``faults``)."""
        missed, self.pending_resweep = self.pending_resweep, None
        if reason is None:
            reason = (self.plan_notes or self.faults or ['no plannable strip'])[-1]
        fraction = self.tracker.fraction(self.area.searchable)
        area = f'{missed.area:.2f} m² ' if missed is not None else ''
        goal = 100 * self.config.coverage_goal
        return self._complete(t, f'coverage {100 * fraction:.2f} %, goal {goal:.1f} % NOT reached: missed '
                                 f'strips ({area}in coverage.geojson) left unsearched: {reason}')

    def _complete(self, t: float, reason: str) -> Transition:
        self._close_unmarked(t)
        tr = self._go('resweep_done', t, reason)
        self._export_safely(t)
        return tr

    def on_detections(self, t: float, sensor: str, rows: list[dict]) -> None:
        """Georeferenced detections of one sensor (dicts with t, x, y and optional depth,
        confidence, strength, sigma, det_id): one durable transaction per call."""
        if self.records is None or not self.sm.running or not rows:
            return
        self._rec(lambda: self.records.add_detections(
            [{'sensor': sensor, **{k: v for k, v in r.items() if k != 'sensor'}} for r in rows]), t)
        self.detections += len(rows)

    def on_targets(self, t: float, targets: list[dict]) -> list[str]:
        """Fusion's target list (``Target.to_dict`` dicts). Records them and returns the ids of
        settled hazard targets that still need a mark (the marking node acts on them)."""
        rows = []
        for tg in targets:
            tid = self._resolve(t, str(tg['id']), float(tg['x']), float(tg['y']))
            cls = str(tg.get('classification', 'unknown'))
            if self.handled.get(tid) == 'not_marked' and cls in HAZARD_CLASSES and tid not in self.retired:
                # left unmarked as clutter, reclassified a hazard since: a mark to make again
                del self.handled[tid]
                why = f'{tid}: reclassified {cls} after it was left unmarked as clutter: to be marked'
                self._rec(lambda why=why: self.records.add_event(t, self.sm.state, self.sm.state,
                                                                 'reclassified', why), t)
            row = {'id': tid, 'x': float(tg['x']), 'y': float(tg['y']),
                   'depth': tg.get('depth_m', tg.get('depth')), 'confidence': tg.get('confidence'),
                   'classification': str(tg.get('classification', 'unknown')),
                   'evidence': tg.get('evidence'), 'settled': bool(tg.get('settled', True))}
            self._remark_if_moved(t, tid, row, str(tg['id']))
            self._retire_duplicate_mark(t, tid, tg.get('duplicate_of'))
            if self.targets.get(tid) != row:
                rows.append(row)
            self.targets[tid] = row
        if rows and self.records is not None:
            self._rec(lambda: self.records.upsert_targets(t, rows), t)
        return self.pending_marks()

    def _resolve(self, t: float, tid: str, x: float, y: float) -> str:
        """The recorded target a fusion id stands for: itself, or — for a new id after a restart,
        within ``resume_match_radius`` of a target recorded before it — that target."""
        if tid in self.aliases:
            return self.aliases[tid]
        if tid in self.targets or tid in self.prior or not self.prior or self.config.resume_match_radius <= 0:
            return tid
        old, d = min(((k, math.hypot(x - px, y - py)) for k, (px, py) in self.prior.items()),
                     key=lambda kd: kd[1])
        if d > self.config.resume_match_radius:
            return tid
        self.aliases[tid] = old
        self._rec(lambda: self.records.add_alias(t, tid, old), t)
        why = (f'target {tid} reported after the restart is {old}, recorded before it ({d:.2f} m '
               f'away): its reports update {old}' + (', not marked again' if old in self.handled else ''))
        self._rec(lambda: self.records.add_event(t, self.sm.state, self.sm.state, 'resume_match', why), t)
        return old

    def _remark_if_moved(self, t: float, tid: str, row: dict, fusion_id: str) -> None:
        """A placed mark the target's estimate has moved away from (a later pass fitted it better)
        is superseded and the target becomes a mark to make again (at most ``max_remarks``)."""
        c = self.config
        xy = self.mark_xy.get(tid)
        if xy is None or c.remark_distance <= 0 or self.handled.get(tid) != 'marked' \
                or row['classification'] not in HAZARD_CLASSES or self.remarks.get(tid, 0) >= c.max_remarks:
            return
        moved = math.hypot(row['x'] - xy[0], row['y'] - xy[1])
        if moved <= c.remark_distance:
            return
        if fusion_id != tid and evidence_hits(row.get('evidence')) <= self.prior_hits.get(tid, 0):
            # fusion restarted and re-found the target from fewer detections than the estimate
            # the mark was placed on: not a better fit (one such fit, 0.16 m off a mortar whose
            # mark was 4 mm from it, superseded that mark)
            return
        why = (f'{tid}: target estimate now {moved:.2f} m from its mark (a later pass fitted it '
               f'better; limit {c.remark_distance:.2f} m): to be marked again')
        self._rec(lambda: self.records.supersede_marks(tid, f'estimate moved {moved:.2f} m'), t)
        self._rec(lambda: self.records.add_event(t, self.sm.state, self.sm.state, 'remark', why), t)
        del self.handled[tid]
        del self.mark_xy[tid]
        self.remarks[tid] = self.remarks.get(tid, 0) + 1
        self.deferred.pop(tid, None)
        self._visited.discard(tid)
        self.message = f'{self.sm.state}: {why}'

    def _retire_duplicate_mark(self, t: float, tid: str, duplicate_of) -> None:
        """A marked target that fusion has since found to be another target's remainder (a side
        fit, a satellite: ``duplicate_of``) is one object with that target, which gets its own
        mark: this target's paint is recorded superseded (listed in marks.geojson for removal) and
        the target is left unmarked, as clutter is."""
        if duplicate_of is None or self.handled.get(tid) != 'marked':
            return
        why = (f'{tid}: fusion found it a duplicate of target {duplicate_of} (one object, marked on '
               'its own): its mark is superseded')
        tg = self.targets.get(tid) or {}
        self._rec(lambda: self.records.supersede_marks(tid, f'duplicate of target {duplicate_of}',
                                                       target_status='not_marked'), t)
        self._rec(lambda: self.records.add_mark(
            tid, t, 'not_marked', x=None, y=None, target_x=tg.get('x'), target_y=tg.get('y'), mode=None,
            attempts=0, reason=f'{RETIRED_REASON} {duplicate_of}: no mark of its own'), t)
        self._rec(lambda: self.records.add_event(t, self.sm.state, self.sm.state, 'mark_retired', why), t)
        self.handled[tid] = 'not_marked'
        self.retired.add(tid)
        self.mark_xy.pop(tid, None)
        self.message = f'{self.sm.state}: {why}'

    def pending_marks(self) -> list[str]:
        """Targets to mark: settled hazards (and clutter, for the clutter policy) not handled yet;
        once the lanes are over (``lanes_over``) also hazards fusion never settled: no sensor
        will pass them again, and a hazard is never left unmarked without a recorded reason."""
        return [tid for tid, tg in self.targets.items()
                if tid not in self.handled
                and (tg.get('settled', True) or (self.lanes_over and tg['classification'] in HAZARD_CLASSES))
                and (tg['classification'] in HAZARD_CLASSES or tg['classification'] == 'clutter')
                and (tg.get('confidence') or 0.0) >= self.config.mark_confidence]

    def on_mark_started(self, t: float, target_id: str) -> Transition | None:
        if self.sm.state not in (*DRIVING, State.INVESTIGATING):
            return None
        target_id = self.aliases.get(str(target_id), str(target_id))
        if target_id in self.handled:
            # fusion's new id for a target marked before a restart, started by the marking node's
            # wheel-path guard before this mission's status named it handled: no second mark
            return None
        self.marking = str(target_id)
        return self._go('confirmed', t, f'target {target_id} confirmed: marking')

    def on_mark_outcome(self, t: float, outcome: dict) -> Transition | None:
        """The marking node's result (``MarkOutcome`` fields). Always recorded, even if the
        mission has moved on (a failed or withheld mark is never dropped)."""
        tid = self.aliases.get(str(outcome['target_id']), str(outcome['target_id']))
        status = str(outcome['status'])
        if tid in self.handled and self.marking != tid:
            return None     # the same outcome sent again (the marking node re-sends until recorded)
        if status == 'deferred':
            # not reachable from where the robot is: stays a mark to make (tried again from later
            # poses, then by the mark visit; reported failed only if that fails too)
            reason = str(outcome.get('reason', ''))
            self.deferred[tid] = reason
            if self.marking == tid:
                self.marking = None
                if self.sm.state == State.MARKING:
                    return self._go('mark_deferred', t, f'{tid}: {reason}')
            self._rec(lambda: self.records.add_event(t, self.sm.state, self.sm.state, 'mark_deferred',
                                                     f'{tid}: {reason}'), t)
            return None
        target = outcome.get('target') or (None, None)
        self._rec(lambda: self.records.add_mark(
            tid, t, status, x=outcome.get('x'), y=outcome.get('y'), target_x=target[0],
            target_y=target[1], mode=outcome.get('mode'), attempts=int(outcome.get('attempts', 0)),
            reason=str(outcome.get('reason', ''))), t)
        self.handled[tid] = status
        if status == 'marked' and outcome.get('x') is not None and outcome.get('y') is not None:
            self.mark_xy[tid] = (float(outcome['x']), float(outcome['y']))
            if tid in self.targets:
                # the marking node aims at the estimate of the moment it started; one that moved
                # during the manoeuvre is checked now, not only at fusion's next report (a mortar's
                # estimate moved 0.08 m in those 2 s, fusion reported no more, and its only mark
                # stayed 0.15 m from it: crash-resume batch, 2026-12-06)
                self._remark_if_moved(t, tid, self.targets[tid], tid)
        self.marking = None
        if self.sm.state != State.MARKING:
            return None
        event = 'mark_failed' if status == 'failed' else 'mark_done'
        return self._go(event, t, f'{tid}: {status}: {outcome.get("reason", "")}')

    # -- progress, exports ----------------------------------------------------------------------
    @property
    def lanes_done(self) -> int:
        return sum(1 for lane in self.lanes if lane.done)

    def progress(self) -> dict:
        searchable = self.area.searchable if self.area is not None else None
        # while running, as of the tracker's last batch of poses (a second at most): cheap enough
        # for a status twice a second; exact once the mission has ended
        covered = self.tracker.fraction(searchable, flush=not self.sm.running) \
            if self.tracker and searchable is not None else 0.0
        remaining = sum(lane.line.length for lane in self.lanes if not lane.done)
        marked = sum(1 for s in self.handled.values() if s == 'marked')
        hazards = [t for t in self.targets.values() if t['classification'] != 'clutter']
        return {
            'state': str(self.sm.state), 'message': self.message,
            'percent_covered': round(100.0 * covered, 2),
            'lanes_done': self.lanes_done, 'lanes_total': len(self.lanes),
            'resweeps': self.resweeps,
            'detours': self.detours,
            'detections': self.detections,
            'targets_found': len(self.targets), 'hazards_found': len(hazards),
            'targets_marked': marked,
            'marks_failed': sum(1 for s in self.handled.values() if s == 'failed'),
            'marking': self.marking,
            'eta_s': round(remaining / self.config.sweep_speed, 1) if self.sm.running else 0.0,
            'faults': list(self.faults[-5:]),
            'resumed': bool(self.records is not None and self.records.resumed),
        }

    def status(self) -> dict:
        """The ``mission/status`` body: :meth:`progress` plus what the marking node and the safety
        monitor act on: the marks to make, every target already handled (marked, failed or not
        marked: never marked twice) and the known hazards (every target not called clutter)."""
        status = self.progress()
        status['pending_marks'] = [{'id': tid, 'x': self.targets[tid]['x'], 'y': self.targets[tid]['y'],
                                    'classification': self.targets[tid]['classification'],
                                    **({'remark': self.remarks[tid]} if self.remarks.get(tid) else {})}
                                   for tid in self.pending_marks()]
        # fusion's ids after a restart that stand for handled targets too (the marking node's
        # wheel-path guard works on fusion's ids)
        aliases = (a for a, o in self.aliases.items() if o in self.handled)
        status['handled'] = sorted({*self.handled, *aliases})
        status['hazards'] = [[round(t['x'], 3), round(t['y'], 3)] for t in self.targets.values()
                             if t['classification'] != 'clutter']
        return status

    def export(self, out_dir: str | Path | None = None) -> dict:
        ctx = ExportContext(self.area.frame, self.area.search, tuple(self.area.no_go),
                            self.tracker.swept(), organisation=self.config.organisation,
                            cleared_depth_m=self.config.cleared_depth_m, time_base=self.config.time_base,
                            lanes_total=len(self.lanes), lanes_done=self.lanes_done,
                            state=str(self.sm.state),
                            min_unswept_area_m2=self.config.resweep_min_width ** 2)
        self.report = write_outputs(out_dir or self.config.output_dir, self.records, ctx,
                                    png=self.config.export_png)
        return self.report

    def _export_safely(self, t: float) -> None:
        if self.records is None or self.area is None:
            return
        try:
            self.export()
        except (OSError, RecordsIOError) as exc:
            self.fault(t, 'exports', f'cannot write the output folder: {exc}')

    def close(self) -> int:
        return self.records.close() if self.records is not None else 0

    # -- internals ------------------------------------------------------------------------------------
    def _go(self, event: str, t: float, reason: str, record: bool = True) -> Transition:
        tr = self.sm.request(event, t, reason)
        self.message = f'{tr.target}: {reason}'
        if record and self.records is not None:
            self._rec(lambda: self.records.add_event(t, tr.source, tr.target, event, reason), t)
        return tr

    def _rec(self, write, t: float) -> None:
        """Run a records write; an I/O failure becomes a mission fault (rows kept in backlog),
        a rejected record is a fault too (nothing is queued; later writes go on working)."""
        try:
            write()
        except (RecordsIOError, RecordsDataError) as exc:
            self.faults.append(f'records: {exc}')
            self.message = f'fault: records: {exc}'
            if self.sm.state != State.FAULT:
                tr = self.sm.request('fault', t, f'records: {exc}')
                self.message = f'{tr.target}: records I/O error ({exc})'
