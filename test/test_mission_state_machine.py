"""Mission state machine: the legal path, pause/resume, target stops, and rejected requests."""

import pytest

from mine_robot.mission.state_machine import MissionError, MissionStateMachine, State


def drive(sm, *events):
    for i, e in enumerate(events):
        sm.request(e, float(i))
    return sm.state


def test_full_mission_path_records_every_transition_with_reason():
    sm = MissionStateMachine()
    assert drive(sm, 'start', 'plan_ready', 'investigate', 'confirmed', 'mark_done', 'lanes_done',
                 'investigate', 'cleared', 'resweep_done') == State.COMPLETE
    path = [(tr.source, tr.target) for tr in sm.history]
    assert path == [(State.IDLE, State.PLANNING), (State.PLANNING, State.SWEEPING),
                    (State.SWEEPING, State.INVESTIGATING), (State.INVESTIGATING, State.MARKING),
                    (State.MARKING, State.SWEEPING), (State.SWEEPING, State.RESWEEP),
                    (State.RESWEEP, State.INVESTIGATING), (State.INVESTIGATING, State.RESWEEP),
                    (State.RESWEEP, State.COMPLETE)]
    assert all(tr.reason for tr in sm.history)
    assert sm.history[0].as_dict()['from'] == 'idle'


def test_target_stop_during_resweep_returns_to_resweep():
    sm = MissionStateMachine()
    drive(sm, 'start', 'plan_ready', 'lanes_done', 'confirmed')
    assert sm.state == State.MARKING
    sm.request('mark_failed', 9.0, 'actuator never acknowledged')
    assert sm.state == State.RESWEEP
    assert sm.history[-1].reason == 'actuator never acknowledged'


@pytest.mark.parametrize('where', ['sweeping', 'investigating', 'marking', 'resweep'])
def test_pause_resume_returns_to_the_paused_state(where):
    prefix = {'sweeping': [], 'investigating': ['investigate'], 'marking': ['confirmed'],
              'resweep': ['lanes_done']}[where]
    sm = MissionStateMachine()
    drive(sm, 'start', 'plan_ready', *prefix)
    assert sm.state == where
    sm.request('pause', 10.0)
    assert sm.state == State.PAUSED and sm.paused_from == where
    with pytest.raises(MissionError, match='already paused'):
        sm.request('pause', 11.0)
    sm.request('resume', 12.0)
    assert sm.state == where and sm.paused_from is None


def test_start_while_running_is_rejected_with_the_running_state():
    sm = MissionStateMachine()
    drive(sm, 'start', 'plan_ready')
    with pytest.raises(MissionError, match=r'already running \(state sweeping\)'):
        sm.request('start', 5.0)
    assert sm.state == State.SWEEPING and len(sm.history) == 2


@pytest.mark.parametrize('event,message', [
    ('resume', 'not paused'), ('pause', 'no mission is running'), ('abort', 'no mission is running'),
    ('plan_ready', "not allowed in state idle"), ('mark_done', "not allowed in state idle"),
    ('lanes_done', 'allowed here: fault, start'), ('teleport', 'unknown mission event'),
])
def test_illegal_requests_in_idle_are_rejected_and_state_unchanged(event, message):
    sm = MissionStateMachine()
    with pytest.raises(MissionError, match=message):
        sm.request(event, 0.0)
    assert sm.state == State.IDLE and sm.history == []


def test_lanes_done_is_only_for_the_main_sweep():
    sm = MissionStateMachine()
    drive(sm, 'start', 'plan_ready', 'lanes_done')
    with pytest.raises(MissionError, match='not allowed in state resweep'):
        sm.request('lanes_done', 3.0)


def test_abort_and_fault_from_anywhere_then_restart():
    for prefix in ([], ['plan_ready'], ['plan_ready', 'investigate'], ['plan_ready', 'pause']):
        sm = MissionStateMachine()
        drive(sm, 'start', *prefix)
        sm.request('abort', 50.0)
        assert sm.state == State.ABORTED and not sm.running
        sm.request('start', 51.0)
        assert sm.state == State.PLANNING and sm.driving_state == State.SWEEPING
    sm = MissionStateMachine()
    drive(sm, 'start', 'plan_failed')
    assert sm.state == State.FAULT
    with pytest.raises(MissionError):
        sm.request('fault', 1.0)
    sm.request('start', 2.0, 'operator restart after fault')
    assert sm.state == State.PLANNING


def test_restore_after_restart():
    sm = MissionStateMachine()
    sm.restore(State.MARKING, State.RESWEEP)
    sm.request('mark_done', 1.0)
    assert sm.state == State.RESWEEP
