"""The one guarded emitter of the remote and the Ray-hosted chat paths."""

from __future__ import annotations

from typing import Any

from core.models.chat_guard import ReplyGuard
from core.models.guarded_emit import GuardedEmitter
from core.models.llm import ToolCall


class Sink:
    def __init__(self) -> None:
        self.items: list[Any] = []

    async def __call__(self, item: Any) -> None:
        self.items.append(item)


async def test_a_loop_ends_the_reply_and_tool_calls_pass_as_they_are() -> None:
    sink = Sink()
    out = GuardedEmitter(sink, ReplyGuard(system_prompt="", detect_loops=True))
    call = ToolCall(id="c1", name="weather", arguments='{"city": "北京"}')
    assert not await out.push("你好，")
    assert not await out.push(call)
    ended = False
    for piece in ["我在听呢！"] * 6:
        ended = await out.push(piece)
        if ended:
            break
    assert ended and out.stop_reason is not None
    text = "".join(i for i in sink.items if isinstance(i, str))
    assert text.count("我在听呢") <= 2 and call in sink.items  # the repeats were dropped


async def test_without_a_guard_everything_passes_and_finish_sends_what_was_held() -> None:
    sink = Sink()
    out = GuardedEmitter(sink, None)
    assert not await out.push("好的")
    await out.finish()
    assert sink.items == ["好的"] and out.stop_reason is None
    held = Sink()
    guarded = GuardedEmitter(held, ReplyGuard(system_prompt="", max_sentences=2))
    for piece in ["今天", "天气", "不错"]:
        await guarded.push(piece)
    await guarded.finish()
    assert "".join(held.items) == "今天天气不错"
