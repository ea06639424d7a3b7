"""Simulation scenarios: the ground truth of a minefield (DESIGN.md §6), loaded from YAML.

Format (all lengths in metres, x east / y north of the datum on the local tangent plane of
``mine_robot.geo.LocalFrame`` — true east/north, not UTM grid axes)::

    name: default
    datum: {lat: 44.5, lon: 18.6}
    area:                                  # either inline local polygons ...
      search_area: [[0, 0], [10, 0], [10, 10], [0, 10]]     # or {exterior: [...], holes: [[...]]}
      no_go: [[[4, 4], [5, 4], [5, 5], [4, 5]]]             # list of polygons (optional)
      safe_access: [[[-3, 0.2], [0, 0.2], [0, 1.8], [-3, 1.8]]]  # declared safe ground (optional):
                                   # the access lane the robot starts on, may lie outside the area
      # ... or  area_file: field.geojson   (GeoJSON WGS84, path relative to the scenario file)
    soil:
      md_ground_amplitude: 0.004   # std of the ground response, metal-detector signal units
      md_ground_correlation_m: 0.8 # correlation length of the ground response
      md_noise: 0.002              # white noise std per sample, signal units
      md_drift: 0.0005             # drift, signal units / sqrt(s) (slowly mean-reverting walk)
      gpr_permittivity: 6.0        # relative permittivity (v = c / sqrt(eps))
      gpr_noise: 0.01              # white noise std of a trace (trace amplitude units)
      gpr_clutter_density: 0.5     # random rocks/roots per m^2
      gpr_attenuation: 3.0         # optional, amplitude attenuation in 1/m (default 3.0)
    robot: {x: -1.5, y: 1.0, yaw_deg: 0}
    gnss:                          # optional degradation schedule (default: RTK fixed throughout)
      mode: rtk                    # rtk | float | single | none
      events: [{start: 60, end: 75, mode: float}, {start: 120, end: 124, mode: none}]
    objects:
      - {id: M1, kind: mine, model: PMA-2, x: 3.0, y: 4.0, depth_m: 0.05, metal_g: 1.0,
         diameter_m: 0.07, gpr_reflectivity: 0.3, yaw_deg: 0}

``kind`` is ``mine`` | ``uxo`` | ``clutter`` | ``surface``; mines, UXO and surface objects are
hazards the judge expects to be found, clutter is not. ``gpr_reflectivity`` defaults by kind
(plastic mine body 0.3, UXO / metal fragment 1.0, metal-free clutter such as rock 0.5, surface 0.3).
Every error raises :class:`ScenarioError` naming the file and the field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import math
from pathlib import Path
from typing import Any

import numpy as np
from shapely.geometry import Polygon
from shapely.validation import explain_validity
import yaml

from mine_robot.geo import GeoError, LocalFrame
from mine_robot.planning.area import AreaError, SearchArea, load_area
from mine_robot.resources import read_yaml

KINDS = ('mine', 'uxo', 'clutter', 'surface')
HAZARD_KINDS = ('mine', 'uxo', 'surface')
GNSS_MODES = ('rtk', 'float', 'single', 'none')
DEFAULT_REFLECTIVITY = {'mine': 0.3, 'uxo': 1.0, 'surface': 0.3}


class ScenarioError(ValueError):
    """A scenario file is unreadable, incomplete or physically meaningless."""


@dataclass(frozen=True)
class Soil:
    md_ground_amplitude: float = 0.002
    md_ground_correlation_m: float = 1.0
    md_noise: float = 0.002
    md_drift: float = 0.0002
    gpr_permittivity: float = 6.0
    gpr_noise: float = 0.01
    gpr_clutter_density: float = 0.2
    gpr_attenuation: float = 3.0


@dataclass(frozen=True)
class SimObject:
    id: str
    kind: str
    model: str
    x: float
    y: float
    depth_m: float
    metal_g: float
    diameter_m: float
    gpr_reflectivity: float
    yaw_deg: float = 0.0

    @property
    def is_hazard(self) -> bool:
        return self.kind in HAZARD_KINDS

    @property
    def on_surface(self) -> bool:
        """Visible to the camera: surface objects, or anything not buried."""
        return self.kind == 'surface' or self.depth_m <= 0.0


@dataclass(frozen=True)
class RobotStart:
    x: float
    y: float
    yaw: float  # radians, counter-clockwise from east


@dataclass(frozen=True)
class GnssEvent:
    start: float
    end: float
    mode: str


@dataclass(frozen=True)
class GnssSchedule:
    mode: str = 'rtk'
    events: tuple[GnssEvent, ...] = ()

    def mode_at(self, t: float) -> str:
        for ev in self.events:
            if ev.start <= t < ev.end:
                return ev.mode
        return self.mode


@dataclass
class Scenario:
    name: str
    frame: LocalFrame
    search: Polygon
    no_go: list[Polygon]
    soil: Soil
    robot_start: RobotStart
    objects: list[SimObject]
    gnss: GnssSchedule = field(default_factory=GnssSchedule)
    safe: list[Polygon] = field(default_factory=list)
    source: Path | None = None
    _area: Any = field(default=None, repr=False)

    @property
    def area(self) -> SearchArea:
        """The search area as the planning layer's ``SearchArea`` (same datum and polygons)."""
        if self._area is None:
            self._area = SearchArea(frame=self.frame, search=self.search, no_go=list(self.no_go),
                                    safe=list(self.safe), name=self.name)
        return self._area

    @property
    def searchable(self):
        """Search area minus no-go zones (shapely), as the planning layer defines it."""
        return self.area.searchable

    @property
    def hazards(self) -> list[SimObject]:
        return [o for o in self.objects if o.is_hazard]

    def bounds(self, margin: float = 0.0) -> tuple[float, float, float, float]:
        """(xmin, ymin, xmax, ymax) enclosing area, objects and robot start, plus ``margin``."""
        xs = [self.search.bounds[0], self.search.bounds[2], self.robot_start.x]
        ys = [self.search.bounds[1], self.search.bounds[3], self.robot_start.y]
        xs += [o.x for o in self.objects]
        ys += [o.y for o in self.objects]
        return (min(xs) - margin, min(ys) - margin, max(xs) + margin, max(ys) + margin)

    def object_arrays(self) -> dict[str, np.ndarray]:
        """Columns of the object table as numpy arrays (x, y, depth, metal, diameter, refl)."""
        return {
            'x': np.array([o.x for o in self.objects], dtype=float),
            'y': np.array([o.y for o in self.objects], dtype=float),
            'depth': np.array([o.depth_m for o in self.objects], dtype=float),
            'metal': np.array([o.metal_g for o in self.objects], dtype=float),
            'diameter': np.array([o.diameter_m for o in self.objects], dtype=float),
            'reflectivity': np.array([o.gpr_reflectivity for o in self.objects], dtype=float),
        }

    def to_dict(self) -> dict:
        """Plain-data form that :func:`scenario_from_dict` reads back (inline area)."""
        def ring(poly):
            return [[round(x, 4), round(y, 4)] for x, y in list(poly.exterior.coords)[:-1]]
        search: Any = ring(self.search)
        if self.search.interiors:
            search = {'exterior': ring(self.search),
                      'holes': [[[round(x, 4), round(y, 4)] for x, y in list(h.coords)[:-1]]
                                for h in self.search.interiors]}
        out = {
            'name': self.name,
            'datum': {'lat': self.frame.lat, 'lon': self.frame.lon},
            'area': {'search_area': search, 'no_go': [ring(p) for p in self.no_go],
                     'safe_access': [ring(p) for p in self.safe]},
            'soil': dict(self.soil.__dict__),
            'robot': {'x': self.robot_start.x, 'y': self.robot_start.y,
                      'yaw_deg': round(math.degrees(self.robot_start.yaw), 6)},
            'gnss': {'mode': self.gnss.mode,
                     'events': [dict(e.__dict__) for e in self.gnss.events]},
            'objects': [dict(o.__dict__) for o in self.objects],
        }
        return out


# ----------------------------------------------------------------------------- parsing helpers

def _num(where: str, value, *, minimum: float | None = None, maximum: float | None = None,
         strict_min: bool = False) -> float:
    if isinstance(value, bool):
        raise ScenarioError(f'{where}: expected a number, got {value!r}')
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ScenarioError(f'{where}: expected a number, got {value!r}') from None
    if not math.isfinite(number):
        raise ScenarioError(f'{where}: must be finite, got {value!r}')
    if minimum is not None and (number < minimum or (strict_min and number <= minimum)):
        op = '>' if strict_min else '>='
        raise ScenarioError(f'{where}: must be {op} {minimum}, got {number}')
    if maximum is not None and number > maximum:
        raise ScenarioError(f'{where}: must be <= {maximum}, got {number}')
    return number


def _ring(where: str, value) -> list[tuple[float, float]]:
    if not isinstance(value, (list, tuple)) or len(value) < 3:
        raise ScenarioError(f'{where}: a polygon needs a list of at least 3 [x, y] points')
    pts = []
    for i, p in enumerate(value):
        if not isinstance(p, (list, tuple)) or len(p) != 2:
            raise ScenarioError(f'{where}[{i}]: expected [x, y] in metres, got {p!r}')
        pts.append((_num(f'{where}[{i}].x', p[0]), _num(f'{where}[{i}].y', p[1])))
    return pts


def _polygon(where: str, value) -> Polygon:
    if isinstance(value, dict):
        if 'exterior' not in value:
            raise ScenarioError(f'{where}: polygon mapping needs "exterior" (and optional "holes")')
        shell = _ring(f'{where}.exterior', value['exterior'])
        holes = [_ring(f'{where}.holes[{i}]', h) for i, h in enumerate(value.get('holes') or [])]
        poly = Polygon(shell, holes)
    else:
        poly = Polygon(_ring(where, value))
    if not poly.is_valid:
        raise ScenarioError(f'{where}: invalid polygon ({explain_validity(poly)})')
    if poly.area <= 0.0:
        raise ScenarioError(f'{where}: polygon has zero area')
    return poly


def _section(data: dict, key: str, where: str, required: bool = True) -> dict:
    value = data.get(key)
    if value is None:
        if required:
            raise ScenarioError(f'{where}: missing required section "{key}"')
        return {}
    if not isinstance(value, dict):
        raise ScenarioError(f'{where}.{key}: expected a mapping, got {type(value).__name__}')
    return value


def _parse_area(area: dict, frame: LocalFrame, where: str, base_dir: Path | None):
    has_inline, has_file = 'search_area' in area, 'area_file' in area
    if has_inline == has_file:
        raise ScenarioError(f'{where}.area: give exactly one of "search_area" (local metres) or '
                            '"area_file" (GeoJSON WGS84)')
    if has_inline:
        search = _polygon(f'{where}.area.search_area', area['search_area'])
        no_go = [_polygon(f'{where}.area.no_go[{i}]', p) for i, p in enumerate(area.get('no_go') or [])]
        safe = [_polygon(f'{where}.area.safe_access[{i}]', p)
                for i, p in enumerate(area.get('safe_access') or [])]
        return search, no_go, safe, None
    path = Path(str(area['area_file']))
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    # The planning layer owns GeoJSON area parsing; use it, in the scenario's datum.
    try:
        loaded = load_area(path, frame=frame)
    except (ValueError, OSError) as exc:
        raise ScenarioError(f'{where}.area.area_file {path}: {exc}') from exc
    return loaded.search, list(loaded.no_go), list(loaded.safe), loaded


def _parse_object(where: str, raw, index: int) -> SimObject:
    if not isinstance(raw, dict):
        raise ScenarioError(f'{where}: expected a mapping, got {raw!r}')
    for key in ('kind', 'x', 'y'):
        if key not in raw:
            raise ScenarioError(f'{where}: missing "{key}"')
    kind = str(raw['kind'])
    if kind not in KINDS:
        raise ScenarioError(f'{where}.kind: {kind!r} is not one of {list(KINDS)}')
    metal = _num(f'{where}.metal_g', raw.get('metal_g', 0.0), minimum=0.0)
    depth = _num(f'{where}.depth_m', raw.get('depth_m', 0.0), minimum=0.0, maximum=5.0)
    if kind == 'surface' and depth > 0.0:
        raise ScenarioError(f'{where}: a surface object must have depth_m 0, got {depth}')
    diameter = _num(f'{where}.diameter_m', raw.get('diameter_m', 0.08), minimum=0.0, maximum=5.0,
                    strict_min=True)
    if 'gpr_reflectivity' in raw:
        refl = _num(f'{where}.gpr_reflectivity', raw['gpr_reflectivity'], minimum=0.0, maximum=1.0)
    elif kind == 'clutter':
        refl = 1.0 if metal > 0.0 else 0.5  # metal fragment | rock / root
    else:
        refl = DEFAULT_REFLECTIVITY[kind]
    return SimObject(
        id=str(raw.get('id', f'obj{index}')), kind=kind, model=str(raw.get('model', kind)),
        x=_num(f'{where}.x', raw['x']), y=_num(f'{where}.y', raw['y']), depth_m=depth,
        metal_g=metal, diameter_m=diameter, gpr_reflectivity=refl,
        yaw_deg=_num(f'{where}.yaw_deg', raw.get('yaw_deg', 0.0)))


def scenario_from_dict(data, where: str = 'scenario', base_dir: Path | None = None) -> Scenario:
    """Validate parsed YAML and build a Scenario (raises ScenarioError naming the field)."""
    if not isinstance(data, dict):
        raise ScenarioError(f'{where}: expected a YAML mapping at the top level')
    name = str(data.get('name') or '').strip()
    if not name:
        raise ScenarioError(f'{where}: missing "name"')
    datum = _section(data, 'datum', where)
    try:
        frame = LocalFrame(lat=_num(f'{where}.datum.lat', datum.get('lat'), minimum=-90, maximum=90),
                           lon=_num(f'{where}.datum.lon', datum.get('lon'), minimum=-180, maximum=180))
    except GeoError as exc:
        raise ScenarioError(f'{where}.datum: {exc}') from exc
    search, no_go, safe, loaded_area = _parse_area(_section(data, 'area', where), frame, where, base_dir)

    soil_raw = _section(data, 'soil', where)
    unknown = set(soil_raw) - set(Soil.__dataclass_fields__)
    if unknown:
        raise ScenarioError(f'{where}.soil: unknown keys {sorted(unknown)} '
                            f'(known: {sorted(Soil.__dataclass_fields__)})')
    defaults = Soil()
    soil_values = {}
    for key in Soil.__dataclass_fields__:
        lo, strict = (1.0, False) if key == 'gpr_permittivity' else (0.0, False)
        if key == 'md_ground_correlation_m':
            strict = True
        soil_values[key] = _num(f'{where}.soil.{key}', soil_raw.get(key, getattr(defaults, key)),
                                minimum=lo, strict_min=strict)
    soil = Soil(**soil_values)

    robot = _section(data, 'robot', where)
    for key in ('x', 'y'):
        if key not in robot:
            raise ScenarioError(f'{where}.robot: missing "{key}"')
    start = RobotStart(x=_num(f'{where}.robot.x', robot['x']), y=_num(f'{where}.robot.y', robot['y']),
                       yaw=math.radians(_num(f'{where}.robot.yaw_deg', robot.get('yaw_deg', 0.0))))

    gnss_raw = _section(data, 'gnss', where, required=False)
    mode = str(gnss_raw.get('mode', 'rtk'))
    if mode not in GNSS_MODES:
        raise ScenarioError(f'{where}.gnss.mode: {mode!r} is not one of {list(GNSS_MODES)}')
    events = []
    for i, ev in enumerate(gnss_raw.get('events') or []):
        w = f'{where}.gnss.events[{i}]'
        if not isinstance(ev, dict):
            raise ScenarioError(f'{w}: expected a mapping with start, end, mode')
        t0 = _num(f'{w}.start', ev.get('start'), minimum=0.0)
        t1 = _num(f'{w}.end', ev.get('end'), minimum=0.0)
        if t1 <= t0:
            raise ScenarioError(f'{w}: end ({t1}) must be after start ({t0})')
        ev_mode = str(ev.get('mode'))
        if ev_mode not in GNSS_MODES:
            raise ScenarioError(f'{w}.mode: {ev_mode!r} is not one of {list(GNSS_MODES)}')
        events.append(GnssEvent(t0, t1, ev_mode))

    raw_objects = data.get('objects') or []
    if not isinstance(raw_objects, list):
        raise ScenarioError(f'{where}.objects: expected a list')
    objects = [_parse_object(f'{where}.objects[{i}]', o, i) for i, o in enumerate(raw_objects)]
    seen: set[str] = set()
    for obj in objects:
        if obj.id in seen:
            raise ScenarioError(f'{where}.objects: duplicate id {obj.id!r}')
        seen.add(obj.id)

    scenario = Scenario(name=name, frame=frame, search=search, no_go=no_go, soil=soil,
                        robot_start=start, objects=objects, safe=safe,
                        gnss=GnssSchedule(mode=mode, events=tuple(events)), _area=loaded_area)
    try:
        scenario.area  # noqa: B018 - validates the area with the planning layer's rules
    except AreaError as exc:
        raise ScenarioError(f'{where}.area: {exc}') from exc
    return scenario


def load_scenario(path: str | Path) -> Scenario:
    """Load a scenario YAML file. A bare name (``default``) is looked up in the package's
    ``sim/scenarios/`` folder."""
    path = resolve_scenario_path(path)
    data = read_yaml(path, ScenarioError, 'scenario')
    scenario = scenario_from_dict(data, where=str(path), base_dir=path.parent)
    scenario.source = path
    return scenario


def resolve_scenario_path(path: str | Path) -> Path:
    """A path as given, or the packaged ``sim/scenarios/<name>.yaml`` for a bare name."""
    candidate = Path(path)
    if candidate.exists() or candidate.suffix in ('.yaml', '.yml') or len(candidate.parts) > 1:
        return candidate
    from mine_robot.resources import ResourceError, resource
    try:
        return resource('sim', 'scenarios', f'{candidate.name}.yaml')
    except ResourceError as exc:
        raise ScenarioError(f'no scenario file {path!r} and no packaged scenario of that name '
                            f'({exc})') from exc


def scenario_yaml(scenario: Scenario, header: str = '') -> str:
    """YAML text of a scenario (compact: one line per object), with an optional comment header."""
    text = yaml.safe_dump(scenario.to_dict(), sort_keys=False, default_flow_style=None, width=100)
    comment = ''.join(f'# {line}\n' if line else '#\n' for line in header.splitlines())
    return comment + text


def dump_scenario(scenario: Scenario, path: str | Path, header: str = '') -> None:
    Path(path).write_text(scenario_yaml(scenario, header))
