"""Plain unit tests: reply splitting, error texts, quotas, context, jobs, media, directory."""

from __future__ import annotations

import datetime as dt
import io
import wave
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from bot.directory import BotDirectory
from bot.media import compress_image, download, pcm_to_wav
from bot.replies import describe_error, split_text
from bot.state import ConversationStore, JobTracker, QuotaBook
from core.errors import ConfigError, ProtocolError, QueueFull, QuotaExceeded
from core.models.llm import ChatMessage
from core.models.tts import PcmChunk


@given(st.text(min_size=0, max_size=600), st.integers(2, 80), st.integers(1, 6))
def test_split_text_bounds(text: str, max_chars: int, max_parts: int) -> None:
    parts = split_text(text, max_chars, max_parts)
    assert len(parts) <= max_parts
    assert all(0 < len(p) <= max_chars for p in parts)
    if text.strip() and len(parts) < max_parts and not parts[-1].endswith("…"):
        # nothing dropped: every non-space character survives, in order
        assert "".join("".join(parts).split()) == "".join(text.split())


def test_split_text_prefers_sentence_ends() -> None:
    text = "第一句话说完了。第二句话也说完了。第三句。"
    assert split_text(text, 12, 5) == ["第一句话说完了。", "第二句话也说完了。", "第三句。"]
    assert split_text("x" * 30, 10, 2) == ["x" * 10, "x" * 9 + "…"]


def test_describe_error_is_specific() -> None:
    assert "上限 8" in describe_error(QueueFull("full", limit=8, scope="lane:interactive"))
    assert describe_error(QuotaExceeded("冷却中")) == "冷却中"
    assert describe_error(ValueError("x")) == "出错了，请稍后再试。"


def test_quota_book_cooldown_daily_limit_and_day_roll() -> None:
    now = [0.0]
    day = [dt.date(2026, 1, 1)]
    book = QuotaBook(clock=lambda: now[0], today=lambda: day[0])
    book.check("u", cooldown_s=10, daily_limit=2)
    book.record("u")
    with pytest.raises(QuotaExceeded, match="10 秒"):
        book.check("u", cooldown_s=10, daily_limit=2)
    book.check("other", cooldown_s=10, daily_limit=2)  # per key
    now[0] = 11
    book.record("u")
    now[0] = 30
    with pytest.raises(QuotaExceeded) as exc:
        book.check("u", cooldown_s=10, daily_limit=2)
    assert not exc.value.retryable
    day[0] = dt.date(2026, 1, 2)
    book.check("u", cooldown_s=10, daily_limit=2)
    assert book.used_today("u") == 0


def test_conversation_store_is_bounded() -> None:
    store = ConversationStore(max_conversations=2)
    for i in range(5):
        store.extend("a", [ChatMessage("user", str(i))], max_messages=3)
    assert [m.content for m in store.history("a")] == ["2", "3", "4"]
    store.extend("b", [ChatMessage("user", "b")], max_messages=3)
    store.extend("c", [ChatMessage("user", "c")], max_messages=3)
    assert store.history("a") == []  # least recently used conversation forgotten
    assert store.reset("c") and not store.reset("c")


@dataclass
class _Handle:
    id: int
    finished: bool = False

    def done(self) -> bool:
        return self.finished


def test_job_tracker_forgets_finished_jobs() -> None:
    tracker = JobTracker()
    first, second = _Handle(1), _Handle(2)
    tracker.add("u", first)
    tracker.add("u", second)
    first.finished = True
    assert tracker.active("u") == [2]
    tracker.forget("u", 2)
    assert tracker.active("u") == [] and tracker.active("nobody") == []


def _noise_png(side_px: int) -> bytes:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, (side_px, side_px, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def test_compress_image_fits_budget() -> None:
    png = _noise_png(768)  # noise compresses badly: forces lower quality and downscaling
    jpeg = compress_image(png, max_bytes=60 * 1024, max_side_px=1024)
    assert len(jpeg) <= 60 * 1024
    with Image.open(io.BytesIO(jpeg)) as img:
        assert img.format == "JPEG"
    with pytest.raises(ProtocolError):
        compress_image(b"not an image", max_bytes=1024, max_side_px=512)


def test_pcm_to_wav() -> None:
    chunk = PcmChunk(np.arange(100, dtype=np.int16), 24000)
    with wave.open(io.BytesIO(pcm_to_wav([chunk, chunk]))) as wav:
        assert (wav.getframerate(), wav.getnframes(), wav.getsampwidth()) == (24000, 200, 2)
    with pytest.raises(ProtocolError):
        pcm_to_wav([])
    with pytest.raises(ProtocolError):
        pcm_to_wav([chunk, PcmChunk(chunk.samples, 16000)])


class _Adapter:
    @staticmethod
    def get_name() -> str:
        return "OneBot V11"


@dataclass
class _Bot:
    adapter: _Adapter


def test_bot_directory_snapshot() -> None:
    live = {"42": _Bot(_Adapter())}
    directory = BotDirectory(lambda: live, clock=lambda: 123.0)
    directory.connected("42")
    assert directory.snapshot() == [
        {"self_id": "42", "adapter": "OneBot V11", "connected_since": 123.0}
    ]
    directory.disconnected("42")
    live.clear()
    assert directory.snapshot() == []


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def test_download_enforces_size_limit_and_status() -> None:
    body = b"x" * 100

    def serve(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/ok":
            return httpx.Response(200, content=body)
        if request.url.path == "/big":
            return httpx.Response(200, headers={"content-length": "999999"}, content=b"x")
        if request.url.path == "/chunked":
            return httpx.Response(200, content=_chunks(body, body))  # no content-length
        return httpx.Response(410)

    async with httpx.AsyncClient(transport=httpx.MockTransport(serve)) as client:
        assert await download(client, "http://cdn/ok", max_bytes=100, timeout_s=5) == body
        for path, reason in (
            ("/big", "too large"),
            ("/chunked", "too large"),
            ("/gone", "HTTP 410"),
        ):
            with pytest.raises(ProtocolError, match=reason):
                await download(client, f"http://cdn{path}", max_bytes=150, timeout_s=5)


async def test_quota_counts_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "data" / "quotas.json"
    day = dt.date(2026, 1, 1)
    book = QuotaBook(today=lambda: day, path=path)
    book.record("draw:1")
    book.record("draw:1")
    await book.persist()
    again = QuotaBook(today=lambda: day, path=path)
    assert again.used_today("draw:1") == 2
    tomorrow = QuotaBook(today=lambda: dt.date(2026, 1, 2), path=path)
    assert tomorrow.used_today("draw:1") == 0
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(ConfigError):
        QuotaBook(path=path)
