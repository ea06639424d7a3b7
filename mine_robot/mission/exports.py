"""The sweep output folder (DESIGN.md §6): GeoJSON layers, report.json and report.png.

All GeoJSON is RFC 7946: WGS84 longitude/latitude (in that order), 7 decimals (~1 cm), polygon
exteriors counter-clockwise and holes clockwise (right-hand rule), no ``crs`` member; GDAL/QGIS
read it directly. Feature properties carry the mine-action Minimum Data Requirements that apply to
an automated search: device category, depth, condition (``unknown``: a detector cannot tell),
date found, the search depth of the area, the method and the organisation.

Every file is written to a temporary name and renamed, so a crash never leaves half a file.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
import datetime as dt
import json
import math
import os
from pathlib import Path

import numpy as np
import shapely
from shapely.geometry import LineString, MultiPolygon, Point, Polygon, mapping
from shapely.geometry.polygon import orient
from shapely.ops import unary_union

from mine_robot.geo import LocalFrame
from mine_robot.mission.records import MissionRecords

METHOD = 'mechanical/robotic detection'
DECIMALS = 7
DEVICE_CATEGORY = {'mine': 'landmine', 'uxo': 'UXO', 'unknown': 'unknown', 'clutter': 'clutter (no hazard)'}


@dataclass(frozen=True)
class ExportContext:
    """What the exports need besides the records."""
    frame: LocalFrame
    search: Polygon                  # search area polygon (may have holes), local frame
    no_go: tuple = ()                # no-go polygons, local frame
    swept: object = None             # swept ground (shapely), local frame; None = nothing swept
    organisation: str = ''
    cleared_depth_m: float = 0.13    # search depth the detector configuration guarantees
    time_base: float = 0.0           # POSIX seconds to add to record times (sim time → UTC)
    lanes_total: int = 0
    lanes_done: int = 0
    state: str = ''
    min_unswept_area_m2: float = 0.0  # unswept slivers smaller than this are not listed

    @property
    def searchable(self):
        return self.search.difference(unary_union(list(self.no_go))) if self.no_go else self.search


# -- geometry -----------------------------------------------------------------------------------

def _round(coords):
    if isinstance(coords, (float, int)):
        return round(float(coords), DECIMALS)
    return [_round(c) for c in coords]


def to_geojson_geometry(geom, frame: LocalFrame) -> dict:
    """Local-frame shapely geometry → RFC 7946 geometry dict (lon/lat, right-hand rule)."""
    wgs = shapely.transform(geom, lambda xy: np.column_stack(frame.to_wgs84(xy[:, 0], xy[:, 1])))
    if isinstance(wgs, Polygon):
        wgs = orient(wgs, 1.0)
    elif isinstance(wgs, MultiPolygon):
        wgs = MultiPolygon([orient(p, 1.0) for p in wgs.geoms])
    out = mapping(wgs)
    return {'type': out['type'], 'coordinates': _round(out['coordinates'])}


def _polygonal(geom) -> list[Polygon]:
    if geom is None or geom.is_empty:
        return []
    if isinstance(geom, Polygon):
        return [geom]
    return [g for g in getattr(geom, 'geoms', []) if isinstance(g, Polygon) and not g.is_empty]


def _feature(geometry: dict, properties: dict) -> dict:
    return {'type': 'Feature', 'geometry': geometry, 'properties': properties}


def _collection(features: Iterable[dict]) -> dict:
    return {'type': 'FeatureCollection', 'features': list(features)}


def _iso(t: float | None, base: float) -> str | None:
    if t is None:
        return None
    # milliseconds: the judge compares report times with wheel passes a fraction of a second apart
    return dt.datetime.fromtimestamp(base + float(t), dt.UTC).isoformat(timespec='milliseconds').replace(
        '+00:00', 'Z')


def _num(v, nd=3):
    return None if v is None or (isinstance(v, float) and not math.isfinite(v)) else round(float(v), nd)


# -- layers -------------------------------------------------------------------------------------

def detections_geojson(records: MissionRecords, ctx: ExportContext) -> dict:
    feats = []
    for d in records.detections():
        props = {'id': d['id'], 'sensor': d['sensor'], 'sensor_detection_id': d['det_id'],
                 'time': _iso(d['t'], ctx.time_base), 'confidence': _num(d['confidence']),
                 'strength': _num(d['strength'], 4), 'depth_m': _num(d['depth']),
                 'sigma_m': _num(d['sigma']), 'method': METHOD, 'organisation': ctx.organisation}
        props.update({k: v for k, v in d['extra'].items() if k not in props})
        feats.append(_feature(to_geojson_geometry(_point(d['x'], d['y']), ctx.frame), props))
    return _collection(feats)


def marks_geojson(records: MissionRecords, ctx: ExportContext) -> dict:
    """One feature per target: the mark where the nozzle was (placed), else the target estimate
    with the reason it was not marked — a failed or withheld mark is never left out; plus one
    feature per superseded mark (``mark_status: superseded``, at the paint, with the reason).
    ``reported_as``: the ids fusion gave the target after a restart (the marker's commands, and so
    the simulator's paint record, may carry them)."""
    targets = {t.id: t for t in records.targets()}
    reported_as: dict[str, list[str]] = {}
    for fusion_id, target_id in records.aliases().items():
        reported_as.setdefault(target_id, []).append(fusion_id)
    last_mark, superseded = {}, {}
    for m in records.marks():
        if m.status == 'superseded':
            superseded.setdefault(m.target_id, []).append(m)
        else:
            last_mark[m.target_id] = m
    feats = []
    for tid, tg in targets.items():
        m = last_mark.get(tid)
        placed = m is not None and m.status == 'marked'
        x, y = (m.x, m.y) if placed else (tg.x, tg.y)
        offset = math.hypot(m.x - tg.x, m.y - tg.y) if placed else None
        t_found = _iso(tg.first_t, ctx.time_base)
        props = {
            'target_id': tid, 'mark_status': m.status if m else 'pending',
            'position_source': 'marker nozzle' if placed else 'target estimate',
            'marker_type': m.mode if placed else None, 'mark_time': _iso(m.t, ctx.time_base) if m else None,
            'mark_attempts': m.attempts if m else 0, 'mark_reason': m.reason if m else 'not yet marked',
            'mark_offset_m': _num(offset),
            'device_category': DEVICE_CATEGORY.get(tg.classification, 'unknown'),
            'classification': tg.classification, 'device_type': 'unknown',
            'device_condition': 'unknown', 'depth_m': _num(tg.depth), 'confidence': _num(tg.confidence),
            'date_found': t_found[:10] if t_found else None, 'time_found': t_found,
            'method': METHOD, 'organisation': ctx.organisation,
        }
        if tid in reported_as:      # fusion's ids for it after a restart (the marker may name them)
            props['reported_as'] = sorted(reported_as[tid])
        feats.append(_feature(to_geojson_geometry(_point(x, y), ctx.frame), props))
        for old in superseded.get(tid, ()):
            # paint on the ground that is no longer over the target: listed so the team removes it
            feats.append(_feature(to_geojson_geometry(_point(old.x, old.y), ctx.frame), {
                **props, 'mark_status': 'superseded', 'position_source': 'marker nozzle',
                'marker_type': old.mode, 'mark_time': _iso(old.t, ctx.time_base),
                'mark_attempts': old.attempts, 'mark_reason': old.reason,
                'mark_offset_m': _num(math.hypot(old.x - tg.x, old.y - tg.y))}))
    return _collection(feats)


def coverage_geojson(ctx: ExportContext, start_t: float | None, end_t: float | None) -> dict:
    searchable = ctx.searchable
    swept = searchable.intersection(ctx.swept) if ctx.swept is not None else Polygon()
    unswept = searchable.difference(ctx.swept) if ctx.swept is not None else searchable
    common = {'method': METHOD, 'organisation': ctx.organisation,
              'date_start': _iso(start_t, ctx.time_base), 'date_end': _iso(end_t, ctx.time_base)}
    feats = []
    for geom, status, depth in ((swept, 'searched', ctx.cleared_depth_m), (unswept, 'not_searched', None)):
        polys = [p for p in _polygonal(geom) if p.area >= ctx.min_unswept_area_m2 or status == 'searched']
        if not polys:
            continue
        merged = polys[0] if len(polys) == 1 else MultiPolygon(polys)
        feats.append(_feature(to_geojson_geometry(merged, ctx.frame),
                              {'status': status, 'area_m2': round(merged.area, 2),
                               'cleared_depth_m': depth, **common}))
    for i, ng in enumerate(ctx.no_go):
        feats.append(_feature(to_geojson_geometry(ng, ctx.frame),
                              {'status': 'no_go', 'area_m2': round(ng.area, 2), 'no_go_index': i,
                               **common}))
    return _collection(feats)


def track_geojson(records: MissionRecords, ctx: ExportContext) -> dict:
    track = records.track()
    if len(track) < 2:
        return _collection([])
    line = LineString(track[:, 1:3])
    return _collection([_feature(to_geojson_geometry(line, ctx.frame), {
        'start_time': _iso(track[0, 0], ctx.time_base), 'end_time': _iso(track[-1, 0], ctx.time_base),
        'length_m': round(line.length, 2), 'poses': int(len(track))})])


def _point(x, y) -> Point:
    return Point(float(x), float(y))


# -- report ---------------------------------------------------------------------------------------

def build_report(records: MissionRecords, ctx: ExportContext) -> dict:
    searchable = ctx.searchable
    covered = searchable.intersection(ctx.swept).area if ctx.swept is not None else 0.0
    track = records.track()
    targets = records.targets()
    marks = records.marks()
    final = {}
    for m in marks:
        final[m.target_id] = m
    offsets = [math.hypot(m.x - tg.x, m.y - tg.y) for tg in targets
               if (m := final.get(tg.id)) is not None and m.status == 'marked']
    hazards = [t for t in targets if t.classification != 'clutter']
    detections = records.detections()
    seg = np.diff(track[:, 1:3], axis=0) if len(track) > 1 else np.zeros((0, 2))
    return {
        'state': ctx.state,
        'organisation': ctx.organisation,
        'method': METHOD,
        'start_time': _iso(track[0, 0], ctx.time_base) if len(track) else None,
        'end_time': _iso(track[-1, 0], ctx.time_base) if len(track) else None,
        'duration_s': round(float(track[-1, 0] - track[0, 0]), 1) if len(track) > 1 else 0.0,
        'area_m2': {'search': round(ctx.search.area, 2), 'no_go': round(sum(p.area for p in ctx.no_go), 2),
                    'searchable': round(searchable.area, 2), 'searched': round(covered, 2)},
        'coverage_fraction': round(covered / searchable.area, 5) if searchable.area > 0 else 0.0,
        'cleared_depth_m': ctx.cleared_depth_m,
        'lanes': {'total': ctx.lanes_total, 'done': ctx.lanes_done},
        'track_length_m': round(float(np.hypot(seg[:, 0], seg[:, 1]).sum()), 2),
        'detections': {'total': len(detections), **Counter(d['sensor'] for d in detections)},
        'targets': {'total': len(targets), **Counter(t.classification for t in targets)},
        'hazards': len(hazards),
        'marks': {'marked': sum(1 for m in final.values() if m.status == 'marked'),
                  'failed': sum(1 for m in final.values() if m.status == 'failed'),
                  'not_marked': sum(1 for m in final.values() if m.status == 'not_marked'),
                  'superseded': sum(1 for m in marks if m.status == 'superseded'),
                  'hazards_unmarked': sorted(t.id for t in hazards
                                             if t.id not in final or final[t.id].status != 'marked'),
                  'offset_p50_m': _num(np.percentile(offsets, 50)) if offsets else None,
                  'offset_p95_m': _num(np.percentile(offsets, 95)) if offsets else None,
                  'offset_max_m': _num(max(offsets)) if offsets else None},
        'faults': records.faults(),
        'events': len(records.events()),
        'schema_version': records.schema_version,
    }


def _patch(poly: Polygon, **kw):
    from matplotlib.patches import PathPatch
    from matplotlib.path import Path as MplPath
    verts, codes = [], []
    for ring in [poly.exterior, *poly.interiors]:
        xy = np.asarray(ring.coords)
        verts.extend(xy)
        codes.extend([MplPath.MOVETO] + [MplPath.LINETO] * (len(xy) - 2) + [MplPath.CLOSEPOLY])
    return PathPatch(MplPath(np.asarray(verts), codes), **kw)


def render_png(path: Path, records: MissionRecords, ctx: ExportContext, report: dict) -> None:
    """Map in the local frame (metres east/north of the datum): area, no-go, searched and missed
    ground, track, targets by class and marks."""
    import matplotlib
    matplotlib.use('Agg')
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 8), dpi=110)
    ax = fig.add_subplot(1, 1, 1)
    searchable = ctx.searchable
    if ctx.swept is not None:
        for p in _polygonal(searchable.intersection(ctx.swept)):
            ax.add_patch(_patch(p, facecolor='#b7e4b0', edgecolor='none', label='searched'))
    for p in _polygonal(searchable.difference(ctx.swept) if ctx.swept is not None else searchable):
        ax.add_patch(_patch(p, facecolor='#f4a6a6', edgecolor='none', label='not searched'))
    for p in ctx.no_go:
        ax.add_patch(_patch(p, facecolor='#999999', edgecolor='black', hatch='//', alpha=0.6,
                            label='no-go'))
    ax.add_patch(_patch(ctx.search, facecolor='none', edgecolor='black', linewidth=1.5,
                        label='search area'))
    track = records.track()
    if len(track) > 1:
        ax.plot(track[:, 1], track[:, 2], color='#1f4e9c', linewidth=0.7, label='track')
    styles = {'mine': ('X', '#c00000'), 'uxo': ('P', '#e07000'), 'unknown': ('D', '#7030a0'),
              'clutter': ('.', '#555555')}
    for cls, (marker, colour) in styles.items():
        pts = [(t.x, t.y) for t in records.targets() if t.classification == cls]
        if pts:
            xy = np.array(pts)
            ax.scatter(xy[:, 0], xy[:, 1], marker=marker, color=colour, s=60, zorder=5,
                       label=f'target: {cls}')
    placed = np.array([(m.x, m.y) for m in records.marks() if m.status == 'marked']).reshape(-1, 2)
    if len(placed):
        ax.scatter(placed[:, 0], placed[:, 1], marker='o', facecolors='none', edgecolors='#008000',
                   s=140, linewidths=1.5, zorder=6, label='mark')
    handles, labels = ax.get_legend_handles_labels()
    uniq = dict(zip(labels, handles))
    ax.legend(uniq.values(), uniq.keys(), loc='upper left', bbox_to_anchor=(1.01, 1.0), fontsize=8)
    minx, miny, maxx, maxy = ctx.search.bounds
    pad = 0.05 * max(maxx - minx, maxy - miny, 1.0)
    ax.set_xlim(minx - pad, maxx + pad)
    ax.set_ylim(miny - pad, maxy + pad)
    ax.set_aspect('equal')
    ax.set_xlabel(f'east of datum (m)  [datum {ctx.frame.lat:.6f}, {ctx.frame.lon:.6f}]')
    ax.set_ylabel('north of datum (m)')
    m = report['marks']
    ax.set_title(f"coverage {100 * report['coverage_fraction']:.2f} %   targets {report['targets']['total']}"
                 f"   marked {m['marked']}   failed {m['failed']}   state {report['state']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)


# -- the folder -----------------------------------------------------------------------------------

def _atomic_write(path: Path, data: str) -> None:
    tmp = path.with_name(path.name + '.tmp')
    with open(tmp, 'w', encoding='utf-8') as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def write_outputs(out_dir: str | Path, records: MissionRecords, ctx: ExportContext,
                  png: bool = True) -> dict:
    """Write every export into ``out_dir``; returns the report dict (also in report.json)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    records.flush()
    track = records.track()
    start_t, end_t = (track[0, 0], track[-1, 0]) if len(track) else (None, None)
    layers = {'detections.geojson': detections_geojson(records, ctx),
              'marks.geojson': marks_geojson(records, ctx),
              'coverage.geojson': coverage_geojson(ctx, start_t, end_t),
              'track.geojson': track_geojson(records, ctx)}
    for name, obj in layers.items():
        _atomic_write(out / name, json.dumps(obj, separators=(',', ':')))
    report = build_report(records, ctx)
    _atomic_write(out / 'report.json', json.dumps(report, indent=2))
    if png:
        tmp = out / 'report.tmp.png'
        render_png(tmp, records, ctx, report)
        os.replace(tmp, out / 'report.png')
    return report
