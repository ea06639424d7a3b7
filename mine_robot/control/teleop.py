"""Operator teleoperation mapping: joystick axes/buttons and keyboard keys -> (v, w).

Joystick: the command is non-zero only while the dead-man button is held; releasing it yields one
zero command (so the mux sees the operator let go) and then nothing, so the input times out and
lower priorities (autonomy) take over again. A turbo button switches to the turbo scales.
Keyboard: a small state machine; each key press steps the speed, space stops, and the node sends
zero when no key has been pressed for ``key_timeout``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
import math


class TeleopError(ValueError):
    """Bad joystick mapping or keyboard configuration."""


@dataclass(frozen=True)
class JoyMapping:
    axis_linear: int = 1
    axis_angular: int = 0
    deadman_button: int = 4
    turbo_button: int = 5          # -1: no turbo
    scale_linear: float = 0.3      # m/s at full stick
    scale_angular: float = 0.6     # rad/s at full stick
    turbo_scale_linear: float = 0.6
    turbo_scale_angular: float = 1.0
    deadzone: float = 0.05         # fraction of full stick

    def __post_init__(self):
        for name in ('axis_linear', 'axis_angular', 'deadman_button'):
            if getattr(self, name) < 0:
                raise TeleopError(f'JoyMapping.{name} must be >= 0, got {getattr(self, name)}')
        if not 0.0 <= self.deadzone < 1.0:
            raise TeleopError(f'JoyMapping.deadzone must be in [0, 1), got {self.deadzone}')
        for name in ('scale_linear', 'scale_angular', 'turbo_scale_linear', 'turbo_scale_angular'):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) > 0):
                raise TeleopError(f'JoyMapping.{name} must be > 0, got {getattr(self, name)}')


class JoyTeleop:
    """Stateful mapping: ``update(axes, buttons)`` -> (v, w) to publish, or None to stay silent."""

    def __init__(self, mapping: JoyMapping):
        self.mapping = mapping
        self._was_active = False

    def _axis(self, axes: Sequence[float], index: int) -> float:
        if index >= len(axes):
            raise TeleopError(f'joystick has {len(axes)} axes; mapping needs axis {index}')
        value = float(axes[index])
        if not math.isfinite(value):
            return 0.0
        dz = self.mapping.deadzone
        if abs(value) <= dz:
            return 0.0
        return math.copysign((min(abs(value), 1.0) - dz) / (1.0 - dz), value)

    def update(self, axes: Sequence[float], buttons: Sequence[int]) -> tuple[float, float] | None:
        m = self.mapping
        if m.deadman_button >= len(buttons):
            raise TeleopError(f'joystick has {len(buttons)} buttons; dead-man is button {m.deadman_button}')
        if not buttons[m.deadman_button]:
            if self._was_active:
                self._was_active = False
                return 0.0, 0.0
            return None
        self._was_active = True
        turbo = 0 <= m.turbo_button < len(buttons) and bool(buttons[m.turbo_button])
        sl = m.turbo_scale_linear if turbo else m.scale_linear
        sa = m.turbo_scale_angular if turbo else m.scale_angular
        return self._axis(axes, m.axis_linear) * sl, self._axis(axes, m.axis_angular) * sa


@dataclass(frozen=True)
class KeyboardConfig:
    linear_step: float = 0.05
    angular_step: float = 0.1
    max_linear: float = 0.3
    max_angular: float = 0.6

    def __post_init__(self):
        for name, value in self.__dict__.items():
            if not (math.isfinite(value) and value > 0):
                raise TeleopError(f'KeyboardConfig.{name} must be > 0, got {value!r}')


KEY_HELP = """mine_robot keyboard teleop (this terminal must have focus)
  w/x : faster forward / backward     a/d : turn left / right
  s or space : stop                   q or Ctrl-C : quit (sends a stop)"""


class KeyboardTeleop:
    """Key -> command state machine. ``key(ch)`` returns the new (v, w) or None to quit."""

    def __init__(self, config: KeyboardConfig):
        self.config = config
        self.v = 0.0
        self.w = 0.0

    def key(self, ch: str) -> tuple[float, float] | None:
        c = self.config
        if ch in ('q', '\x03', '\x04'):
            self.v = self.w = 0.0
            return None
        if ch == 'w':
            self.v = min(self.v + c.linear_step, c.max_linear)
        elif ch == 'x':
            self.v = max(self.v - c.linear_step, -c.max_linear)
        elif ch == 'a':
            self.w = min(self.w + c.angular_step, c.max_angular)
        elif ch == 'd':
            self.w = max(self.w - c.angular_step, -c.max_angular)
        elif ch in ('s', ' '):
            self.v = self.w = 0.0
        self.v, self.w = round(self.v, 6), round(self.w, 6)
        return self.v, self.w
