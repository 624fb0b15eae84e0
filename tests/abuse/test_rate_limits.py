"""Chat rate limits over a real OneBot websocket (issue #16 item 10): a user who floods the
bot gets the burst answered, one short "too fast" line, and then silence, not one reply per
message; superusers are exempt."""

from __future__ import annotations

import asyncio

from tests.abuse.conftest import StartServer, group_message, onebot_client

FLOOD = 30


async def test_a_flooding_user_gets_one_short_reply_not_a_storm(
    start_server: StartServer,
) -> None:
    served = start_server(bot={"superusers": ["777"]})
    async with onebot_client(served) as qq:
        for i in range(FLOOD):
            await qq.send(group_message(f"在吗 {i}", user_id=20002))
        assert await qq.wait_replies(6, timeout_s=20), qq.replies  # 5 answers, one "too fast"
        await asyncio.sleep(1.0)  # the other 24 get nothing: any reply would show by now
        flood_replies = list(qq.replies)
        for i in range(FLOOD):
            await qq.send(group_message(f"管理员 {i}", user_id=777))
        exempt = await qq.wait_replies(len(flood_replies) + FLOOD, timeout_s=10)
    answers = [r for r in flood_replies if "我是小优" in r]
    told = [r for r in flood_replies if r.startswith("你发得太快了")]
    assert len(answers) == 5 and len(told) == 1, flood_replies
    assert len(flood_replies) == 6
    assert exempt, f"the superuser got {len(qq.replies) - len(flood_replies)} of {FLOOD}"
