"""Judge arithmetic on hand-made runs, and scoring a sweep folder from the command line."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pytest

from mine_robot.cli import main as cli_main
from mine_robot.robot import load_robot
from mine_robot.sim.judge import JudgeError, MarkRecord, Report, RunRecord, judge_folder, judge_run
from mine_robot.sim.scenario import dump_scenario, scenario_from_dict


@pytest.fixture(scope='module')
def robot():
    return load_robot()


@pytest.fixture(scope='module')
def scenario():
    return scenario_from_dict({
        'name': 'judge_unit', 'datum': {'lat': 44.77, 'lon': 17.19},
        'area': {'search_area': [[0, 0], [10, 0], [10, 10], [0, 10]],
                 'no_go': [[[8, 0], [10, 0], [10, 2], [8, 2]]]},
        'soil': {}, 'robot': {'x': -2, 'y': 1.7},
        'objects': [
            {'id': 'H1', 'kind': 'mine', 'x': 2.0, 'y': 2.0, 'depth_m': 0.05, 'metal_g': 2},
            {'id': 'H2', 'kind': 'uxo', 'x': 6.0, 'y': 5.0, 'depth_m': 0.2, 'metal_g': 500},
            {'id': 'H3', 'kind': 'surface', 'x': 4.0, 'y': 8.0, 'depth_m': 0.0, 'metal_g': 2},
            {'id': 'C1', 'kind': 'clutter', 'x': 8.0, 'y': 8.0, 'depth_m': 0.05, 'metal_g': 5}]})


def straight_track(y=1.7, x0=-2.0, x1=12.0, speed=1.0, rate=20.0):
    x = np.arange(x0, x1 + 1e-9, speed / rate)
    return np.column_stack(((x - x0) / speed, x, np.full_like(x, y), np.zeros_like(x)))


def test_detection_false_alarms_and_duplicates(scenario, robot):
    reports = [Report(2.1, 2.0, 5.0, 'a'),        # H1 within 0.25
               Report(6.4, 5.0, 9.0, 'b'),        # H2 within 0.5 but not 0.25
               Report(1.9, 2.1, 6.0, 'c'),        # H1 again: duplicate, not a false alarm
               Report(8.2, 8.1, 7.0, 'd'),        # next to clutter: false alarm
               Report(5.0, 1.0, 8.0, 'e')]        # nothing there: false alarm
    res = judge_run(scenario, RunRecord(reports, track=straight_track()), robot)
    assert res['hazards'] == 3 and res['detected'] == 2 and res['pd'] == pytest.approx(2 / 3, abs=1e-4)
    assert res['detected_025'] == 1 and res['pd_025'] == pytest.approx(1 / 3, abs=1e-4)
    assert res['false_alarms'] == 2 and res['false_alarms_near_clutter'] == 1
    assert res['duplicate_reports'] == 1 and res['reports'] == 5
    assert {f['id'] for f in res['false_alarm_reports']} == {'d', 'e'}
    assert res['false_alarms_per_m2'] == pytest.approx(2 / res['searched_area_m2'], rel=1e-3)


def test_coverage_from_true_driven_poses(scenario, robot):
    res = judge_run(scenario, RunRecord([], track=straight_track(y=5.0)), robot)
    # one 1.10 m swath straight across the 10 m wide field (no-go zone not on this lane)
    assert res['searchable_area_m2'] == pytest.approx(96.0)
    assert res['searched_area_m2'] == pytest.approx(10 * robot.swath_width, rel=0.02)
    assert res['coverage_fraction'] == pytest.approx(10 * robot.swath_width / 96.0, rel=0.02)
    nothing = judge_run(scenario, RunRecord([]), robot)
    assert nothing['coverage_fraction'] == 0.0 and nothing['false_alarms_per_m2'] is None


def test_wheel_passes_count_only_before_detection(scenario, robot):
    # the lane at y = 1.7 puts the left wheels (y + 0.3) straight over H1 at x = 2
    track = straight_track(y=1.7)
    late = judge_run(scenario, RunRecord([Report(2.0, 2.0, 9.0)], track=track), robot)
    h1 = next(h for h in late['per_hazard'] if h['id'] == 'H1')
    assert h1['wheel_passes_before_detection'] == 2            # front-left then rear-left wheel
    assert late['wheel_passes_over_known_hazards'] == 0
    early = judge_run(scenario, RunRecord([Report(2.0, 2.0, 1.0)], track=track), robot)
    assert early['wheel_passes_over_undetected_hazards'] == 0
    # found first and then driven over anyway: counted separately
    assert early['wheel_passes_over_known_hazards'] == 2
    assert next(h for h in early['per_hazard'] if h['id'] == 'H1')['wheel_passes_after_detection'] == 2
    never = judge_run(scenario, RunRecord([], track=track), robot)
    assert never['wheel_passes_over_undetected_hazards'] == 2
    assert never['wheel_passes_over_known_hazards'] == 0
    # a lane 0.5 m further away keeps every wheel more than 0.15 m from H1
    clear = judge_run(scenario, RunRecord([], track=straight_track(y=1.2)), robot)
    assert clear['wheel_passes_over_undetected_hazards'] == 0


def test_marking_error_per_mark(scenario, robot):
    marks = [MarkRecord(2.03, 2.04, 10.0, 'T1'), MarkRecord(6.0, 5.2, 20.0, 'T2'), MarkRecord(5.0, 5.0)]
    res = judge_run(scenario, RunRecord([], marks=marks), robot)
    errs = [m['error_m'] for m in res['marks']]
    assert errs[0] == pytest.approx(0.05) and errs[1] == pytest.approx(0.2)
    assert [m['matched'] for m in res['marks']] == [True, True, False]
    assert res['marking_error_m']['count'] == 2
    assert res['marking_error_m']['max'] == pytest.approx(0.2)
    assert res['marking_error_m']['mean'] == pytest.approx(0.125)


def _iso(t):
    return dt.datetime.fromtimestamp(t, dt.UTC).isoformat(timespec='seconds').replace('+00:00', 'Z')


def _point(frame, x, y, props):
    lon, lat = frame.to_wgs84(x, y)
    return {'type': 'Feature', 'geometry': {'type': 'Point', 'coordinates': [lon, lat]},
            'properties': props}


def test_judge_command_scores_a_sweep_folder(tmp_path, scenario, robot, capsys):
    out = tmp_path / 'sweep'
    out.mkdir()
    base = 1_700_000_000.0
    f = scenario.frame
    feats = [_point(f, 2.02, 2.0, {'target_id': 'T1', 'classification': 'mine', 'mark_status': 'marked',
                                   'time_found': _iso(base + 9), 'mark_time': _iso(base + 12)}),
             _point(f, 8.1, 8.0, {'target_id': 'T2', 'classification': 'unknown', 'mark_status': 'pending',
                                  'time_found': _iso(base + 20)}),
             _point(f, 6.0, 5.0, {'target_id': 'T3', 'classification': 'clutter', 'mark_status': 'pending',
                                  'time_found': _iso(base + 30)})]
    (out / 'marks.geojson').write_text(json.dumps({'type': 'FeatureCollection', 'features': feats}))
    truth = {'time_base': base, 'track': straight_track(y=1.7).tolist(),
             'marks': [{'t': 12.0, 'x': 2.0, 'y': 2.07, 'target_id': 'T1'}]}
    (out / 'sim_truth.json').write_text(json.dumps(truth))
    scen_path = tmp_path / 'scenario.yaml'
    dump_scenario(scenario, scen_path)

    assert cli_main(['judge', str(scen_path), str(out)]) == 0
    assert 'PD(0.5 m) 33.3 %' in capsys.readouterr().out
    res = json.loads((out / 'judge.json').read_text())
    assert res['track_source'].startswith('truth') and res['detection_time_source'] == 'report time'
    assert res['detected'] == 1 and res['false_alarms'] == 1 and res['false_alarms_near_clutter'] == 1
    assert res['marks'][0]['error_m'] == pytest.approx(0.07, abs=1e-3)   # the true mark, not the belief
    h1 = next(h for h in res['per_hazard'] if h['id'] == 'H1')
    assert h1['first_report_t'] == pytest.approx(9.0) and h1['wheel_passes_before_detection'] == 2

    # without the simulator's truth the estimated track is used and marks come from the folder
    (out / 'sim_truth.json').unlink()
    line = np.array(f.to_wgs84(np.linspace(-2, 12, 50), np.full(50, 5.0))).T.tolist()
    (out / 'track.geojson').write_text(json.dumps({'type': 'FeatureCollection', 'features': [
        {'type': 'Feature', 'geometry': {'type': 'LineString', 'coordinates': line},
         'properties': {'start_time': _iso(base), 'end_time': _iso(base + 14)}}]}))
    res2 = judge_folder(scenario, out, robot, time_base=base)
    assert res2['track_source'].startswith('estimated') and res2['coverage_fraction'] > 0.1
    assert res2['marks'][0]['error_m'] == pytest.approx(0.02, abs=1e-3)


def test_judge_errors(tmp_path, scenario, robot, capsys):
    with pytest.raises(JudgeError, match='not a directory'):
        judge_folder(scenario, tmp_path / 'nope', robot)
    with pytest.raises(JudgeError, match='neither marks.geojson nor detections.geojson'):
        judge_folder(scenario, tmp_path, robot)
    (tmp_path / 'marks.geojson').write_text('{broken')
    with pytest.raises(JudgeError, match='not valid JSON'):
        judge_folder(scenario, tmp_path, robot)
    assert cli_main(['judge', 'default', str(tmp_path)]) == 1
    assert 'not valid JSON' in capsys.readouterr().err


def test_a_targets_earlier_mark_is_superseded_by_its_latest(scenario, robot):
    marks = [MarkRecord(2.3, 2.0, 10.0, 'T1'), MarkRecord(2.02, 2.0, 14.0, 'T1'),
             MarkRecord(6.1, 5.0, 20.0, 'T2')]
    res = judge_run(scenario, RunRecord([], marks=marks), robot)
    assert [m['superseded'] for m in res['marks']] == [True, False, False]
    assert res['superseded_marks'] == 1
    assert res['marking_error_m']['count'] == 2
    assert res['marking_error_m']['max'] == pytest.approx(0.1)


def test_the_marks_of_a_target_retired_as_a_duplicate_are_superseded(scenario, robot):
    marks = [MarkRecord(2.3, 2.0, 10.0, 'T5'), MarkRecord(2.02, 2.0, 14.0, 'T7')]
    res = judge_run(scenario, RunRecord([], marks=marks, retired_targets=frozenset({'T5'})), robot)
    assert [m['superseded'] for m in res['marks']] == [True, False]
    assert res['marking_error_m']['max'] == pytest.approx(0.02)


def test_a_mark_made_under_fusions_id_after_a_restart_counts_for_the_recorded_target(tmp_path, scenario,
                                                                                      robot):
    """After a whole-graph restart the marker names fusion's new id (B4); the record knows it as
    T5 (``reported_as``), whose mark is superseded: so is the paint made under B4."""
    out = tmp_path / 'sweep'
    out.mkdir()
    f = scenario.frame
    feats = [_point(f, 2.3, 2.0, {'target_id': 'T5', 'classification': 'clutter', 'mark_status': 'superseded',
                                  'reported_as': ['B4']}),
             _point(f, 2.3, 2.0, {'target_id': 'T5', 'classification': 'clutter',
                                  'mark_status': 'not_marked', 'reported_as': ['B4']}),
             _point(f, 2.02, 2.0, {'target_id': 'T7', 'classification': 'uxo', 'mark_status': 'marked'})]
    (out / 'marks.geojson').write_text(json.dumps({'type': 'FeatureCollection', 'features': feats}))
    truth = {'time_base': 0.0, 'track': straight_track(y=1.7).tolist(),
             'marks': [{'t': 12.0, 'x': 2.3, 'y': 2.0, 'target_id': 'B4'},
                       {'t': 13.0, 'x': 2.02, 'y': 2.0, 'target_id': 'T7'}]}
    (out / 'sim_truth.json').write_text(json.dumps(truth))
    res = judge_folder(scenario, out, robot)
    assert [(m['target_id'], m['superseded']) for m in res['marks']] == [('T5', True), ('T7', False)]
    assert res['marking_error_m']['max'] == pytest.approx(0.02, abs=1e-3)


def test_marking_error_per_hazard_counts_its_nearest_mark_and_names_extra_paint(scenario, robot):
    """A hazard with its own mark 5 cm away and a false alarm's paint 0.45 m beside it: per mark the
    error statistics include the 0.45 m, per hazard only the mark its excavation starts from; the
    false alarm's paint is counted as an extra mark, and a superseded mark is neither."""
    marks = [MarkRecord(2.03, 2.04, 10.0, 'T1'), MarkRecord(2.45, 2.0, 12.0, 'T9'),
             MarkRecord(2.2, 2.0, 5.0, 'T1'), MarkRecord(6.0, 5.2, 20.0, 'T2')]
    res = judge_run(scenario, RunRecord([], marks=marks), robot)
    assert res['marking_error_m']['count'] == 3
    assert res['marking_error_m']['max'] == pytest.approx(0.45)
    per_hazard = res['marking_error_per_hazard_m']
    assert per_hazard['count'] == 2 and per_hazard['max'] == pytest.approx(0.2)
    assert per_hazard['mean'] == pytest.approx(0.125)
    assert [m['hazard_mark'] for m in res['marks']] == [True, False, False, True]
    assert res['extra_marks_near_hazards'] == 1 and res['superseded_marks'] == 1
