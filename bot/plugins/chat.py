"""chat: answer when @-mentioned, replied to or called by nickname; ``/reset`` forgets context.

The reply is streamed from the LLM in the INTERACTIVE lane and sent as one message (split
at natural boundaries when long). Context is bounded per group (private: per user) by message
count here and, per request, by tokens in the facade (oldest exchanges left out), so a long
conversation never overflows the model's context. The persona asks for the user's language
and is used in the message's language when ``personas`` has it (English by default: the small
default model answers in the language of its system prompt); a short reminder of the language
(English by default) is appended to the new message only.
Replies are bounded to ``max_sentences`` sentences, and a ``名字:`` prefix the model may copy
from the group-message format is removed. "现在几点了" and other questions about the time or
the date are answered from the clock (``devices/clock.py``, in ``devices.timezone_offset_min``):
the model makes a time up.
"""

from __future__ import annotations

import time

from nonebot import get_driver, get_plugin_config, on_command, on_message
from nonebot.adapters.onebot.v11 import GroupMessageEvent, MessageEvent
from nonebot.log import logger
from nonebot.matcher import Matcher
from nonebot.plugin import PluginMetadata
from nonebot.rule import to_me
from pydantic import BaseModel, Field

from bot.chat_text import (
    DEFAULT_PERSONA,
    DEFAULT_PERSONAS,
    LANGUAGE_HINTS,
    chat_messages,
    strip_speaker_prefix,
)
from bot.events import conversation_key, display_name, explicit_command, owner_of, user_key
from bot.gate import enforce_limits
from bot.replies import GENERIC_FAILURE, describe_error, split_text
from bot.runtime import get_runtime
from core.errors import XiaoyouError
from core.models.llm import ChatMessage
from core.scheduler import Lane
from devices.clock import clock_reply


class ChatConfig(BaseModel):
    persona: str = Field(DEFAULT_PERSONA, description="system prompt")
    personas: dict[str, str] = Field(
        default_factory=lambda: dict(DEFAULT_PERSONAS),
        description="system prompt by the new message's language (en); other languages and {}:"
        " persona",
    )
    language_hints: dict[str, str] = Field(
        default_factory=lambda: dict(LANGUAGE_HINTS),
        description="appended to the new message by its language (en; zh was copied into"
        " replies); {} turns them off",
    )
    speaker_in_prompt: bool = Field(
        False, description="group messages reach the model as '名字: 内容' (small models copy it)"
    )
    max_context_messages: int = Field(
        20, ge=0, le=200, description="past messages kept per chat (then fitted by tokens)"
    )
    max_tokens: int = Field(256, ge=16, le=8192)
    max_sentences: int | None = Field(5, ge=1, description="a reply ends after this many")
    temperature: float = Field(0.7, ge=0.0, le=2.0)
    max_message_chars: int = Field(800, ge=50, le=4500, description="characters per QQ message")
    max_messages: int = Field(3, ge=1, le=10, description="messages one reply may be split into")
    empty_mention_reply: str = "在呢～有什么可以帮你？"
    clock_answers: bool = Field(
        True, description="'现在几点了', '今天星期几' answered from the clock, not by the LLM"
    )


class Config(BaseModel):
    chat: ChatConfig = Field(default_factory=ChatConfig)


__plugin_meta__ = PluginMetadata(
    name="chat",
    description="和小优聊天：@ 我、回复我的消息或叫我的名字",
    usage="@小优 你好\n小优，今天吃什么？\n/reset  清空本群（私聊：你的）对话记录",
    type="application",
    config=Config,
    supported_adapters={"~onebot.v11"},
)

config = get_plugin_config(Config).chat

reset = on_command("reset", aliases={"重置"}, rule=explicit_command(), priority=10, block=True)
chat = on_message(rule=to_me(), priority=90, block=True)


def _bot_names() -> list[str]:
    return ["小优", "xiaoyou", *get_driver().config.nickname]


@reset.handle()
async def handle_reset(matcher: Matcher, event: MessageEvent) -> None:
    forgot = get_runtime().conversations.reset(conversation_key(event))
    await matcher.finish("对话记录已清空。" if forgot else "现在没有对话记录。")


@chat.handle()
async def handle_chat(matcher: Matcher, event: MessageEvent) -> None:
    await enforce_limits(matcher, event, "chat")  # before any model work, or any reply
    text = event.get_plaintext().strip()
    if not text:
        await matcher.finish(config.empty_mention_reply)
    runtime = get_runtime()
    if config.clock_answers:
        offset_min = runtime.services.settings.devices.timezone_offset_min or 0
        clock = clock_reply(text, utc_offset_min=offset_min, now_s=time.time())
        if clock is not None:
            await matcher.finish(clock)
    key = conversation_key(event)
    speaker = display_name(event)
    named = config.speaker_in_prompt and isinstance(event, GroupMessageEvent)
    content = f"{speaker}: {text}" if named else text
    question = ChatMessage("user", content)
    messages = chat_messages(
        config.persona,
        runtime.conversations.history(key),
        content,
        personas=config.personas,
        hints=config.language_hints,
    )
    try:
        handle = runtime.services.inference.chat(
            messages,
            lane=Lane.INTERACTIVE,
            owner=owner_of(event),
            max_tokens=config.max_tokens,
            temperature=config.temperature,
            max_sentences=config.max_sentences,
        )
        runtime.jobs.add(user_key(event), handle)
        answer = "".join([piece async for piece in handle.stream()]).strip()
        answer = strip_speaker_prefix(answer, [speaker, *_bot_names()]).strip()
    except XiaoyouError as exc:
        logger.warning(f"chat failed for {owner_of(event)}: {exc!r}")
        await matcher.finish(describe_error(exc))
    except Exception as exc:  # noqa: BLE001 - a bug in one job must not silence the bot
        logger.opt(exception=exc).error("chat job crashed")
        await matcher.finish(GENERIC_FAILURE)
    if not answer:
        await matcher.finish("（我一时不知道说什么好）")
    if config.max_context_messages:
        runtime.conversations.extend(
            key,
            (question, ChatMessage("assistant", answer)),
            max_messages=config.max_context_messages,
        )
    *parts, last = split_text(answer, config.max_message_chars, config.max_messages)
    for part in parts:
        await matcher.send(part)
    await matcher.finish(last)
