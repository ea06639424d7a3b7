"""GPR binary trace frames: golden bytes, bad CRC, absurd sample counts, fuzzing."""

import struct
import zlib

from hypothesis import given, settings
from hypothesis import strategies as st
import numpy as np
import pytest

from mine_robot.drivers.protocols import ProtocolError, gpr

GOLDEN_FLOAT = bytes.fromhex('a55a2a0000000102010000000200000000000000030000000000a0410000803f'
                             '0000003f000080bf000000404886ec71')
GOLDEN_INT16 = bytes.fromhex('a55a240000000101010000000200000000000000030000000000a0410000803f'
                             '640038ff2c014460f043')


def test_golden_float32_frame():
    assert gpr.encode_trace(1, 2, [0.5, -1.0, 2.0], 20.0) == GOLDEN_FLOAT
    t = gpr.parse(GOLDEN_FLOAT)
    assert (t.seq, t.device_time_us, t.time_window_ns, t.sample_format) == (1, 2, 20.0, gpr.FORMAT_FLOAT32)
    assert t.samples.dtype == np.float32 and list(t.samples) == [0.5, -1.0, 2.0]
    assert t.sample_interval_ns == pytest.approx(20.0 / 3)
    assert zlib.crc32(b'123456789') == 0xCBF43926   # the CRC variant docs/protocols.md names


def test_golden_int16_frame_with_scale():
    assert gpr.encode_trace(1, 2, [100, -200, 300], 20.0, gpr.FORMAT_INT16) == GOLDEN_INT16
    assert list(gpr.parse(GOLDEN_INT16).samples) == [100.0, -200.0, 300.0]
    scaled = gpr.parse(gpr.encode_trace(5, 0, [0.25, -0.5], 10.0, gpr.FORMAT_INT16, scale=1 / 1024))
    assert list(scaled.samples) == [0.25, -0.5]


def test_header_layout_is_as_documented():
    frame = gpr.encode_trace(0xDEADBEEF, 123456789, np.zeros(512), 50.0, flags=1)
    assert len(frame) == 36 + 512 * 4
    assert frame[:2] == b'\xa5\x5a'
    assert struct.unpack_from('<I', frame, 2)[0] == 30 + 512 * 4
    assert struct.unpack_from('<IQHH', frame, 8) == (0xDEADBEEF, 123456789, 512, 1)
    assert struct.unpack_from('<I', frame, len(frame) - 4)[0] == zlib.crc32(frame[2:-4])


def _recrc(body: bytes) -> bytes:
    return body + struct.pack('<I', zlib.crc32(body[2:]))


def _with_header(**changes) -> bytes:
    frame = bytearray(GOLDEN_FLOAT[:-4])
    offsets = {'version': (6, '<B'), 'fmt': (7, '<B'), 'count': (20, '<H'), 'window': (24, '<f'),
               'scale': (28, '<f'), 'length': (2, '<I')}
    for name, value in changes.items():
        off, fmt = offsets[name]
        struct.pack_into(fmt, frame, off, value)
    return _recrc(bytes(frame))


@pytest.mark.parametrize('frame, message', [
    (GOLDEN_FLOAT[:-1] + b'\x00', 'CRC mismatch'),                          # bad CRC
    (GOLDEN_FLOAT[:20] + b'\x01' + GOLDEN_FLOAT[21:], 'CRC mismatch'),        # corrupted header
    (GOLDEN_FLOAT[:-10], 'does not match'),                                 # truncated
    (GOLDEN_FLOAT[:10], 'shorter'),
    (b'\x00\x00' + GOLDEN_FLOAT[2:], 'sync'),
    (_with_header(count=60000), 'sample_count 60000'),                      # absurd count (consistent CRC)
    (_with_header(count=0), 'sample_count 0'),
    (_with_header(count=2), 'needs a'),                                     # count disagrees with length
    (_with_header(fmt=3), 'sample_format'),
    (_with_header(version=9), 'version'),
    (_with_header(window=-1.0), 'time_window'),
    (_with_header(window=float('nan')), 'time_window'),
    (_with_header(scale=float('inf')), 'scale'),
    (_with_header(length=99), 'body_length'),
])
def test_bad_frames(frame, message):
    with pytest.raises(ProtocolError, match=message):
        gpr.parse(frame)


def test_non_finite_samples_rejected():
    frame = gpr.encode_trace(1, 1, [1.0, np.inf, 2.0], 10.0)
    with pytest.raises(ProtocolError, match='non-finite'):
        gpr.parse(frame)


@settings(max_examples=100, deadline=None)
@given(seq=st.integers(0, 2 ** 32 - 1), n=st.integers(1, 600), fmt=st.sampled_from([1, 2]),
       window=st.floats(0.1, 1000), seed=st.integers(0, 2 ** 16))
def test_round_trip(seq, n, fmt, window, seed):
    values = np.random.default_rng(seed).normal(0, 1000, n)
    t = gpr.parse(gpr.encode_trace(seq, seq * 10, values, window, fmt))
    assert t.seq == seq and len(t.samples) == n and t.time_window_ns == pytest.approx(window, rel=1e-6)
    tolerance = 0.5 if fmt == gpr.FORMAT_INT16 else 1e-3
    assert np.allclose(t.samples, values, atol=tolerance, rtol=1e-6)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_random_bytes(data):
    try:
        gpr.parse(data)
    except ProtocolError:
        pass


@settings(max_examples=300, deadline=None)
@given(pos=st.integers(0, len(GOLDEN_FLOAT) - 1), byte=st.integers(0, 255))
def test_fuzz_corruption_detected(pos, byte):
    corrupted = GOLDEN_FLOAT[:pos] + bytes([byte]) + GOLDEN_FLOAT[pos + 1:]
    if corrupted == GOLDEN_FLOAT:
        return
    with pytest.raises(ProtocolError):
        gpr.parse(corrupted)


def test_v2_array_frame_carries_the_antenna_and_v1_is_channel_0():
    frame = gpr.encode_trace(1, 2, [0.5, -1.0, 2.0], 20.0, channel=3, channel_count=5)
    assert len(frame) == 38 + 3 * 4
    assert frame[6] == 2 and frame[32:34] == bytes([3, 5])
    assert struct.unpack_from('<I', frame, 2)[0] == 32 + 3 * 4
    t = gpr.parse(frame)
    assert (t.channel, t.channel_count, t.seq) == (3, 5, 1) and list(t.samples) == [0.5, -1.0, 2.0]
    v1 = gpr.parse(GOLDEN_FLOAT)
    assert (v1.channel, v1.channel_count) == (0, 1)
    # an antenna index outside the array is a bad frame, never a silent mix-up
    bad = bytearray(frame[:-4])
    bad[32] = 5
    with pytest.raises(ProtocolError, match='channel 5 of 5'):
        gpr.parse(_recrc(bytes(bad)))
    with pytest.raises(ValueError, match='channel 5 of 5'):
        gpr.encode_trace(1, 2, [0.0], 20.0, channel=5, channel_count=5)
    # the framer accepts the largest v2 frame
    big = gpr.encode_trace(1, 2, np.zeros(gpr.MAX_SAMPLES), 20.0, channel=0, channel_count=2)
    assert gpr.make_framer().feed(big) == [big]
