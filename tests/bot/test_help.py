"""help plugin: /help and @小优 帮助 list every plugin from its metadata."""

from __future__ import annotations

from nonebot.adapters.onebot.v11 import Bot
from nonebug import App

from bot.runtime import BotRuntime
from tests.bot.conftest import SELF_ID, Matching, fake_inference, group_event, private_event


def _is_help(message: object) -> bool:
    text = str(message)
    return (
        text.startswith("小优会做这些")
        and all(
            f"【{name}】" in text for name in ("chat", "draw", "see", "say", "status", "cancel")
        )
        and "/draw 一只橘猫 --neg 模糊" in text  # usage lines come from __plugin_meta__
        and "【help】" not in text
    )


async def test_help_lists_plugins_from_their_metadata(app: App, runtime: BotRuntime) -> None:
    from bot.plugins.help import help_cmd

    for event in (group_event("/help", to_me=False), group_event("帮助"), private_event("帮助")):
        reply = Matching(_is_help)
        async with app.test_matcher(help_cmd) as ctx:
            bot = ctx.create_bot(base=Bot, self_id=SELF_ID)
            ctx.receive_event(bot, event)
            ctx.should_call_send(event, reply, result={"message_id": 1})
            ctx.should_finished(help_cmd)
        assert len(reply.seen) == 1
    assert fake_inference(runtime).calls == []  # never sent to the model (no prompt echo)


async def test_bare_word_in_group_chatter_is_not_a_command(app: App, runtime: BotRuntime) -> None:
    from bot.plugins.help import help_cmd

    async with app.test_matcher(help_cmd) as ctx:
        bot = ctx.create_bot(base=Bot, self_id=SELF_ID)
        ctx.receive_event(bot, group_event("帮助", to_me=False))
        ctx.should_not_pass_rule(help_cmd)
