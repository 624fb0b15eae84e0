"""The endpointer: hysteresis, minimum speech and the silence hangover."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from core.models.vad import VadSettings
from devices.endpointer import Endpointer, EndpointKind


def _run(ep: Endpointer, probs: list[float]) -> list[tuple[EndpointKind, float]]:
    events = [ep.feed(p) for p in probs]
    return [(e.kind, e.at_ms) for e in events if e is not None]


def test_start_after_min_speech_and_end_after_hangover() -> None:
    ep = Endpointer(frame_ms=10, threshold=0.5, min_speech_ms=30, min_silence_ms=50)
    probs = [0.0] * 5 + [0.9] * 10 + [0.1] * 4 + [0.9] + [0.1] * 6
    assert _run(ep, probs) == [(EndpointKind.SPEECH_START, 50.0), (EndpointKind.SPEECH_END, 200.0)]
    assert not ep.in_speech


def test_short_click_never_starts_speech() -> None:
    ep = Endpointer(frame_ms=32, threshold=0.5, min_speech_ms=100, min_silence_ms=300)
    assert _run(ep, [0.0, 0.95, 0.95, 0.0, 0.9, 0.0] * 5) == []


def test_release_threshold_keeps_speech_through_a_dip() -> None:
    ep = Endpointer(
        frame_ms=10, threshold=0.6, release_threshold=0.3, min_speech_ms=10, min_silence_ms=20
    )
    events = _run(ep, [0.9, 0.4, 0.4, 0.4, 0.9, 0.2, 0.2])
    assert events == [(EndpointKind.SPEECH_START, 0.0), (EndpointKind.SPEECH_END, 50.0)]


def test_finish_closes_open_speech_and_settings_are_used() -> None:
    settings = VadSettings(threshold=0.7, min_speech_ms=64, min_silence_ms=320)
    ep = Endpointer.from_settings(settings, frame_ms=32)
    assert ep.threshold == 0.7 and ep.min_silence_ms == 320
    assert _run(ep, [0.8, 0.8, 0.8]) == [(EndpointKind.SPEECH_START, 0.0)]
    end = ep.finish()
    assert end is not None and end.kind is EndpointKind.SPEECH_END and end.at_ms == 96.0
    assert ep.finish() is None


@given(st.lists(st.floats(0.0, 1.0), max_size=300))
def test_events_alternate_and_move_forward(probs: list[float]) -> None:
    ep = Endpointer(frame_ms=20, min_speech_ms=60, min_silence_ms=100)
    events = _run(ep, probs)
    kinds = [k for k, _ in events]
    assert kinds == [EndpointKind.SPEECH_START, EndpointKind.SPEECH_END] * (len(kinds) // 2) + (
        [EndpointKind.SPEECH_START] if len(kinds) % 2 else []
    )
    times = [t for _, t in events]
    assert times == sorted(times)
    assert all(0 <= t <= 20 * len(probs) for t in times)
