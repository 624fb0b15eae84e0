"""The facade generates a reply again when it opens by copying the question (the guard's parrot
rule), a little hotter each time: the first two attempts are stopped a few characters into a
copy, the third drops a copy before its answer or, if it is nothing else, says that the message
was not understood (models.llm.parrot_reply)."""

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
        self.pieces = 0  # pieces the consumer asked for, over all attempts

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
            self.pieces += 1
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


async def test_two_retries_at_most_and_ordinary_replies_are_generated_once(
    tmp_path: Path,
) -> None:
    """After three copies the reply says the message was not understood: silence would be worse
    (a device turn without a reply leaves the speaker mute; seen in bench.voice_zh_bench with
    clip zh01), and a misheard command copied back is no answer either (firmware emulator:
    "行目弄得矮一点" → "行目弄矮一点。")."""
    text, llm = await ask(["今天好累啊，安慰我一下"] * 5, "今天好累啊，安慰我一下", tmp_path)
    assert text == LlmSettings().parrot_reply["zh"] and len(llm.temperatures) == 3
    text, llm = await ask(["行目弄矮一点。"] * 5, "行目弄得矮一点。", tmp_path)
    assert text == LlmSettings().parrot_reply["zh"] and len(llm.temperatures) == 3
    text, llm = await ask(["Turn the lamp on please."] * 5, "Turn the lamp on please", tmp_path)
    assert text == LlmSettings().parrot_reply["en"]
    text, llm = await ask(["今天天气晴朗。"], "今天天气怎么样", tmp_path)
    assert text == "今天天气晴朗。" and llm.temperatures == [0.7]


async def test_a_long_statement_copied_back_is_stopped_early_and_generated_again(
    tmp_path: Path,
) -> None:
    """A device's first reply to zh01 (a statement) copied all 35 characters before its answer,
    and the listener waited for the copy; now the copy is stopped at parrot_stop_chars."""
    statement = "你好，今天北京天气晴朗，最高气温二十五度。我已经帮你打开了客厅的灯。"
    text, llm = await ask(
        [statement + "好的，谢谢你！", "不客气，祝你今天愉快！"], statement, tmp_path
    )
    assert text == "不客气，祝你今天愉快！"
    assert len(llm.temperatures) == 2
    first_attempt_pieces = llm.pieces - len("不客气，祝你今天愉快！") // 2
    assert (
        first_attempt_pieces <= LlmSettings().parrot_stop_chars // 2 + 2
    )  # not the whole copy (21 pieces)


async def test_the_last_attempt_drops_a_copy_before_its_answer(tmp_path: Path) -> None:
    statement = "帮我设置一个十分钟的计时器，然后提醒我检查烤箱。"
    text, llm = await ask(
        [statement, statement, statement + "好的，已经设置了。"], statement, tmp_path
    )
    assert text == "好的，已经设置了。" and len(llm.temperatures) == 3
