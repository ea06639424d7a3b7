"""Scenario files: the packaged ones load, bad ones fail with errors naming the problem."""

from __future__ import annotations

import copy
import math

import pytest
from shapely.geometry import Point
import yaml

from mine_robot.resources import resource
from mine_robot.sim.scenario import ScenarioError, load_scenario, scenario_from_dict

GOOD = {
    'name': 'unit',
    'datum': {'lat': 44.77, 'lon': 17.19},
    'area': {'search_area': [[0, 0], [10, 0], [10, 10], [0, 10]],
             'no_go': [[[2, 2], [3, 2], [3, 3], [2, 3]]]},
    'soil': {'md_noise': 0.003},
    'robot': {'x': -1, 'y': 0.5, 'yaw_deg': 90},
    'objects': [{'id': 'M1', 'kind': 'mine', 'model': 'PMN', 'x': 1, 'y': 2, 'depth_m': 0.05,
                 'metal_g': 5, 'diameter_m': 0.1},
                {'id': 'C1', 'kind': 'clutter', 'x': 4, 'y': 4, 'depth_m': 0.05, 'metal_g': 2,
                 'diameter_m': 0.02},
                {'id': 'R1', 'kind': 'clutter', 'x': 5, 'y': 4, 'depth_m': 0.1, 'metal_g': 0}],
}


def test_good_scenario_parses_with_defaults():
    sc = scenario_from_dict(copy.deepcopy(GOOD))
    assert sc.name == 'unit' and sc.frame.lat == 44.77
    assert sc.search.area == pytest.approx(100.0) and sc.searchable.area == pytest.approx(99.0)
    assert sc.robot_start.yaw == pytest.approx(math.pi / 2)
    assert sc.soil.md_noise == 0.003 and sc.soil.gpr_permittivity == 6.0
    assert [o.id for o in sc.hazards] == ['M1']
    refl = {o.id: o.gpr_reflectivity for o in sc.objects}
    assert refl == {'M1': 0.3, 'C1': 1.0, 'R1': 0.5}   # plastic body, metal fragment, rock
    assert sc.gnss.mode_at(10.0) == 'rtk'
    again = scenario_from_dict(sc.to_dict())
    assert again.objects == sc.objects and again.search.equals(sc.search)


def _broken(path, value):
    data = copy.deepcopy(GOOD)
    node = data
    for key in path[:-1]:
        node = node[key]
    if value is KeyError:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return data


@pytest.mark.parametrize(('path', 'value', 'message'), [
    (('name',), KeyError, 'missing "name"'),
    (('datum',), KeyError, 'missing required section "datum"'),
    (('datum', 'lat'), 123.0, r'datum.lat: must be <= 90'),
    (('area', 'search_area'), [[0, 0], [1, 1]], 'at least 3'),
    (('area', 'search_area'), [[0, 0], [2, 2], [2, 0], [0, 2]], 'invalid polygon'),
    (('area', 'area_file'), 'x.geojson', 'exactly one of'),
    (('soil', 'md_noise'), -1, r'soil.md_noise: must be >= 0'),
    (('soil', 'md_ground_correlation_m'), 0, 'must be > 0'),
    (('soil', 'gpr_permittivity'), 0.5, 'gpr_permittivity: must be >= 1'),
    (('soil', 'bogus'), 1, r"unknown keys \['bogus'\]"),
    (('robot', 'x'), KeyError, r'robot: missing "x"'),
    (('robot', 'yaw_deg'), 'north', 'expected a number'),
    (('objects', 0, 'kind'), 'landmine', "is not one of"),
    (('objects', 0, 'metal_g'), -3, r'objects\[0\].metal_g: must be >= 0'),
    (('objects', 0, 'x'), float('nan'), 'must be finite'),
    (('objects', 1, 'id'), 'M1', "duplicate id 'M1'"),
    (('objects', 0, 'diameter_m'), 0, 'diameter_m: must be > 0'),
    (('objects',), 'none', 'expected a list'),
])
def test_validation_errors_name_the_field(path, value, message):
    with pytest.raises(ScenarioError, match=message):
        scenario_from_dict(_broken(path, value))


def test_surface_object_must_not_be_buried():
    data = copy.deepcopy(GOOD)
    data['objects'].append({'id': 'S', 'kind': 'surface', 'x': 1, 'y': 1, 'depth_m': 0.1})
    with pytest.raises(ScenarioError, match='surface object must have depth_m 0'):
        scenario_from_dict(data)


def test_gnss_schedule_validation():
    data = copy.deepcopy(GOOD)
    data['gnss'] = {'mode': 'rtk', 'events': [{'start': 10, 'end': 20, 'mode': 'float'},
                                              {'start': 30, 'end': 31, 'mode': 'none'}]}
    sc = scenario_from_dict(data)
    assert [sc.gnss.mode_at(t) for t in (5, 10, 19.9, 20, 30.5)] == ['rtk', 'float', 'float', 'rtk', 'none']
    data['gnss']['events'][0]['end'] = 5
    with pytest.raises(ScenarioError, match=r'events\[0\]: end \(5.0\) must be after start'):
        scenario_from_dict(data)


def test_file_errors(tmp_path):
    with pytest.raises(ScenarioError, match='cannot read scenario'):
        load_scenario(tmp_path / 'missing.yaml')
    bad = tmp_path / 'bad.yaml'
    bad.write_text('name: [unclosed')
    with pytest.raises(ScenarioError, match='not valid YAML'):
        load_scenario(bad)
    with pytest.raises(ScenarioError, match='no packaged scenario'):
        load_scenario('no_such_scenario_name')
    top = tmp_path / 'list.yaml'
    top.write_text(yaml.safe_dump([1, 2]))
    with pytest.raises(ScenarioError, match='top level'):
        load_scenario(top)


@pytest.mark.parametrize('path', sorted(resource('sim', 'scenarios').glob('*.yaml')), ids=lambda p: p.stem)
def test_packaged_scenarios_load(path):
    sc = load_scenario(path)
    assert sc.hazards, 'a scenario without hazards tests nothing'
    inside = [o for o in sc.objects if sc.search.buffer(1e-6).contains(_pt(o))]
    assert len(inside) == len(sc.objects), 'every object lies in the search area'
    assert not sc.searchable.contains(_pt(sc.robot_start)), 'robot starts outside the area'


def test_default_demo_scenario_is_small_and_mixed():
    sc = load_scenario('default')
    xmin, ymin, xmax, ymax = sc.search.bounds
    assert xmax - xmin <= 12 and ymax - ymin <= 12
    kinds = [o.kind for o in sc.objects]
    assert 6 <= len(kinds) <= 10 and len(sc.hazards) >= 2 and kinds.count('clutter') >= 2


def _pt(obj):
    from shapely.geometry import Point
    return Point(obj.x, obj.y)


def test_no_go_outside_the_search_area_is_rejected():
    data = copy.deepcopy(GOOD)
    data['area']['no_go'] = [[[20, 20], [21, 20], [21, 21], [20, 21]]]
    with pytest.raises(ScenarioError, match=r'area: no_go\[0\] lies outside the search area'):
        scenario_from_dict(data)


def test_geojson_area_file_is_read_in_the_scenario_datum():
    sc = load_scenario('gnss_degraded')
    assert sc.search.bounds == pytest.approx((0.0, 0.0, 16.0, 11.0), abs=0.01)
    assert len(sc.no_go) == 1 and sc.no_go[0].area == pytest.approx(4.0, abs=0.01)
    assert sc.gnss.mode_at(50) == 'float' and sc.gnss.mode_at(152) == 'none'


def test_generator_is_seeded_and_respects_spacing():
    from mine_robot.sim.generator import MIN_SPACING, GeneratorError, generate_scenario
    a = generate_scenario(5, objects=25, width=15, height=12, difficulty='hard')
    b = generate_scenario(5, objects=25, width=15, height=12, difficulty='hard')
    c = generate_scenario(6, objects=25, width=15, height=12, difficulty='hard')
    assert a.objects == b.objects and a.objects != c.objects
    xy = [(o.x, o.y) for o in a.objects]
    gaps = [math.dist(p, q) for i, p in enumerate(xy) for q in xy[i + 1:]]
    assert len(xy) == 25 and min(gaps) >= MIN_SPACING - 1e-3
    assert all(0 < x < 15 and 0 < y < 12 for x, y in xy)
    mines = [o for o in a.objects if o.kind == 'mine']
    assert mines and all(o.metal_g <= 2.0 for o in mines)          # minimum-metal in 'hard'
    assert a.soil.md_ground_amplitude > generate_scenario(5, difficulty='easy').soil.md_ground_amplitude
    with pytest.raises(GeneratorError, match='do not fit'):
        generate_scenario(1, objects=500, width=5, height=5)
    with pytest.raises(GeneratorError, match='difficulty'):
        generate_scenario(1, difficulty='insane')


def test_scenario_generate_command_writes_a_loadable_file(tmp_path, capsys):
    from mine_robot.cli import main
    out = tmp_path / 'gen.yaml'
    assert main(['scenario', 'generate', '--seed', '3', '--objects', '12', '--area', '12x9',
                 '-o', str(out)]) == 0
    sc = load_scenario(out)
    assert len(sc.objects) == 12 and sc.search.bounds == (0.0, 0.0, 12.0, 9.0)
    assert out.read_text().startswith('# generated by: mine-robot scenario generate --seed 3')
    assert main(['scenario', 'check', str(out)]) == 0
    assert main(['scenario', 'generate', '--area', 'big']) == 1
    assert 'WIDTHxHEIGHT' in capsys.readouterr().err


def test_safe_access_ground_reaches_the_search_area():
    """Declared safe ground (the access lane) travels from the scenario into the SearchArea the
    planner and the safety monitor use, inline and from a GeoJSON area file, and round-trips."""
    from mine_robot.sim.scenario import load_scenario, scenario_from_dict
    for name in ('default', 'gnss_degraded'):
        sc = load_scenario(name)
        assert len(sc.area.safe) == 1
        start = sc.robot_start
        assert sc.area.safe[0].contains(Point(start.x, start.y)), name
    sc = load_scenario('default')
    again = scenario_from_dict(sc.to_dict(), where='round trip')
    assert again.area.safe[0].equals_exact(sc.area.safe[0], 1e-6)
