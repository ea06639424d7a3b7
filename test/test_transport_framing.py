"""Framers, stream statistics and raw recording: pure, no I/O except temp files."""

import struct

from hypothesis import given, settings
from hypothesis import strategies as st
import numpy as np
import pytest

from mine_robot.drivers.framing import LengthPrefixFramer, LineFramer
from mine_robot.drivers.protocols import ProtocolError, gpr
from mine_robot.drivers.protocols import metal_detector as md
from mine_robot.drivers.rawlog import RawLogError, RawLogWriter, read_raw_log, replay
from mine_robot.drivers.stats import DeviceClock, RateMeter, SequenceTracker


def gpr_framer() -> LengthPrefixFramer:
    return gpr.make_framer()


def test_line_framer_reassembles_split_lines_and_skips_blank():
    f = LineFramer()
    assert f.feed(b'$A*41\r') == []
    assert f.feed(b'\n\r\n\n$B') == [b'$A*41\r\n']
    assert f.feed(b'*42\n') == [b'$B*42\n']


def test_line_framer_overlong_line_reported_once_and_resyncs():
    f = LineFramer(max_length=20)
    out = f.feed(b'x' * 50)
    out += f.feed(b'y' * 50 + b'\n$OK*00\n')
    errors = [o for o in out if isinstance(o, ProtocolError)]
    assert len(errors) == 1 and 'overlong' in str(errors[0])
    assert out[-1] == b'$OK*00\n'
    out = f.feed(b'z' * 30 + b'\n')   # overlong but complete in one chunk
    assert len(out) == 1 and isinstance(out[0], ProtocolError)


@settings(max_examples=100, deadline=None)
@given(cuts=st.lists(st.integers(0, 2000), max_size=20))
def test_line_framer_any_chunking_gives_same_lines(cuts):
    lines = [md.encode_sample(i, i, [i, 2, 3, 4, 5]) for i in range(30)]
    stream = b''.join(lines)
    f = LineFramer()
    out = []
    for a, b in zip([0, *sorted(cuts)], [*sorted(cuts), len(stream)]):
        out += f.feed(stream[a:b])
    assert out == lines


def test_length_prefix_framer_garbage_absurd_length_and_split():
    frames = [gpr.encode_trace(i, i, np.arange(100), 10.0) for i in range(3)]
    absurd = gpr.SYNC + struct.pack('<I', 10 ** 9) + b'\0' * 10
    stream = b'junk' + frames[0] + absurd + frames[1] + frames[2]
    f = gpr_framer()
    out = []
    for i in range(0, len(stream), 37):
        out += f.feed(stream[i:i + 37])
    good = [o for o in out if isinstance(o, bytes)]
    bad = [str(o) for o in out if isinstance(o, ProtocolError)]
    assert good == frames
    assert any('absurd frame length 1000000000' in b for b in bad)
    assert any('before the sync' in b for b in bad)
    assert [gpr.parse(g).seq for g in good] == [0, 1, 2]


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=3000))
def test_length_prefix_framer_fuzz_never_raises_and_bounds_buffer(data):
    f = gpr_framer()
    for item in f.feed(data):
        assert isinstance(item, (bytes, ProtocolError))
    assert len(f._buf) <= gpr.MAX_BODY + f.header


def test_sequence_tracker_gaps_wrap_duplicates_restart():
    s = SequenceTracker(modulus=2 ** 32, max_gap=1000)
    assert [s.update(x) for x in (2 ** 32 - 2, 2 ** 32 - 1, 0, 3)] == [0, 0, 0, 2]
    assert (s.lost, s.gaps) == (2, 1)
    assert s.update(3) == 0 and s.update(1) == 0 and s.out_of_order == 2
    assert s.update(500_000) == 0 and s.restarts == 1 and s.lost == 2


def test_rate_meter():
    r = RateMeter(window=1.0)
    for i in range(100):
        r.tick(i * 0.01)
    assert r.rate(0.99) == pytest.approx(100, abs=1)
    assert r.rate(5.0) == 0.0


def test_device_clock_removes_buffering_jitter_and_handles_reboot():
    rng = np.random.default_rng(1)
    clock = DeviceClock(window=5.0)
    true = np.arange(2000) * 0.001 + 100.0             # host time of each sample
    device = np.arange(2000) * 0.001                   # device clock, offset 100 s
    arrival = true + 0.002 + rng.exponential(0.004, 2000)   # latency >= 2 ms, bursty
    stamps = np.array([clock.stamp(d, a) for d, a in zip(device, arrival)])
    err = stamps[200:] - true[200:]
    assert np.all(np.abs(err - 0.002) < 0.0015)        # within 1.5 ms of minimum latency
    assert np.allclose(np.diff(stamps[200:]), 0.001, atol=1e-3)
    assert np.std(arrival[200:] - true[200:]) > 3 * np.std(err)
    clock.stamp(0.0, 200.0)                             # device rebooted: clock back to 0
    assert clock.resets == 1 and clock.stamp(0.001, 200.001) == pytest.approx(200.001)


def test_raw_log_round_trip_truncation_and_no_overwrite(tmp_path):
    path = tmp_path / 'md.raw'
    lines = [md.encode_sample(i, i, [1, 2, 3, 4, 5]) for i in range(10)]
    w = RawLogWriter(path, device='metal_detector')
    w.write(b''.join(lines[:4]) + lines[4][:10], 1.0)
    w.write(lines[4][10:] + b'\xff garbage\n' + b''.join(lines[5:]), 2.0)
    w.close()
    second = RawLogWriter(path, device='metal_detector')   # same name: a new file, never overwrite
    second.close()
    assert second.path == tmp_path / 'md-1.raw' and path.stat().st_size > 100
    header, records = read_raw_log(path)
    assert header['device'] == 'metal_detector' and len(list(records)) == 2
    result = replay(path, LineFramer(), md.parse)
    assert [m.seq for _, m in result.messages] == list(range(10))
    assert len(result.errors) == 1 and result.messages[4][0] == 2.0
    with open(path, 'ab') as f:     # a power cut in the middle of a record
        f.write(struct.pack('<dI', 3.0, 100) + b'$MDS,1')
    assert len(replay(path, LineFramer(), md.parse).messages) == 10
    (tmp_path / 'bad.raw').write_bytes(b'not a log')
    with pytest.raises(RawLogError, match='bad magic'):
        read_raw_log(tmp_path / 'bad.raw')
