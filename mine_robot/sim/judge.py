"""The judge: scores a run against its scenario's ground truth.

``judge_run(scenario, run, robot)`` takes plain data (:class:`RunRecord`) and returns a dict:

- **probability of detection** over the hazards (kinds ``mine``, ``uxo``, ``surface``): a hazard is
  detected when a report lies within 0.5 m of it (``pd``); the same at 0.25 m (``pd_025``);
- **false alarms**: reports with no hazard within 0.5 m (a report near clutter is a false alarm;
  ``false_alarms_near_clutter`` says how many of them were within 0.5 m of clutter), and false
  alarms per m² of searched area (searchable area ∩ swept ground); extra reports of an already
  reported hazard are ``duplicate_reports``, not false alarms;
- **coverage** of the searchable area (search area − no-go) from the coils' true driven poses,
  computed by the planning layer's ``CoverageTracker`` (the same footprint the planner plans with);
- **marking error** per mark: distance from where the mark really is to the nearest hazard
  (``matched`` false when no hazard is within 0.5 m); a target's earlier marks, made before the
  mission marked it again (its estimate moved), and the marks of a target the record lists as
  superseded only (fusion found it a duplicate of another target), are ``superseded``: listed,
  counted in ``superseded_marks``, left out of the error statistics (a mark the marker made under
  fusion's id after a restart counts for the recorded target that id stands for: ``reported_as``
  in ``marks.geojson``); **per hazard** (``marking_error_per_hazard_m``): the distance from each
  hazard to its nearest mark in force within 0.5 m, the paint its excavation starts from; a further
  mark in force nearer to that hazard than to any other (a false alarm's or a split target's paint
  beside it) is one of the ``extra_marks_near_hazards`` (``hazard_mark`` false in its entry);
- **wheel passes over undetected hazards**: each time a wheel contact patch comes within 0.15 m
  of a hazard before that hazard was first reported (or at all, if it never was), counted once per
  entry into that 0.15 m zone; **wheel passes over known hazards** count the same entries after
  the first report (the robot rolling over a hazard it has already found).

``load_run(output_dir)`` reads a sweep output folder (DESIGN.md §6). Reports are the targets in
``marks.geojson`` not classified as clutter (falling back to ``detections.geojson``); the driven
track is the simulator's ``sim_truth.json`` (true poses and true mark positions, written by
``SimWorld.write_truth`` / the ``sim_world`` node) when present, else the estimated
``track.geojson`` (``track_source`` in the result says which). Report times (ISO 8601 in the
GeoJSON) are put on the track's clock with ``time_base`` (POSIX seconds of sim time 0): from the
argument, else ``sim_truth.json``; times before 2001 are taken to be sim seconds already. When the
clocks cannot be aligned, a hazard counts as detected from the first time a coil passed within
0.5 m of it (``detection_time_source`` says so).
"""

from __future__ import annotations

from dataclasses import dataclass, field
import datetime as dt
import json
import math
from pathlib import Path

import numpy as np

from mine_robot.geo import LocalFrame
from mine_robot.planning.coverage import CoverageTracker
from mine_robot.robot import RobotGeometry
from mine_robot.sim.kinematics import body_to_world
from mine_robot.sim.scenario import Scenario

DETECTION_RADIUS = 0.5
TIGHT_RADIUS = 0.25
WHEEL_CLEARANCE = 0.15
POSIX_2001 = 978_307_200.0


class JudgeError(ValueError):
    """A sweep output folder that cannot be scored (missing or malformed files)."""


@dataclass(frozen=True)
class Report:
    x: float
    y: float
    t: float | None = None          # seconds on the track's clock (None: unknown)
    id: str = ''
    classification: str = 'unknown'


@dataclass(frozen=True)
class MarkRecord:
    x: float
    y: float
    t: float | None = None
    target_id: str = ''


@dataclass
class RunRecord:
    reports: list[Report]
    marks: list[MarkRecord] = field(default_factory=list)
    track: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))   # rows t, x, y, yaw
    track_source: str = 'truth'
    times_aligned: bool = True
    # targets whose every mark the record lists as superseded (fusion found the target a
    # duplicate of another one, which is marked on its own)
    retired_targets: frozenset = frozenset()


def _nearest(points: np.ndarray, x: float, y: float) -> tuple[int, float]:
    if len(points) == 0:
        return -1, math.inf
    d = np.hypot(points[:, 0] - x, points[:, 1] - y)
    i = int(d.argmin())
    return i, float(d[i])


def _wheel_distances(robot: RobotGeometry, track: np.ndarray, hx: float, hy: float) -> np.ndarray:
    """(N,) distance from the hazard to the nearest wheel contact patch at each pose."""
    dx, dy = hx - track[:, 1], hy - track[:, 2]
    c, s = np.cos(track[:, 3]), np.sin(track[:, 3])
    bx, by = c * dx + s * dy, -s * dx + c * dy          # hazard in base_link
    centres = robot.wheels.contact_centres()
    hl, hw = robot.wheels.contact_length / 2.0, robot.wheels.width / 2.0
    ex = np.maximum(np.abs(bx[:, None] - centres[None, :, 0]) - hl, 0.0)
    ey = np.maximum(np.abs(by[:, None] - centres[None, :, 1]) - hw, 0.0)
    return np.hypot(ex, ey).min(axis=1)


def _entries(inside: np.ndarray) -> int:
    """Number of separate runs of True."""
    if inside.size == 0:
        return 0
    return int(inside[0]) + int(np.count_nonzero(inside[1:] & ~inside[:-1]))


def _first_coil_pass(robot: RobotGeometry, track: np.ndarray, hx: float, hy: float) -> float | None:
    coils = robot.metal_detector.coil_positions()
    best = None
    for pose in track:
        xy = body_to_world((pose[1], pose[2], pose[3]), coils)
        if np.min(np.hypot(xy[:, 0] - hx, xy[:, 1] - hy)) <= DETECTION_RADIUS:
            best = float(pose[0])
            break
    return best


def judge_run(scenario: Scenario, run: RunRecord, robot: RobotGeometry) -> dict:
    hazards = scenario.hazards
    clutter = [o for o in scenario.objects if not o.is_hazard]
    hz = np.array([[o.x, o.y] for o in hazards]).reshape(-1, 2)
    cl = np.array([[o.x, o.y] for o in clutter]).reshape(-1, 2)
    reports = run.reports

    # detection and false alarms
    first_report: dict[int, float | None] = {}
    detected_tight: set[int] = set()
    false_alarms, near_clutter, duplicates = [], 0, 0
    for rep in reports:
        i, d = _nearest(hz, rep.x, rep.y)
        if i >= 0 and d <= DETECTION_RADIUS:
            if i in first_report:
                duplicates += 1
                if rep.t is not None and (first_report[i] is None or rep.t < first_report[i]):
                    first_report[i] = rep.t
            else:
                first_report[i] = rep.t
            if d <= TIGHT_RADIUS:
                detected_tight.add(i)
        else:
            _, dc = _nearest(cl, rep.x, rep.y)
            near_clutter += int(dc <= DETECTION_RADIUS)
            false_alarms.append({'id': rep.id, 'x': round(rep.x, 3), 'y': round(rep.y, 3),
                                 'near_clutter': bool(dc <= DETECTION_RADIUS)})

    # coverage from the true driven poses
    track = np.asarray(run.track, dtype=float).reshape(-1, 4)
    searchable = scenario.searchable
    tracker = CoverageTracker(robot)
    if len(track):
        tracker.add_poses(track[:, 1:4])
    swept = tracker.swept()
    searched_area = float(searchable.intersection(swept).area) if not swept.is_empty else 0.0

    # wheel passes over hazards before their first report
    per_hazard = []
    total_passes = total_known = 0
    detection_time_source = ('report time' if run.times_aligned
                             else 'first coil pass (report times not aligned)')
    for i, obj in enumerate(hazards):
        detected = i in first_report
        t_det = first_report.get(i)
        if detected and (t_det is None or not run.times_aligned):
            t_det = _first_coil_pass(robot, track, obj.x, obj.y) if len(track) else None
        passes = passes_known = 0
        if len(track):
            dist = _wheel_distances(robot, track, obj.x, obj.y)
            before = track[:, 0] < t_det if (detected and t_det is not None) else np.ones(len(track), bool)
            passes = _entries((dist <= WHEEL_CLEARANCE) & before)
            passes_known = _entries((dist <= WHEEL_CLEARANCE) & ~before)
        total_passes += passes
        total_known += passes_known
        per_hazard.append({'id': obj.id, 'kind': obj.kind, 'model': obj.model, 'x': obj.x, 'y': obj.y,
                           'depth_m': obj.depth_m, 'metal_g': obj.metal_g, 'detected': detected,
                           'detected_025': i in detected_tight,
                           'first_report_t': None if t_det is None else round(t_det, 2),
                           'wheel_passes_before_detection': passes,
                           'wheel_passes_after_detection': passes_known})

    # marking error: a target's earlier marks are superseded by its latest one (the mission
    # marked it again after its estimate moved; the record lists the old paint for removal)
    latest: dict[str, float] = {}
    for m in run.marks:
        if m.target_id and m.t is not None:
            latest[m.target_id] = max(latest.get(m.target_id, -math.inf), m.t)
    marks, nearest = [], []
    for m in run.marks:
        i, d = _nearest(hz, m.x, m.y)
        nearest.append((i, d))
        superseded = bool(m.target_id and ((m.t is not None and m.t < latest[m.target_id])
                                           or m.target_id in run.retired_targets))
        entry = {'target_id': m.target_id, 'x': round(m.x, 3), 'y': round(m.y, 3),
                 'nearest_hazard': hazards[i].id if i >= 0 else None,
                 'error_m': None if not math.isfinite(d) else round(d, 4),
                 'matched': bool(d <= DETECTION_RADIUS), 'superseded': superseded}
        marks.append(entry)
    errors = [m['error_m'] for m in marks if m['matched'] and not m['superseded']]
    # per hazard: its nearest mark in force (the paint the excavation starts from); another mark in
    # force whose nearest hazard already has a nearer one is extra paint beside it (a false alarm's,
    # or a split target's): in the per-mark figures above, not in these
    best: dict[int, tuple[float, int]] = {}
    for k, (i, d) in enumerate(nearest):
        if marks[k]['matched'] and not marks[k]['superseded']:
            if i not in best or d < best[i][0]:
                best[i] = (d, k)
    primary = {k for _, k in best.values()}
    for k, entry in enumerate(marks):
        entry['hazard_mark'] = k in primary
    per_hazard_errors = [d for d, _ in best.values()]

    n = len(hazards)
    return {
        'scenario': scenario.name,
        'hazards': n,
        'detected': len(first_report),
        'pd': round(len(first_report) / n, 4) if n else None,
        'detected_025': len(detected_tight),
        'pd_025': round(len(detected_tight) / n, 4) if n else None,
        'reports': len(reports),
        'false_alarms': len(false_alarms),
        'false_alarms_near_clutter': near_clutter,
        'duplicate_reports': duplicates,
        'searchable_area_m2': round(float(searchable.area), 3),
        'searched_area_m2': round(searched_area, 3),
        'false_alarms_per_m2': round(len(false_alarms) / searched_area, 5) if searched_area > 0 else None,
        'coverage_fraction': round(tracker.fraction(searchable), 5),
        'marks': marks,
        'marking_error_m': _stats(errors),
        'marking_error_per_hazard_m': _stats(per_hazard_errors),
        'extra_marks_near_hazards': sum(m['matched'] and not m['superseded'] and not m['hazard_mark']
                                        for m in marks),
        'superseded_marks': sum(m['superseded'] for m in marks),
        'wheel_passes_over_undetected_hazards': total_passes,
        'wheel_passes_over_known_hazards': total_known,
        'per_hazard': per_hazard,
        'false_alarm_reports': false_alarms,
        'track_source': run.track_source,
        'track_poses': len(track),
        'detection_time_source': detection_time_source,
        'radii_m': {'detection': DETECTION_RADIUS, 'tight': TIGHT_RADIUS, 'wheel': WHEEL_CLEARANCE},
    }


def _stats(values: list[float]) -> dict:
    return {'count': len(values),
            'mean': round(float(np.mean(values)), 4) if values else None,
            'p95': round(float(np.percentile(values, 95)), 4) if values else None,
            'max': round(float(np.max(values)), 4) if values else None}


# ------------------------------------------------------------------------------ sweep folders

def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except OSError as exc:
        raise JudgeError(f'cannot read {path}: {exc}') from exc
    except json.JSONDecodeError as exc:
        raise JudgeError(f'{path} is not valid JSON: {exc}') from exc


def _posix(text) -> float | None:
    if text in (None, ''):
        return None
    if isinstance(text, (int, float)):
        return float(text)
    try:
        stamp = dt.datetime.fromisoformat(str(text).replace('Z', '+00:00'))
    except ValueError as exc:
        raise JudgeError(f'bad time {text!r}: {exc}') from exc
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=dt.UTC)
    return stamp.timestamp()


def _points(collection: dict, path: Path, frame: LocalFrame) -> list[tuple[float, float, dict]]:
    if not isinstance(collection, dict) or collection.get('type') != 'FeatureCollection':
        raise JudgeError(f'{path}: not a GeoJSON FeatureCollection')
    out = []
    for k, feat in enumerate(collection.get('features') or []):
        geom = (feat or {}).get('geometry') or {}
        if geom.get('type') != 'Point':
            continue
        try:
            lon, lat = float(geom['coordinates'][0]), float(geom['coordinates'][1])
            x, y = frame.to_local(lon, lat)
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise JudgeError(f'{path}: feature {k} has bad coordinates: {exc}') from exc
        out.append((float(x), float(y), feat.get('properties') or {}))
    return out


def load_run(output_dir: str | Path, scenario: Scenario, time_base: float | None = None) -> RunRecord:
    """Read a sweep output folder into a RunRecord on the scenario's frame (see module docstring)."""
    folder = Path(output_dir)
    if not folder.is_dir():
        raise JudgeError(f'{folder} is not a directory')
    frame = scenario.frame
    truth_path = folder / 'sim_truth.json'
    truth = _read_json(truth_path) if truth_path.exists() else None
    if time_base is None and truth is not None and truth.get('time_base') is not None:
        time_base = float(truth['time_base'])

    aligned = True

    def clock(value) -> float | None:
        nonlocal aligned
        t = _posix(value)
        if t is None:
            return None
        if t < POSIX_2001:
            return t                   # already sim seconds (time base 0)
        if time_base is None:
            aligned = False
            return t
        return t - time_base

    reports: list[Report] = []
    marks_path, det_path = folder / 'marks.geojson', folder / 'detections.geojson'
    placed_marks: list[MarkRecord] = []
    superseded_ids, marked_ids = set(), set()
    alias: dict[str, str] = {}      # fusion's id after a restart -> the recorded target id
    if marks_path.exists():
        for x, y, p in _points(_read_json(marks_path), marks_path, frame):
            for fusion_id in p.get('reported_as') or ():
                alias[str(fusion_id)] = str(p.get('target_id', ''))
            if p.get('mark_status') == 'superseded':
                superseded_ids.add(str(p.get('target_id', '')))
            elif p.get('mark_status') == 'marked':
                marked_ids.add(str(p.get('target_id', '')))
            if p.get('classification') == 'clutter' or p.get('mark_status') == 'superseded':
                continue    # superseded: an old mark of a target reported by its own feature
            reports.append(Report(x, y, clock(p.get('time_found')), str(p.get('target_id', '')),
                                  str(p.get('classification', 'unknown'))))
            if p.get('mark_status') == 'marked':
                placed_marks.append(MarkRecord(x, y, clock(p.get('mark_time')), str(p.get('target_id', ''))))
    elif det_path.exists():
        for x, y, p in _points(_read_json(det_path), det_path, frame):
            reports.append(Report(x, y, clock(p.get('time')), str(p.get('id', '')), 'unknown'))
    else:
        raise JudgeError(f'{folder}: neither marks.geojson nor detections.geojson found')

    if truth is not None:
        try:
            track = np.array(truth.get('track') or [], dtype=float).reshape(-1, 4)
            marks = [MarkRecord(float(m['x']), float(m['y']), float(m.get('t', 0.0)),
                                alias.get(str(m.get('target_id', '')), str(m.get('target_id', ''))))
                     for m in truth.get('marks') or []]
        except (KeyError, TypeError, ValueError) as exc:
            raise JudgeError(f'{truth_path}: malformed track or marks: {exc}') from exc
        return RunRecord(reports, marks, track, 'truth (sim_truth.json)', aligned,
                         frozenset(superseded_ids - marked_ids))

    track_path = folder / 'track.geojson'
    track = np.zeros((0, 4))
    if track_path.exists():
        coll = _read_json(track_path)
        for feat in coll.get('features') or []:
            geom = (feat or {}).get('geometry') or {}
            if geom.get('type') != 'LineString':
                continue
            lonlat = np.asarray(geom.get('coordinates') or [], dtype=float).reshape(-1, 2)
            if len(lonlat) < 2:
                continue
            x, y = frame.to_local(lonlat[:, 0], lonlat[:, 1])
            xy = np.column_stack((x, y))
            yaw = np.arctan2(np.diff(xy[:, 1]), np.diff(xy[:, 0]))
            yaw = np.append(yaw, yaw[-1])
            props = feat.get('properties') or {}
            t0, t1 = clock(props.get('start_time')), clock(props.get('end_time'))
            t0 = 0.0 if t0 is None else t0
            t1 = t0 + len(xy) - 1 if t1 is None else t1
            track = np.column_stack((np.linspace(t0, t1, len(xy)), xy, yaw))
            break
    return RunRecord(reports, placed_marks, track, 'estimated (track.geojson)', aligned)


def judge_folder(scenario: Scenario, output_dir: str | Path, robot: RobotGeometry,
                 time_base: float | None = None, write: bool = True) -> dict:
    """Score a sweep folder and write ``judge.json`` into it (atomically)."""
    result = judge_run(scenario, load_run(output_dir, scenario, time_base), robot)
    if write:
        path = Path(output_dir) / 'judge.json'
        tmp = path.with_suffix('.json.tmp')
        tmp.write_text(json.dumps(result, indent=2))
        tmp.replace(path)
    return result
