"""Twist arbitration: stop locks and prioritised command inputs with timeouts, then limits.

Priorities (highest first): e-stop lock > safety-stop lock > teleop > autonomy. A *lock* forces a
zero command while active; a lock with a ``timeout`` must be refreshed (a heartbeat: the safety
monitor's status), and a silent lock counts as engaged, so losing the safety monitor stops the
robot. A command input is used while its last message is younger than its ``timeout``; the
highest-priority fresh input wins. The selected command then passes :class:`VelocityLimiter`
(speed and acceleration limits); a stop bypasses the ramp and is zero at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
import math


class MuxError(ValueError):
    """Invalid mux configuration or an unknown input name."""


@dataclass(frozen=True)
class MuxInput:
    name: str
    priority: int
    timeout: float       # s; for locks 0 means "latched, no heartbeat needed"
    lock: bool = False


@dataclass(frozen=True)
class MuxDecision:
    v: float
    w: float
    source: str          # winning input name, or the lock name, or 'none'
    stopped: bool        # a lock is engaged (or nothing to follow)
    reason: str          # why the output is what it is


DEFAULT_INPUTS = (MuxInput('estop', 100, 0.0, lock=True), MuxInput('safety', 90, 0.5, lock=True),
                  MuxInput('teleop', 20, 0.5), MuxInput('marking', 15, 0.5),
                  MuxInput('autonomy', 10, 0.5))


class TwistMux:
    def __init__(self, inputs: Sequence[MuxInput] = DEFAULT_INPUTS):
        names = [i.name for i in inputs]
        if len(set(names)) != len(names):
            raise MuxError(f'duplicate mux input names: {names}')
        for i in inputs:
            if not math.isfinite(i.timeout) or i.timeout < 0 or (not i.lock and i.timeout == 0):
                raise MuxError(f'mux input {i.name!r}: timeout must be > 0 (locks: >= 0), got {i.timeout}')
        self.inputs = sorted(inputs, key=lambda i: -i.priority)
        self._by_name = {i.name: i for i in inputs}
        self._cmd: dict[str, tuple[float, float, float]] = {}
        self._lock: dict[str, tuple[bool, str, float]] = {}

    def _get(self, name: str) -> MuxInput:
        try:
            return self._by_name[name]
        except KeyError as exc:
            raise MuxError(f'unknown mux input {name!r} (known: {sorted(self._by_name)})') from exc

    def set_command(self, name: str, v: float, w: float, t: float) -> None:
        spec = self._get(name)
        if spec.lock:
            raise MuxError(f'{name!r} is a lock, not a command input')
        if not (math.isfinite(v) and math.isfinite(w)):
            raise MuxError(f'non-finite command on {name!r}: v={v}, w={w}')
        self._cmd[name] = (float(v), float(w), float(t))

    def set_lock(self, name: str, active: bool, reason: str, t: float) -> None:
        if not self._get(name).lock:
            raise MuxError(f'{name!r} is a command input, not a lock')
        self._lock[name] = (bool(active), reason, float(t))

    def fresh(self, name: str, t: float) -> bool:
        spec = self._get(name)
        entry = self._lock.get(name) if spec.lock else self._cmd.get(name)
        return entry is not None and t - entry[-1] <= spec.timeout

    def select(self, t: float) -> MuxDecision:
        stale = []
        for spec in self.inputs:
            if spec.lock:
                entry = self._lock.get(spec.name)
                if entry is not None and entry[0]:
                    return MuxDecision(0.0, 0.0, spec.name, True, f'{spec.name}: {entry[1]}')
                if spec.timeout > 0 and not self.fresh(spec.name, t):
                    what = 'never heard' if entry is None else f'silent for {t - entry[2]:.2f} s'
                    return MuxDecision(0.0, 0.0, spec.name, True, f'{spec.name}: {what}')
                continue
            if self.fresh(spec.name, t):
                v, w, _ = self._cmd[spec.name]
                return MuxDecision(v, w, spec.name, False, f'following {spec.name}')
            if spec.name in self._cmd:
                stale.append(spec.name)
        reason = f'inputs stale: {", ".join(stale)}' if stale else 'no input'
        return MuxDecision(0.0, 0.0, 'none', False, reason)


@dataclass(frozen=True)
class Limits:
    max_linear: float
    max_angular: float
    linear_accel: float
    linear_decel: float
    angular_accel: float

    def __post_init__(self):
        for name, value in self.__dict__.items():
            if not (math.isfinite(value) and value > 0):
                raise MuxError(f'Limits.{name} must be > 0, got {value!r}')

    @classmethod
    def from_robot(cls, robot, scale: float = 1.0) -> Limits:
        return cls(robot.max_linear * scale, robot.max_angular * scale, robot.max_linear_accel,
                   2.0 * robot.max_linear_accel, robot.max_angular_accel)


class VelocityLimiter:
    """Clamp speeds and rate-limit changes; ``stop()`` zeroes at once (stops are never ramped)."""

    def __init__(self, limits: Limits):
        self.limits = limits
        self.v = 0.0
        self.w = 0.0
        self._t: float | None = None
        self.clamped = 0

    def stop(self, t: float) -> tuple[float, float]:
        self.v = self.w = 0.0
        self._t = float(t)
        return 0.0, 0.0

    def limit(self, v: float, w: float, t: float) -> tuple[float, float]:
        lim = self.limits
        dt = 0.0 if self._t is None else min(max(float(t) - self._t, 0.0), 0.5)
        self._t = float(t)
        # plain min/max: np.clip on scalars cost more than the rest of the mux at 20 Hz
        v_req = _clamp(float(v), lim.max_linear)
        w_req = _clamp(float(w), lim.max_angular)
        if (v_req, w_req) != (v, w):
            self.clamped += 1
        speeding_up = abs(v_req) > abs(self.v) and v_req * self.v >= 0
        dv = (lim.linear_accel if speeding_up else lim.linear_decel) * dt
        self.v += _clamp(v_req - self.v, dv)
        dw = lim.angular_accel * dt
        self.w += _clamp(w_req - self.w, dw)
        return self.v, self.w


def _clamp(x: float, bound: float) -> float:
    """``x`` limited to [-bound, bound]."""
    return min(max(x, -bound), bound)


class EstopLock:
    """The mux's view of the latched e-stop.

    The mux engages on the raw ``estop`` request itself (one DDS hop, no waiting for the safety
    monitor) and releases only when the safety monitor - which owns the latch and its reset
    service - reports the latch clear *with a reset newer than the request*. A stale "clear"
    status that crosses the request on the wire can therefore never release it.
    """

    def __init__(self):
        self.active = False
        self._reset_count_at_latch = -1
        self._last_reset_count = 0

    def request(self, asserted: bool) -> bool:
        """Raw e-stop message; returns True when this engaged the lock."""
        if asserted and not self.active:
            self.active = True
            self._reset_count_at_latch = self._last_reset_count
            return True
        return False

    def monitor_status(self, latched: bool, reset_count: int) -> None:
        """The safety monitor's latch state and how many resets it has performed."""
        self._last_reset_count = max(self._last_reset_count, int(reset_count))
        if latched:
            if not self.active:
                self._reset_count_at_latch = self._last_reset_count
            self.active = True
        elif self.active and reset_count > self._reset_count_at_latch:
            self.active = False
