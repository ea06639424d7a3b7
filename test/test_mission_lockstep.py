"""The whole mission in lockstep (no ROS): mine_robot.mission.lockstep and `sweep --lockstep`."""

import json
import math
import sqlite3

import pytest

from mine_robot.cli import main

SCENARIO = """
name: lockstep_test
datum: {lat: 44.7722, lon: 17.1910}
area:
  safe_access: [[[-3.5, -0.3], [0.0, -0.3], [0.0, 1.4], [-3.5, 1.4]]]
  search_area: [[0, 0], [4, 0], [4, 3], [0, 3]]
soil: {md_ground_amplitude: 0.002, md_ground_correlation_m: 1.0, md_noise: 0.0015, md_drift: 0.0002,
       gpr_permittivity: 6.0, gpr_noise: 0.01, gpr_clutter_density: 0.3}
robot: {x: -1.5, y: 0.55, yaw_deg: 0}
objects:
  - {id: M1, kind: mine, model: PMN-2, x: 2.2, y: MINE_Y, depth_m: 0.05, metal_g: 5.0, diameter_m: 0.12}
  - {id: C1, kind: clutter, model: rock, x: 1.0, y: 2.4, depth_m: 0.10, metal_g: 0.0, diameter_m: 0.12}
"""


def sweep(tmp_path, mine_y, *extra, mine_only=False):
    path = tmp_path / 'field.yaml'
    text = SCENARIO.replace('MINE_Y', str(mine_y))
    if mine_only:   # no rock, no random GPR clutter: nothing else for the robot to keep away from
        text = text.replace('gpr_clutter_density: 0.3', 'gpr_clutter_density: 0.0')
        text = '\n'.join(line for line in text.splitlines() if 'id: C1' not in line)
    path.write_text(text)
    out = tmp_path / 'out'
    code = main(['sweep', '--sim', str(path), '-o', str(out), '--lockstep', '--quiet', *extra])
    judge = json.loads((out / 'judge.json').read_text()) if (out / 'judge.json').exists() else None
    return code, out, judge, json.loads((out / 'mission_status.json').read_text())


def test_a_lockstep_sweep_finds_marks_and_records_the_mine(tmp_path, capsys):
    # mine on the middle lane's centre line (lanes run east-west 0.96 m apart): found, marked
    code, out, judge, status = sweep(tmp_path, 1.5)
    assert code == 0, capsys.readouterr().out
    assert status['state'] == 'complete'
    assert judge['detected'] == judge['hazards'] == 1 and judge['false_alarms'] == 0
    assert judge['marking_error_m']['count'] == 1 and judge['marking_error_m']['max'] < 0.10
    assert judge['coverage_fraction'] >= 0.99 and judge['wheel_passes_over_undetected_hazards'] == 0
    db = sqlite3.connect(out / 'mission.db')
    assert db.execute('SELECT count(*) FROM detections').fetchone()[0] >= 1
    # one mark at the mine (others may sit on GPR-only echoes the wheel-path guard marked while
    # they were unclassified: a possible plastic mine is marked before a wheel reaches it)
    near = [(x, y) for x, y, status in db.execute('SELECT x, y, status FROM marks')
            if status == 'marked' and math.hypot(x - 2.2, y - 1.5) < 0.5]
    assert len(near) == 1 and math.hypot(near[0][0] - 2.2, near[0][1] - 1.5) < 0.10
    for name in ('detections.geojson', 'marks.geojson', 'coverage.geojson', 'track.geojson', 'report.json',
                 'sim_truth.json'):
        assert (out / name).is_file(), name
    assert 'lockstep:' in capsys.readouterr().out


def test_with_the_hazard_rule_on_no_wheel_rolls_over_a_found_mine(tmp_path):
    # the mine lies under the middle lane's left wheel track: found by the detector ahead, marked,
    # then the lane is sidestepped on swept ground instead of rolling over it
    code, out, judge, status = sweep(tmp_path, 1.78, '--set', 'safety_monitor.hazard_enabled=true',
                                     mine_only=True)
    assert code == 0 and status['state'] == 'complete', status.get('message')
    assert status['detours'] >= 1
    assert min(m['error_m'] for m in judge['marks'] if m['matched']) < 0.10     # the mine is marked
    assert judge['detected'] == 1 and judge['wheel_passes_over_known_hazards'] == 0
    assert judge['wheel_passes_over_undetected_hazards'] == 0 and judge['coverage_fraction'] >= 0.99


def test_bad_override_is_refused_with_a_clear_message(tmp_path, capsys):
    assert main(['sweep', '--sim', 'default', '-o', str(tmp_path / 'o'), '--lockstep',
                 '--set', 'hazard_enabled=true']) == 1
    assert 'expected NODE.PARAM=VALUE' in capsys.readouterr().err


@pytest.mark.parametrize('scenario', ['no_such_scenario'])
def test_unknown_scenario_is_refused(tmp_path, capsys, scenario):
    assert main(['sweep', '--sim', scenario, '-o', str(tmp_path / 'o'), '--lockstep']) == 1
    assert 'error' in capsys.readouterr().err


@pytest.mark.parametrize('mission', [False, True])
def test_evaluate_writes_detections_and_the_judge_with_or_without_the_mission(tmp_path, capsys, mission):
    path = tmp_path / 'field.yaml'
    path.write_text(SCENARIO.replace('MINE_Y', '1.5'))
    out = tmp_path / 'eval'
    assert main(['evaluate', str(path), '-o', str(out), *(['--mission'] if mission else [])]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary['pd'] == 1.0 and summary['coverage_fraction'] > 0.95
    features = json.loads((out / 'detections.geojson').read_text())['features']
    lon, lat = features[0]['geometry']['coordinates']
    assert 17.18 < lon < 17.20 and 44.77 < lat < 44.78          # WGS84, at the field
    assert json.loads((out / 'judge.json').read_text())['detected'] == 1
    # the mission also marks what it finds and keeps its records
    assert (out / 'mission.db').is_file() == mission and (summary.get('marks', 0) >= 1) == mission
