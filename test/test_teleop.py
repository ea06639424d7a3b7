"""Joystick and keyboard teleop mappings."""

import pytest

from mine_robot.control.teleop import (
    JoyMapping,
    JoyTeleop,
    KeyboardConfig,
    KeyboardTeleop,
    TeleopError,
)


def test_deadman_gates_commands_and_release_sends_one_zero():
    joy = JoyTeleop(JoyMapping())
    axes, off, held = [0.0, 1.0], [0] * 6, [0, 0, 0, 0, 1, 0]
    assert joy.update(axes, off) is None
    assert joy.update(axes, held) == pytest.approx((0.3, 0.0))
    assert joy.update(axes, off) == (0.0, 0.0)
    assert joy.update(axes, off) is None


def test_scaling_turbo_and_deadzone():
    joy = JoyTeleop(JoyMapping(deadzone=0.1))
    turbo = [0, 0, 0, 0, 1, 1]
    v, w = joy.update([-1.0, 0.55], turbo)
    assert v == pytest.approx(0.6 * 0.5) and w == pytest.approx(-1.0)
    assert joy.update([0.05, -0.08], [0, 0, 0, 0, 1, 0]) == (0.0, 0.0)


def test_bad_mapping_or_short_joystick_is_a_clear_error():
    with pytest.raises(TeleopError, match='deadzone'):
        JoyMapping(deadzone=1.5)
    with pytest.raises(TeleopError, match='buttons'):
        JoyTeleop(JoyMapping(deadman_button=9)).update([0.0, 0.0], [1, 0])
    with pytest.raises(TeleopError, match='axes'):
        JoyTeleop(JoyMapping(axis_linear=3)).update([0.0], [0, 0, 0, 0, 1, 0])


def test_keyboard_steps_clamps_and_quits():
    kb = KeyboardTeleop(KeyboardConfig(linear_step=0.1, max_linear=0.25))
    assert kb.key('w') == (0.1, 0.0)
    kb.key('w')
    assert kb.key('w') == (0.25, 0.0)
    assert kb.key('a') == (0.25, 0.1)
    assert kb.key(' ') == (0.0, 0.0)
    assert kb.key('x') == (-0.1, 0.0)
    assert kb.key('?') == (-0.1, 0.0)
    assert kb.key('q') is None and (kb.v, kb.w) == (0.0, 0.0)
