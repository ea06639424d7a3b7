"""Raw byte-stream recording and replay, so a field session can be re-run through the parser.

File format (docs/protocols.md): ``MAGIC``, one JSON header line, then records of
``<d I`` (float64 monotonic arrival time, uint32 length) + the bytes as read. Every record is
flushed when written; a truncated final record (power cut) is dropped on reading, the rest kept.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
import json
import os
from pathlib import Path
import struct
import threading
import time
from typing import Any, BinaryIO

from mine_robot.drivers.framing import LengthPrefixFramer, LineFramer
from mine_robot.drivers.protocols import ProtocolError

MAGIC = b'MRRAW1\n\0'
RECORD = struct.Struct('<dI')


class RawLogError(ValueError):
    """A file is not a raw recording (wrong magic or header)."""


class RawLogWriter:
    """Append-only recorder; thread-safe ``write`` (called from the transport's reader thread)."""

    def __init__(self, path: str | os.PathLike, **header: Any):
        self.path = _free_path(Path(path))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file: BinaryIO | None = open(self.path, 'xb')  # never overwrite a recording
        info = {'wall_time': time.time(), 'monotonic': time.monotonic(), **header}
        self._file.write(MAGIC + json.dumps(info, sort_keys=True).encode() + b'\n')
        self._file.flush()
        self._lock = threading.Lock()
        self.records = 0
        self.bytes = 0

    def write(self, data: bytes, t: float) -> None:
        with self._lock:
            if self._file is None:
                return
            self._file.write(RECORD.pack(t, len(data)) + data)
            self._file.flush()
            self.records += 1
            self.bytes += len(data)

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.flush()
                os.fsync(self._file.fileno())
                self._file.close()
                self._file = None


def _free_path(path: Path) -> Path:
    """``path``, or ``stem-1.ext``, ``stem-2.ext``... if it exists (recordings are never overwritten)."""
    candidate, n = path, 0
    while candidate.exists():
        n += 1
        candidate = path.with_name(f'{path.stem}-{n}{path.suffix}')
    return candidate


def read_raw_log(path: str | os.PathLike) -> tuple[dict, Iterator[tuple[float, bytes]]]:
    """``(header, records)``; records yields ``(t_monotonic, chunk)`` in recorded order."""
    data = Path(path).read_bytes()
    if not data.startswith(MAGIC):
        raise RawLogError(f'{path}: not a mine_robot raw recording (bad magic)')
    end = data.find(b'\n', len(MAGIC))
    try:
        header = json.loads(data[len(MAGIC):end])
    except ValueError as exc:
        raise RawLogError(f'{path}: unreadable header: {exc}') from None

    def records() -> Iterator[tuple[float, bytes]]:
        pos = end + 1
        while pos + RECORD.size <= len(data):
            t, n = RECORD.unpack_from(data, pos)
            pos += RECORD.size
            if pos + n > len(data):
                return   # truncated final record
            yield t, data[pos:pos + n]
            pos += n

    return header, records()


@dataclass
class ReplayResult:
    header: dict
    chunks: int = 0
    bytes: int = 0
    messages: list = field(default_factory=list)     # (t, message)
    errors: list = field(default_factory=list)       # (t, str)


def replay(path: str | os.PathLike, framer: LineFramer | LengthPrefixFramer,
           parser: Callable[[bytes], Any]) -> ReplayResult:
    """Run a recording through ``framer`` and ``parser`` exactly as the live driver does."""
    header, records = read_raw_log(path)
    result = ReplayResult(header)
    for t, chunk in records:
        result.chunks += 1
        result.bytes += len(chunk)
        for item in framer.feed(chunk):
            if isinstance(item, ProtocolError):
                result.errors.append((t, str(item)))
                continue
            try:
                result.messages.append((t, parser(item)))
            except ProtocolError as exc:
                result.errors.append((t, str(exc)))
    return result
