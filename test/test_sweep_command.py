"""`mine-robot sweep`: the whole graph as processes, the mission started through its service,
and a clean abort on SIGTERM (records and exports written, exit 130, no node left running)."""

import json
import os
from pathlib import Path
import signal
import subprocess
import sys
import time

import pytest

pytestmark = [pytest.mark.ros, pytest.mark.slow]

TINY = Path(__file__).resolve().parent / 'data' / 'scenarios' / 'tiny.yaml'


def _nodes_of(out: Path) -> list[str]:
    """Command lines of processes still running with this sweep's parameter files."""
    from mine_robot.ros.graph import run_processes
    return [cmd for _pid, cmd in run_processes(out / 'run')]


def _pid_of(out: Path, node: str) -> int | None:
    from mine_robot.ros.graph import run_processes
    return next((pid for pid, _cmd in run_processes(out / 'run', node)), None)


def _read_until(proc, lines: list, text: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            return False
        lines.append(line)
        if text in line:
            return True
    return False


def test_sweep_starts_the_mission_and_sigterm_aborts_cleanly(tmp_path):
    out = tmp_path / 'sweep'
    cmd = [sys.executable, '-m', 'mine_robot.cli', 'sweep', '--sim', str(TINY), '-o', str(out),
           '--rate', '1', '--timeout', '200']
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ))
    lines = []
    try:
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith('mission started'):
                break
        assert any(x.startswith('mission started') for x in lines), ''.join(lines)
        assert len(_nodes_of(out)) == 17
        time.sleep(3.0)
        # a crash of the mission manager: the supervisor restarts it and it resumes the mission
        os.kill(_pid_of(out, 'mission_manager'), signal.SIGKILL)
        assert _read_until(proc, lines, 'mission_manager (exit code -9, restart 1/3)', 30.0), ''.join(lines)
        time.sleep(8.0)
        assert len(_nodes_of(out)) == 17
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = ''.join(lines) + rest
    assert proc.returncode == 130, text
    assert 'aborting the mission' in text
    status = json.loads((out / 'mission_status.json').read_text())
    assert status['state'] == 'aborted' and status['resumed'] is True, status
    import sqlite3
    starts = [r[0] for r in sqlite3.connect(out / 'mission.db').execute(
        "SELECT reason FROM events WHERE event = 'start' ORDER BY id")]
    assert starts[0] == 'operator start' and starts[-1].startswith('resumed from'), starts
    for name in ('mission.db', 'report.json', 'detections.geojson', 'track.geojson', 'coverage.geojson'):
        assert (out / name).is_file(), name
    time.sleep(1.0)
    assert _nodes_of(out) == []


def test_after_the_whole_graph_is_killed_sweep_resumes_the_mission(tmp_path):
    """A power cut: the supervisor and every node die at once. `mine-robot sweep` on the same
    folder finds the interrupted mission and follows it: either the mission manager resumed it by
    itself first (the command's start request is refused as 'already running': not an error) or
    the start request came first and resumed it from mission.db (which of the two wins is a race
    between the manager's start-up timer and the command's first service call)."""
    out = tmp_path / 'sweep'
    cmd = [sys.executable, '-m', 'mine_robot.cli', 'sweep', '--sim', str(TINY), '-o', str(out),
           '--rate', '1', '--timeout', '200']
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             env=dict(os.environ))
    lines: list = []
    try:
        assert _read_until(first, lines, 'mission started', 150.0), ''.join(lines)
        time.sleep(3.0)
        first.kill()                                 # SIGKILL: the nodes die with it
        first.wait(timeout=10)
        deadline = time.monotonic() + 10.0
        while _nodes_of(out) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _nodes_of(out) == []
    finally:
        if first.poll() is None:
            first.kill()
    before = json.loads((out / 'sim_truth.json').read_text())['track']
    second = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env=dict(os.environ))
    lines = []
    try:
        assert _read_until(second, lines, 'resumed from', 150.0), ''.join(lines)
        time.sleep(2.0)
        assert second.poll() is None, ''.join(lines)  # still following the resumed mission
        second.send_signal(signal.SIGTERM)
        rest, _ = second.communicate(timeout=90)
    finally:
        if second.poll() is None:
            second.kill()
    assert second.returncode == 130, ''.join(lines) + rest
    status = json.loads((out / 'mission_status.json').read_text())
    assert status['resumed'] is True, status
    assert 'the simulator continues the run' in ''.join(lines)
    # the simulator went on with the same true track and clock: the judge sees one run
    after = json.loads((out / 'sim_truth.json').read_text())['track']
    assert len(after) > len(before) and after[:len(before)] == before
    assert all(b[0] > a[0] for a, b in zip(after, after[1:]))


def test_sweep_without_sim_and_bad_scenario_fail_clearly(tmp_path):
    result = subprocess.run([sys.executable, '-m', 'mine_robot.cli', 'sweep', '-o', str(tmp_path / 'a')],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and '--sim' in result.stderr
    result = subprocess.run([sys.executable, '-m', 'mine_robot.cli', 'sweep', '--sim', 'no_such_field',
                             '-o', str(tmp_path / 'b')], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and 'no_such_field' in result.stderr


def test_the_summary_counts_the_sensor_data_the_detectors_used():
    """The sweep's summary compares what the simulator made with what each detector processed
    (from the nodes' diagnostics); a lossy stream is named, start-up samples (before the first
    pose) and the diagnostics' one-second skew are not losses, a missing counter is left out."""
    from mine_robot.ros.sweep import delivery_text, lossy_streams, sensor_data_delivery

    diag = {'sim_sensors': {'md_samples': '10000', 'gpr_samples': '5000', 'camera_samples': '200',
                            'sim_time': '200.0'},
            'md_detector': {'samples': '7900', 'dropped_no_pose': '30'},
            'gpr_detector': {'traces': '24800', 'dropped_no_pose': '0'},
            'camera_detector': {'images': 'n/a'}}
    delivery = sensor_data_delivery(diag, gpr_channels=5)
    assert [(d['stream'], d['used'], d['produced'], d['before_pose']) for d in delivery] == [
        ('metal detector', 7900, 10000, 30), ('GPR', 24800, 25000, 0)]
    assert lossy_streams(delivery, rate=2.0) == ['metal detector']     # 21 % lost; GPR 0.8 %
    diag['md_detector'] = {'samples': '9780', 'dropped_no_pose': '70'}  # 150 short: 1.5 %
    assert lossy_streams(sensor_data_delivery(diag, 5), rate=2.0) == []
    assert sensor_data_delivery({'md_detector': {'samples': '5'}}) == []
    # with the serial drivers' counters: what the simulator wrote before the driver opened the
    # device is start-up, what the line dropped (sequence gaps) is a loss
    diag['md_detector'] = {'samples': '9400', 'dropped_no_pose': '0'}             # 6 % short
    diag['metal_detector_driver'] = {'frames': '9420', 'lost_messages': '0'}       # 580 before it
    diag['gpr_detector'] = {'traces': '22000', 'dropped_no_pose': '0'}
    diag['gpr_driver'] = {'frames': '22010', 'lost_messages': '2900'}              # the line lost 12 %
    delivery = {d['stream']: d for d in sensor_data_delivery(diag, gpr_channels=5)}
    assert lossy_streams(list(delivery.values()), rate=2.0) == ['GPR']
    assert delivery_text(delivery['metal detector']) == \
        'metal detector 99.8 % of 9420 samples (580 before its driver connected)'
    assert delivery_text(delivery['GPR']) == \
        'GPR 88.3 % of 24910 traces (90 before its driver connected, 2900 lost on the serial line)'
    # a detector's count read a second after the simulator's: all of it, not more
    ahead = {**delivery['metal detector'], 'used': 9431}
    assert delivery_text(ahead) == 'metal detector 100.0 % of 9420 samples (580 before its driver connected)'


def test_the_sweep_graph_gets_a_shared_memory_segment_large_enough_for_camera_images():
    """config/fastdds_sim.xml is valid Fast DDS XML whose default participant uses a shared-memory
    segment larger than a camera image (640 x 480 x 3 bytes), and the sweep uses it unless the
    user set a profile file of their own."""
    import xml.etree.ElementTree as ET

    from mine_robot.ros.sweep import dds_profile_env

    env = dds_profile_env({})
    path = Path(env['FASTDDS_DEFAULT_PROFILES_FILE'])
    ns = {'d': 'http://www.eprosima.com'}
    root = ET.parse(path).getroot()
    shm = [t for t in root.iterfind('.//d:transport_descriptor', ns)
           if t.findtext('d:type', namespaces=ns) == 'SHM']
    assert len(shm) == 1 and int(shm[0].findtext('d:segment_size', namespaces=ns)) > 2 * 640 * 480 * 3
    participant = root.find('.//d:participant', ns)
    assert participant.get('is_default_profile') == 'true'
    used = [e.text for e in participant.iterfind('.//d:userTransports/d:transport_id', ns)]
    assert shm[0].findtext('d:transport_id', namespaces=ns) in used
    assert dds_profile_env({'FASTDDS_DEFAULT_PROFILES_FILE': '/mine.xml'}) == {}
