"""Framers: cut a byte stream into frames. Pure, incremental, never raise on bad input.

``feed(data)`` returns the frames completed by ``data`` in order; a stretch of bytes that can not
be a frame (overlong line, garbage before a sync word, absurd length) comes back in the same list
as a :class:`ProtocolError` so the caller counts it as a bad frame and carries on.
"""

from __future__ import annotations

import struct

from mine_robot.drivers.protocols import MAX_LINE, ProtocolError

FramerOutput = list[bytes | ProtocolError]


class LineFramer:
    """Lines ending in ``\\n`` (a preceding ``\\r`` is kept for the parser to strip)."""

    def __init__(self, max_length: int = MAX_LINE):
        self.max_length = max_length
        self._buf = bytearray()
        self._discarding = False

    def feed(self, data: bytes) -> FramerOutput:
        out: FramerOutput = []
        self._buf += data
        start = 0
        buf = self._buf
        while True:
            end = buf.find(b'\n', start)
            if end < 0:
                break
            if self._discarding:
                self._discarding = False
            elif end - start + 1 > self.max_length:
                out.append(ProtocolError(f'overlong line ({end - start + 1} bytes > {self.max_length})'))
            elif end - start > 1 or (end - start == 1 and buf[start] != 0x0D):
                out.append(bytes(buf[start:end + 1]))
            start = end + 1
        del buf[:start]
        if len(buf) > self.max_length:
            if not self._discarding:
                out.append(ProtocolError(f'overlong line (> {self.max_length} bytes without a newline)'))
            self._discarding = True
            buf.clear()
        return out

    def reset(self) -> None:
        """Forget a partial line (after a reconnect the rest of it will never come)."""
        self._buf.clear()
        self._discarding = False


class LengthPrefixFramer:
    """Binary frames: ``sync`` + length field (+ the rest); total size ``length + fixed``.

    ``length_offset``/``length_format`` locate the length field (struct format, e.g. ``'<I'``);
    a frame is ``length_offset + calcsize(length_format) + length`` bytes. Lengths outside
    ``[min_length, max_length]`` are absurd: reported, and the search restarts one byte later.
    """

    def __init__(self, sync: bytes, length_offset: int, length_format: str, min_length: int,
                 max_length: int):
        self.sync = sync
        self._len = struct.Struct(length_format)
        self.length_offset = length_offset
        self.header = length_offset + self._len.size
        self.min_length, self.max_length = min_length, max_length
        self._buf = bytearray()

    def feed(self, data: bytes) -> FramerOutput:
        out: FramerOutput = []
        buf = self._buf
        buf += data
        while True:
            at = buf.find(self.sync)
            if at < 0:
                keep = len(self.sync) - 1   # a sync word may straddle chunks
                if len(buf) > keep:
                    out.append(ProtocolError(f'{len(buf) - keep} bytes without a sync word skipped'))
                    del buf[:len(buf) - keep]
                break
            if at > 0:
                out.append(ProtocolError(f'{at} bytes before the sync word skipped'))
                del buf[:at]
            if len(buf) < self.header:
                break
            (length,) = self._len.unpack_from(buf, self.length_offset)
            if not self.min_length <= length <= self.max_length:
                out.append(ProtocolError(f'absurd frame length {length} (allowed {self.min_length}..'
                                         f'{self.max_length}); resynchronising'))
                del buf[:1]
                continue
            total = self.header + length
            if len(buf) < total:
                break
            out.append(bytes(buf[:total]))
            del buf[:total]
        return out

    def reset(self) -> None:
        self._buf.clear()
