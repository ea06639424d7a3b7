"""The search area: GeoJSON (WGS84, RFC 7946) <-> shapely polygons in the local ``map`` frame.

Roles (``properties.role``), DESIGN.md §6 plus declared safe ground:

- ``search_area``: exactly one Polygon (holes allowed) — the ground to sweep;
- ``no_go``: any number of Polygon/MultiPolygon features — never driven on, never swept;
- ``safe_access``: any number of Polygon/MultiPolygon features — ground declared safe (the access
  lane where the robot starts); it may lie outside the search area.

Every problem raises :class:`AreaError` naming the feature and the fault.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
import json
from pathlib import Path

import numpy as np
import shapely
from shapely.geometry import MultiPolygon, Polygon, mapping, shape
from shapely.geometry.base import BaseGeometry
from shapely.validation import explain_validity

from mine_robot.geo import GeoError, LocalFrame, check_lonlat

ROLES = ('search_area', 'no_go', 'safe_access')
MIN_AREA_M2 = 1e-4


class AreaError(ValueError):
    """A search area (file, GeoJSON object or polygons) that cannot be used; says what and where."""


def _check_polygon(poly, what: str, min_area: float = MIN_AREA_M2) -> None:
    if poly.is_empty:
        raise AreaError(f'{what}: empty geometry')
    if not poly.is_valid:
        raise AreaError(f'{what}: invalid polygon ({explain_validity(poly)}); fix self-intersections '
                        'or overlapping holes in the GIS')
    if poly.area <= min_area:
        raise AreaError(f'{what}: zero-area polygon' + (f' ({poly.area:.3g} m²)' if min_area else ''))


@dataclass(frozen=True)
class SearchArea:
    """Search area in the local frame (metres east/north of ``frame``'s datum).

    ``search`` may have holes; ``no_go`` zones are removed from it; ``safe`` is declared safe ground
    (may lie outside ``search``). Validated on construction.
    """

    frame: LocalFrame
    search: Polygon
    no_go: list[Polygon] = field(default_factory=list)
    safe: list[Polygon] = field(default_factory=list)
    name: str = ''

    def __post_init__(self):
        if not isinstance(self.search, Polygon):
            raise AreaError(f'search area must be one Polygon, got {self.search.geom_type}')
        _check_polygon(self.search, 'search_area')
        object.__setattr__(self, 'no_go', list(self.no_go))
        object.__setattr__(self, 'safe', list(self.safe))
        for i, zone in enumerate(self.no_go):
            _check_polygon(zone, f'no_go[{i}]')
            if not zone.intersects(self.search) or zone.intersection(self.search).area < MIN_AREA_M2:
                raise AreaError(f'no_go[{i}] lies outside the search area (centroid '
                                f'{zone.centroid.x:.1f}, {zone.centroid.y:.1f} m)')
        for i, zone in enumerate(self.safe):
            _check_polygon(zone, f'safe_access[{i}]')
        if self.searchable.area < MIN_AREA_M2:
            raise AreaError('no searchable ground left: the no-go zones cover the whole search area')

    @cached_property
    def searchable(self) -> Polygon | MultiPolygon:
        """Search area minus the no-go zones (what the detector must sweep)."""
        if not self.no_go:
            return self.search
        return shapely.make_valid(self.search.difference(shapely.union_all(self.no_go)))

    @cached_property
    def safe_ground(self):
        """Union of the declared safe ground (may be empty)."""
        return shapely.union_all(self.safe) if self.safe else Polygon()

    @cached_property
    def no_go_union(self):
        return shapely.union_all(self.no_go) if self.no_go else Polygon()


def _polygons(geom: dict, what: str) -> list[Polygon]:
    if not isinstance(geom, dict) or 'type' not in geom:
        raise AreaError(f'{what}: missing geometry')
    if geom['type'] not in ('Polygon', 'MultiPolygon'):
        raise AreaError(f'{what}: geometry must be a Polygon or MultiPolygon, got {geom["type"]}')
    coords = geom.get('coordinates')
    if not coords:
        raise AreaError(f'{what}: empty coordinates')
    rings = coords if geom['type'] == 'Polygon' else [r for p in coords for r in p]
    for ring in rings:
        arr = np.asarray(ring, dtype=float) if ring else np.zeros((0, 2))
        if arr.ndim != 2 or arr.shape[0] < 4 or arr.shape[1] < 2:
            raise AreaError(f'{what}: a ring needs at least 4 [lon, lat] positions (closed), got '
                            f'{len(ring) if ring else 0}')
        try:
            check_lonlat(arr[:, 0], arr[:, 1], what)
        except GeoError as exc:
            raise AreaError(str(exc)) from exc
    try:
        parsed = shape(geom)
    except (ValueError, TypeError, AttributeError) as exc:
        raise AreaError(f'{what}: malformed geometry ({exc})') from exc
    return list(parsed.geoms) if isinstance(parsed, MultiPolygon) else [parsed]


def _to_local(poly: Polygon, frame: LocalFrame) -> Polygon:
    return shapely.transform(poly, lambda xy: np.column_stack(frame.to_local(xy[:, 0], xy[:, 1])))


def _to_wgs84(poly: Polygon, frame: LocalFrame) -> Polygon:
    return shapely.transform(poly, lambda xy: np.column_stack(frame.to_wgs84(xy[:, 0], xy[:, 1])))


def area_from_geojson(obj: dict, frame: LocalFrame | None = None) -> SearchArea:
    """Build a SearchArea from a GeoJSON FeatureCollection (WGS84).

    ``frame`` defaults to a LocalFrame at the centre of the search area's bounding box, or the
    collection's ``datum`` member (``{"lat": .., "lon": ..}``) when present.
    """
    if not isinstance(obj, dict) or obj.get('type') != 'FeatureCollection':
        raise AreaError('area file must be a GeoJSON FeatureCollection')
    crs = obj.get('crs')
    if crs is not None:
        name = str((crs.get('properties') or {}).get('name', '')) if isinstance(crs, dict) else str(crs)
        if not any(tag in name.upper() for tag in ('CRS84', '4326')):
            raise AreaError(f'coordinates must be WGS84 longitude/latitude (RFC 7946); file declares '
                            f'crs {name!r}')
    features = obj.get('features')
    if not isinstance(features, list):
        raise AreaError('FeatureCollection has no "features" list')
    by_role: dict[str, list[tuple[int, list[Polygon]]]] = {r: [] for r in ROLES}
    for i, feat in enumerate(features):
        if not isinstance(feat, dict) or feat.get('type') != 'Feature':
            raise AreaError(f'features[{i}] is not a GeoJSON Feature')
        role = (feat.get('properties') or {}).get('role')
        if role not in ROLES:
            raise AreaError(f'features[{i}]: properties.role must be one of {list(ROLES)}, got {role!r}')
        by_role[role].append((i, _polygons(feat.get('geometry'), f'features[{i}] ({role})')))
    if not by_role['search_area']:
        raise AreaError('no feature with role "search_area"')
    if len(by_role['search_area']) > 1 or len(by_role['search_area'][0][1]) > 1:
        raise AreaError('exactly one search_area Polygon is allowed (found '
                        f'{sum(len(p) for _, p in by_role["search_area"])})')
    search_i, (search_ll,) = by_role['search_area'][0]
    _check_polygon(search_ll, f'features[{search_i}] (search_area)', min_area=0.0)
    if frame is None:
        datum = obj.get('datum')
        if isinstance(datum, dict) and 'lat' in datum and 'lon' in datum:
            try:
                frame = LocalFrame(lat=float(datum['lat']), lon=float(datum['lon']))
            except (GeoError, TypeError, ValueError) as exc:
                raise AreaError(f'bad datum {datum!r}: {exc}') from exc
        else:
            lon, lat = np.asarray(search_ll.exterior.coords).T
            frame = LocalFrame.centred_on(lon, lat)
    search = _to_local(search_ll, frame)
    _check_polygon(search, f'features[{search_i}] (search_area)')
    no_go, safe = [], []
    for role, out in (('no_go', no_go), ('safe_access', safe)):
        for i, polys in by_role[role]:
            for j, poly in enumerate(polys):
                what = f'features[{i}] ({role})' + (f' part {j}' if len(polys) > 1 else '')
                _check_polygon(poly, what, min_area=0.0)
                local = _to_local(poly, frame)
                _check_polygon(local, what)
                if role == 'no_go' and (not local.intersects(search)
                                        or local.intersection(search).area < MIN_AREA_M2):
                    raise AreaError(f'{what}: no-go zone lies outside the search area')
                out.append(local)
    return SearchArea(frame=frame, search=search, no_go=no_go, safe=safe,
                      name=str(obj.get('name', '')))


def load_area(path: str | Path, frame: LocalFrame | None = None) -> SearchArea:
    """Read an area GeoJSON file; AreaError names the file on any problem."""
    path = Path(path)
    try:
        obj = json.loads(path.read_text())
    except OSError as exc:
        raise AreaError(f'cannot read area file {path}: {exc.strerror or exc}') from exc
    except json.JSONDecodeError as exc:
        raise AreaError(f'{path}: not valid JSON (line {exc.lineno}: {exc.msg})') from exc
    try:
        area = area_from_geojson(obj, frame)
    except AreaError as exc:
        raise AreaError(f'{path}: {exc}') from exc
    if not area.name:
        object.__setattr__(area, 'name', path.stem)
    return area


def area_to_geojson(area: SearchArea) -> dict:
    """The area as a WGS84 FeatureCollection (with its datum, so a reload uses the same frame)."""
    feats = [{'type': 'Feature', 'properties': {'role': 'search_area'},
              'geometry': mapping(_to_wgs84(area.search, area.frame))}]
    feats += [{'type': 'Feature', 'properties': {'role': 'no_go'},
               'geometry': mapping(_to_wgs84(p, area.frame))} for p in area.no_go]
    feats += [{'type': 'Feature', 'properties': {'role': 'safe_access'},
               'geometry': mapping(_to_wgs84(p, area.frame))} for p in area.safe]
    out = {'type': 'FeatureCollection', 'name': area.name,
           'datum': {'lat': area.frame.lat, 'lon': area.frame.lon}, 'features': feats}
    return json.loads(json.dumps(out))  # tuples -> lists


def local_area(search, no_go=(), safe=(), datum=(17.97, 102.6), name: str = '') -> SearchArea:
    """Convenience for tests and simulations: an area from local-frame coordinates (metres)."""
    frame = LocalFrame(lat=datum[0], lon=datum[1])

    def poly(p):
        return p if isinstance(p, BaseGeometry) else Polygon(p)
    return SearchArea(frame=frame, search=poly(search), no_go=[poly(p) for p in no_go],
                      safe=[poly(p) for p in safe], name=name)
