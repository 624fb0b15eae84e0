"""The listening stage: decoded microphone PCM → VAD (scheduler jobs) → endpointed utterances.

Audio is cut into the VAD's windows and scored in batches: at most one ``detect_speech`` job per
device is in flight, and whatever arrived meanwhile forms the next batch (natural batching, no
job per packet under load). The endpointer (devices.endpointer) turns probabilities into
speech start/end; an utterance keeps ``preroll_ms`` before the detected start and
``tail_ms`` after the detected end. Manual mode skips VAD: everything between ``listen start``
and ``listen stop`` is the utterance.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from core.scheduler import Lane
from devices.endpointer import Endpointer, EndpointKind
from devices.ports import VoiceInference
from devices.tasks import TaskOwner

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ListenConfig:
    owner: str
    lane: Lane = Lane.REALTIME
    threshold: float = 0.5
    min_speech_ms: float = 200.0
    min_silence_ms: float = 500.0
    preroll_ms: float = 300.0
    tail_ms: float = 150.0
    speculate_after_ms: float = (
        200.0  # pause this long: start ASR before the end is certain (0: off)
    )
    max_utterance_s: float = 30.0


@dataclass(frozen=True, slots=True)
class Utterance:
    pcm: np.ndarray  # float32 mono 16 kHz in -1..1
    ended_s: float  # monotonic time the end was detected (or listen stop arrived)
    key: tuple[int, int] = (-1, -1)  # (first, last) window index: a speculation matches its end


class Listener:
    def __init__(
        self,
        inference: VoiceInference,
        config: ListenConfig,
        tasks: TaskOwner,
        *,
        on_speech_start: Callable[[], None],
        on_utterance: Callable[[Utterance], None],
        on_pause: Callable[[Utterance], None] | None = None,
        on_resume: Callable[[], None] | None = None,
    ) -> None:
        self._inference = inference
        self._config = config
        self._tasks = tasks
        self._on_speech_start = on_speech_start
        self._on_utterance = on_utterance
        self._on_pause = on_pause
        self._on_resume = on_resume
        self._silent_run = 0  # windows below the release threshold inside an utterance
        self._speculated = False
        self._vad = inference.new_vad()
        self._window = self._vad.frame_samples
        self._window_ms = 1000 * self._window / self._vad.sample_rate_hz
        self._endpointer = Endpointer(
            frame_ms=self._window_ms,
            threshold=config.threshold,
            min_speech_ms=config.min_speech_ms,
            min_silence_ms=config.min_silence_ms,
        )
        self.use_vad = True
        self._epoch = 0  # bumped by reset: a batch scored for an older epoch is discarded
        self._pending = np.zeros(0, dtype=np.int16)  # not yet scored
        self._windows: list[np.ndarray] = []  # scored windows kept for the current utterance
        self._first_index = 0  # stream index of self._windows[0]
        self._start_index: int | None = None  # stream index where the utterance begins
        self._ep_base_index = 0  # stream index where the endpointer's clock starts
        self._busy = False  # a detect_speech batch is in flight (of whatever epoch)
        self._vad_epoch = 0  # the epoch the VAD's recurrent state belongs to

    @property
    def in_speech(self) -> bool:
        return self._start_index is not None

    def reset(self, *, use_vad: bool = True) -> None:
        self.use_vad = use_vad
        self._epoch += 1
        self._pending = np.zeros(0, dtype=np.int16)
        self._windows = []
        self._first_index = 0
        self._start_index = None
        self._ep_base_index = 0  # stream index where the endpointer's clock starts
        self._silent_run, self._speculated = 0, False
        self._endpointer.reset()
        if not self._busy:  # else the VAD is mid-batch: the next batch resets it (_score)
            self._vad.reset()
            self._vad_epoch = self._epoch
        # a batch still in flight belongs to the old epoch: its result is discarded and, once it
        # returns, scoring restarts on this epoch's audio (at most one batch per device at once)

    def feed(self, pcm: np.ndarray) -> None:
        """Decoded 16 kHz int16 audio from the device."""
        if not self.use_vad:  # manual: everything until 'listen stop' or max_utterance_s
            rate_hz = self._vad.sample_rate_hz
            room = int(self._config.max_utterance_s * rate_hz) - sum(len(w) for w in self._windows)
            self._windows.append(pcm[:room])
            if len(pcm) >= room:  # a held button or a stuck client: the utterance ends here and
                # the device gets its clear end (stt, the reply, tts stop) without 'listen stop'
                self._emit(self._utterance(self._windows))
            return
        self._pending = np.concatenate([self._pending, pcm])
        self._kick()

    def _kick(self) -> None:
        """Start scoring if a whole window is pending and no batch is in flight."""
        if not self._busy and self.use_vad and len(self._pending) >= self._window:
            self._busy = True
            self._tasks.spawn(self._score(self._epoch), "vad")

    def finish(self) -> Utterance | None:
        """``listen stop``: close the utterance now (manual mode: everything since start)."""
        if self.use_vad:
            if self._start_index is None:
                return None
            windows = self._windows[self._start_index - self._first_index :]
        else:
            windows = self._windows
        utterance = self._utterance(windows)
        self.reset(use_vad=self.use_vad)
        return utterance

    async def _score(self, epoch: int) -> None:
        if self._vad_epoch != epoch:  # reset() came while an older batch was being scored
            self._vad.reset()
            self._vad_epoch = epoch
        try:
            while epoch == self._epoch and len(self._pending) >= self._window:
                whole = len(self._pending) // self._window * self._window
                batch, self._pending = self._pending[:whole], self._pending[whole:]
                windows = list(batch.reshape(-1, self._window))
                probabilities = await self._inference.detect_speech(
                    self._vad, windows, owner=self._config.owner, lane=self._config.lane
                )
                if epoch != self._epoch:
                    break  # scored for an older epoch: discarded
                for window, probability in zip(windows, probabilities, strict=True):
                    if epoch != self._epoch:  # a callback reset the listener mid-batch
                        break
                    self._step(window, probability)
        finally:
            # always: a reset() during the batch must not leave the session deaf for good
            self._busy = False
        if epoch != self._epoch:
            self._kick()  # audio of the new epoch may be waiting for this batch to end

    def _step(self, window: np.ndarray, probability: float) -> None:
        cfg = self._config
        index = self._first_index + len(self._windows)
        self._windows.append(window)
        event = self._endpointer.feed(probability)
        if event is not None and event.kind is EndpointKind.SPEECH_START:
            first_speech = self._ep_base_index + int(event.at_ms / self._window_ms)
            self._start_index = max(
                self._first_index, first_speech - int(cfg.preroll_ms / self._window_ms)
            )
            log.debug("%s: speech start at %.0f ms", cfg.owner, event.at_ms)
            self._on_speech_start()
        elif (
            event is not None
            and event.kind is EndpointKind.SPEECH_END
            and self._start_index is not None
        ):
            log.debug("%s: speech end at %.0f ms", cfg.owner, event.at_ms)
            self._emit(self._cut(event.at_ms))
            return
        if self._start_index is None:  # keep only the preroll while nobody speaks
            keep = int((cfg.preroll_ms + cfg.min_speech_ms) / self._window_ms) + 1
            if len(self._windows) > keep:
                drop = len(self._windows) - keep
                del self._windows[:drop]
                self._first_index += drop
        elif (index - self._start_index) * self._window_ms >= cfg.max_utterance_s * 1000:
            self._emit(self._utterance(self._windows[self._start_index - self._first_index :]))
        else:
            self._track_pause(index, probability)

    def _track_pause(self, index: int, probability: float) -> None:
        """Speculation: after ``speculate_after_ms`` of pause, hand over the utterance so far
        (cut exactly as a confirmed end would cut it); report a resume if speech comes back."""
        if probability < self._endpointer.release_threshold:
            self._silent_run += 1
            pause_ms = self._silent_run * self._window_ms
            speculate_ms = self._config.speculate_after_ms
            if (
                self._on_pause
                and speculate_ms > 0
                and pause_ms >= speculate_ms
                and not self._speculated
            ):
                self._speculated = True
                silence_at_ms = (
                    index - self._silent_run + 1 - self._ep_base_index
                ) * self._window_ms
                self._on_pause(self._cut(silence_at_ms))
            return
        if self._speculated and self._on_resume is not None:
            self._on_resume()
        self._silent_run, self._speculated = 0, False

    def _cut(self, silence_at_ms: float) -> Utterance:
        """The utterance from its start to ``tail_ms`` after the silence at ``silence_at_ms``."""
        assert self._start_index is not None
        end_index = self._ep_base_index + int(
            (silence_at_ms + self._config.tail_ms) / self._window_ms
        )
        windows = self._windows[
            self._start_index - self._first_index : end_index - self._first_index + 1
        ]
        return self._utterance(windows, key=(self._start_index, end_index))

    def _emit(self, utterance: Utterance) -> None:
        self._silent_run, self._speculated = 0, False
        self._first_index += len(self._windows)
        self._windows = []
        self._start_index = None
        self._endpointer.reset()  # stream times restart; indices continue
        self._ep_base_index = self._first_index
        self._on_utterance(utterance)

    def _utterance(self, windows: list[np.ndarray], key: tuple[int, int] = (-1, -1)) -> Utterance:
        pcm = np.concatenate(windows) if windows else np.zeros(0, dtype=np.int16)
        return Utterance(pcm=pcm.astype(np.float32) / 32768.0, ended_s=time.monotonic(), key=key)
