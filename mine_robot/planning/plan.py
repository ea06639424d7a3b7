"""The coverage plan: an ordered list of segments (``lane`` = detector sweeping, ``transit`` = turns
and moves between lanes), its JSON form (the ``coverage/plan`` topic), its PLAN.geojson form and a
pose stream for followers and checks.

Segments join end to start (segment i's last point is segment i+1's first point). The robot drives
``base_link`` along the points, facing the direction of travel (or, on a ``direction: reverse``
transit, facing away from it: the robot backs up), and turns in place at vertices (skid steer).
"""

from __future__ import annotations

from dataclasses import dataclass, field
import json
import math

import numpy as np

ROLES = ('lane', 'transit')
DIRECTIONS = ('forward', 'reverse')


class PlanError(ValueError):
    """A plan (JSON or GeoJSON) that is malformed."""


@dataclass
class Segment:
    role: str
    points: np.ndarray
    seq: int
    lane: int | None = None
    direction: str = 'forward'

    def __post_init__(self):
        if self.role not in ROLES:
            raise PlanError(f'segment role must be one of {ROLES}, got {self.role!r}')
        if self.direction not in DIRECTIONS:
            raise PlanError(f'segment direction must be one of {DIRECTIONS}, got {self.direction!r}')
        if self.direction == 'reverse' and self.role != 'transit':
            raise PlanError(f'segment {self.seq}: only transit segments may be driven in reverse')
        self.points = np.asarray(self.points, dtype=float).reshape(-1, 2)
        if len(self.points) < 2:
            raise PlanError(f'segment {self.seq} needs at least 2 points')

    @property
    def length(self) -> float:
        return float(np.hypot(*np.diff(self.points, axis=0).T).sum())


@dataclass
class CoveragePlan:
    segments: list[Segment]
    stats: dict = field(default_factory=dict)
    swath_width: float = 0.0
    spacing: float = 0.0
    # the robot's heading where the plan starts (a mission re-plan from where the robot stands):
    # poses, vertex poses and the safety replays begin with the point turn from it; None = unknown
    # (the plan starts facing its first move)
    start_yaw: float | None = None
    # True: every lane runs over ground the detector has swept already (a mission's mark visit):
    # the follower drives them at transit speed, not the slow sweep speed
    swept_lanes: bool = False

    @property
    def length(self) -> float:
        return float(sum(s.length for s in self.segments))

    def path(self) -> np.ndarray:
        """(N, 2) concatenated base_link path (shared joints once)."""
        if not self.segments:
            return np.zeros((0, 2))
        parts = [self.segments[0].points] + [s.points[1:] for s in self.segments[1:]]
        return np.vstack(parts)

    def to_dict(self) -> dict:
        return {'swath_width': self.swath_width, 'spacing': self.spacing, 'stats': self.stats,
                **({'start_yaw': round(float(self.start_yaw), 6)} if self.start_yaw is not None else {}),
                **({'swept_lanes': True} if self.swept_lanes else {}),
                'segments': [{'role': s.role, 'seq': s.seq, 'lane': s.lane,
                              **({'direction': s.direction} if s.direction != 'forward' else {}),
                              'points': np.round(s.points, 4).tolist()} for s in self.segments]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(',', ':'))

    @classmethod
    def from_json(cls, text: str) -> CoveragePlan:
        try:
            data = json.loads(text)
            segments = [Segment(role=s['role'], points=np.asarray(s['points'], dtype=float),
                                seq=int(s['seq']), lane=s.get('lane'),
                                direction=s.get('direction', 'forward')) for s in data['segments']]
            start_yaw = data.get('start_yaw')
            return cls(segments=segments, stats=dict(data.get('stats', {})),
                       swath_width=float(data.get('swath_width', 0.0)),
                       spacing=float(data.get('spacing', 0.0)),
                       start_yaw=None if start_yaw is None else float(start_yaw),
                       swept_lanes=bool(data.get('swept_lanes', False)))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise PlanError(f'not a coverage plan: {exc}') from exc

    def to_geojson(self, frame) -> dict:
        """PLAN.geojson: WGS84 LineStrings with role and seq, plus top-level stats."""
        feats = []
        for s in self.segments:
            lon, lat = frame.to_wgs84(s.points[:, 0], s.points[:, 1])
            coords = [[round(float(a), 9), round(float(b), 9)] for a, b in zip(lon, lat)]
            props = {'role': s.role, 'seq': s.seq}
            if s.lane is not None:
                props['lane'] = s.lane
            if s.direction != 'forward':
                props['direction'] = s.direction
            feats.append({'type': 'Feature', 'properties': props,
                          'geometry': {'type': 'LineString', 'coordinates': coords}})
        return {'type': 'FeatureCollection', 'datum': {'lat': frame.lat, 'lon': frame.lon},
                'stats': self.stats, 'swath_width': self.swath_width, 'spacing': self.spacing,
                'features': feats}

    @classmethod
    def from_geojson(cls, obj: dict, frame) -> CoveragePlan:
        try:
            feats = sorted(obj['features'], key=lambda f: int(f['properties']['seq']))
            segments = []
            for f in feats:
                ll = np.asarray(f['geometry']['coordinates'], dtype=float)
                x, y = frame.to_local(ll[:, 0], ll[:, 1])
                p = f['properties']
                segments.append(Segment(p['role'], np.column_stack([x, y]), int(p['seq']), p.get('lane'),
                                        p.get('direction', 'forward')))
        except (KeyError, TypeError, ValueError) as exc:
            raise PlanError(f'not a PLAN.geojson: {exc}') from exc
        return cls(segments, dict(obj.get('stats', {})), float(obj.get('swath_width', 0.0)),
                   float(obj.get('spacing', 0.0)))

    def poses(self, step: float = 0.1, yaw_step: float = 0.1) -> np.ndarray:
        """(N, 4) [x, y, yaw, segment_index]: positions every ``step`` m with the robot's heading
        (the direction of travel, or its opposite on ``reverse`` segments), with in-place rotations
        (every ``yaw_step`` rad) where the heading changes."""
        out = []
        yaw_prev = self.start_yaw
        for idx, seg in enumerate(self.segments):
            pts = seg.points
            flip = math.pi if seg.direction == 'reverse' else 0.0
            for a, b in zip(pts[:-1], pts[1:]):
                d = b - a
                dist = math.hypot(*d)
                if dist < 1e-9:
                    continue
                yaw = math.atan2(d[1], d[0]) + flip
                if yaw_prev is not None:
                    dyaw = (yaw - yaw_prev + math.pi) % (2 * math.pi) - math.pi
                    n = int(abs(dyaw) // yaw_step)
                    for k in range(1, n + 1):
                        out.append((a[0], a[1], yaw_prev + dyaw * k / (n + 1), idx))
                    yaw = yaw_prev + dyaw
                n = max(1, math.ceil(dist / step))
                t = np.arange(0, n) / n
                out.extend(zip(a[0] + t * d[0], a[1] + t * d[1], np.full(n, yaw), np.full(n, idx)))
                yaw_prev = yaw
        if self.segments and yaw_prev is not None:
            last = self.segments[-1].points[-1]
            out.append((last[0], last[1], yaw_prev, len(self.segments) - 1))
        arr = np.array(out, dtype=float).reshape(-1, 4)
        arr[:, 2] = (arr[:, 2] + math.pi) % (2 * math.pi) - math.pi
        return arr

    def vertex_poses(self) -> np.ndarray:
        """(N, 4) [x, y, yaw, segment_index] at path vertices only: before and after each turn.

        Between consecutive poses the robot either translates along a straight line at constant
        heading or rotates in place, so this is the exact motion in the fewest poses.
        """
        out = []
        yaw_prev = self.start_yaw
        for idx, seg in enumerate(self.segments):
            flip = math.pi if seg.direction == 'reverse' else 0.0
            for a, b in zip(seg.points[:-1], seg.points[1:]):
                d = b - a
                if math.hypot(*d) < 1e-9:
                    continue
                yaw = math.atan2(d[1], d[0]) + flip
                if yaw_prev is not None:
                    yaw = yaw_prev + (yaw - yaw_prev + math.pi) % (2 * math.pi) - math.pi
                    if abs(yaw - yaw_prev) > 1e-9:
                        out.append((a[0], a[1], yaw_prev, idx))
                out.append((a[0], a[1], yaw, idx))
                yaw_prev = yaw
            if yaw_prev is not None and idx == len(self.segments) - 1:
                out.append((seg.points[-1][0], seg.points[-1][1], yaw_prev, idx))
        return np.array(out, dtype=float).reshape(-1, 4)
