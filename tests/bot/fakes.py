"""Test doubles for the bot tests: an Inference facade and a model manager that run tiny
jobs on the REAL scheduler (same method signatures as core/models/inference.py)."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from core.models.llm import ChatMessage
from core.models.sd import DrawRequest
from core.models.tts import PcmChunk
from core.scheduler import JobContext, JobHandle, JobSpec, Lane, Scheduler


def png_bytes(size_px: int = 64, color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (size_px, size_px), color).save(out, format="PNG")
    return out.getvalue()


@dataclass
class Call:
    method: str
    args: tuple[Any, ...]
    lane: Lane
    owner: str


@dataclass
class FakeInference:
    scheduler: Scheduler
    chat_pieces: list[str] = field(default_factory=lambda: ["你好", "，", "我是小优。"])
    see_answer: str = "一个红色的方块"
    draw_png: bytes = field(default_factory=png_bytes)
    errors: dict[str, BaseException] = field(default_factory=dict)  # method -> raised in the job
    gate: asyncio.Event | None = None  # when set, draw jobs wait for it (queue/cancel tests)
    draw_delay_s: float = 0.0  # a slow draw (end-to-end test: chat must not wait for it)
    calls: list[Call] = field(default_factory=list)
    not_configured: set[str] = field(default_factory=set)  # models without weights

    def configured(self, model: str) -> bool:
        return model not in self.not_configured

    def _fail(self, method: str) -> None:
        exc = self.errors.get(method)
        if exc is not None:
            raise exc

    def chat(
        self,
        messages: Sequence[ChatMessage],
        *,
        lane: Lane,
        owner: str,
        max_tokens: int | None = None,
        temperature: float | None = None,
        max_sentences: int | None = None,
    ) -> JobHandle[str]:
        self.calls.append(
            Call("chat", (list(messages), max_tokens, temperature, max_sentences), lane, owner)
        )

        async def work(ctx: JobContext) -> None:
            for piece in self.chat_pieces:
                await ctx.emit(piece)
            self._fail("chat")

        return self.scheduler.submit(work, spec=JobSpec(kind="llm", lane=lane, owner=owner))

    def speak(
        self, text: str, *, lane: Lane, owner: str, sample_rate_hz: int
    ) -> JobHandle[PcmChunk]:
        self.calls.append(Call("speak", (text, sample_rate_hz), lane, owner))

        async def work(ctx: JobContext) -> None:
            self._fail("speak")
            for _ in range(2):
                tone = (np.sin(np.arange(sample_rate_hz // 10) / 5) * 8000).astype(np.int16)
                await ctx.emit(PcmChunk(tone, sample_rate_hz))

        return self.scheduler.submit(work, spec=JobSpec(kind="tts", lane=lane, owner=owner))

    async def see(
        self, image: bytes, question: str, *, owner: str, lane: Lane = Lane.INTERACTIVE
    ) -> str:
        self.calls.append(Call("see", (image, question), lane, owner))

        async def work(ctx: JobContext) -> str:
            await ctx.checkpoint()
            self._fail("see")
            return self.see_answer

        result: str = await self.scheduler.submit(
            work, spec=JobSpec(kind="vl", lane=lane, owner=owner)
        )
        return result

    def draw(
        self, request: DrawRequest, *, owner: str, lane: Lane = Lane.BACKGROUND
    ) -> JobHandle[bytes]:
        self.calls.append(Call("draw", (request,), lane, owner))

        async def work(ctx: JobContext) -> bytes:
            if self.gate is not None:
                await self.gate.wait()
            if self.draw_delay_s:
                await asyncio.sleep(self.draw_delay_s)
            await ctx.checkpoint()
            self._fail("draw")
            return self.draw_png

        spec = JobSpec(
            kind="sd", lane=lane, owner=owner, resources={"cpu": 1}, label=request.prompt
        )
        return self.scheduler.submit(work, spec=spec)


@dataclass
class FakeModels:
    loaded: list[dict[str, object]] = field(default_factory=list)
    closed: bool = False
    warm_started: bool = False

    def snapshot(self) -> list[dict[str, object]]:
        return list(self.loaded)

    def start_warm_up(self) -> None:
        self.warm_started = True

    def warm_up_status(self) -> dict[str, object]:
        return {"warm_start": True, "ready": self.warm_started, "models": [], "errors": {}}

    def vram(self) -> dict[str, dict[str, object]]:
        return {}  # no GPU: nothing on the ledger

    async def close(self) -> None:
        self.closed = True
