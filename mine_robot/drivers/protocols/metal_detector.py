"""Metal-detector array line protocol (device <-> host), pure parser and encoders.

Device -> host, one line per sample (all coils sampled together)::

    $MDS,<seq>,<time_us>,<n>,<v_0>,...,<v_n-1>[,<status>]*HH\\r\\n

and one acknowledgement per configuration command::

    $MDA,<cmd_id>,OK*HH\\r\\n            $MDA,<cmd_id>,ERR,<reason>*HH\\r\\n

Host -> device configuration commands::

    $MDC,<cmd_id>,GB*HH\\r\\n           start ground balancing
    $MDC,<cmd_id>,SENS,<0..100>*HH\\r\\n set sensitivity (percent)
    $MDC,<cmd_id>,RATE,<1..2000>*HH\\r\\n set the sample rate (Hz)

Field ranges and the status bits are specified in docs/protocols.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntFlag

from mine_robot.drivers.framing import LineFramer
from mine_robot.drivers.protocols import (
    MAX_LINE,
    ProtocolError,
    build_sentence,
    parse_float,
    parse_hex,
    parse_int,
    split_sentence,
)

SEQ_MODULUS = 2 ** 32
MAX_COILS = 16
MAX_ABS_VALUE = 1.0e7
"""Coil values are device units (ADC counts or millivolts after the front end); beyond this the
value is treated as corrupt, not as a strong signal (a 24-bit ADC tops out at 8 388 607)."""
MAX_CMD_ID = 65535
SENSITIVITY_RANGE = (0, 100)
RATE_RANGE = (1, 2000)


class MdStatus(IntFlag):
    """Bits of the optional 16-bit status word (4 hex digits)."""
    SATURATED = 0x0001       # an ADC clipped on at least one coil this sample
    COIL_FAULT = 0x0002      # open or shorted coil detected
    GROUND_BALANCING = 0x0004
    LOW_BATTERY = 0x0008
    OVER_TEMPERATURE = 0x0010


@dataclass(frozen=True)
class MdSample:
    seq: int
    device_time_us: int
    values: tuple[float, ...]
    status: int | None = None

    @property
    def device_time(self) -> float:
        return self.device_time_us * 1e-6


@dataclass(frozen=True)
class MdAck:
    cmd_id: int
    ok: bool
    reason: str = ''


@dataclass(frozen=True)
class MdCommand:
    cmd_id: int
    name: str              # 'GB' | 'SENS' | 'RATE'
    value: int | None = None


COMMANDS = {'GB': None, 'SENS': SENSITIVITY_RANGE, 'RATE': RATE_RANGE}


def parse(frame: bytes, coils: int | None = None) -> MdSample | MdAck:
    """Parse one device line (``$MDS`` sample or ``$MDA`` acknowledgement).

    ``coils``: if given, a sample with a different number of coil values is a ProtocolError.
    """
    fields = split_sentence(frame)
    kind = fields[0]
    if kind == 'MDS':
        sample = _parse_sample(fields)
        if coils is not None and len(sample.values) != coils:
            raise ProtocolError(f'MDS {sample.seq}: {len(sample.values)} coil values, expected {coils}')
        return sample
    if kind == 'MDA':
        return _parse_ack(fields)
    raise ProtocolError(f'unknown metal-detector sentence {kind[:8]!r}')


def _parse_sample(fields: list[str]) -> MdSample:
    if len(fields) < 5:
        raise ProtocolError(f'MDS: {len(fields)} fields, need at least 5')
    seq = parse_int(fields[1], 'MDS seq', 0, SEQ_MODULUS - 1)
    time_us = parse_int(fields[2], 'MDS time_us', 0, 2 ** 64 - 1)
    n = parse_int(fields[3], 'MDS coil count', 1, MAX_COILS)
    rest = fields[4:]
    if len(rest) not in (n, n + 1):
        raise ProtocolError(f'MDS: coil count says {n} but {len(rest)} value fields follow')
    values = tuple(parse_float(rest[i], f'MDS coil {i}', -MAX_ABS_VALUE, MAX_ABS_VALUE)
                   for i in range(n))
    status = parse_hex(rest[n], 'MDS status', 0, 0xFFFF) if len(rest) == n + 1 else None
    return MdSample(seq, time_us, values, status)


def _parse_ack(fields: list[str]) -> MdAck:
    if len(fields) < 3:
        raise ProtocolError(f'MDA: {len(fields)} fields, need at least 3')
    cmd_id = parse_int(fields[1], 'MDA cmd_id', 0, MAX_CMD_ID)
    if fields[2] == 'OK' and len(fields) == 3:
        return MdAck(cmd_id, True)
    if fields[2] == 'ERR' and len(fields) == 4:
        return MdAck(cmd_id, False, fields[3])
    raise ProtocolError(f'MDA: expected OK or ERR,<reason>, got {",".join(fields[2:])[:32]!r}')


def parse_command(frame: bytes) -> MdCommand:
    """Parse one host -> device ``$MDC`` line (the device side; used by simulated devices)."""
    fields = split_sentence(frame)
    if fields[0] != 'MDC' or len(fields) < 3:
        raise ProtocolError(f'not an MDC command: {",".join(fields)[:32]!r}')
    cmd_id = parse_int(fields[1], 'MDC cmd_id', 0, MAX_CMD_ID)
    name = fields[2]
    if name not in COMMANDS:
        raise ProtocolError(f'MDC: unknown command {name[:8]!r}')
    limits = COMMANDS[name]
    if limits is None:
        if len(fields) != 3:
            raise ProtocolError(f'MDC {name}: takes no value')
        return MdCommand(cmd_id, name)
    if len(fields) != 4:
        raise ProtocolError(f'MDC {name}: needs exactly one value')
    return MdCommand(cmd_id, name, parse_int(fields[3], f'MDC {name} value', *limits))


def format_value(value: float, decimals: int = 2) -> str:
    text = f'{value:.{decimals}f}'
    return text[1:] if text.startswith('-') and float(text) == 0.0 else text


def encode_sample(seq: int, device_time_us: int, values, status: int | None = None,
                  decimals: int = 2) -> bytes:
    """The exact line a detector sends for one sample (values rounded to ``decimals``)."""
    if not 1 <= len(values) <= MAX_COILS:
        raise ValueError(f'need 1..{MAX_COILS} coil values, got {len(values)}')
    fields: list[object] = ['MDS', seq % SEQ_MODULUS, int(device_time_us), len(values)]
    fields += [format_value(float(v), decimals) for v in values]
    if status is not None:
        fields.append(f'{int(status) & 0xFFFF:04X}')
    return build_sentence(fields)


def encode_ack(cmd_id: int, ok: bool = True, reason: str = '') -> bytes:
    if ok:
        return build_sentence(['MDA', cmd_id, 'OK'])
    return build_sentence(['MDA', cmd_id, 'ERR', _clean(reason)])


def encode_command(command: MdCommand) -> bytes:
    """The host -> device line for ``command`` (validated against the command table)."""
    if command.name not in COMMANDS:
        raise ValueError(f'unknown metal-detector command {command.name!r}')
    limits = COMMANDS[command.name]
    if limits is None:
        return build_sentence(['MDC', command.cmd_id, command.name])
    if command.value is None or not limits[0] <= command.value <= limits[1]:
        raise ValueError(f'{command.name} value {command.value!r} outside {limits}')
    return build_sentence(['MDC', command.cmd_id, command.name, int(command.value)])


def encode_ground_balance(cmd_id: int) -> bytes:
    return encode_command(MdCommand(cmd_id, 'GB'))


def encode_sensitivity(cmd_id: int, percent: int) -> bytes:
    return encode_command(MdCommand(cmd_id, 'SENS', percent))


def encode_rate(cmd_id: int, hz: int) -> bytes:
    return encode_command(MdCommand(cmd_id, 'RATE', hz))


def _clean(text: str) -> str:
    """Make free text safe inside a field (no separators, ASCII printable, short)."""
    out = ''.join(c if c.isascii() and c.isprintable() and c not in ',*$' else '_' for c in text)
    return out[:64]


def make_framer() -> LineFramer:
    """The framer for this device's byte stream (one line per message)."""
    return LineFramer(MAX_LINE)
