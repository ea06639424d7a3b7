"""Evidence fusion: detections from any number of sensors -> one target per object.

Method (docs/fusion.md has the full description):

* **Association.** A detection joins the nearest target within its gate (``gate_m`` of the sensor,
  widened by both position uncertainties); otherwise it starts a new target. Detections from
  overlapping lanes land on the same target this way. GPR detections are "slant-range"
  detections: a monostatic antenna on the lane centre line measures the along-track position of
  a hyperbola's apex and the slant range ``sqrt(lateral^2 + depth^2)``, not the lateral side; they
  join a target whose along-track offset and predicted slant range agree.
* **Position** is the inverse-variance weighted mean of the point detections (metal detector,
  camera); a target seen only by a slant-range sensor keeps that sensor's position.
* **Confidence** is a Bayesian log-odds sum, hazard (mine/UXO) versus not-a-hazard:
  ``L = prior + sum_s weight_s * llr_s``, where ``llr_s`` comes from the sensor's likelihood table
  in ``config/detection.yaml``: a hit's log-likelihood ratio by the strength feature it reports
  (binned), and ``llr_miss`` when the sensor's footprint passed over the target without a hit.
  ``confidence = 1 / (1 + exp(-L))``.
* **Classification**: ``mine``/``uxo`` when the confidence reaches ``report_threshold`` (``uxo`` when
  the estimated metal mass or the camera's shape says so); ``clutter`` when the evidence says
  not-a-hazard and every sensor that could have seen it has had its chance; ``unknown`` while a
  sensor is still to pass or the evidence is undecided. Nothing is ever deleted: a clutter target
  stays in the list with its evidence, and a metal response stronger than ``strong_metal_snr`` is
  never classified clutter on a single-sensor miss alone.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
import math

import numpy as np

from mine_robot.detection.types import Detection, body_to_map

CLASSES = ('unknown', 'mine', 'uxo', 'clutter')   # index = `class` field on the targets topic
APPROACH_LOOKBACK_M = 1.0   # a sensor that passed a target up to this far back still counts as a pass
STRAIGHT_WINDOW_M = 0.3     # passes count on straight travel: heading within STRAIGHT_MAX_TURN_DEG
STRAIGHT_MAX_TURN_DEG = 8.0  # over the last STRAIGHT_WINDOW_M of path


MAHALANOBIS_GATE = 3.0      # point association: combined-covariance distance (sigmas)


def detection_covariance(det: Detection) -> np.ndarray:
    """2x2 position covariance of a detection in map: ``extra`` ``cov_xx/cov_xy/cov_yy`` when the
    detector gives it (metal detector: the fit's Cramer-Rao bound), else ``sigma^2`` isotropic."""
    e = det.extra
    if all(k in e for k in ('cov_xx', 'cov_xy', 'cov_yy')):
        cov = np.array([[e['cov_xx'], e['cov_xy']], [e['cov_xy'], e['cov_yy']]], dtype=float)
        if np.all(np.isfinite(cov)) and cov[0, 0] > 0 and cov[0, 0] * cov[1, 1] - cov[0, 1] ** 2 > 0:
            return cov
    return np.eye(2) * det.sigma ** 2


class FusionError(ValueError):
    """Invalid fusion configuration or input."""


@dataclass(frozen=True)
class SensorModel:
    """How fusion treats one sensor (one entry of ``detection_fusion.sensors`` in the config)."""

    name: str
    topic: str
    weight: float = 1.0
    # likelihood table: hits whose `feature` is >= bins[i] get llr_hit[i] (bins ascending)
    feature: str = 'confidence'
    bins: tuple[float, ...] = (0.0,)
    llr_hit: tuple[float, ...] = (1.0,)
    llr_miss: float = 0.0            # added once when the footprint passed without a hit
    mount: tuple[float, float] = (0.0, 0.0)   # sensor position in base_link (for coverage)
    # several antennas/heads: their positions in base_link (replaces ``mount``; in the config a
    # list of [x, y] or "gpr" for the GPR channels of config/robot.yaml)
    mounts: tuple[tuple[float, float], ...] = ()
    reach_m: float = 0.0             # lateral half-width within which a miss counts (0: never)
    # slant-range sensors: antenna beam gain exp(-(angle off nadir / this)^2); when a hit joins a
    # target whose position is known, its feature is corrected for the beam (0: no correction)
    beam_half_angle_deg: float = 0.0
    max_beam_angle_deg: float = 60.0  # the correction stops here (noise would be amplified)
    # a miss weighs llr_miss x min(1, gain / miss_full_gain), gain = the beam gain expected at the
    # target's offset from the nearest antenna track and its depth; below miss_min_gain the sensor
    # could not have seen the target and the miss carries no evidence (needs beam_half_angle_deg)
    miss_full_gain: float = 0.5
    miss_min_gain: float = 0.1
    # with > 0: hits carry extra['mdr'] (the sensor's current minimum detectable feature); a miss
    # weighs nothing unless this reference (e.g. the reflectivity of a small mine body) times the
    # beam gain exceeds the mdr, and fully from twice the mdr (a blind sensor does not reject)
    miss_reference: float = 0.0
    miss_delay_m: float = 0.5        # travel past the target before a miss is declared
    # a miss says nothing about objects shallower than this (e.g. a GPR cannot tell an object on
    # the surface from the surface echo); the target's depth comes from the other sensors
    miss_min_depth_m: float = 0.0
    gate_m: float = 0.25             # association gate
    association: str = 'point'       # 'point' | 'slant_range'
    metal: bool = False              # hits are metal alarms (kept for the MD-only record)
    # metal sensors whose hits carry mass_g, depth, peak_signal, peak_x/y: the coil response
    # kernel (coil radius, coil height above ground; "robot" = config/robot.yaml) with which
    # fusion predicts a target's response elsewhere, and so recognises a second fit that a
    # stronger target's response explains (a big object's tail fitted as another object)
    coil: tuple[float, float] = ()
    explain_ratio: float = 0.5       # ... explained when the prediction reaches this share of it
    explain_max_m: float = 1.0       # ... within this distance
    # a metal-only fit this close to a target whose response (feature ``snr``) is at least
    # ``satellite_snr_ratio`` times stronger is a remainder of it too (a misfit beside a strong
    # object; one excavation of the stronger target's spot covers it); 0 = off
    satellite_m: float = 0.0
    satellite_snr_ratio: float = 3.0

    def __post_init__(self):
        if len(self.bins) != len(self.llr_hit) or not self.bins:
            raise FusionError(f'sensor {self.name}: bins and llr_hit must have the same, non-zero length')
        if list(self.bins) != sorted(self.bins):
            raise FusionError(f'sensor {self.name}: bins must be ascending')
        if self.association not in ('point', 'slant_range'):
            raise FusionError(f"sensor {self.name}: association must be 'point' or 'slant_range'")
        if self.weight < 0 or self.reach_m < 0 or self.gate_m <= 0 or self.miss_delay_m < 0:
            raise FusionError(f'sensor {self.name}: weight/reach_m/miss_delay_m must be >= 0, gate_m > 0')
        if self.coil and (len(self.coil) != 2 or min(self.coil) <= 0):
            raise FusionError(f'sensor {self.name}: coil must be [radius, height], both > 0')
        if self.satellite_m < 0 or self.satellite_snr_ratio < 1:
            raise FusionError(f'sensor {self.name}: satellite_m must be >= 0 and '
                              'satellite_snr_ratio >= 1')

    @property
    def mount_points(self) -> tuple[tuple[float, float], ...]:
        return self.mounts if self.mounts else (self.mount,)

    def feature_of(self, det: Detection):
        value = det.confidence if self.feature == 'confidence' else (
            det.strength if self.feature == 'strength' else det.extra.get(self.feature))
        if value is None or not math.isfinite(float(value)):
            return None
        return float(value)

    def llr_of(self, value: float | None) -> float:
        if value is None:
            return 0.0
        idx = int(np.searchsorted(np.asarray(self.bins), float(value), side='right')) - 1
        return float(self.llr_hit[idx]) if idx >= 0 else 0.0

    def hit_llr(self, det: Detection) -> float:
        return self.llr_of(self.feature_of(det))

    def beam_gain(self, lateral: float, slant: float, cap: bool = True) -> float:
        """Relative beam gain of an object ``lateral`` m off the antenna track at slant range
        ``slant`` (1 under the track); ``cap``: no angle beyond ``max_beam_angle_deg``."""
        if self.beam_half_angle_deg <= 0.0:
            return 1.0
        depth = math.sqrt(max(slant * slant - lateral * lateral, 1e-6))
        theta = math.degrees(math.atan2(abs(lateral), depth))
        theta = min(theta, self.max_beam_angle_deg) if cap else theta
        return math.exp(-(theta / self.beam_half_angle_deg) ** 2)


@dataclass(frozen=True)
class FusionConfig:
    sensors: tuple[SensorModel, ...]
    prior_llr: float = -1.0
    report_threshold: float = 0.8      # confidence at/above which a target is called mine/uxo
    clutter_threshold: float = 0.2     # confidence at/below which a finished target is clutter
    min_unknown_confidence: float = 0.4  # below this, a target without metal evidence is clutter
    uxo_mass_g: float = 60.0           # fitted metal mass above which a hazard is called UXO
    strong_metal_snr: float = 1e9      # metal alarms above this SNR are never called clutter
    merge_gate_m: float = 0.2          # gate for point-to-point association (with sigmas)

    def sensor(self, name: str) -> SensorModel | None:
        for s in self.sensors:
            if s.name == name:
                return s
        return None


def fusion_config_from_dict(data: dict, robot=None) -> FusionConfig:
    """Build the config from the plain dict of ``config/detection.yaml`` (detection_fusion node).

    ``"coil": "robot"`` in a sensor entry takes the coil radius and height from ``robot``, and
    ``"mounts": "gpr"`` the GPR antenna positions (a :class:`~mine_robot.robot.RobotGeometry`;
    default: the package's config/robot.yaml), so the models follow config/robot.yaml."""
    if not isinstance(data, dict) or not isinstance(data.get('sensors'), dict) or not data['sensors']:
        raise FusionError('fusion config: "sensors" must map sensor names to their models')
    sensors = []
    for name, raw in data['sensors'].items():
        if not isinstance(raw, dict):
            raise FusionError(f'fusion config: sensor {name!r} must be a mapping')
        unknown = set(raw) - set(SensorModel.__dataclass_fields__) - {'name'}
        if unknown:
            raise FusionError(f'fusion config: sensor {name!r} has unknown keys {sorted(unknown)}')
        kw = dict(raw)
        kw.setdefault('topic', f'detections/{name}')
        for key in ('bins', 'llr_hit', 'mount'):
            if key in kw:
                kw[key] = tuple(float(v) for v in kw[key])
        if kw.get('coil') == 'robot':
            if robot is None:
                from mine_robot.robot import load_robot
                robot = load_robot()
            kw['coil'] = (robot.metal_detector.coil_radius, robot.metal_detector.coil_height)
        elif 'coil' in kw:
            try:
                kw['coil'] = tuple(float(v) for v in kw['coil'])
            except (TypeError, ValueError) as exc:
                raise FusionError(f'fusion config: sensor {name!r}: coil must be [radius, height] or '
                                  '"robot"') from exc
        if 'mounts' in kw:
            kw['mounts'] = _mounts(name, kw['mounts'], robot)
        try:
            sensors.append(SensorModel(name=str(name), **kw))
        except TypeError as exc:
            raise FusionError(f'fusion config: sensor {name!r}: {exc}') from exc
    top = {k: float(v) for k, v in data.items() if k != 'sensors'}
    unknown = set(top) - set(FusionConfig.__dataclass_fields__)
    if unknown:
        raise FusionError(f'fusion config: unknown keys {sorted(unknown)}')
    return FusionConfig(sensors=tuple(sensors), **top)


def _mounts(name, value, robot) -> tuple[tuple[float, float], ...]:
    if isinstance(value, str):
        if value != 'gpr':
            raise FusionError(f'fusion config: sensor {name!r}: mounts must be a list of [x, y] or "gpr"')
        if robot is None:
            from mine_robot.robot import load_robot
            robot = load_robot()
        return tuple((float(x), float(y)) for x, y in robot.gpr.channel_positions())
    try:
        out = tuple((float(x), float(y)) for x, y in value)
    except (TypeError, ValueError) as exc:
        raise FusionError(f'fusion config: sensor {name!r}: mounts must be a list of [x, y]') from exc
    if not out:
        raise FusionError(f'fusion config: sensor {name!r}: mounts is empty')
    return out


@dataclass
class SensorEvidence:
    hits: int = 0
    best_llr: float = -math.inf
    max_confidence: float = 0.0
    max_strength: float = 0.0
    features: dict = field(default_factory=dict)    # extra of the strongest hit
    missed: bool = False
    miss_weight: float = 1.0     # fraction of llr_miss a miss carries (how well it could see)
    pass_track: tuple | None = None   # (x, y, heading) of the antenna's closest pass (misses)
    miss_mdr: tuple | None = None     # the sensor's detection floor at that pass (0.1 m, 0.2 m)
    # slant-range hits: (track x, track y, heading, slant range, feature), for the beam correction
    slant_hits: list = field(default_factory=list, repr=False)

    def to_dict(self) -> dict:
        return {'hits': self.hits, 'llr': None if self.hits == 0 else round(self.best_llr, 3),
                'max_confidence': round(self.max_confidence, 3),
                'max_strength': float(f'{self.max_strength:.5g}'), 'missed': self.missed,
                'features': {k: (float(f'{v:.4g}') if isinstance(v, float) else v)
                             for k, v in self.features.items()}}


@dataclass
class Target:
    id: int
    x: float
    y: float
    sigma: float
    depth: float
    first_t: float
    last_t: float
    evidence: dict[str, SensorEvidence] = field(default_factory=dict)
    confidence: float = 0.0
    classification: str = 'unknown'
    explanation: str = ''
    point_weight: float = 0.0       # sum of 1/sigma^2 of point detections
    settled: bool = False           # every sensor that could see it has had its chance
    duplicate_of: int | None = None  # another target's response explains this one's fits
    duplicate_reason: str = ''
    # closest approach of each covering sensor: name -> [min_dist, path length at min]
    _approach: dict = field(default_factory=dict, repr=False)
    # information (inverse covariance) of the point detections and information-weighted sum
    _info: np.ndarray | None = field(default=None, repr=False)
    _info_xy: np.ndarray | None = field(default=None, repr=False)
    _depth_weight: float = field(default=0.0, repr=False)

    def covariance(self) -> np.ndarray:
        """2x2 covariance of the position in map (isotropic ``sigma`` until a point sensor hit)."""
        if self._info is None:
            return np.eye(2) * self.sigma ** 2
        return np.linalg.inv(self._info)

    @property
    def sensors(self) -> list[str]:
        return sorted(s for s, e in self.evidence.items() if e.hits)

    @property
    def strength(self) -> float:
        return max((e.max_strength for e in self.evidence.values()), default=0.0)

    def to_dict(self, frame=None) -> dict:
        out = {'id': self.id, 'x': round(self.x, 4), 'y': round(self.y, 4),
               'sigma': round(self.sigma, 4),
               'depth_m': None if not math.isfinite(self.depth) else round(self.depth, 3),
               'confidence': round(self.confidence, 4), 'classification': self.classification,
               'settled': self.settled, 'sensors': self.sensors, 'first_t': round(self.first_t, 3),
               'last_t': round(self.last_t, 3), 'explanation': self.explanation,
               'duplicate_of': self.duplicate_of,
               'evidence': {k: v.to_dict() for k, v in self.evidence.items()}}
        if frame is not None:
            lon, lat = frame.to_wgs84(self.x, self.y)
            out['lon'], out['lat'] = round(float(lon), 9), round(float(lat), 9)
        return out


class FusionEngine:
    """Holds the target list. ``update(detections)`` and ``add_pose(t, x, y, yaw)`` return the
    targets that changed; ``targets`` is the full list (never shrinks)."""

    def __init__(self, config: FusionConfig, first_id: int = 1):
        self.config = config
        self.targets: list[Target] = []
        self._next_id = int(first_id)
        self._path = 0.0
        self._last_pose: np.ndarray | None = None
        self._headings: deque = deque()        # (path, yaw) over the last STRAIGHT_WINDOW_M
        self._straight_since = 0.0             # path where the current straight stretch began
        self._t = 0.0
        self.stats = {'detections': 0, 'unknown_sensor': 0}
        self._mdr: dict[str, float] = {}     # sensor -> latest minimum detectable feature

    # ------------------------------------------------------------------ detections
    def update(self, detections: list[Detection]) -> list[Target]:
        changed: dict[int, Target] = {}
        for det in detections:
            model = self.config.sensor(det.sensor)
            if model is None:
                self.stats['unknown_sensor'] += 1
                raise FusionError(f'detection from sensor {det.sensor!r}, which is not in the fusion '
                                  'config (add an entry under detection_fusion.sensors)')
            self.stats['detections'] += 1
            self._t = max(self._t, det.t)
            mdr = det.extra.get('mdr')
            if mdr is not None and math.isfinite(float(mdr)) and float(mdr) > 0.0:
                deep = float(det.extra.get('mdr_deep') or 0.0)
                deep = deep if math.isfinite(deep) and deep > 0.0 else float(mdr)
                self._mdr[det.sensor] = (float(mdr), deep)
            target = self._associate(det, model)
            if target is None:
                target = Target(id=self._next_id, x=det.x, y=det.y, sigma=det.sigma,
                                depth=det.depth if math.isfinite(det.depth) else math.nan,
                                first_t=det.t, last_t=det.t)
                self._next_id += 1
                self.targets.append(target)
            self._absorb(target, det, model)
            self._classify(target)
            changed[target.id] = target
            if model.metal and model.coil:
                for tgt in self._merge_explained(target, model):
                    changed[tgt.id] = tgt
        return list(changed.values())

    # ------------------------------------------------------------------ one target per object
    @staticmethod
    def _fit(tgt: Target, model: SensorModel):
        """(mass, depth, peak signal, peak x, peak y) of the target's best fit by ``model``."""
        ev = tgt.evidence.get(model.name)
        if ev is None or not ev.hits:
            return None
        f = ev.features
        try:
            out = tuple(float(f[k]) for k in ('mass_g', 'peak_signal', 'peak_x', 'peak_y'))
        except (KeyError, TypeError, ValueError):
            return None
        depth = float(f.get('depth', tgt.depth)) if math.isfinite(tgt.depth) else 0.0
        return out[0], max(depth, 0.0), out[1], out[2], out[3]

    def _explains(self, a: Target, b: Target, model: SensorModel) -> str | None:
        """Why ``a``'s fitted response explains the fit of ``b`` (None if it does not): ``a`` is the
        stronger object, and its predicted response where the coils saw ``b`` most strongly is at
        least ``explain_ratio`` of what they saw there."""
        fa, fb = self._fit(a, model), self._fit(b, model)
        if fa is None or fb is None or a is b:
            return None
        mass, depth, peak_a, _, _ = fa
        _, _, peak_b, bx, by = fb
        if peak_a <= peak_b or math.hypot(a.x - b.x, a.y - b.y) > model.explain_max_m:
            return None
        radius, height = model.coil
        r = math.hypot(a.x - bx, a.y - by)
        predicted = mass * (radius ** 2 / (radius ** 2 + r ** 2 + (height + depth) ** 2)) ** 3
        if predicted < model.explain_ratio * peak_b:
            return None
        return (f'duplicate of target {a.id}: its fitted response ({mass:.0f} g at {100 * depth:.0f} cm) '
                f'predicts {predicted:.3g} where this fit peaked at {peak_b:.3g}')

    @staticmethod
    def _satellite(a: Target, b: Target, model: SensorModel) -> str | None:
        """Why ``b`` is a satellite of ``a`` (None if it is not): within ``satellite_m`` of it and
        with a response (``snr``) at least ``satellite_snr_ratio`` times weaker."""
        if model.satellite_m <= 0 or a is b:
            return None
        ev_a, ev_b = a.evidence.get(model.name), b.evidence.get(model.name)
        if ev_a is None or ev_b is None or not ev_a.hits or not ev_b.hits:
            return None
        try:
            snr_a, snr_b = float(ev_a.features['snr']), float(ev_b.features['snr'])
        except (KeyError, TypeError, ValueError):
            return None
        dist = math.hypot(a.x - b.x, a.y - b.y)
        if not (snr_b > 0 and snr_a >= model.satellite_snr_ratio * snr_b and dist <= model.satellite_m):
            return None
        return (f'duplicate of target {a.id}: {100 * dist:.0f} cm from it, whose metal response is '
                f'{snr_a / snr_b:.0f}x stronger (one investigation covers both)')

    def _merge_explained(self, target: Target, model: SensorModel) -> list[Target]:
        """One target per object: a metal-only target whose fit a stronger neighbour's response
        explains is that neighbour seen from the side (a large object's tail, a loose fit beside
        the array). It is kept, classified clutter with ``duplicate_of`` and the reason."""
        changed = []
        if target.duplicate_of is not None:
            return changed
        for other in self.targets:
            if other is target or other.duplicate_of is not None:
                continue
            for a, b in ((target, other), (other, target)):
                if b.duplicate_of is not None or set(b.sensors) - {model.name}:
                    continue     # only a metal-only fit can be another's remainder
                why = self._explains(a, b, model) or self._satellite(a, b, model)
                if why is not None:
                    b.duplicate_of, b.duplicate_reason = a.id, why
                    self._classify(b)
                    changed.append(b)
                    break
            if target.duplicate_of is not None:
                break
        return changed

    def _associate(self, det: Detection, model: SensorModel) -> Target | None:
        best, best_score = None, math.inf
        for tgt in self.targets:
            if tgt.duplicate_of is not None:
                continue
            if model.association == 'slant_range':
                score = self._slant_score(tgt, det, model)
            else:
                dist = math.hypot(tgt.x - det.x, tgt.y - det.y)
                if tgt.point_weight == 0.0:
                    # target known only from slant-range sensors: its lateral position is loose
                    slant = self._slant_score_from(det, tgt, model)
                    score = slant if slant is not None else math.inf
                else:
                    # within the sensor's gate, or within 3 sigma of the combined position
                    # covariance (a fit beside the array is placed loosely across the track only)
                    score = dist / model.gate_m
                    if score > 1.0:
                        cov = tgt.covariance() + detection_covariance(det)
                        d = np.array([det.x - tgt.x, det.y - tgt.y])
                        score = math.sqrt(max(float(d @ np.linalg.solve(cov, d)), 0.0)) / MAHALANOBIS_GATE
            if score < best_score:
                best, best_score = tgt, score
        return best if best_score <= 1.0 else None

    @staticmethod
    def _slant_geometry(det: Detection, px: float, py: float):
        heading = float(det.extra.get('heading', 0.0))
        dx, dy = px - det.x, py - det.y
        along = dx * math.cos(heading) + dy * math.sin(heading)
        lateral = -dx * math.sin(heading) + dy * math.cos(heading)
        return along, lateral

    def _slant_score(self, tgt: Target, det: Detection, model: SensorModel) -> float:
        along, lateral = self._slant_geometry(det, tgt.x, tgt.y)
        slant = float(det.extra.get('slant_range_m', det.depth))
        tol = float(det.extra.get('range_tolerance_m', 0.1)) + tgt.sigma
        if abs(along) > model.gate_m + tgt.sigma:
            return math.inf
        if tgt.point_weight == 0.0:   # both slant-range: along track and slant range
            miss = abs(slant - float(next((e.features.get('slant_range_m', slant) for e in
                                           tgt.evidence.values() if e.hits), slant)))
            miss = 0.0 if miss <= tol else miss
        else:
            # the point sensors' depth is too rough to predict the slant range; the geometry only
            # requires the slant range to reach the target's lateral offset
            miss = max(abs(lateral) - slant, 0.0)
        if miss > tol:
            return math.inf
        return max(abs(along) / (model.gate_m + tgt.sigma), miss / tol)

    def _slant_score_from(self, det: Detection, tgt: Target, model: SensorModel):
        """Score a point detection against a target known only from a slant-range hit."""
        slant_ev = [e for e in tgt.evidence.values() if 'slant_range_m' in e.features]
        if not slant_ev:
            return None
        f = slant_ev[0].features
        ref = Detection(t=tgt.first_t, x=f.get('track_x', tgt.x), y=f.get('track_y', tgt.y),
                        depth=f['slant_range_m'], confidence=0.5, strength=0.0, sensor='slant',
                        extra=f)
        along, lateral = self._slant_geometry(ref, det.x, det.y)
        if abs(along) > model.gate_m + det.sigma + 0.05:
            return math.inf
        miss = max(abs(lateral) - f['slant_range_m'], 0.0)
        tol = float(f.get('range_tolerance_m', 0.1)) + det.sigma
        return math.inf if miss > tol else max(abs(along) / (model.gate_m + det.sigma + 0.05), miss / tol)

    def _absorb(self, tgt: Target, det: Detection, model: SensorModel) -> None:
        ev = tgt.evidence.setdefault(det.sensor, SensorEvidence())
        llr = model.hit_llr(det)
        ev.hits += 1
        ev.max_confidence = max(ev.max_confidence, det.confidence)
        snr = det.extra.get('snr') if model.metal else None
        if snr is not None:      # metal: the features of the best-determined fit
            better = float(snr) >= float(ev.features.get('snr', -math.inf))
        else:
            better = det.strength >= ev.max_strength
        ev.max_strength = max(ev.max_strength, det.strength)
        if better or ev.hits == 1:
            ev.features = dict(det.extra)
            if math.isfinite(det.depth):
                ev.features.setdefault('depth', det.depth)
            if model.association == 'slant_range':
                ev.features.setdefault('track_x', det.x)
                ev.features.setdefault('track_y', det.y)
        ev.best_llr = max(ev.best_llr, llr)
        ev.missed = False
        if model.association == 'slant_range' and len(ev.slant_hits) < 32:
            ev.slant_hits.append((det.x, det.y, float(det.extra.get('heading', 0.0)),
                                  float(det.extra.get('slant_range_m', det.depth)), model.feature_of(det)))
        tgt.last_t = max(tgt.last_t, det.t)
        if model.association == 'point':
            # information-weighted position (each detection's 2x2 covariance: a fit under the
            # array outweighs one beside it across the track, not along it)
            info = np.linalg.inv(detection_covariance(det))
            if tgt.point_weight == 0.0:
                tgt._info, tgt._info_xy = info, info @ np.array([det.x, det.y])
            else:
                tgt._info = tgt._info + info
                tgt._info_xy = tgt._info_xy + info @ np.array([det.x, det.y])
            tgt.x, tgt.y = (float(v) for v in np.linalg.solve(tgt._info, tgt._info_xy))
            tgt.sigma = math.sqrt(float(np.linalg.eigvalsh(tgt.covariance())[-1]))
            depth_sigma = det.extra.get('depth_sigma')
            w = 1.0 / (float(depth_sigma) ** 2 + 1e-4 if depth_sigma else det.sigma ** 2)
            if math.isfinite(det.depth):
                if not math.isfinite(tgt.depth) or tgt._depth_weight == 0.0:
                    tgt.depth = det.depth
                else:
                    tgt.depth = (tgt.depth * tgt._depth_weight + det.depth * w) / (tgt._depth_weight + w)
                tgt._depth_weight += w
            tgt.point_weight += 1.0 / det.sigma ** 2
        elif tgt.point_weight == 0.0 and not math.isfinite(tgt.depth):
            tgt.depth = det.depth

    # ------------------------------------------------------------------ coverage (negative evidence)
    def add_pose(self, t: float, x: float, y: float, yaw: float) -> list[Target]:
        """Robot pose in map: lets fusion know which sensor footprints passed which targets."""
        pose = np.array([x, y, yaw], dtype=float)
        if self._last_pose is not None:
            self._path += float(np.hypot(*(pose[:2] - self._last_pose[:2])))
        self._last_pose = pose
        self._t = max(self._t, t)
        # a pass counts only on straight travel: a detector's window breaks in a turn (metal
        # detector) or its B-scan is no hyperbola there (GPR), so a sweep across a target in a
        # turn is no evidence of absence. The straight stretch starts where the heading last
        # differed by more than STRAIGHT_MAX_TURN_DEG over STRAIGHT_WINDOW_M of path.
        self._headings.append((self._path, yaw))
        while len(self._headings) > 2 and self._headings[1][0] <= self._path - STRAIGHT_WINDOW_M:
            self._headings.popleft()
        turn = max(abs(math.remainder(yaw - h, 2.0 * math.pi)) for _, h in self._headings)
        if math.degrees(turn) > STRAIGHT_MAX_TURN_DEG:
            self._straight_since = self._path
        straight = self._path - self._straight_since
        changed = []
        covering = [s for s in self.config.sensors if s.reach_m > 0.0]
        if not covering or not self.targets:
            return changed
        mounts = [body_to_map(pose, np.array(s.mount_points)) for s in covering]
        c, sn = math.cos(yaw), math.sin(yaw)
        for tgt in self.targets:
            if tgt.settled or tgt.duplicate_of is not None:
                continue
            touched = False
            for s, pts in zip(covering, mounts):
                ev = tgt.evidence.get(s.name)
                if ev is not None and (ev.hits or ev.missed):
                    continue
                # lateral distance of the target from the nearest antenna's line of travel
                dx, dy = tgt.x - pts[:, 0], tgt.y - pts[:, 1]
                lat = np.abs(-dx * sn + dy * c)
                along = dx * c + dy * sn
                # the antenna is abreast of the target or already past it (a detector reports a
                # target after its sensors passed it): the pass happened ``-along`` metres ago
                near = (along < 0.1) & (along > -min(APPROACH_LOOKBACK_M, straight)) & (straight > 0.0)
                if near.any():
                    i = int(np.argmin(np.where(near, lat, np.inf)))
                    lateral, passed_at = float(lat[i]), self._path + min(float(along[i]), 0.0)
                    track = (float(pts[i, 0]), float(pts[i, 1]), float(yaw))
                else:
                    lateral, passed_at, track = math.inf, self._path, None
                rec = tgt._approach.setdefault(s.name, [math.inf, 0.0, None])
                if lateral <= s.reach_m and lateral < rec[0]:
                    rec[0], rec[1], rec[2] = lateral, passed_at, track
                if rec[0] <= s.reach_m and self._path - rec[1] >= s.miss_delay_m:
                    ev = tgt.evidence.setdefault(s.name, SensorEvidence())
                    ev.missed = True
                    # the antenna's track and floor are kept: the weight is re-judged from the
                    # target's current position (a loose first fit moves when a precise one comes)
                    ev.pass_track, ev.miss_mdr = rec[2], self._mdr.get(s.name)
                    touched = True
            if touched:
                self._classify(tgt)
                changed.append(tgt)
        return changed

    # ------------------------------------------------------------------ classification
    def _classify(self, tgt: Target) -> None:
        cfg = self.config
        llr = cfg.prior_llr
        parts = [f'prior {cfg.prior_llr:+.1f}']
        pending = []
        for s in cfg.sensors:
            ev = tgt.evidence.get(s.name)
            if ev is not None and ev.hits and ev.slant_hits and s.beam_half_angle_deg > 0.0 \
                    and tgt.point_weight > 0.0:
                self._beam_corrected(tgt, ev, s)
            shallow = math.isfinite(tgt.depth) and tgt.depth < s.miss_min_depth_m
            if ev is not None and ev.hits and shallow and ev.best_llr < 0.0:
                # within the sensor's blind depth a weak response says nothing either (a GPR
                # echo inside the surface echo is partly removed with it)
                parts.append(f'{s.name} hit x{ev.hits}, too shallow ({100 * tgt.depth:.0f} cm) to judge')
            elif ev is not None and ev.hits and ev.best_llr < 0.0 and s.miss_reference > 0.0 \
                    and tgt.point_weight > 0.0:
                # a weak echo says "no mine body here" only as far as a mine body here would have
                # stood out (a root beside a deep mine in laterite must not reject the mine)
                f = ev.features
                track = (f.get('track_x', tgt.x), f.get('track_y', tgt.y), float(f.get('heading', 0.0)))
                w = self._beam_weight(tgt, s, track, self._mdr.get(s.name))
                llr += s.weight * ev.best_llr * w
                parts.append(f'{s.name} hit x{ev.hits} {s.weight * ev.best_llr * w:+.1f} (weak echo, '
                             f'weight {w:.2f})')
            elif ev is not None and ev.hits:
                llr += s.weight * ev.best_llr
                parts.append(f'{s.name} hit x{ev.hits} {s.weight * ev.best_llr:+.1f}')
            elif ev is not None and ev.missed:
                ev.miss_weight = self._miss_weight(tgt, s, ev)
                if math.isfinite(tgt.depth) and tgt.depth < s.miss_min_depth_m:
                    parts.append(f'{s.name} passed, blind at {100 * tgt.depth:.0f} cm depth')
                else:
                    miss = s.weight * s.llr_miss * ev.miss_weight
                    llr += miss
                    if ev.miss_weight > 0.0:
                        parts.append(f'{s.name} passed, no response {miss:+.1f}')
                    else:
                        parts.append(f'{s.name} passed too far off its beam to tell')
            elif s.reach_m > 0.0:
                pending.append(s.name)
        tgt.confidence = 1.0 / (1.0 + math.exp(-max(min(llr, 50.0), -50.0)))
        tgt.settled = not pending
        metal = [tgt.evidence[s.name] for s in cfg.sensors if s.metal and s.name in tgt.evidence
                 and tgt.evidence[s.name].hits]
        mass = max((float(e.features.get('mass_g', 0.0) or 0.0) for e in metal), default=0.0)
        snr = max((float(e.features.get('snr', 0.0) or 0.0) for e in metal), default=0.0)
        shape = next((e.features.get('shape') for e in tgt.evidence.values() if e.features.get('shape')),
                     None)
        if tgt.duplicate_of is not None:
            cls = 'clutter'      # kept in the record; the target it duplicates carries the object
        elif tgt.confidence >= cfg.report_threshold:
            cls = 'uxo' if (mass >= cfg.uxo_mass_g or shape == 'elongated') else 'mine'
        elif tgt.confidence <= cfg.clutter_threshold and not pending and snr < cfg.strong_metal_snr:
            cls = 'clutter'
        elif not metal and tgt.confidence < cfg.min_unknown_confidence:
            cls = 'clutter'      # weak non-metal evidence only (a stone, a shadow): down-ranked
        else:
            cls = 'unknown'
        tgt.classification = cls
        why = ', '.join(parts)
        tail = f'; waiting for {", ".join(pending)}' if pending else ''
        extra = f'; metal ~{mass:.1f} g' if metal else ''
        dup = f'; {tgt.duplicate_reason}' if tgt.duplicate_of is not None else ''
        tgt.explanation = f'{cls}: P(hazard)={tgt.confidence:.2f} from {why}{extra}{tail}{dup}'

    @staticmethod
    def _miss_weight(tgt: Target, s: SensorModel, ev: SensorEvidence) -> float:
        """How much a miss of slant-range sensor ``s`` says: by the beam gain it had on the target
        (the target's current offset from the closest antenna track, plus two sigmas of its
        position: a loosely placed target may have been further off the beam; depth from the
        point sensors or 0.1 m) and, with ``miss_reference``, by whether a reference hazard would
        have stood above the sensor's minimum detectable feature at that pass."""
        if s.beam_half_angle_deg <= 0.0:
            return 1.0
        return FusionEngine._beam_weight(tgt, s, ev.pass_track, ev.miss_mdr)

    @staticmethod
    def _beam_weight(tgt: Target, s: SensorModel, track, floor_pair) -> float:
        """Weight of a slant-range sensor's verdict that no mine body is at the target, given the
        antenna track ``(x, y, heading)`` it looked from and its detection floors ``floor_pair``
        (see :meth:`_miss_weight`)."""
        if track is None:
            return 0.0
        tx, ty, heading = track
        lateral = abs(-(tgt.x - tx) * math.sin(heading) + (tgt.y - ty) * math.cos(heading))
        lateral += 2.0 * max(tgt.sigma - 0.015, 0.0)
        depth = tgt.depth if math.isfinite(tgt.depth) else 0.1
        depth = min(max(depth, 0.02), 0.5)
        gain = s.beam_gain(lateral, math.hypot(lateral, depth), cap=False) if lateral > 0 else 1.0
        if gain < s.miss_min_gain:
            return 0.0
        weight = min(1.0, gain / s.miss_full_gain)
        if s.miss_reference > 0.0:
            if floor_pair is None:
                return 0.0      # the sensor had not yet shown what it can see here: no verdict
            # the floor at the target's slant range: log-linear between the sensor's floors
            # at 0.1 m and 0.2 m under its track (spreading and the soil's attenuation)
            floor_1, floor_2 = floor_pair
            slant = math.hypot(lateral, depth)
            floor = floor_1 * (floor_2 / floor_1) ** ((max(slant, 0.05) - 0.1) / 0.1)
            margin = s.miss_reference * gain / floor         # expected hit over the detection floor
            weight *= min(max(margin - 1.0, 0.0), 1.0)
        return weight

    def _beam_corrected(self, tgt: Target, ev: SensorEvidence, s: SensorModel) -> None:
        """Best hit llr of a slant-range sensor with each hit's feature corrected for the beam
        gain at the target's offset from that antenna's track (the target's position is known
        from point sensors): an object between two antennas is seen off-nadir and weaker."""
        best, best_value = -math.inf, None
        for x, y, heading, slant, value in ev.slant_hits:
            if value is None:
                continue
            lateral = -(tgt.x - x) * math.sin(heading) + (tgt.y - y) * math.cos(heading)
            corrected = value / s.beam_gain(lateral, slant)
            llr = s.llr_of(corrected)
            if llr > best or best_value is None:
                best, best_value = llr, corrected
        if best_value is not None:
            ev.best_llr = best
            ev.features[f'{s.feature}_corrected'] = best_value

    def reported(self) -> list[Target]:
        """Targets reported as possible hazards (mine, uxo, unknown)."""
        return [t for t in self.targets if t.classification != 'clutter']
