"""Driver executables as processes: config/drivers.yaml loads, a port that never exists keeps the
node up (reporting and retrying), Ctrl-C exits 0, bad parameters exit 1 with the reason."""

import os
from pathlib import Path
import signal
import subprocess
import sys
import threading
import time

import pytest

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
DRIVERS = ('metal_detector_driver', 'gnss_driver', 'gpr_driver', 'marker_driver', 'camera_driver')

pytestmark = pytest.mark.ros


def test_all_drivers_start_from_config_and_survive_missing_devices(tmp_path):
    procs = {}
    for name in DRIVERS:
        missing = 'source' if name == 'camera_driver' else 'port'
        procs[name] = subprocess.Popen(
            [str(BIN / name), '--ros-args', '--params-file', str(REPO / 'config' / 'drivers.yaml'),
             '-p', f'{missing}:={tmp_path / ("never_" + name)}', '-p', 'reconnect_max:=0.2'],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy())
    logs = {name: [] for name in procs}
    readers = [threading.Thread(target=lambda p=p, log=logs[n]: log.extend(p.stderr), daemon=True)
               for n, p in procs.items()]
    for reader in readers:
        reader.start()
    serial = [n for n in procs if n != 'camera_driver']
    try:
        deadline = time.monotonic() + 60          # start-up is slow when the machine is loaded
        while time.monotonic() < deadline and not all(
                any('cannot open' in line for line in logs[n]) for n in serial):
            time.sleep(0.2)
        time.sleep(1.0)                           # several retries later...
        for name, proc in procs.items():
            assert proc.poll() is None, f'{name} exited: {"".join(logs[name])}'
    finally:
        for proc in procs.values():
            proc.send_signal(signal.SIGINT)
        codes = {name: proc.wait(timeout=30) for name, proc in procs.items()}
        for reader in readers:
            reader.join(timeout=5)
    for name, code in codes.items():
        err = ''.join(logs[name])
        assert code == 0, f'{name}: exit {code}\n{err}'
        if name in serial:
            assert f'never_{name}' in err and 'retrying' in err, (name, err)


@pytest.mark.parametrize('name, args, message', [
    ('gnss_driver', ['-p', 'port:=/dev/null', '-p', 'uere.single:=-1.0'], 'uere.single'),
    ('gpr_driver', ['-p', 'port:=/dev/null', '-p', 'time_window_ns:=0.0'], 'time_window_ns'),
    ('marker_driver', ['-p', 'port:=/dev/null', '-p', 'retries:=50'], 'retries'),
    ('marker_driver', [], 'port is empty'),
    ('camera_driver', ['-p', 'source:=0', '-p', 'calibration_file:=/nonexistent.yaml'], 'calibration'),
])
def test_bad_parameters_exit_1_with_reason(name, args, message):
    result = subprocess.run([str(BIN / name), '--ros-args', *args], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 1, result.stderr
    assert 'fatal configuration error' in result.stderr and message in result.stderr
