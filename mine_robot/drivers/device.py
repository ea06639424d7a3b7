"""One serial device stream with its health: transport + parser + counters + raw recording.

Everything a serial driver node needs except ROS: a node declares ``SERIAL_PARAMETERS`` (so every
driver has the same port/baud/reconnect/raw-log parameters), builds a :class:`DeviceStream` with
its protocol module, converts each parsed message to a ROS message, and publishes
``stream.health(now)`` on /diagnostics.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
import threading
import time
from types import ModuleType
from typing import Any

from mine_robot.drivers.protocols import ProtocolError
from mine_robot.drivers.rawlog import RawLogWriter
from mine_robot.drivers.stats import RateMeter, SequenceTracker
from mine_robot.drivers.transport import SerialTransport, TransportConfig

OK, WARN, ERROR = 0, 1, 2   # the DiagnosticStatus levels

# name, default, description, extra arguments for mine_robot.ros.params.declare
SERIAL_PARAMETERS: list[tuple[str, Any, str, dict]] = [
    ('port', '', 'serial device path or pyserial URL (/dev/ttyUSB0, /dev/serial/by-id/..., loop://, '
                 'socket://host:port)', {'read_only': True}),
    ('baudrate', 115200, 'serial baud rate (ignored by USB CDC devices and URLs)',
     {'read_only': True, 'range': (300, 4_000_000)}),
    ('reconnect_min', 0.2, 's before the first re-open attempt after a failure', {'range': (0.01, 60.0)}),
    ('reconnect_max', 5.0, 's cap of the exponential re-open backoff', {'range': (0.01, 600.0)}),
    ('write_timeout', 0.5, 's a write to the device may block', {'range': (0.01, 10.0)}),
    ('stale_timeout', 2.0, 's without a good message before diagnostics warn', {'range': (0.05, 600.0)}),
    ('silence_reopen', 0.0, 's without any byte before the port is closed and re-opened (0 = never; '
                            'for devices that stream continuously)', {'range': (0.0, 600.0)}),
    ('raw_log_path', '', 'if set, record the raw byte stream to this file for replay '
                         '(mine-robot replay); an existing file is never overwritten', {'read_only': True}),
]


@dataclass(frozen=True)
class DeviceConfig:
    port: str
    baudrate: int = 115200
    reconnect_min: float = 0.2
    reconnect_max: float = 5.0
    write_timeout: float = 0.5
    stale_timeout: float = 2.0
    silence_reopen: float = 0.0
    raw_log_path: str = ''

    def __post_init__(self):
        if not self.port:
            raise ValueError('parameter port is empty: set the serial device path or URL in the config')
        if self.reconnect_min > self.reconnect_max:
            raise ValueError(f'reconnect_min {self.reconnect_min} > reconnect_max {self.reconnect_max}')

    def transport(self) -> TransportConfig:
        return TransportConfig(self.port, self.baudrate, write_timeout=self.write_timeout,
                               reconnect_min=self.reconnect_min, reconnect_max=self.reconnect_max,
                               silence_reopen=self.silence_reopen)


@dataclass(frozen=True)
class Health:
    level: int
    message: str
    values: dict


class DeviceStream:
    """Owns the transport of one device; ``on_message(msg, t_arrival)`` runs on the reader thread.

    ``seq_of(msg)`` (optional) returns the message's sequence number, or None for messages without
    one, for lost-message accounting. ``parser`` overrides ``protocol.parse`` (e.g. to bind
    options). ``on_error`` gets every bad frame (for a throttled log line).
    """

    def __init__(self, name: str, config: DeviceConfig, protocol: ModuleType,
                 on_message: Callable[[Any, float], None], *,
                 on_error: Callable[[ProtocolError, float], None] | None = None,
                 on_connection: Callable[[bool, str], None] | None = None,
                 seq_of: Callable[[Any], int | None] | None = None, seq_modulus: int = 2 ** 32,
                 parser: Callable[[bytes], Any] | None = None):
        self.name = name
        self.config = config
        self._on_message = on_message
        self._on_error_cb = on_error
        self._on_connection_cb = on_connection
        self._seq_of = seq_of
        self.sequence = SequenceTracker(seq_modulus)
        self.rate = RateMeter(2.0)
        self._bad_rate = RateMeter(10.0)
        self._lock = threading.Lock()
        self._last_good: float | None = None
        self.recorder = (RawLogWriter(config.raw_log_path, device=name, url=config.port,
                                      baudrate=config.baudrate) if config.raw_log_path else None)
        self.transport = SerialTransport(
            config.transport(), protocol.make_framer(), parser or protocol.parse, self._message,
            on_error=self._error,
            on_chunk=self.recorder.write if self.recorder else None, on_connection=self._connection,
            name=name)

    def start(self) -> DeviceStream:
        self.transport.start()
        return self

    def close(self) -> None:
        self.transport.close()
        if self.recorder is not None:
            self.recorder.close()

    def write(self, data: bytes) -> None:
        self.transport.write(data)

    def _message(self, msg, t: float) -> None:
        if self._seq_of is not None:
            seq = self._seq_of(msg)
            if seq is not None:
                with self._lock:
                    self.sequence.update(seq)
        with self._lock:
            self.rate.tick(t)
            self._last_good = t
        self._on_message(msg, t)

    def _error(self, exc: ProtocolError, t: float) -> None:
        with self._lock:
            self._bad_rate.tick(t)
        if self._on_error_cb is not None:
            self._on_error_cb(exc, t)

    def _connection(self, connected: bool, reason: str) -> None:
        with self._lock:
            self.sequence.reset()   # numbering restarts or gaps across an outage are not "loss"
        if self._on_connection_cb is not None:
            self._on_connection_cb(connected, reason)

    def health(self, now: float | None = None) -> Health:
        now = time.monotonic() if now is None else now
        s = self.transport.stats()
        with self._lock:
            rate = self.rate.rate(now)
            recent_bad = self._bad_rate.count(now)
            last_good = self._last_good
            seq = self.sequence
            lost, gaps = seq.lost, seq.gaps
        age = None if last_good is None else now - last_good
        values = {'connected': s.connected, 'port': self.config.port, 'rate_hz': round(rate, 2),
                  'frames': s.frames, 'bad_frames': s.bad_frames, 'bad_frames_last_10s': recent_bad,
                  'lost_messages': lost, 'sequence_gaps': gaps, 'bytes_rx': s.bytes_rx,
                  'bytes_tx': s.bytes_tx,
                  'reconnects': s.reconnects, 'connect_failures': s.connect_failures,
                  'disconnects': s.disconnects, 'last_error': s.last_error or 'none',
                  'last_error_age_s': ('n/a' if s.last_error_time is None
                                       else round(now - s.last_error_time, 1)),
                  'last_message_age_s': 'n/a' if age is None else round(age, 3),
                  'raw_log': str(self.recorder.path) if self.recorder else 'off'}
        if not s.connected:
            return Health(ERROR, f'not connected ({s.last_error or "opening"}); retrying in '
                                 f'{s.next_retry_in:.1f} s', values)
        if age is None or age > self.config.stale_timeout:
            silent = 'no data yet' if age is None else f'no good data for {age:.1f} s'
            detail = f'; last error: {s.last_error}' if recent_bad else ''
            return Health(WARN, f'connected, {silent}{detail}', values)
        if recent_bad:
            return Health(WARN, f'streaming {rate:.1f} msg/s; {recent_bad} bad frames in 10 s '
                                f'(last: {s.last_error})', values)
        return Health(OK, f'streaming {rate:.1f} msg/s', values)
