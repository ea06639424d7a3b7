"""Device protocols: one pure parser/encoder module per device, no I/O and no ROS.

Every module follows the same shape, so an integrator adding a device copies one of them:

- frozen dataclasses for the messages the device sends (and the commands it accepts);
- ``parse(frame: bytes)`` turning one framed message into a dataclass, raising
  :class:`ProtocolError` (and nothing else) for any malformed input;
- ``encode_*`` functions producing the exact bytes the device (or the host) puts on the wire, used
  by the simulator's virtual devices, the tests and the benchmark.

The line protocols share the NMEA 0183 envelope implemented here: ``$BODY*HH\\r\\n`` where ``HH``
is the XOR of every byte of ``BODY`` as two upper-case hex digits. Wire formats are specified in
``docs/protocols.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
import re

MAX_LINE = 512
"""Longest line any line protocol here accepts (bytes, including ``$`` and ``*HH``)."""


class ProtocolError(ValueError):
    """A frame could not be parsed: names the problem and, where useful, the field."""


def nmea_checksum(body: bytes) -> int:
    """XOR of every byte of ``body`` (the text between ``$`` and ``*``)."""
    value = 0
    for byte in body:
        value ^= byte
    return value


def build_sentence(fields: Sequence[object]) -> bytes:
    """``$F0,F1,...*HH\\r\\n`` from fields (``None`` becomes an empty field)."""
    body = ','.join('' if f is None else str(f) for f in fields).encode('ascii')
    return b'$' + body + b'*' + b'%02X' % nmea_checksum(body) + b'\r\n'


def split_sentence(frame: bytes, *, max_length: int = MAX_LINE) -> list[str]:
    """Check the envelope and checksum of one line and return its comma-separated fields.

    Accepts a trailing ``\\r\\n`` or ``\\n``. Raises :class:`ProtocolError` for an overlong line,
    non-ASCII bytes, a missing ``$`` or ``*HH`` or a checksum mismatch.
    """
    if len(frame) > max_length:
        raise ProtocolError(f'line of {len(frame)} bytes exceeds the {max_length}-byte limit')
    line = frame.rstrip(b'\r\n')
    if not line.startswith(b'$'):
        raise ProtocolError(f'line does not start with "$": {line[:24]!r}')
    star = line.rfind(b'*')
    if star < 0 or len(line) - star != 3:
        raise ProtocolError(f'line has no "*HH" checksum: {line[:24]!r}')
    body = line[1:star]
    try:
        given = int(line[star + 1:], 16)
        text = body.decode('ascii')
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(f'line is not ASCII with a hex checksum: {line[:24]!r}') from exc
    if not text.isprintable():
        raise ProtocolError(f'line contains control characters: {line[:24]!r}')
    actual = nmea_checksum(body)
    if given != actual:
        raise ProtocolError(f'checksum mismatch: line says {given:02X}, computed {actual:02X}')
    return text.split(',')


_INT = re.compile(r'-?[0-9]{1,20}')
_FLOAT = re.compile(r'-?([0-9]{1,20}(\.[0-9]{0,20})?|\.[0-9]{1,20})([eE][-+]?[0-9]{1,3})?')
_HEX = re.compile(r'[0-9A-Fa-f]{1,16}')


def parse_int(text: str, field: str, lo: int, hi: int) -> int:
    """A decimal integer in ``[lo, hi]``; ProtocolError naming ``field`` otherwise."""
    if not _INT.fullmatch(text):
        raise ProtocolError(f'{field}: {text!r} is not a decimal integer')
    value = int(text, 10)
    if not lo <= value <= hi:
        raise ProtocolError(f'{field}: {value} is outside [{lo}, {hi}]')
    return value


def parse_float(text: str, field: str, lo: float, hi: float) -> float:
    """A finite decimal number in ``[lo, hi]``; ProtocolError naming ``field`` otherwise."""
    if not _FLOAT.fullmatch(text):
        raise ProtocolError(f'{field}: {text!r} is not a decimal number')
    value = float(text)
    if not lo <= value <= hi:  # also rejects nan; inf is outside any finite range
        raise ProtocolError(f'{field}: {text} is outside [{lo:g}, {hi:g}]')
    return value


def parse_hex(text: str, field: str, lo: int, hi: int) -> int:
    """A hexadecimal integer in ``[lo, hi]``; ProtocolError naming ``field`` otherwise."""
    if not _HEX.fullmatch(text):
        raise ProtocolError(f'{field}: {text!r} is not a hexadecimal integer')
    value = int(text, 16)
    if not lo <= value <= hi:
        raise ProtocolError(f'{field}: 0x{value:X} is outside [0x{lo:X}, 0x{hi:X}]')
    return value


__all__ = ['MAX_LINE', 'ProtocolError', 'build_sentence', 'nmea_checksum', 'parse_float',
           'parse_hex', 'parse_int', 'split_sentence']
