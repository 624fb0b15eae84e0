"""Speculative turns, driven directly: a pause starts a held turn, only a confirmed end releases it.

The pipeline runs on the real scheduler with test-double models and a recording outbox. The
listener counts VAD windows, not wall time, so feeding silence in steps places the pause
(``speculate_after_ms``, 200 ms) and the confirmed end (``min_silence_ms``, 500 ms) exactly,
however fast or slow the loop runs.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import numpy as np
import pytest

from core.errors import InferenceError
from core.scheduler import Scheduler
from devices.held import HeldOutput
from devices.listener import ListenConfig, Utterance
from devices.pipeline import PipelineConfig, VoicePipeline
from devices.ports import Gate
from devices.protocol import Abort, Listen, ServerMessage, Stt, Tts
from devices.session import SessionState, SessionStateMachine
from devices.tasks import TaskOwner
from devices.turn import LLM_AHEAD_PIECES, Turn, TurnConfig
from tests.devices.fakes import FakeInference, tone_pcm
from tests.polling import until

OWNER = "device:test"
CHUNK = 960  # 60 ms at 16 kHz, as the device sends


@dataclass(frozen=True, slots=True)
class Sent:
    at_s: float
    kind: str  # "stt", "llm", "error", "tts:start", "tts:sentence_start", "tts:stop", "audio"
    text: str | None = None


class RecordingOutbox:
    """Records what would reach the device; a closed gate refuses, like the real connection."""

    session_id = "test-session"

    def __init__(self) -> None:
        self.sent: list[Sent] = []
        self.refused: list[str] = []  # sends attempted by a stale turn

    async def send_message(self, message: ServerMessage, *, gate: Gate | None = None) -> bool:
        kind = f"tts:{message.state}" if isinstance(message, Tts) else message.type
        return self._record(Sent(time.monotonic(), kind, getattr(message, "text", None)), gate)

    async def send_audio(self, packet: bytes, *, gate: Gate | None = None) -> bool:
        return self._record(Sent(time.monotonic(), "audio"), gate)

    def _record(self, sent: Sent, gate: Gate | None) -> bool:
        if gate is not None and not gate():
            self.refused.append(sent.kind)
            return False
        self.sent.append(sent)
        return True

    def kinds(self) -> list[str]:
        """Kinds in order, each run of audio packets as one ``audio``."""
        out: list[str] = []
        for s in self.sent:
            if not (s.kind == "audio" and out and out[-1] == "audio"):
                out.append(s.kind)
        return out


@dataclass
class Harness:
    fake: FakeInference
    outbox: RecordingOutbox
    state: SessionStateMachine
    pipeline: VoicePipeline
    tasks: TaskOwner
    fed_s: list[float] = field(default_factory=list)

    async def feed(self, pcm: np.ndarray) -> None:
        """Feed int16 16 kHz audio in 60 ms packets, letting the VAD keep up."""
        for i in range(0, len(pcm), CHUNK):
            self.pipeline.on_audio(pcm[i : i + CHUNK])
            await asyncio.sleep(0.003)

    async def speak_then_pause(self) -> Turn:
        """Speech, then 300 ms of silence: past the pause, short of the end. The held turn."""
        await self.feed(tone_pcm(0.6))
        await self.feed(_silence(0.3))
        await _until(lambda: self.pipeline.speculation is not None)
        turn = self.pipeline.speculation
        assert turn is not None and self.pipeline.turn is None
        return turn


def _silence(duration_s: float) -> np.ndarray:
    return np.zeros(int(duration_s * 16_000), dtype=np.int16)


_until = functools.partial(until, timeout_s=10.0, poll_s=0.005)


@asynccontextmanager
async def _harness(fake: FakeInference, *, prefill: bool = True) -> AsyncIterator[Harness]:
    fake.tts_ms_per_char = 3.0  # short replies keep the paced audio brief
    outbox = RecordingOutbox()
    state = SessionStateMachine()
    state.move(SessionState.READY)
    tasks = TaskOwner("test")
    config = PipelineConfig(
        listen=ListenConfig(owner=OWNER),
        turn=TurnConfig(owner=OWNER, cancel_timeout_s=1.0),
        prefill_while_speaking=prefill,
    )
    pipeline = VoicePipeline(inference=fake, outbox=outbox, state=state, config=config, tasks=tasks)
    await pipeline.on_listen(Listen(type="listen", state="start", mode="auto"))
    try:
        yield Harness(fake, outbox, state, pipeline, tasks)
    finally:
        await pipeline.close()
        await tasks.cancel_all(2.0)


@pytest.fixture
async def harness(fake: FakeInference) -> AsyncIterator[Harness]:
    async with _harness(fake) as h:
        yield h


async def test_nothing_reaches_device_before_end_even_with_instant_backends(
    harness: Harness,
) -> None:
    fake, outbox, pipeline = harness.fake, harness.outbox, harness.pipeline
    fake.asr_s, fake.token_s, fake.tts_chunk_s = 0.0, 0.0, 0.0
    fake.tts_ms_per_char = 12.0  # about a second of reply: still playing when checked
    turn = await harness.speak_then_pause()
    # the held turn has done everything it can: heard, answered, synthesised both sentences
    await _until(lambda: fake.finished.get("tts", 0) == 2)
    await asyncio.sleep(0.1)
    assert turn.user_text == fake.transcript and turn.reply_text.strip() == fake.reply
    assert outbox.sent == [] and outbox.refused == []
    assert harness.state.state is SessionState.LISTENING and pipeline.turn is None
    assert len(pipeline.memory) == 0
    confirm_s = time.monotonic()
    await harness.feed(_silence(0.3))  # now 600 ms of silence: the end is confirmed
    await _until(lambda: harness.state.state is SessionState.SPEAKING)  # at release, not before
    await _until(lambda: pipeline.last_turn is turn, timeout_s=5.0)
    assert all(s.at_s >= confirm_s for s in outbox.sent)
    assert outbox.kinds()[:4] == ["stt", "llm", "tts:start", "tts:sentence_start"]
    assert turn.timings.speculative
    assert turn.timings.transcribed_s is not None and turn.timings.first_token_s is not None
    assert turn.timings.first_token_s < turn.timings.started_s  # the LLM ran during the hangover
    # the audio was ready: the burst left right behind stt, the pacing clock started at release
    first_audio_s = next(s.at_s for s in outbox.sent if s.kind == "audio")
    assert first_audio_s - outbox.sent[0].at_s < 0.1


async def test_confirmed_end_adopts_the_speculation(harness: Harness) -> None:
    fake, outbox, pipeline = harness.fake, harness.outbox, harness.pipeline
    fake.tts_ms_per_char = 12.0  # about a second of reply: still playing when checked
    turn = await harness.speak_then_pause()
    await harness.feed(_silence(0.3))
    await _until(lambda: harness.state.state is SessionState.SPEAKING)  # moved at release
    assert pipeline.turn is turn and turn.released and pipeline.speculation is None
    await _until(lambda: pipeline.last_turn is turn, timeout_s=5.0)
    assert turn.timings.first_audio_s is not None
    assert turn.timings.first_audio_s >= turn.timings.started_s  # the audio clock began at the end
    assert fake.started == {"vad": fake.started["vad"], "asr": 1, "llm": 1, "tts": 2}
    assert outbox.sent[0].text == fake.transcript
    assert outbox.kinds() == [
        "stt",
        "llm",
        "tts:start",
        "tts:sentence_start",
        "audio",
        "tts:sentence_start",
        "audio",
        "tts:stop",
    ]
    assert outbox.refused == []
    assert harness.state.state is SessionState.LISTENING and pipeline.turn is None
    assert len(pipeline.memory) == 1 and turn.timings.speculative


async def test_pause_then_more_speech_cancels_speculation_silently(harness: Harness) -> None:
    fake, outbox, pipeline = harness.fake, harness.outbox, harness.pipeline
    fake.token_s = 0.1  # the held turn is mid-reply when speech resumes
    held = await harness.speak_then_pause()
    await _until(lambda: held.reply_text != "")  # a partial reply it must not remember
    await harness.feed(tone_pcm(0.6))  # the user was only pausing
    assert pipeline.speculation is None
    await _until(lambda: fake.cancelled.get("llm", 0) == 1, timeout_s=2.0)
    assert outbox.sent == [] and outbox.refused == []
    fake.token_s = 0.005
    await harness.feed(_silence(0.6))  # the real end
    await _until(lambda: pipeline.last_turn is not None, timeout_s=5.0)
    final = pipeline.last_turn
    assert final is not None and final is not held
    assert [k for k in outbox.kinds() if k == "stt"] == ["stt"]
    assert outbox.kinds().count("tts:start") == 1 and outbox.refused == []
    assert len(fake.asr_audio_s) == 2  # the dropped first half; the adopted whole utterance
    assert final.timings.speculative
    assert fake.asr_audio_s[0] < 1.2 < fake.asr_audio_s[1]
    assert fake.started["llm"] == 2 and fake.cancelled["llm"] == 1
    # the dropped speculation left no trace in memory: the final prompt has no earlier exchange
    assert [m.role for m in fake.chat_prompts[-1]] == ["system", "user"]
    assert len(pipeline.memory) == 1


@pytest.mark.parametrize("prefill", [True, False])
async def test_speech_after_the_pause_leaves_the_words_so_far_evaluated_by_the_llm(
    fake: FakeInference, prefill: bool
) -> None:
    """The held turn is still in ASR when the user speaks on: it runs on, unheard, to its
    LLM's first piece (the words before the pause are then in the LLM's context) and ends
    there; the whole utterance is answered once, as before. Off: it is dropped in ASR."""
    async with _harness(fake, prefill=prefill) as harness:
        outbox, pipeline = harness.outbox, harness.pipeline
        fake.asr_s = 0.3  # still transcribing the first half when speech resumes
        held = await harness.speak_then_pause()
        await harness.feed(tone_pcm(0.6))  # the user was only pausing
        assert pipeline.speculation is None
        if prefill:
            # while the user is still speaking: the first half's prompt reaches the LLM, which
            # stops at its first piece
            await _until(lambda: fake.cancelled.get("llm", 0) == 1)
            assert held.prefill_only and held.reply_text == "" and fake.emitted == ["llm"]
            assert fake.started == {"vad": fake.started["vad"], "asr": 1, "llm": 1}
        else:
            await _until(lambda: fake.cancelled.get("asr", 0) == 1)
            await asyncio.sleep(0.1)
            assert "llm" not in fake.started
        fake.asr_s = 0.05
        await harness.feed(_silence(0.6))  # the real end
        await _until(lambda: pipeline.last_turn is not None, timeout_s=5.0)
        final = pipeline.last_turn
        assert final is not None and final is not held and final.spoke
        assert fake.started["llm"] == (2 if prefill else 1) and fake.started["tts"] == 2
        assert [k for k in outbox.kinds() if k == "stt"] == ["stt"] and outbox.refused == []
        assert len(pipeline.memory) == 1  # the demoted turn left no trace
        assert [m.role for m in fake.chat_prompts[-1]] == ["system", "user"]


@pytest.mark.parametrize("how", ["abort", "listen start", "close"])
async def test_abort_listen_start_or_close_cancel_held_speculation(
    harness: Harness, how: str
) -> None:
    fake, outbox, pipeline = harness.fake, harness.outbox, harness.pipeline
    fake.token_s = 0.1
    held = await harness.speak_then_pause()
    await _until(lambda: held.reply_text != "")  # a partial reply it must not remember
    if how == "abort":
        await pipeline.on_abort(Abort(type="abort", reason="wake_word_detected"))
    elif how == "listen start":
        await pipeline.on_listen(Listen(type="listen", state="start", mode="auto"))
    else:
        await pipeline.close()
    assert pipeline.speculation is None
    await _until(lambda: fake.cancelled.get("llm", 0) == 1, timeout_s=2.0)
    if how == "listen start":  # the listener starts afresh: this silence ends nothing
        await harness.feed(_silence(0.6))
    await asyncio.sleep(0.2)
    assert outbox.sent == [] and outbox.refused == []  # not even a tts stop
    assert len(pipeline.memory) == 0 and pipeline.turn is None
    assert "tts" not in fake.started
    assert harness.state.state is SessionState.LISTENING  # the held turn never moved it


async def test_empty_speculation_waits_for_the_end_before_changing_state(
    harness: Harness,
) -> None:
    fake, outbox, pipeline = harness.fake, harness.outbox, harness.pipeline
    fake.transcript = "  "
    held = await harness.speak_then_pause()
    await _until(lambda: fake.finished.get("asr", 0) == 1)
    await asyncio.sleep(0.1)
    assert pipeline.last_turn is None and pipeline.speculation is held  # finished, not ended
    assert harness.state.state is SessionState.LISTENING
    await harness.feed(_silence(0.3))
    await _until(lambda: pipeline.last_turn is held)
    assert outbox.sent == [] and "llm" not in fake.started
    assert harness.state.state is SessionState.LISTENING and pipeline.turn is None


async def test_failed_speculation_reports_only_after_the_end(scheduler: Scheduler) -> None:
    broken = FakeInference(scheduler, chat_error=InferenceError("llm backend down"))
    async with _harness(broken) as harness:
        held = await harness.speak_then_pause()
        await _until(lambda: "llm" in broken.cancelled)  # the job raised (counted as cancelled)
        await asyncio.sleep(0.1)
        assert harness.outbox.sent == [] and harness.state.state is SessionState.LISTENING
        assert harness.pipeline.last_turn is None  # the failure waits for the end
        confirm_s = time.monotonic()
        await harness.feed(_silence(0.3))
        await _until(lambda: harness.pipeline.last_turn is held)
        assert harness.outbox.kinds() == ["stt", "error", "tts:stop"]  # the turn is closed
        assert all(s.at_s >= confirm_s for s in harness.outbox.sent)
        assert harness.state.state is SessionState.LISTENING
        assert len(harness.pipeline.memory) == 0  # no reply was generated


async def test_held_output_flushes_in_order_then_passes_through() -> None:
    outbox = RecordingOutbox()
    held = HeldOutput(outbox, lambda: True, held=True)
    await held.send(Stt(text="one"))
    await held.send(Tts(state="sentence_start", text="two"))
    assert outbox.sent == [] and not held.released
    held.release()
    # a send racing the flush queues behind what was held
    await asyncio.gather(held.wait_released(), held.send(Stt(text="three")))
    await held.send_audio(b"\x00")
    assert [(s.kind, s.text) for s in outbox.sent] == [
        ("stt", "one"),
        ("tts:sentence_start", "two"),
        ("stt", "three"),
        ("audio", None),
    ]


async def test_realtime_utterance_without_barge_in_supersedes_the_old_turn(
    harness: Harness,
) -> None:
    """Realtime mode: an utterance that ends while a turn still speaks (no speech start in
    between, e.g. a max-length cut) replaces that turn at once; the new turn is not aborted."""
    fake, outbox, pipeline = harness.fake, harness.outbox, harness.pipeline
    await pipeline.on_listen(Listen(type="listen", state="start", mode="realtime"))
    fake.tts_ms_per_char = 40.0  # a few seconds of reply: still speaking when replaced
    old = await harness.speak_then_pause()
    await harness.feed(_silence(0.3))
    await _until(lambda: harness.state.state is SessionState.SPEAKING)
    assert pipeline.turn is old
    fake.tts_ms_per_char = 3.0
    pipeline.listener.reset()  # the next utterance is delivered straight to the pipeline
    pipeline._on_utterance(Utterance(pcm=tone_pcm(0.6).astype(np.float32) / 32768.0, ended_s=0))
    new = pipeline.turn
    assert new is not None and new is not old
    await _until(lambda: pipeline.last_turn is new, timeout_s=5.0)
    assert outbox.kinds().count("stt") == 2 and outbox.kinds()[-1] == "tts:stop"
    assert new.spoke and new.reply_text.strip() == fake.reply  # answered in full, not aborted
    assert old.timings.finished_s is None  # the old turn was cut off mid-reply


async def test_llm_pauses_while_the_first_sentence_is_synthesised(harness: Harness) -> None:
    """The first sentence's TTS gets the CPU: once that TTS job runs, the turn holds the LLM's
    stream until the sentence has audio; then the reply goes on in full."""
    fake, pipeline = harness.fake, harness.pipeline
    fake.token_s, fake.tts_chunk_s = 0.0, 0.2  # an instant LLM, a slow first TTS chunk
    turn = await harness.speak_then_pause()
    await harness.feed(_silence(0.3))
    await _until(lambda: pipeline.last_turn is turn, timeout_s=10.0)
    first_sentence_words = len(fake.reply.split(".")[0].split(" "))  # "Canberra ... Australia."
    before_audio = fake.emitted[: fake.emitted.index("tts")]
    # the reader pauses at the first piece after the TTS job is running (one more piece)
    assert before_audio.count("llm") <= first_sentence_words + 1 + LLM_AHEAD_PIECES
    assert len(fake.reply.split()) > first_sentence_words + 1 + LLM_AHEAD_PIECES
    assert fake.emitted.count("llm") == len(fake.reply.split())  # nothing lost
    assert fake.chat_buffers == [LLM_AHEAD_PIECES]
    assert turn.reply_text.strip() == fake.reply


async def test_the_llm_stops_at_its_next_piece_once_the_first_sentence_is_being_synthesised(
    harness: Harness,
) -> None:
    """While the first sentence's TTS job runs, the LLM computes at most the piece it is on
    (it shares the two cores with TTS for one token), not as many as its stream buffer holds
    (the old behaviour: the reader stopped reading and the LLM filled LLM_AHEAD_PIECES more)."""
    fake, pipeline = harness.fake, harness.pipeline
    fake.token_s, fake.tts_chunk_s = 0.02, 0.3  # a token while TTS computes its first chunk
    turn = await harness.speak_then_pause()
    await harness.feed(_silence(0.3))
    await _until(lambda: pipeline.last_turn is turn, timeout_s=10.0)
    start = fake.emitted.index("tts-start")
    during_first_chunk = fake.emitted[start : fake.emitted.index("tts", start)]
    assert during_first_chunk.count("llm") <= 1, fake.emitted
    assert fake.emitted.count("llm") == len(fake.reply.split())  # nothing lost
    assert turn.reply_text.strip() == fake.reply
