"""The mission state machine: every transition explicit, with a reason; illegal requests rejected.

::

    idle ─start─▶ planning ─plan_ready─▶ sweeping ─lanes_done─▶ resweep ─resweep_done─▶ complete
                     │                    │  ▲  ▲                 │  ▲
                plan_failed        investigate │ └── pause/resume ──┘  │ (paused returns to where
                     ▼                    ▼  │                    │     it was paused from)
                   fault            investigating ─confirmed─▶ marking ─mark_done/mark_failed─┘
                                           └─cleared─────────────────▶ (back to sweeping/resweep)

``abort`` ends any active mission (→ aborted); ``fault`` (records I/O error, lost localisation, a
plan that cannot be made) stops it in a defined state. ``start`` is accepted only when no mission
is running (idle, complete, aborted, fault); a start while a mission runs is rejected with a
message naming the running state.

The machine is pure: it holds no clock, callers pass the time. Each accepted request returns the
:class:`Transition` so the caller can record it (``records.MissionRecords.add_event``).
"""

from __future__ import annotations

from dataclasses import dataclass
import enum


class MissionError(ValueError):
    """A request the mission cannot honour in its current state (or bad mission input)."""


class State(enum.StrEnum):
    IDLE = 'idle'
    PLANNING = 'planning'
    SWEEPING = 'sweeping'
    PAUSED = 'paused'
    INVESTIGATING = 'investigating'
    MARKING = 'marking'
    RESWEEP = 'resweep'
    COMPLETE = 'complete'
    ABORTED = 'aborted'
    FAULT = 'fault'


#: States in which no mission is running: ``start`` is accepted only here.
TERMINAL = frozenset({State.IDLE, State.COMPLETE, State.ABORTED, State.FAULT})
#: States in which the robot is driving lanes (main sweep or re-sweep of missed strips).
DRIVING = frozenset({State.SWEEPING, State.RESWEEP})
#: States that may be paused (and resumed back into).
PAUSABLE = frozenset({State.SWEEPING, State.RESWEEP, State.INVESTIGATING, State.MARKING})


@dataclass(frozen=True)
class Transition:
    t: float
    source: State
    target: State
    event: str
    reason: str

    def as_dict(self) -> dict:
        return {'t': self.t, 'from': str(self.source), 'to': str(self.target), 'event': self.event,
                'reason': self.reason}


class MissionStateMachine:
    """Holds the current state and the states to return to after a pause or a target stop."""

    def __init__(self, state: State = State.IDLE):
        self.state = State(state)
        self._paused_from: State | None = None
        self._driving: State = State.SWEEPING  # sweeping or resweep: where a target stop returns
        self.history: list[Transition] = []

    # -- queries ---------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.state not in TERMINAL

    @property
    def paused_from(self) -> State | None:
        return self._paused_from

    @property
    def driving_state(self) -> State:
        """The lane-driving state (sweeping or resweep) a target stop or pause returns to."""
        return self._driving

    def allowed(self) -> list[str]:
        """Events accepted in the current state (for status displays and error messages)."""
        return sorted(e for e, fn in _RULES.items() if fn(self) is not None)

    # -- transitions ------------------------------------------------------------------------------
    def request(self, event: str, t: float, reason: str = '') -> Transition:
        """Apply ``event`` or raise :class:`MissionError` naming the state and what is allowed."""
        rule = _RULES.get(event)
        if rule is None:
            raise MissionError(f'unknown mission event {event!r}; known: {sorted(_RULES)}')
        target = rule(self)
        if target is None:
            raise MissionError(self._rejection(event))
        source = self.state
        if event == 'pause':
            self._paused_from = source
        elif event == 'resume':
            self._paused_from = None
        elif event in ('abort', 'fault', 'start'):
            self._paused_from = None
        if target in DRIVING:
            self._driving = target
        if event == 'start':
            self._driving = State.SWEEPING
        self.state = target
        tr = Transition(float(t), source, target, event, reason or _DEFAULT_REASON.get(event, event))
        self.history.append(tr)
        return tr

    def restore(self, state: State, driving: State = State.SWEEPING) -> None:
        """Put the machine back in a recorded state after a restart (resume from records)."""
        self.state = State(state)
        self._driving = State(driving) if State(driving) in DRIVING else State.SWEEPING
        self._paused_from = None

    def _rejection(self, event: str) -> str:
        if event == 'start' and self.running:
            return (f'cannot start: a mission is already running (state {self.state}); '
                    'pause, resume or abort it first')
        if event == 'resume' and self.state != State.PAUSED:
            return f'cannot resume: the mission is not paused (state {self.state})'
        if event == 'pause' and self.state == State.PAUSED:
            return 'cannot pause: the mission is already paused'
        if event in ('pause', 'abort') and not self.running:
            return f'cannot {event}: no mission is running (state {self.state})'
        return (f'{event!r} is not allowed in state {self.state}; allowed here: '
                f'{", ".join(self.allowed()) or "nothing"}')


def _after_stop(sm: MissionStateMachine) -> State:
    return sm.driving_state


# event -> function(machine) returning the target state or None when the event is illegal.
_RULES = {
    'start': lambda sm: State.PLANNING if sm.state in TERMINAL else None,
    'plan_ready': lambda sm: State.SWEEPING if sm.state == State.PLANNING else None,
    'plan_failed': lambda sm: State.FAULT if sm.state == State.PLANNING else None,
    'pause': lambda sm: State.PAUSED if sm.state in PAUSABLE else None,
    'resume': lambda sm: sm.paused_from if sm.state == State.PAUSED and sm.paused_from else None,
    'investigate': lambda sm: State.INVESTIGATING if sm.state in DRIVING else None,
    'confirmed': lambda sm: State.MARKING if sm.state in (State.INVESTIGATING, *DRIVING) else None,
    'cleared': lambda sm: _after_stop(sm) if sm.state == State.INVESTIGATING else None,
    'mark_done': lambda sm: _after_stop(sm) if sm.state == State.MARKING else None,
    'mark_failed': lambda sm: _after_stop(sm) if sm.state == State.MARKING else None,
    'mark_deferred': lambda sm: _after_stop(sm) if sm.state == State.MARKING else None,
    'lanes_done': lambda sm: State.RESWEEP if sm.state == State.SWEEPING else None,
    'resweep_done': lambda sm: State.COMPLETE if sm.state in DRIVING else None,
    'abort': lambda sm: State.ABORTED if sm.running else None,
    'fault': lambda sm: State.FAULT if sm.state != State.FAULT else None,
}

_DEFAULT_REASON = {
    'start': 'operator start', 'plan_ready': 'coverage plan received', 'plan_failed': 'no plan',
    'pause': 'operator pause', 'resume': 'operator resume', 'investigate': 'candidate target ahead',
    'confirmed': 'hazard target confirmed', 'cleared': 'candidate not confirmed',
    'mark_done': 'mark placed', 'mark_failed': 'mark failed after retries',
    'mark_deferred': 'target not reachable from here: marked later',
    'lanes_done': 'all lanes driven', 'resweep_done': 'no missed strips left',
    'abort': 'operator abort', 'fault': 'fault',
}
