"""Command/acknowledge client: every command is acknowledged or reported failed, never lost.

Used by the marker driver (and the metal detector's configuration commands). Pure: it is given a
``send(bytes)`` function and is driven by ``on_ack`` (from the reader thread) and ``poll(now)``
(from a timer); time is passed in, so it is tested deterministically and also runs on sim time.

A command not acknowledged within ``ack_timeout`` is re-sent with the SAME id (the device answers a
repeated id with its first acknowledgement without executing twice) up to ``retries`` times; then
it fails with ``no acknowledgement after N attempts``. A failed send (port unplugged) counts as an
attempt. A negative acknowledgement ends the command at once (retrying a refusal is the caller's
decision, with a new id).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
import threading


@dataclass(frozen=True)
class CommandResult:
    cmd_id: int
    ok: bool
    attempts: int
    detail: str = ''            # refusal text or failure reason
    code: int = 0               # device error code of a refusal (0 otherwise)
    elapsed: float = 0.0        # s from first send to the outcome


@dataclass
class _Pending:
    frame: bytes
    future: Future
    started: float
    deadline: float
    attempts: int
    send_error: str = ''


class CommandClient:
    def __init__(self, send: Callable[[bytes], None], ack_timeout: float = 0.5, retries: int = 2,
                 id_modulus: int = 65536, send_errors: tuple[type[BaseException], ...] = (OSError,)):
        if ack_timeout <= 0 or retries < 0:
            raise ValueError('ack_timeout must be > 0 and retries >= 0')
        self._send = send
        self.ack_timeout = ack_timeout
        self.retries = retries
        self.id_modulus = id_modulus
        self._send_errors = send_errors
        self._pending: dict[int, _Pending] = {}
        self._lock = threading.Lock()
        self._next_id = 1
        self.sent = self.resent = self.acked = self.refused = self.failed = self.stale_acks = 0
        self.last_failure = ''

    def next_id(self) -> int:
        with self._lock:
            while self._next_id in self._pending:
                self._next_id = (self._next_id + 1) % self.id_modulus
            cmd_id = self._next_id
            self._next_id = (self._next_id + 1) % self.id_modulus
            return cmd_id

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._pending)

    def submit(self, cmd_id: int, frame: bytes, now: float,
               on_done: Callable[[CommandResult], None] | None = None) -> Future:
        """Send ``frame`` (which carries ``cmd_id``); the Future resolves to a CommandResult.

        ``on_done`` is attached before the first send, so it runs (on the thread that resolves the
        command) before anything the device sends after its acknowledgement is handled.
        """
        future: Future = Future()
        if on_done is not None:
            future.add_done_callback(lambda f: on_done(f.result()))
        with self._lock:
            if cmd_id in self._pending:
                raise ValueError(f'command id {cmd_id} is already in flight')
            self._pending[cmd_id] = _Pending(frame, future, now, now + self.ack_timeout, 0)
        self._attempt(cmd_id, now)
        return future

    def on_ack(self, cmd_id: int, ok: bool, now: float, detail: str = '', code: int = 0) -> bool:
        """An acknowledgement arrived; False if no command with that id is pending (stale/duplicate)."""
        with self._lock:
            pending = self._pending.pop(cmd_id, None)
            if pending is None:
                self.stale_acks += 1
                return False
            if ok:
                self.acked += 1
            else:
                self.refused += 1
        pending.future.set_result(CommandResult(cmd_id, ok, pending.attempts, detail, code,
                                                now - pending.started))
        return True

    def poll(self, now: float) -> None:
        """Retry or fail every command whose acknowledgement is overdue."""
        with self._lock:
            overdue = [i for i, p in self._pending.items() if now >= p.deadline]
        for cmd_id in overdue:
            self._attempt(cmd_id, now)

    def cancel_all(self, reason: str, now: float) -> None:
        with self._lock:
            items, self._pending = list(self._pending.items()), {}
        for cmd_id, p in items:
            p.future.set_result(CommandResult(cmd_id, False, p.attempts, reason, 0, now - p.started))

    def _attempt(self, cmd_id: int, now: float) -> None:
        with self._lock:
            p = self._pending.get(cmd_id)
            if p is None:
                return
            if p.attempts > self.retries:
                del self._pending[cmd_id]
                self.failed += 1
                reason = f'no acknowledgement after {p.attempts} attempts ({self.ack_timeout:g} s each)'
                if p.send_error:
                    reason += f'; last send failed: {p.send_error}'
                self.last_failure = reason
                result = CommandResult(cmd_id, False, p.attempts, reason, 0, now - p.started)
            else:
                result = None
                p.attempts += 1
                p.deadline = now + self.ack_timeout
                if p.attempts == 1:
                    self.sent += 1
                else:
                    self.resent += 1
        if result is not None:
            p.future.set_result(result)
            return
        try:
            self._send(p.frame)
        except self._send_errors as exc:
            p.send_error = str(exc)
            self.last_failure = f'send failed: {exc}'
