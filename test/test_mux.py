"""Twist mux: priority order, per-input timeouts, lock heartbeats, speed/accel limits."""

import pytest

from mine_robot.control.mux import (
    DEFAULT_INPUTS,
    Limits,
    MuxError,
    MuxInput,
    TwistMux,
    VelocityLimiter,
)
from mine_robot.robot import load_robot


def live_mux(t=0.0):
    mux = TwistMux(DEFAULT_INPUTS)
    mux.set_lock('safety', False, 'ok', t)
    return mux


def test_priority_estop_over_safety_over_teleop_over_autonomy():
    mux = live_mux()
    mux.set_command('autonomy', 0.3, 0.0, 0.0)
    assert mux.select(0.1).source == 'autonomy'
    mux.set_command('teleop', -0.2, 0.5, 0.1)
    d = mux.select(0.2)
    assert (d.source, d.v, d.w) == ('teleop', -0.2, 0.5)
    mux.set_lock('safety', True, 'geofence: would leave area', 0.2)
    d = mux.select(0.25)
    assert (d.source, d.v, d.stopped) == ('safety', 0.0, True) and 'geofence' in d.reason
    mux.set_lock('estop', True, 'button', 0.25)
    assert mux.select(0.3).source == 'estop'
    mux.set_lock('estop', False, '', 0.3)
    mux.set_lock('safety', False, 'ok', 0.3)
    assert mux.select(0.35).source == 'teleop'


def test_input_timeouts_fall_back_to_lower_priority_then_zero():
    mux = live_mux()
    mux.set_command('teleop', 0.1, 0.0, 0.0)
    mux.set_command('autonomy', 0.3, 0.0, 0.4)
    mux.set_lock('safety', False, 'ok', 0.6)
    assert mux.select(0.5).source == 'teleop'
    assert mux.select(0.6).source == 'autonomy'          # teleop older than 0.5 s
    mux.set_lock('safety', False, 'ok', 1.0)
    d = mux.select(1.0)
    assert (d.source, d.v) == ('none', 0.0) and 'teleop' in d.reason and 'autonomy' in d.reason


def test_silent_safety_heartbeat_stops():
    mux = TwistMux(DEFAULT_INPUTS)
    mux.set_command('autonomy', 0.3, 0.0, 0.0)
    d = mux.select(0.0)
    assert d.stopped and d.reason == 'safety: never heard'
    mux.set_lock('safety', False, 'ok', 0.0)
    assert not mux.select(0.4).stopped
    mux.set_command('autonomy', 0.3, 0.0, 0.9)
    assert 'silent' in mux.select(0.9).reason


def test_bad_configuration_and_names():
    with pytest.raises(MuxError, match='duplicate'):
        TwistMux([MuxInput('a', 1, 0.5), MuxInput('a', 2, 0.5)])
    with pytest.raises(MuxError, match='timeout'):
        TwistMux([MuxInput('a', 1, 0.0)])
    mux = TwistMux(DEFAULT_INPUTS)
    with pytest.raises(MuxError, match='unknown'):
        mux.set_command('nobody', 0.0, 0.0, 0.0)
    with pytest.raises(MuxError, match='lock'):
        mux.set_command('estop', 0.0, 0.0, 0.0)
    with pytest.raises(MuxError, match='non-finite'):
        mux.set_command('teleop', float('inf'), 0.0, 0.0)


def test_limiter_clamps_ramps_and_stops_at_once():
    limits = Limits.from_robot(load_robot())
    lim = VelocityLimiter(limits)
    v, w = lim.limit(5.0, -5.0, 0.0)
    assert (v, w) == (0.0, 0.0)                          # first call: no time elapsed, no jump
    for k in range(1, 40):
        v, w = lim.limit(5.0, -5.0, k * 0.05)
        assert v <= limits.max_linear + 1e-12 and w >= -limits.max_angular - 1e-12
    assert v == pytest.approx(limits.max_linear) and w == pytest.approx(-limits.max_angular)
    assert lim.clamped > 0
    prev = lim.v
    v, _ = lim.limit(0.6, 0.0, 40 * 0.05 + 0.05)
    assert v == pytest.approx(prev)                      # held at the speed limit
    assert lim.stop(2.1) == (0.0, 0.0) and lim.v == 0.0
    v1, _ = lim.limit(0.6, 0.0, 2.15)
    assert v1 == pytest.approx(limits.linear_accel * 0.05)


def test_estop_lock_releases_only_after_a_newer_reset():
    from mine_robot.control.mux import EstopLock

    lock = EstopLock()
    lock.monitor_status(False, 0)
    assert lock.request(True) and lock.active
    lock.monitor_status(False, 0)                 # stale "clear" that crossed the request
    assert lock.active
    lock.monitor_status(True, 0)
    lock.request(False)
    assert lock.active
    lock.monitor_status(False, 1)                 # reset service was called
    assert not lock.active
    lock.monitor_status(True, 1)
    assert lock.active
    lock.monitor_status(False, 2)
    assert not lock.active
