"""Exports: RFC 7946 structure (types, lon/lat order and ranges, precision, right-hand rule),
round trip through shapely back to the local frame, MDR properties, report.json and report.png."""

import json
import math

import numpy as np
import pytest
import shapely
from shapely.geometry import LineString, Point, Polygon, box, shape

from mine_robot.geo import LocalFrame
from mine_robot.mission.exports import METHOD, ExportContext, write_outputs
from mine_robot.mission.records import MissionRecords

FRAME = LocalFrame(lat=-12.9712345, lon=33.7654321)   # southern hemisphere, east of Greenwich
SEARCH = Polygon([(0, 0), (30, 0), (30, 20), (0, 20)], holes=[[(20, 12), (24, 12), (24, 16), (20, 16)]])
NO_GO = (box(2, 14, 6, 18),)
AREA = {'type': 'FeatureCollection', 'features': []}


def ring_signed_area(ring):
    xy = np.asarray(ring)
    return 0.5 * np.sum(xy[:-1, 0] * xy[1:, 1] - xy[1:, 0] * xy[:-1, 1])


def check_rfc7946(obj):
    assert obj['type'] == 'FeatureCollection' and 'crs' not in obj
    for feat in obj['features']:
        assert feat['type'] == 'Feature' and isinstance(feat['properties'], dict)
        geom = feat['geometry']
        assert geom['type'] in ('Point', 'LineString', 'Polygon', 'MultiPolygon')
        polys = {'Polygon': [geom['coordinates']], 'MultiPolygon': geom['coordinates']}.get(geom['type'])
        flat = np.array(_flatten(geom['coordinates'])).reshape(-1, 2)
        lon, lat = flat[:, 0], flat[:, 1]
        # [lon, lat] order: this datum has lon ≈ 33.77, lat ≈ -12.97
        assert np.all(np.abs(lon - FRAME.lon) < 0.01) and np.all(np.abs(lat - FRAME.lat) < 0.01)
        assert np.all(np.abs(lon) <= 180) and np.all(np.abs(lat) <= 90)
        assert all(len(repr(float(v)).split('.')[-1]) <= 7 for v in flat.ravel())
        for poly in polys or []:
            for k, ring in enumerate(poly):
                assert ring[0] == ring[-1] and len(ring) >= 4
                area = ring_signed_area(ring)
                assert (area > 0) if k == 0 else (area < 0), 'right-hand rule violated'


def _flatten(c):
    if isinstance(c[0], (int, float)):
        return [c]
    return [p for sub in c for p in _flatten(sub)]


def to_local(geom):
    return shapely.transform(geom, lambda xy: np.column_stack(FRAME.to_local(xy[:, 0], xy[:, 1])))


@pytest.fixture
def records(tmp_path):
    rec = MissionRecords(tmp_path / 'mission.db', AREA, organisation='Demo Demining')
    for k in range(200):  # a lawnmower track over the lower half
        x = 0.5 + (k % 50) * 0.58
        rec.add_pose(1000.0 + k, x if (k // 50) % 2 == 0 else 29.5 - (x - 0.5), 0.5 + 1.0 * (k // 50),
                     0.0)
    rec.add_detection(1010.0, 'metal', 5.0, 1.0, det_id=1, depth=0.08, confidence=0.9, strength=3.2,
                      sigma=0.04, extra={'mass_g': 12.0})
    rec.add_detection(1011.0, 'gpr', 5.02, 1.01, det_id=2, depth=0.1, confidence=0.7, strength=1.0)
    rec.upsert_targets(1012.0, [
        {'id': 'T1', 'x': 5.01, 'y': 1.0, 'depth': 0.09, 'confidence': 0.95, 'classification': 'mine'},
        {'id': 'T2', 'x': 12.0, 'y': 2.0, 'depth': 0.3, 'confidence': 0.8, 'classification': 'uxo'},
        {'id': 'C1', 'x': 15.0, 'y': 3.0, 'confidence': 0.6, 'classification': 'clutter'}])
    rec.add_mark('T1', 1020.0, 'marked', x=5.04, y=1.0, target_x=5.01, target_y=1.0, mode='paint',
                 attempts=1)
    rec.add_mark('T2', 1040.0, 'failed', target_x=12.0, target_y=2.0, attempts=3,
                 reason='no acknowledgement; gave up after 3 attempt(s)')
    rec.add_mark('C1', 1050.0, 'not_marked', reason='clutter: recorded, not marked (config)')
    yield rec
    rec.close()


def test_output_folder_layers_are_valid_rfc7946_and_round_trip(tmp_path, records):
    swept = LineString([(0, 0.5), (30, 0.5)]).buffer(0.55, cap_style='flat').union(
        box(0, 1, 30, 4.0))
    ctx = ExportContext(FRAME, SEARCH, NO_GO, swept, organisation='Demo Demining',
                        cleared_depth_m=0.13, lanes_total=18, lanes_done=4, state='complete')
    report = write_outputs(tmp_path / 'out', records, ctx)
    out = tmp_path / 'out'
    layers = {n: json.loads((out / f'{n}.geojson').read_text())
              for n in ('detections', 'marks', 'coverage', 'track')}
    for obj in layers.values():
        check_rfc7946(obj)

    # coverage: swept + unswept tile the searchable area, which has the hole and the no-go cut out
    cov = {f['properties']['status']: f for f in layers['coverage']['features']}
    assert set(cov) == {'searched', 'not_searched', 'no_go'}
    searched = to_local(shape(cov['searched']['geometry']))
    missed = to_local(shape(cov['not_searched']['geometry']))
    searchable = SEARCH.difference(NO_GO[0])
    # 7 decimals is ~1 cm: allow a 1 cm band along the boundaries
    tol = 0.01 * (searchable.length + searched.length)
    assert searched.union(missed).symmetric_difference(searchable).area < tol
    assert searched.intersection(missed).area < tol
    assert searched.area == pytest.approx(30 * 4.0, abs=tol)  # swept y -0.05..4, clipped at 0
    assert cov['searched']['properties']['cleared_depth_m'] == 0.13
    assert cov['searched']['properties']['method'] == METHOD == 'mechanical/robotic detection'
    assert cov['not_searched']['properties']['cleared_depth_m'] is None
    assert report['coverage_fraction'] == pytest.approx(120.0 / searchable.area, abs=1e-4)

    # marks: one feature per target; the placed mark sits where the nozzle was, not the estimate
    marks = {f['properties']['target_id']: f for f in layers['marks']['features']}
    p = marks['T1']['properties']
    assert to_local(shape(marks['T1']['geometry'])).distance(Point(5.04, 1.0)) < 0.015
    assert p['mark_status'] == 'marked' and p['position_source'] == 'marker nozzle'
    assert p['mark_offset_m'] == pytest.approx(0.03, abs=1e-3)
    assert (p['device_category'], p['device_condition'], p['depth_m']) == ('landmine', 'unknown', 0.09)
    assert p['date_found'] == '1970-01-01' and p['organisation'] == 'Demo Demining'
    assert marks['T2']['properties']['mark_status'] == 'failed'
    assert 'gave up' in marks['T2']['properties']['mark_reason']
    assert marks['T2']['properties']['device_category'] == 'UXO'
    assert marks['C1']['properties']['mark_status'] == 'not_marked'

    dets = layers['detections']['features']
    assert [d['properties']['sensor'] for d in dets] == ['metal', 'gpr']
    assert dets[0]['properties']['mass_g'] == 12.0 and dets[0]['properties']['depth_m'] == 0.08
    track = layers['track']['features'][0]
    assert track['geometry']['type'] == 'LineString' and track['properties']['poses'] == 200
    assert to_local(shape(track['geometry'])).length == pytest.approx(
        LineString(records.track()[:, 1:3]).length, rel=1e-4)

    rep = json.loads((out / 'report.json').read_text())
    assert rep == json.loads(json.dumps(report))
    assert rep['marks']['marked'] == 1 and rep['marks']['failed'] == 1
    assert rep['marks']['hazards_unmarked'] == ['T2'] and rep['hazards'] == 2
    assert rep['detections'] == {'total': 2, 'metal': 1, 'gpr': 1}
    assert rep['targets']['clutter'] == 1 and rep['lanes'] == {'total': 18, 'done': 4}
    assert rep['area_m2']['searchable'] == pytest.approx(searchable.area, abs=0.01)
    png = (out / 'report.png').read_bytes()
    assert png[:8] == b'\x89PNG\r\n\x1a\n' and len(png) > 20_000
    assert not list(out.glob('*.tmp*'))


def test_no_hazards_and_nothing_swept_still_gives_a_valid_folder(tmp_path):
    with MissionRecords(tmp_path / 'm.db', AREA) as rec:
        ctx = ExportContext(FRAME, SEARCH, (), None, state='aborted')
        report = write_outputs(tmp_path / 'o', rec, ctx)
    for name in ('detections', 'marks', 'track'):
        obj = json.loads((tmp_path / 'o' / f'{name}.geojson').read_text())
        assert obj == {'type': 'FeatureCollection', 'features': []}
    cov = json.loads((tmp_path / 'o' / 'coverage.geojson').read_text())
    check_rfc7946(cov)
    assert [f['properties']['status'] for f in cov['features']] == ['not_searched']
    assert report['coverage_fraction'] == 0.0 and report['marks']['offset_p95_m'] is None
    assert (tmp_path / 'o' / 'report.png').stat().st_size > 5000


def test_point_precision_is_about_a_centimetre():
    from mine_robot.mission.exports import to_geojson_geometry
    g = to_geojson_geometry(Point(1.234567, -7.654321), FRAME)
    back = FRAME.to_local(*g['coordinates'])
    assert math.dist(back, (1.234567, -7.654321)) < 0.01
