"""Endpointing: per-frame speech probabilities in, "speech started" / "speech ended" out.

Pure logic with hysteresis, used by the device pipeline for auto listen mode:

- speech *starts* once the probability stays >= ``threshold`` for ``min_speech_ms`` (short
  clicks never start an utterance); the event's ``at_ms`` is the first speech frame;
- speech *ends* once the probability stays < ``release_threshold`` for ``min_silence_ms``
  (the hangover); ``at_ms`` is where the trailing silence began.

Times are stream milliseconds counted from the first frame fed (or the last ``reset``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from core.models.vad import VadSettings


class EndpointKind(enum.Enum):
    SPEECH_START = "speech_start"
    SPEECH_END = "speech_end"


@dataclass(frozen=True, slots=True)
class EndpointEvent:
    kind: EndpointKind
    at_ms: float


class Endpointer:
    def __init__(
        self,
        *,
        frame_ms: float,
        threshold: float = 0.5,
        release_threshold: float | None = None,
        min_speech_ms: float = 250.0,
        min_silence_ms: float = 700.0,
    ) -> None:
        if frame_ms <= 0:
            raise ValueError("frame_ms must be positive")
        self.frame_ms = frame_ms
        self.threshold = threshold
        release = threshold - 0.15 if release_threshold is None else release_threshold
        self.release_threshold = max(0.0, min(release, threshold))
        self.min_speech_ms = min_speech_ms
        self.min_silence_ms = min_silence_ms
        self.reset()

    @classmethod
    def from_settings(cls, settings: VadSettings, *, frame_ms: float) -> Endpointer:
        return cls(
            frame_ms=frame_ms,
            threshold=settings.threshold,
            release_threshold=settings.release_threshold,
            min_speech_ms=settings.min_speech_ms,
            min_silence_ms=settings.min_silence_ms,
        )

    def reset(self) -> None:
        self._now_ms = 0.0
        self._in_speech = False
        self._run_start_ms: float | None = None  # start of the current candidate run

    @property
    def in_speech(self) -> bool:
        return self._in_speech

    def feed(self, probability: float) -> EndpointEvent | None:
        """One frame's probability; returns an event when the state changes on this frame."""
        start_ms = self._now_ms
        self._now_ms += self.frame_ms
        if not self._in_speech:
            if probability < self.threshold:
                self._run_start_ms = None
                return None
            if self._run_start_ms is None:
                self._run_start_ms = start_ms
            if self._now_ms - self._run_start_ms >= self.min_speech_ms:
                self._in_speech = True
                at_ms, self._run_start_ms = self._run_start_ms, None
                return EndpointEvent(EndpointKind.SPEECH_START, at_ms)
            return None
        if probability >= self.release_threshold:
            self._run_start_ms = None
            return None
        if self._run_start_ms is None:
            self._run_start_ms = start_ms
        if self._now_ms - self._run_start_ms >= self.min_silence_ms:
            self._in_speech = False
            at_ms, self._run_start_ms = self._run_start_ms, None
            return EndpointEvent(EndpointKind.SPEECH_END, at_ms)
        return None

    def finish(self) -> EndpointEvent | None:
        """End of stream: close an open utterance (at the start of trailing silence, if any),
        then start over as after :meth:`reset`."""
        event = None
        if self._in_speech:
            at_ms = self._now_ms if self._run_start_ms is None else self._run_start_ms
            event = EndpointEvent(EndpointKind.SPEECH_END, at_ms)
        self.reset()
        return event
