"""Stream bookkeeping shared by the drivers: sequence gaps, rates, device-clock mapping."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass


@dataclass
class SequenceTracker:
    """Counts lost and out-of-order messages from a wrapping sequence number."""

    modulus: int = 2 ** 32
    max_gap: int = 100_000
    """A forward jump larger than this is a device restart, not a loss."""
    last: int | None = None
    lost: int = 0
    gaps: int = 0
    restarts: int = 0
    out_of_order: int = 0

    def update(self, seq: int) -> int:
        """Record ``seq``; return how many messages were lost just before it (0 if none)."""
        if self.last is None:
            self.last = seq
            return 0
        step = (seq - self.last) % self.modulus
        if step == 1:
            self.last = seq
            return 0
        if step == 0 or step > self.modulus // 2:
            self.out_of_order += 1     # duplicate or older: keep the newest as reference
            return 0
        if step > self.max_gap:
            self.restarts += 1
            self.last = seq
            return 0
        self.last = seq
        self.gaps += 1
        self.lost += step - 1
        return step - 1

    def reset(self) -> None:
        self.last = None


class RateMeter:
    """Events per second over a sliding window (default 2 s), from event times."""

    def __init__(self, window: float = 2.0):
        self.window = window
        self._times: deque[float] = deque()

    def tick(self, t: float) -> None:
        self._times.append(t)
        self._trim(t)

    def count(self, now: float) -> int:
        """Events in the window ending at ``now``."""
        self._trim(now)
        return len(self._times)

    def rate(self, now: float) -> float:
        return self.count(now) / self.window

    def _trim(self, now: float) -> None:
        while self._times and self._times[0] < now - self.window:
            self._times.popleft()


class DeviceClock:
    """Maps a device's clock to host monotonic time, removing serial-buffering jitter.

    Each message has a device time (exact spacing, unknown offset) and a host arrival time (true
    clock, delayed by a variable transport latency that is never negative). The offset estimate
    is the minimum of ``arrival - device_time`` over the last ``window`` seconds — the least delayed
    message — so ``host = device_time + offset`` keeps the device's spacing and tracks slow drift.
    A device clock that jumps back or forward by more than ``max_jump`` (a reboot) resets it.
    """

    def __init__(self, window: float = 10.0, max_jump: float = 5.0):
        self.window, self.max_jump = window, max_jump
        self._mins: deque[tuple[float, float]] = deque()  # (arrival, offset), offsets increasing
        self._last_device: float | None = None
        self.resets = 0

    def stamp(self, device_time: float, arrival: float) -> float:
        if self._last_device is not None and not (
                -1e-6 <= device_time - self._last_device <= self.max_jump):
            self._mins.clear()
            self.resets += 1
        self._last_device = device_time
        offset = arrival - device_time
        while self._mins and self._mins[-1][1] >= offset:
            self._mins.pop()
        self._mins.append((arrival, offset))
        while self._mins[0][0] < arrival - self.window:
            self._mins.popleft()
        return device_time + self._mins[0][1]
