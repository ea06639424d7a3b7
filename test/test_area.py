"""Search-area loading: golden good and bad files, projection round trip, validation."""

import json
from pathlib import Path

import pytest
from shapely.geometry import Polygon

from mine_robot.geo import LocalFrame
from mine_robot.planning.area import AreaError, area_from_geojson, area_to_geojson, load_area, local_area

DATA = Path(__file__).resolve().parent / 'data' / 'areas'
SIM = Path(__file__).resolve().parent.parent / 'sim' / 'areas'

BAD = {
    'bad_no_search_area': 'no feature with role "search_area"',
    'bad_two_search_areas': 'exactly one search_area',
    'bad_self_intersecting': r'invalid polygon \(Self-intersection',
    'bad_hole_crosses_shell': 'invalid polygon',
    'bad_nogo_outside': r'features\[1\] \(no_go\): no-go zone lies outside the search area',
    'bad_zero_area': 'zero-area polygon',
    'bad_utm_coordinates': 'is not WGS84 longitude/latitude',
    'bad_crs_utm': 'must be WGS84.*EPSG::32648',
    'bad_empty_coordinates': 'empty coordinates',
    'bad_unknown_role': r"features\[1\]: properties.role must be one of .*'minefield'",
    'bad_point_geometry': 'must be a Polygon or MultiPolygon, got Point',
    'bad_not_feature_collection': 'must be a GeoJSON FeatureCollection',
    'bad_truncated': 'not valid JSON',
    'bad_nogo_covers_all': 'no searchable ground left',
}


@pytest.mark.parametrize('name,message', sorted(BAD.items()))
def test_golden_bad_files_are_rejected_with_a_clear_message(name, message):
    path = DATA / f'{name}.geojson'
    with pytest.raises(AreaError, match=message) as info:
        load_area(path)
    assert str(path) in str(info.value)       # the message names the file


def test_every_bad_file_has_a_test():
    assert {p.stem for p in DATA.glob('bad_*.geojson')} == set(BAD)


def test_missing_file_is_an_area_error(tmp_path):
    with pytest.raises(AreaError, match='cannot read area file'):
        load_area(tmp_path / 'nope.geojson')


def test_good_file_loads_in_metres_with_holes_no_go_and_safe_ground():
    area = load_area(DATA / 'good_field.geojson')
    assert area.name == 'good_field'
    assert area.search.area == pytest.approx(30 * 20 - 9, rel=1e-3)     # 30 x 20 m with a 3 x 3 hole
    assert len(area.search.interiors) == 1
    assert len(area.no_go) == 2 and len(area.safe) == 1
    tree, crater = area.no_go
    assert tree.area == pytest.approx(12.0, rel=1e-3)
    assert area.searchable.area == pytest.approx(591 - 12 - crater.area, rel=1e-6)
    assert not area.safe[0].intersects(area.searchable.buffer(-1e-3))   # access road is outside
    assert area.safe_ground.area == pytest.approx(34 * 4, rel=1e-3)


def test_round_trip_through_geojson_keeps_the_frame_and_shapes():
    area = load_area(SIM / 'lao_field.geojson')
    back = area_from_geojson(json.loads(json.dumps(area_to_geojson(area))))
    assert back.frame == area.frame
    assert back.search.symmetric_difference(area.search).area < 1e-3
    assert len(back.no_go) == 4 and len(back.safe) == 1
    for a, b in zip(area.no_go, back.no_go):
        assert a.symmetric_difference(b).area < 1e-3


def test_explicit_frame_is_used():
    frame = LocalFrame(lat=19.4499, lon=103.1799)
    area = load_area(DATA / 'good_field.geojson', frame=frame)
    default = load_area(DATA / 'good_field.geojson')
    dx = area.search.bounds[0] - default.search.bounds[0]
    assert dx == pytest.approx(frame.to_local(default.frame.lon, default.frame.lat)[0], abs=1e-3)


def test_local_area_validates_like_the_file_loader():
    square = [(0, 0), (10, 0), (10, 10), (0, 10)]
    assert local_area(square, no_go=[[(2, 2), (4, 2), (4, 4)]]).searchable.area == pytest.approx(98.0)
    with pytest.raises(AreaError, match='no_go\\[0\\] lies outside'):
        local_area(square, no_go=[[(20, 20), (24, 20), (24, 24)]])
    with pytest.raises(AreaError, match='invalid polygon'):
        local_area([(0, 0), (10, 10), (10, 0), (0, 10)])
    with pytest.raises(AreaError, match='must be one Polygon'):
        local_area(Polygon(square).union(Polygon([(20, 0), (30, 0), (30, 5)])))
