"""Ground-penetrating radar: binary trace frames (one frame per sweep), pure parser and encoder.

Frame layout, all integers little-endian (specified byte by byte in docs/protocols.md)::

    off size field
      0   2  sync            0xA5 0x5A
      2   4  body_length     uint32: bytes after this field, up to and including the CRC
      6   1  version         1
      7   1  sample_format   1 = int16, 2 = float32
      8   4  seq             uint32, +1 per trace, wraps
     12   8  device_time_us  uint64
     20   2  sample_count    uint16, 1..MAX_SAMPLES
     22   2  flags           uint16 (bit 0: receiver saturated; others 0)
     24   4  time_window_ns  float32, > 0: time span the samples cover
     28   4  scale           float32: physical value = raw sample * scale (1.0 for float32)
     32 n*s  samples         int16 or float32
    32+n*s 4 crc32           CRC-32/ISO-HDLC (zlib.crc32) of bytes 2 .. 32+n*s-1

So a frame is ``36 + n * s`` bytes and ``body_length = 30 + n * s``.

Version 2 (an antenna array: one frame per antenna per scan) inserts two bytes after ``scale``::

     32   1  channel         uint8: antenna index, 0 .. channel_count-1
     33   1  channel_count   uint8: antennas in the array (1..64); every channel of one scan
                             carries the same seq and device_time_us
     34 n*s  samples
    34+n*s 4 crc32

so a v2 frame is ``38 + n * s`` bytes. A v1 frame parses as channel 0 of a 1-antenna array.
"""

from __future__ import annotations

from dataclasses import dataclass
import struct
import zlib

import numpy as np

from mine_robot.drivers.framing import LengthPrefixFramer
from mine_robot.drivers.protocols import ProtocolError

SYNC = b'\xa5\x5a'
VERSION = 1
VERSION_ARRAY = 2
CHANNEL = struct.Struct('<BB')     # v2: channel, channel_count after the v1 header
MAX_CHANNELS = 64
FORMAT_INT16, FORMAT_FLOAT32 = 1, 2
SAMPLE_SIZE = {FORMAT_INT16: 2, FORMAT_FLOAT32: 4}
SAMPLE_DTYPE = {FORMAT_INT16: np.dtype('<i2'), FORMAT_FLOAT32: np.dtype('<f4')}
MAX_SAMPLES = 8192
HEADER = struct.Struct('<2sIBBIQHHff')
HEADER_SIZE = HEADER.size          # 32
CRC_SIZE = 4
LENGTH_OFFSET, LENGTH_FORMAT = 2, '<I'
MAX_BODY = HEADER_SIZE + CHANNEL.size - 6 + MAX_SAMPLES * 4 + CRC_SIZE   # largest legal frame (v2)
MIN_BODY = HEADER_SIZE - 6 + 2 + CRC_SIZE                 # one int16 sample
MAX_TIME_WINDOW_NS = 1.0e6
FLAG_SATURATED = 0x0001


@dataclass(frozen=True, eq=False)
class GprTrace:
    seq: int
    device_time_us: int
    time_window_ns: float
    sample_format: int
    samples: np.ndarray      # float32, physical units (raw * scale), read-only
    flags: int = 0
    channel: int = 0         # antenna of the array (v2); 0 for a v1 frame
    channel_count: int = 1

    @property
    def device_time(self) -> float:
        return self.device_time_us * 1e-6

    @property
    def sample_interval_ns(self) -> float:
        return self.time_window_ns / len(self.samples)


def frame_length(body_length: int) -> int:
    """Total frame size for a ``body_length`` field (what the length-prefixed framer needs)."""
    return 6 + body_length


def parse(frame: bytes) -> GprTrace:
    """Parse one complete frame (sync through CRC)."""
    if len(frame) < HEADER_SIZE + CRC_SIZE:
        raise ProtocolError(f'GPR frame of {len(frame)} bytes is shorter than the '
                            f'{HEADER_SIZE + CRC_SIZE}-byte minimum')
    (sync, body_length, version, fmt, seq, time_us, count, flags, window,
     scale) = HEADER.unpack_from(frame)
    if sync != SYNC:
        raise ProtocolError(f'GPR frame starts with {sync.hex()}, not the sync {SYNC.hex()}')
    if frame_length(body_length) != len(frame):
        raise ProtocolError(f'GPR body_length {body_length} does not match the {len(frame)}-byte frame')
    (crc,) = struct.unpack_from('<I', frame, len(frame) - CRC_SIZE)
    actual = zlib.crc32(frame[2:len(frame) - CRC_SIZE])
    if crc != actual:
        raise ProtocolError(f'GPR CRC mismatch: frame says {crc:08X}, computed {actual:08X}')
    if version not in (VERSION, VERSION_ARRAY):
        raise ProtocolError(f'GPR frame version {version} is not supported (expected {VERSION} or '
                            f'{VERSION_ARRAY})')
    header = HEADER_SIZE
    channel, channel_count = 0, 1
    if version == VERSION_ARRAY:
        if len(frame) < HEADER_SIZE + CHANNEL.size + CRC_SIZE:
            raise ProtocolError(f'GPR v2 frame of {len(frame)} bytes has no channel bytes')
        channel, channel_count = CHANNEL.unpack_from(frame, HEADER_SIZE)
        header += CHANNEL.size
        if not 1 <= channel_count <= MAX_CHANNELS or channel >= channel_count:
            raise ProtocolError(f'GPR channel {channel} of {channel_count}: need 0 <= channel < '
                                f'channel_count <= {MAX_CHANNELS}')
    if fmt not in SAMPLE_SIZE:
        raise ProtocolError(f'GPR sample_format {fmt} is not 1 (int16) or 2 (float32)')
    if not 1 <= count <= MAX_SAMPLES:
        raise ProtocolError(f'GPR sample_count {count} is outside [1, {MAX_SAMPLES}]')
    expected = header + count * SAMPLE_SIZE[fmt] + CRC_SIZE
    if expected != len(frame):
        raise ProtocolError(f'GPR sample_count {count} x {SAMPLE_SIZE[fmt]} bytes needs a {expected}-byte '
                            f'frame, got {len(frame)}')
    if not 0.0 < window <= MAX_TIME_WINDOW_NS:
        raise ProtocolError(f'GPR time_window_ns {window} is outside (0, {MAX_TIME_WINDOW_NS:g}]')
    if not np.isfinite(scale) or scale == 0.0:
        raise ProtocolError(f'GPR scale {scale} is not a finite non-zero number')
    raw = np.frombuffer(frame, dtype=SAMPLE_DTYPE[fmt], count=count, offset=header)
    samples = raw.astype(np.float32) * np.float32(scale) if fmt == FORMAT_INT16 or scale != 1.0 \
        else raw.astype(np.float32)
    if not np.all(np.isfinite(samples)):
        raise ProtocolError('GPR trace contains non-finite samples')
    samples.flags.writeable = False
    return GprTrace(seq, time_us, float(window), fmt, samples, flags, channel, channel_count)


def encode_trace(seq: int, device_time_us: int, samples, time_window_ns: float,
                 sample_format: int = FORMAT_FLOAT32, scale: float = 1.0, flags: int = 0,
                 channel: int | None = None, channel_count: int = 1) -> bytes:
    """The exact bytes a radar sends for one trace: a v1 frame, or with ``channel`` a v2 frame
    of antenna ``channel`` of ``channel_count``.

    For int16, ``samples`` are physical values and are stored as ``round(value / scale)``
    (clipped to the int16 range).
    """
    if channel is not None and not 0 <= channel < channel_count <= MAX_CHANNELS:
        raise ValueError(f'channel {channel} of {channel_count}: need 0 <= channel < channel_count '
                         f'<= {MAX_CHANNELS}')
    if sample_format not in SAMPLE_SIZE:
        raise ValueError(f'sample_format must be {FORMAT_INT16} or {FORMAT_FLOAT32}')
    values = np.asarray(samples, dtype=np.float64).ravel()
    if not 1 <= len(values) <= MAX_SAMPLES:
        raise ValueError(f'need 1..{MAX_SAMPLES} samples, got {len(values)}')
    if sample_format == FORMAT_INT16:
        payload = np.clip(np.round(values / scale), -32768, 32767).astype('<i2').tobytes()
    else:
        payload = (values / scale).astype('<f4').tobytes()
    extra = b'' if channel is None else CHANNEL.pack(channel, channel_count)
    body_length = HEADER_SIZE + len(extra) - 6 + len(payload) + CRC_SIZE
    head = HEADER.pack(SYNC, body_length, VERSION if channel is None else VERSION_ARRAY, sample_format,
                       seq % 2 ** 32, int(device_time_us), len(values), flags & 0xFFFF,
                       float(time_window_ns), float(scale))
    body = head + extra + payload
    return body + struct.pack('<I', zlib.crc32(body[2:]))


def make_framer() -> LengthPrefixFramer:
    """Sync-word + length framer for this stream; absurd lengths are rejected before buffering."""
    return LengthPrefixFramer(SYNC, LENGTH_OFFSET, LENGTH_FORMAT, MIN_BODY, MAX_BODY)
