"""A device session's lifecycle: one enum and a transition table that rejects illegal moves.

CONNECTED (socket open, no hello yet) → READY (hello answered) → LISTENING (the device streams
the microphone) → THINKING (ASR and LLM of one turn) → SPEAKING (between ``tts start`` and
``tts stop``) → back to READY or LISTENING; CLOSED is terminal and reachable from anywhere.
"""

from __future__ import annotations

import time
from enum import StrEnum

from core.errors import ProtocolError


class SessionState(StrEnum):
    CONNECTED = "connected"
    READY = "ready"
    LISTENING = "listening"
    THINKING = "thinking"
    SPEAKING = "speaking"
    CLOSED = "closed"


_S = SessionState
TRANSITIONS: dict[SessionState, frozenset[SessionState]] = {
    _S.CONNECTED: frozenset({_S.READY, _S.CLOSED}),
    _S.READY: frozenset({_S.LISTENING, _S.THINKING, _S.CLOSED}),
    # THINKING: end of utterance; READY: listen stop with nothing said
    _S.LISTENING: frozenset({_S.LISTENING, _S.THINKING, _S.READY, _S.CLOSED}),
    # LISTENING/READY: empty transcript, abort or barge-in before any audio
    _S.THINKING: frozenset({_S.SPEAKING, _S.LISTENING, _S.READY, _S.CLOSED}),
    # THINKING: barge-in that immediately ends in a new utterance (realtime mode)
    _S.SPEAKING: frozenset({_S.READY, _S.LISTENING, _S.THINKING, _S.CLOSED}),
    _S.CLOSED: frozenset(),
}


class IllegalTransition(ProtocolError):
    code = "illegal_transition"


class SessionStateMachine:
    """Holds the current state; ``move`` raises IllegalTransition for moves not in the table."""

    __slots__ = ("changed_at_s", "state")

    def __init__(self) -> None:
        self.state = SessionState.CONNECTED
        self.changed_at_s = time.monotonic()

    def can(self, target: SessionState) -> bool:
        return target in TRANSITIONS[self.state]

    def move(self, target: SessionState) -> SessionState:
        """Go to ``target``; returns the previous state."""
        if target not in TRANSITIONS[self.state]:
            raise IllegalTransition(
                f"illegal session transition {self.state.value} → {target.value}"
            )
        previous, self.state = self.state, target
        self.changed_at_s = time.monotonic()
        return previous

    @property
    def closed(self) -> bool:
        return self.state is SessionState.CLOSED
