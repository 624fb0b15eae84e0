"""The facade generates a reply once more when the first one only repeated the question (the
guard's parrot rule), a little hotter; the first repeat is never sent, the retry always is."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

from core.models.base import CancelCheck
from core.models.inference import PARROT_RETRY_TEMPERATURE_STEP, Inference
from core.models.llm import ChatMessage, Llm, LlmSettings
from core.models.manager import ModelManager
from core.models.settings import ModelsSettings
from core.scheduler import Lane, Scheduler, SchedulerSettings


class ScriptedLlm(Llm):
    """Answers with the next scripted reply, two characters a piece; records temperatures."""

    def __init__(self, replies: list[str]) -> None:
        self.replies = replies
        self.temperatures: list[float] = []

    def load(self) -> None:
        pass

    def stream_chat(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int,
        temperature: float,
        check: CancelCheck,
    ) -> Iterator[str]:
        self.temperatures.append(temperature)
        reply = self.replies[min(len(self.temperatures), len(self.replies)) - 1]
        for i in range(0, len(reply), 2):
            check()
            yield reply[i : i + 2]


async def ask(replies: list[str], question: str, tmp_path: Path) -> tuple[str, ScriptedLlm]:
    llm = ScriptedLlm(replies)
    settings = ModelsSettings(llm=LlmSettings(temperature=0.7))
    scheduler = Scheduler(SchedulerSettings(resources={"cpu": 1}, prewarm=False))
    await scheduler.start()
    manager = ModelManager(settings, scheduler, tmp_path, factories={"llm": lambda _s, _c: llm})
    try:
        handle = Inference(scheduler, manager, settings).chat(
            [ChatMessage("system", "你是小优。"), ChatMessage("user", question)],
            lane=Lane.INTERACTIVE,
            owner="qq:group:1",
        )
        text = "".join([piece async for piece in handle.stream()])
    finally:
        await manager.close()
        await scheduler.stop()
    return text, llm


async def test_a_parroted_question_is_generated_again(tmp_path: Path) -> None:
    text, llm = await ask(
        ["今天好累啊，安慰我一下。", "辛苦了，早点休息吧！"], "今天好累啊，安慰我一下", tmp_path
    )
    assert text == "辛苦了，早点休息吧！"
    assert llm.temperatures == [0.7, 0.7 + PARROT_RETRY_TEMPERATURE_STEP]


async def test_only_one_retry_and_ordinary_replies_are_generated_once(tmp_path: Path) -> None:
    """The retry is sent even if it parrots again: silence would be worse (a device turn
    without a reply leaves the speaker mute; seen in bench.voice_zh_bench with clip zh01)."""
    text, llm = await ask(["今天好累啊，安慰我一下"] * 5, "今天好累啊，安慰我一下", tmp_path)
    assert text == "今天好累啊，安慰我一下" and len(llm.temperatures) == 2
    text, llm = await ask(["今天天气晴朗。"], "今天天气怎么样", tmp_path)
    assert text == "今天天气晴朗。" and llm.temperatures == [0.7]
