"""chat plugin: replies through the scheduler, context, splitting, /reset and error paths."""

from __future__ import annotations

import re

from nonebot.adapters.onebot.v11 import Bot
from nonebug import App

from bot.replies import MODEL_FAILURE
from bot.runtime import BotRuntime
from core.errors import InferenceError
from core.scheduler import Lane
from tests.bot.conftest import (
    SELF_ID,
    Matching,
    fake_inference,
    group_event,
    private_event,
)


async def test_group_mention_gets_streamed_reply_with_context(
    app: App, runtime: BotRuntime
) -> None:
    from bot.plugins.chat import chat

    inference = fake_inference(runtime)
    async with app.test_matcher(chat) as ctx:
        bot = ctx.create_bot(base=Bot, self_id=SELF_ID)
        event = group_event("今天天气怎么样")
        ctx.receive_event(bot, event)
        ctx.should_call_send(event, "你好，我是小优。", result={"message_id": 1})
        ctx.should_finished(chat)
    call = inference.calls[-1]
    assert call.method == "chat"
    assert call.lane is Lane.INTERACTIVE
    assert call.owner == "qq:group:30003"
    messages = call.args[0]
    assert messages[0].role == "system"
    assert messages[0].content == "你是测试机器人。"
    # no Chinese reminder (the default model copied it into replies); the Chinese persona asks
    assert messages[-1].content == "今天天气怎么样"
    assert call.args[3] == 5  # the reply is bounded to a few sentences
    history = runtime.conversations.history("group:30003")
    assert [m.role for m in history] == ["user", "assistant"]
    assert history[0].content == "今天天气怎么样"
    assert history[1].content == "你好，我是小优。"


async def test_context_is_bounded_and_reset_clears_it(app: App, runtime: BotRuntime) -> None:
    from bot.plugins.chat import chat, reset

    for i in range(3):
        async with app.test_matcher(chat) as ctx:
            bot = ctx.create_bot(base=Bot, self_id=SELF_ID)
            event = private_event(f"第{i}句")
            ctx.receive_event(bot, event)
            ctx.should_call_send(event, "你好，我是小优。", result={"message_id": 1})
    inference = fake_inference(runtime)
    last_messages = inference.calls[-1].args[0]
    # system + 2 earlier turns (4 messages, the configured bound) + the question
    assert [m.content for m in last_messages[1:]] == [
        "第0句",
        "你好，我是小优。",
        "第1句",
        "你好，我是小优。",
        "第2句",
    ]
    assert len(runtime.conversations.history("user:20002")) == 4
    async with app.test_matcher(reset) as ctx:
        bot = ctx.create_bot(base=Bot, self_id=SELF_ID)
        event = private_event("/reset")
        ctx.receive_event(bot, event)
        ctx.should_call_send(event, "对话记录已清空。", result={"message_id": 2})
        ctx.should_finished(reset)
    assert runtime.conversations.history("user:20002") == []


async def test_long_reply_is_split(app: App, runtime: BotRuntime) -> None:
    from bot.plugins.chat import chat

    fake_inference(runtime).chat_pieces = ["第一段有点长，" * 6, "\n\n", "第二段，也不短。" * 2]
    async with app.test_matcher(chat) as ctx:
        bot = ctx.create_bot(base=Bot, self_id=SELF_ID)
        event = group_event("讲个长故事")
        ctx.receive_event(bot, event)
        ctx.should_call_send(event, "第一段有点长，" * 6, result={"message_id": 1})
        ctx.should_call_send(event, "第二段，也不短。" * 2, result={"message_id": 2})


async def test_not_addressed_is_ignored(app: App, runtime: BotRuntime) -> None:
    from bot.plugins.chat import chat

    async with app.test_matcher(chat) as ctx:
        bot = ctx.create_bot(base=Bot, self_id=SELF_ID)
        ctx.receive_event(bot, group_event("随便聊聊", to_me=False))
        ctx.should_not_pass_rule(chat)
    assert fake_inference(runtime).calls == []


async def test_failed_job_gets_error_reply_and_no_context(app: App, runtime: BotRuntime) -> None:
    from bot.plugins.chat import chat

    fake_inference(runtime).errors["chat"] = InferenceError("llama exploded")
    async with app.test_matcher(chat) as ctx:
        bot = ctx.create_bot(base=Bot, self_id=SELF_ID)
        event = group_event("你好")
        ctx.receive_event(bot, event)
        ctx.should_call_send(event, MODEL_FAILURE, result={"message_id": 1})
        ctx.should_finished(chat)
    assert runtime.conversations.history("group:30003") == []


async def test_crashing_job_gets_generic_reply(app: App, runtime: BotRuntime) -> None:
    from bot.plugins.chat import chat

    fake_inference(runtime).errors["chat"] = RuntimeError("bug")
    async with app.test_matcher(chat) as ctx:
        bot = ctx.create_bot(base=Bot, self_id=SELF_ID)
        event = group_event("你好")
        ctx.receive_event(bot, event)
        ctx.should_call_send(event, "出错了，请稍后再试。", result={"message_id": 1})


async def test_full_queue_gets_polite_reply(app: App, runtime: BotRuntime) -> None:
    from bot.plugins.chat import chat

    await runtime.services.scheduler.stop()  # a closed scheduler refuses like a full one
    async with app.test_matcher(chat) as ctx:
        bot = ctx.create_bot(base=Bot, self_id=SELF_ID)
        event = group_event("你好")
        ctx.receive_event(bot, event)
        ctx.should_call_send(event, "服务正在关闭或维护，请稍后再试。", result={"message_id": 1})


async def test_empty_mention_gets_greeting(app: App, runtime: BotRuntime) -> None:
    from bot.plugins.chat import chat

    async with app.test_matcher(chat) as ctx:
        bot = ctx.create_bot(base=Bot, self_id=SELF_ID)
        event = group_event("")
        ctx.receive_event(bot, event)
        ctx.should_call_send(event, "在呢～有什么可以帮你？", result={"message_id": 1})
    assert fake_inference(runtime).calls == []


async def test_english_message_gets_english_hint_and_speaker_prefix_is_removed(
    app: App, runtime: BotRuntime
) -> None:
    from bot.plugins.chat import chat

    inference = fake_inference(runtime)
    inference.chat_pieces = ["Bob", ": ", "Paris is the capital of France."]
    async with app.test_matcher(chat) as ctx:
        bot = ctx.create_bot(base=Bot, self_id=SELF_ID)
        event = group_event("What is the capital of France?", card="Bob")
        ctx.receive_event(bot, event)
        ctx.should_call_send(event, "Paris is the capital of France.", result={"message_id": 1})
    messages = inference.calls[-1].args[0]
    assert messages[-1].content == "What is the capital of France?\n(Answer in English.)"
    # an English message gets the persona written in English (the configured persona is
    # Chinese: the small default model answered English questions in Chinese with it)
    assert messages[0].content.startswith("You are Xiaoyou") and "in English" in messages[0].content


async def test_configured_personas_pick_the_system_prompt_by_message_language(
    app: App, runtime: BotRuntime
) -> None:
    from bot.plugins import chat as chat_plugin

    inference = fake_inference(runtime)
    old = chat_plugin.config.personas
    chat_plugin.config.personas = {}  # {}: the one persona for every language
    try:
        async with app.test_matcher(chat_plugin.chat) as ctx:
            bot = ctx.create_bot(base=Bot, self_id=SELF_ID)
            event = group_event("Who are you?", card="Bob")
            ctx.receive_event(bot, event)
            ctx.should_call_send(event, "你好，我是小优。", result={"message_id": 1})
    finally:
        chat_plugin.config.personas = old
    assert inference.calls[-1].args[0][0].content == "你是测试机器人。"


async def test_asked_the_time_the_bot_reads_the_clock_not_the_llm(
    app: App, runtime: BotRuntime
) -> None:
    """The 0.5B model asked the time on a device made one up ("It's 10:30 AM." at 17:46)."""
    from bot.plugins.chat import chat

    said = Matching(lambda m: re.fullmatch(r"现在是.{2}[零一两二三四五六七八九十]+点.+。", str(m)))

    inference = fake_inference(runtime)
    async with app.test_matcher(chat) as ctx:
        bot = ctx.create_bot(base=Bot, self_id=SELF_ID)
        event = group_event("现在几点了？")
        ctx.receive_event(bot, event)
        ctx.should_call_send(event, said, result={"message_id": 1})
        ctx.should_finished(chat)
    assert not [c for c in inference.calls if c.method == "chat"]
    assert said.seen
