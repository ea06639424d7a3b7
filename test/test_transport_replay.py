"""A driver's raw recording replays through ``mine-robot replay`` exactly as it was parsed live."""

import json
from pathlib import Path
import subprocess
import sys
import time

import numpy as np
import pytest

from mine_robot.drivers.device import DeviceConfig, DeviceStream
from mine_robot.drivers.protocols import gpr
from mine_robot.drivers.protocols import metal_detector as md
from mine_robot.drivers.pty import PtyDevice

EXE = str(Path(sys.executable).parent / 'mine-robot')


def record(tmp_path, protocol, name, payload, expected):
    live = []
    with PtyDevice() as dev:
        stream = DeviceStream(name, DeviceConfig(dev.path, raw_log_path=str(tmp_path / f'{name}.raw')),
                              protocol, lambda m, t: live.append(m)).start()
        try:
            assert stream.transport.wait_connected(3)
            for i in range(0, len(payload), 777):        # arbitrary chunking, as a real device does
                dev.write(payload[i:i + 777])
            deadline = time.monotonic() + 5
            while len(live) < expected and time.monotonic() < deadline:
                time.sleep(0.02)
        finally:
            stream.close()
    return stream.recorder.path, live, stream.health().values


def test_replay_metal_detector_recording(tmp_path):
    lines = [md.encode_sample(i, i * 1000, [i, 1, 2, 3, 4]) for i in range(300) if i not in (100, 101)]
    payload = b''.join(lines[:150]) + b'\xde\xad noise\n' + b''.join(lines[150:])
    path, live, health = record(tmp_path, md, 'metal_detector', payload, 298)
    assert len(live) == 298 and health['raw_log'] == str(path)
    out = subprocess.run([EXE, 'replay', str(path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary['device'] == 'metal_detector' and summary['messages'] == {'MdSample': 298}
    assert summary['bad_frames'] == 1 and summary['lost_messages'] == 2 and summary['bytes'] == len(payload)
    assert 'bad frame at' in out.stderr
    out = subprocess.run([EXE, 'replay', str(path), '--messages'], capture_output=True, text=True, timeout=60)
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r['seq'] for r in rows] == [m.seq for m in live]


def test_replay_gpr_recording_and_errors(tmp_path):
    frames = [gpr.encode_trace(i, i, np.arange(64) * i, 16.0) for i in range(20)]
    path, live, _ = record(tmp_path, gpr, 'gpr', b''.join(frames), 20)
    out = subprocess.run([EXE, 'replay', str(path), '--messages'], capture_output=True, text=True, timeout=60)
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert len(rows) == 20 and rows[3]['samples'][1] == pytest.approx(3.0)
    bogus = tmp_path / 'bogus.raw'
    bogus.write_bytes(b'hello')
    out = subprocess.run([EXE, 'replay', str(bogus)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and 'not a mine_robot raw recording' in out.stderr
