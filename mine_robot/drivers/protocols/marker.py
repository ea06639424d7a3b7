"""Marking actuator (paint sprayer or flag dropper): command/acknowledge line protocol.

Host -> device commands, each with a ``cmd_id`` (0..65535, incremented per new command; a retry
re-sends the SAME id)::

    $MKC,<cmd_id>,FIRE,<target>,<duration_ms>,<slide_mm>*HH   move the nozzle slide, then mark
    $MKC,<cmd_id>,STATUS*HH                            ask for an $MKS report now
    $MKC,<cmd_id>,LEVEL,<percent>*HH                   set the level after a refill (0..100)
    $MKC,<cmd_id>,CLEAR*HH                             clear a latched fault

Device -> host::

    $MKA,<cmd_id>,OK*HH                    command accepted (FIRE: firing has started)
    $MKA,<cmd_id>,ERR,<code>,<text>*HH     command refused (codes in ``AckError``)
    $MKD,<cmd_id>,<target>,<actual_ms>,<slide_mm>*HH   a FIRE finished (measured slide)
    $MKS,<state>,<level>,<fault>,<fires>*HH    status: IDLE|FIRING|FAULT, level %, fault code, count
    $MKF,<code>,<text>*HH                  a fault occurred (also latched into $MKS)

A device must answer a repeated ``cmd_id`` with the acknowledgement it gave the first time, without
executing the command again, so a retried FIRE never marks twice. docs/protocols.md has the rest.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
import re

from mine_robot.drivers.framing import LineFramer
from mine_robot.drivers.protocols import MAX_LINE, ProtocolError, build_sentence, parse_int, split_sentence

MAX_CMD_ID = 65535
TARGET_PATTERN = re.compile(r'[A-Za-z0-9_.:-]{1,24}')
"""Target ids are short tokens (the host's target id, echoed back and logged by the device)."""
DURATION_RANGE_MS = (1, 10000)
SLIDE_RANGE_MM = (-2000, 2000)
"""Nozzle slide position along base_link y, millimetres (the robot's reach is tighter)."""
STATES = ('IDLE', 'FIRING', 'FAULT')
COMMANDS = ('FIRE', 'STATUS', 'LEVEL', 'CLEAR')


class AckError(IntEnum):
    BUSY = 1          # already firing
    EMPTY = 2         # no paint / flags left
    FAULT = 3         # a fault is latched; send CLEAR first
    BAD_COMMAND = 4   # malformed or unknown command
    INTERLOCK = 5     # safety interlock (e-stop, arm not deployed) prevents firing


class Fault(IntEnum):
    NONE = 0
    VALVE = 1         # solenoid/valve open circuit
    PRESSURE_LOW = 2
    JAM = 3           # flag dropper jammed
    OVERCURRENT = 4


@dataclass(frozen=True)
class MarkerCommand:
    cmd_id: int
    name: str                      # FIRE | STATUS | LEVEL | CLEAR
    target_id: str | None = None   # FIRE
    duration_ms: int | None = None  # FIRE
    slide_mm: int | None = None    # FIRE
    level: int | None = None       # LEVEL


@dataclass(frozen=True)
class MarkerAck:
    cmd_id: int
    ok: bool
    code: int = 0
    text: str = ''


@dataclass(frozen=True)
class MarkerDone:
    cmd_id: int
    target_id: str
    actual_ms: int
    slide_mm: int


@dataclass(frozen=True)
class MarkerStatus:
    state: str
    level: int
    fault: int
    fires: int


@dataclass(frozen=True)
class MarkerFault:
    code: int
    text: str


MarkerMessage = MarkerAck | MarkerDone | MarkerStatus | MarkerFault


def parse(frame: bytes) -> MarkerMessage:
    """Parse one device -> host line."""
    f = split_sentence(frame)
    kind = f[0]
    if kind == 'MKA':
        if len(f) == 3 and f[2] == 'OK':
            return MarkerAck(parse_int(f[1], 'MKA cmd_id', 0, MAX_CMD_ID), True)
        if len(f) == 5 and f[2] == 'ERR':
            return MarkerAck(parse_int(f[1], 'MKA cmd_id', 0, MAX_CMD_ID), False,
                             parse_int(f[3], 'MKA code', 1, 99), f[4])
        raise ProtocolError(f'MKA: expected <id>,OK or <id>,ERR,<code>,<text>, got {",".join(f[1:])[:40]!r}')
    if kind == 'MKD':
        _count(f, 5)
        return MarkerDone(parse_int(f[1], 'MKD cmd_id', 0, MAX_CMD_ID), _target(f[2], 'MKD target'),
                          parse_int(f[3], 'MKD actual_ms', 0, 60000),
                          parse_int(f[4], 'MKD slide_mm', *SLIDE_RANGE_MM))
    if kind == 'MKS':
        _count(f, 5)
        if f[1] not in STATES:
            raise ProtocolError(f'MKS state {f[1][:10]!r} is not one of {STATES}')
        return MarkerStatus(f[1], parse_int(f[2], 'MKS level', 0, 100), parse_int(f[3], 'MKS fault', 0, 99),
                            parse_int(f[4], 'MKS fires', 0, 2 ** 32 - 1))
    if kind == 'MKF':
        _count(f, 3)
        return MarkerFault(parse_int(f[1], 'MKF code', 1, 99), f[2])
    raise ProtocolError(f'unknown marker sentence {kind[:8]!r}')


def parse_command(frame: bytes) -> MarkerCommand:
    """Parse one host -> device ``$MKC`` line (device side; used by simulated markers)."""
    f = split_sentence(frame)
    if f[0] != 'MKC' or len(f) < 3:
        raise ProtocolError(f'not an MKC command: {",".join(f)[:32]!r}')
    cmd_id = parse_int(f[1], 'MKC cmd_id', 0, MAX_CMD_ID)
    name = f[2]
    if name == 'FIRE':
        _count(f, 6)
        return MarkerCommand(cmd_id, name, target_id=_target(f[3], 'MKC target'),
                             duration_ms=parse_int(f[4], 'MKC duration_ms', *DURATION_RANGE_MS),
                             slide_mm=parse_int(f[5], 'MKC slide_mm', *SLIDE_RANGE_MM))
    if name == 'LEVEL':
        _count(f, 4)
        return MarkerCommand(cmd_id, name, level=parse_int(f[3], 'MKC level', 0, 100))
    if name in ('STATUS', 'CLEAR'):
        _count(f, 3)
        return MarkerCommand(cmd_id, name)
    raise ProtocolError(f'MKC: unknown command {name[:8]!r}')


def _target(text: str, name: str) -> str:
    if not TARGET_PATTERN.fullmatch(text):
        raise ProtocolError(f'{name}: {text[:30]!r} is not 1-24 characters of A-Z a-z 0-9 _ . : -')
    return text


def _count(fields: list[str], n: int) -> None:
    if len(fields) != n:
        raise ProtocolError(f'{fields[0]}: {len(fields)} fields, expected {n}')


def _clean(text: str) -> str:
    return ''.join(c if c.isascii() and c.isprintable() and c not in ',*$' else '_' for c in text)[:64]


def encode_command(cmd: MarkerCommand) -> bytes:
    """Host -> device line for ``cmd`` (validated)."""
    if not 0 <= cmd.cmd_id <= MAX_CMD_ID:
        raise ValueError(f'cmd_id {cmd.cmd_id} outside [0, {MAX_CMD_ID}]')
    if cmd.name == 'FIRE':
        if cmd.target_id is None or not TARGET_PATTERN.fullmatch(str(cmd.target_id)):
            raise ValueError(f'FIRE target_id {cmd.target_id!r} is not 1-24 of A-Z a-z 0-9 _ . : -')
        lo, hi = DURATION_RANGE_MS
        if cmd.duration_ms is None or not lo <= cmd.duration_ms <= hi:
            raise ValueError(f'FIRE duration_ms {cmd.duration_ms!r} outside [{lo}, {hi}]')
        slide = 0 if cmd.slide_mm is None else cmd.slide_mm
        if not SLIDE_RANGE_MM[0] <= slide <= SLIDE_RANGE_MM[1]:
            raise ValueError(f'FIRE slide_mm {slide!r} outside {SLIDE_RANGE_MM}')
        return build_sentence(['MKC', cmd.cmd_id, 'FIRE', cmd.target_id, cmd.duration_ms, int(slide)])
    if cmd.name == 'LEVEL':
        if cmd.level is None or not 0 <= cmd.level <= 100:
            raise ValueError(f'LEVEL {cmd.level!r} outside [0, 100]')
        return build_sentence(['MKC', cmd.cmd_id, 'LEVEL', cmd.level])
    if cmd.name in ('STATUS', 'CLEAR'):
        return build_sentence(['MKC', cmd.cmd_id, cmd.name])
    raise ValueError(f'unknown marker command {cmd.name!r}')


def encode_fire(cmd_id: int, target_id: str | int, duration_ms: int, slide_mm: int = 0) -> bytes:
    return encode_command(MarkerCommand(cmd_id, 'FIRE', target_id=str(target_id), duration_ms=duration_ms,
                                        slide_mm=slide_mm))


def encode_status_request(cmd_id: int) -> bytes:
    return encode_command(MarkerCommand(cmd_id, 'STATUS'))


def encode_set_level(cmd_id: int, level: int) -> bytes:
    return encode_command(MarkerCommand(cmd_id, 'LEVEL', level=level))


def encode_clear(cmd_id: int) -> bytes:
    return encode_command(MarkerCommand(cmd_id, 'CLEAR'))


def encode_ack(cmd_id: int, ok: bool = True, code: int = 0, text: str = '') -> bytes:
    if ok:
        return build_sentence(['MKA', cmd_id, 'OK'])
    return build_sentence(['MKA', cmd_id, 'ERR', int(code), _clean(text)])


def encode_done(cmd_id: int, target_id: str | int, actual_ms: int, slide_mm: int = 0) -> bytes:
    return build_sentence(['MKD', cmd_id, target_id, actual_ms, slide_mm])


def encode_status(state: str, level: int, fault: int = 0, fires: int = 0) -> bytes:
    if state not in STATES:
        raise ValueError(f'state {state!r} not in {STATES}')
    return build_sentence(['MKS', state, int(level), int(fault), int(fires)])


def encode_fault(code: int, text: str) -> bytes:
    return build_sentence(['MKF', int(code), _clean(text)])


def make_framer() -> LineFramer:
    """The framer for this device's byte stream (one line per message)."""
    return LineFramer(MAX_LINE)
