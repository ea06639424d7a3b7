"""Serial transport: pyserial port + reader thread + framer + parser, with reconnect and counters.

The reader thread owns the port. It stamps every chunk with ``time.monotonic()`` the moment the
read returns, feeds the framer, runs the device's pure parser, and hands each message (or error)
to callbacks. Opening failures and I/O errors (device unplugged, port that never existed) close
the port and retry with exponential backoff; nothing here ever blocks the caller's thread except
``write``, which is bounded by ``write_timeout``.

URLs are anything ``serial.serial_for_url`` accepts: ``/dev/ttyUSB0``, a pty path,
``loop://``, ``socket://host:port``, ``rfc2217://...``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
import threading
import time
from typing import Any

import serial

from mine_robot.drivers.framing import LengthPrefixFramer, LineFramer
from mine_robot.drivers.protocols import ProtocolError

CALLBACK_ERRORS: tuple[type[BaseException], ...] = (ValueError, RuntimeError, TypeError, KeyError)
"""Errors a message callback may raise (e.g. publishing while the node shuts down); they are
recorded as the last error and the stream continues. Anything else is a bug and propagates."""


class TransportError(OSError):
    """A write could not be done: port not connected, or timed out."""


@dataclass(frozen=True)
class TransportConfig:
    url: str
    baudrate: int = 115200
    read_timeout: float = 0.05       # s a read may block, bounds close() latency
    write_timeout: float = 0.5       # s a write may block before TransportError
    reconnect_min: float = 0.1       # s first retry delay after a failure
    reconnect_max: float = 5.0       # s cap of the exponential backoff
    read_size: int = 65536
    # s without a single byte after which the port is closed and re-opened (0 = never): a
    # streaming device that goes quiet while the port stays open (a wedged USB adapter, a device
    # that was opened before it was ready) gets the same recovery as one that disappeared
    silence_reopen: float = 0.0

    def __post_init__(self):
        if not self.url:
            raise ValueError('serial url/port must not be empty')
        if self.baudrate <= 0:
            raise ValueError(f'baudrate must be positive, got {self.baudrate}')
        if not 0 < self.reconnect_min <= self.reconnect_max:
            raise ValueError('need 0 < reconnect_min <= reconnect_max')
        if self.silence_reopen < 0:
            raise ValueError(f'silence_reopen must be >= 0 (0 = never), got {self.silence_reopen}')


@dataclass(frozen=True)
class TransportStats:
    connected: bool = False
    bytes_rx: int = 0
    bytes_tx: int = 0
    frames: int = 0              # frames parsed into messages
    bad_frames: int = 0          # framing + parse errors
    reconnects: int = 0          # successful re-opens after a loss
    connect_failures: int = 0    # failed open attempts
    disconnects: int = 0
    last_error: str = ''
    last_error_time: float | None = None   # monotonic
    next_retry_in: float = 0.0   # s until the next open attempt while disconnected


def backoff_delays(minimum: float, maximum: float):
    """minimum, 2·minimum, 4·minimum, ... capped at maximum (forever)."""
    delay = minimum
    while True:
        yield delay
        delay = min(delay * 2.0, maximum)


class SerialTransport:
    """One device stream. ``parser(frame) -> message`` raises ProtocolError on bad frames.

    Callbacks run on the reader thread: ``on_message(message, t_arrival)``,
    ``on_error(ProtocolError, t_arrival)`` for bad frames, ``on_chunk(bytes, t_arrival)`` for raw
    recording, ``on_connection(connected: bool, reason: str)`` on connect, loss and every failed
    open attempt (so callers can log them, throttled).
    """

    def __init__(self, config: TransportConfig, framer: LineFramer | LengthPrefixFramer,
                 parser: Callable[[bytes], Any], on_message: Callable[[Any, float], None], *,
                 on_error: Callable[[ProtocolError, float], None] | None = None,
                 on_chunk: Callable[[bytes, float], None] | None = None,
                 on_connection: Callable[[bool, str], None] | None = None, name: str = 'serial'):
        self.config = config
        self._framer = framer
        self._parser = parser
        self._on_message = on_message
        self._on_error = on_error
        self._on_chunk = on_chunk
        self._on_connection = on_connection
        self._stop = threading.Event()
        self._lock = threading.Lock()       # guards _port and the stats
        self._write_lock = threading.Lock()
        self._port: serial.SerialBase | None = None
        self._stats = TransportStats()
        self._ever_connected = False
        self._thread = threading.Thread(target=self._run, name=f'{name}-reader', daemon=True)

    # ------------------------------------------------------------------ public API
    def start(self) -> SerialTransport:
        self._thread.start()
        return self

    def close(self, timeout: float = 2.0) -> None:
        """Stop the reader thread and close the port (idempotent)."""
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)
        self._close_port()

    @property
    def connected(self) -> bool:
        return self._stats.connected

    def stats(self) -> TransportStats:
        with self._lock:
            return self._stats

    def wait_connected(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.connected:
                return True
            time.sleep(0.01)
        return self.connected

    def write(self, data: bytes) -> None:
        """Write all of ``data`` within ``write_timeout``; TransportError if not possible."""
        with self._write_lock:
            port = self._port
            if port is None:
                raise TransportError(f'{self.config.url}: not connected')
            try:
                # no flush(): tcdrain has no timeout (with flow control a stalled device would hang it)
                written = port.write(data)
            except serial.SerialTimeoutException as exc:
                self._error(f'write timed out after {self.config.write_timeout} s')
                raise TransportError(f'{self.config.url}: write timed out') from exc
            except (serial.SerialException, OSError, TypeError, AttributeError) as exc:
                # TypeError/AttributeError: the reader closed the port under us (fd became None)
                self._error(f'write failed: {exc}')
                raise TransportError(f'{self.config.url}: write failed: {exc}') from exc
            self._add(bytes_tx=written or 0)

    # ------------------------------------------------------------------ reader thread
    def _run(self) -> None:
        delays = backoff_delays(self.config.reconnect_min, self.config.reconnect_max)
        while not self._stop.is_set():
            port = self._open()
            if port is None:
                delay = next(delays)
                self._bump(next_retry_in=delay)
                self._stop.wait(delay)
                continue
            delays = backoff_delays(self.config.reconnect_min, self.config.reconnect_max)
            reason = self._read_loop(port)
            self._close_port()
            self._framer.reset()
            if not self._stop.is_set():
                self._bump(connected=False)
                self._add(disconnects=1)
                self._notify(False, reason)
                self._stop.wait(self.config.reconnect_min)

    def _open(self) -> serial.SerialBase | None:
        try:
            port = serial.serial_for_url(self.config.url, baudrate=self.config.baudrate,
                                         timeout=self.config.read_timeout,
                                         write_timeout=self.config.write_timeout)
        except (serial.SerialException, OSError, ValueError) as exc:
            reason = f'cannot open {self.config.url}: {exc}'
            self._error(reason)
            self._add(connect_failures=1)
            self._notify(False, reason)
            return None
        with self._write_lock:
            self._port = port
        again = self._ever_connected
        self._ever_connected = True
        self._bump(connected=True, next_retry_in=0.0)
        self._add(reconnects=1 if again else 0)
        self._notify(True, f'{"re" if again else ""}connected to {self.config.url}')
        return port

    def _read_loop(self, port: serial.SerialBase) -> str:
        read_size = self.config.read_size
        silence = self.config.silence_reopen
        last_data = time.monotonic()
        while not self._stop.is_set():
            if silence > 0 and time.monotonic() - last_data > silence:
                reason = f'no data for {silence:g} s: re-opening the port'
                self._error(reason)
                return reason
            try:
                data = port.read(1)
                if data:
                    waiting = port.in_waiting
                    if waiting:
                        data += port.read(min(waiting, read_size))
            except (serial.SerialException, OSError, TypeError, AttributeError) as exc:
                reason = f'device lost: {exc}'
                self._error(reason)
                return reason
            if data:
                last_data = time.monotonic()
                self._handle(data, last_data)
        return 'closed'

    def _handle(self, data: bytes, t: float) -> None:
        frames = bad = 0
        if self._on_chunk is not None:
            self._call(self._on_chunk, data, t)
        for item in self._framer.feed(data):
            if isinstance(item, ProtocolError):
                bad += 1
                self._bad(item, t)
                continue
            try:
                message = self._parser(item)
            except ProtocolError as exc:
                bad += 1
                self._bad(exc, t)
                continue
            frames += 1
            self._call(self._on_message, message, t)
        self._add(bytes_rx=len(data), frames=frames, bad_frames=bad)

    # ------------------------------------------------------------------ helpers
    def _bad(self, exc: ProtocolError, t: float) -> None:
        self._error(f'bad frame: {exc}')
        if self._on_error is not None:
            self._call(self._on_error, exc, t)

    def _call(self, fn, *args) -> None:
        try:
            fn(*args)
        except CALLBACK_ERRORS as exc:
            self._error(f'callback {getattr(fn, "__name__", fn)} failed: {type(exc).__name__}: {exc}')

    def _notify(self, connected: bool, reason: str) -> None:
        if self._on_connection is not None:
            self._call(self._on_connection, connected, reason)

    def _error(self, message: str) -> None:
        with self._lock:
            self._stats = replace(self._stats, last_error=message, last_error_time=time.monotonic())

    def _add(self, **deltas: int) -> None:
        with self._lock:
            s = self._stats
            self._stats = replace(s, **{k: getattr(s, k) + v for k, v in deltas.items()})

    def _bump(self, **changes) -> None:
        with self._lock:
            self._stats = replace(self._stats, **changes)

    def _close_port(self) -> None:
        with self._write_lock:
            port, self._port = self._port, None
        if port is not None:
            try:
                port.close()
            except (serial.SerialException, OSError) as exc:
                self._error(f'close failed: {exc}')
        self._bump(connected=False)
