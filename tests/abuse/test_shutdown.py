"""SIGTERM under load (issue #16 item 12): every queued QQ request gets a reply, a device
mid-turn gets its turn closed, and both sockets are closed with 1001 and a reason."""

from __future__ import annotations

import signal

from devices.simulator import DeviceSimulator
from tests.abuse.conftest import NO_GROUP_LIMIT, StartServer, group_message, onebot_client
from tests.devices.fakes import tone_pcm

SHUTDOWN_REPLY_PREFIX = "服务正在重启"


async def test_sigterm_tells_queued_users_and_closes_with_1001(
    start_server: StartServer,
) -> None:
    served = start_server(
        chat_delay_s=0.3, drain_timeout_s=1.0, device_token_s=0.2, bot=NO_GROUP_LIMIT
    )
    sent = 30  # 0.3 s each on one slot: most are still queued at SIGTERM
    async with onebot_client(served) as qq:
        device = DeviceSimulator(f"{served.ws}/xiaozhi/v1/")
        await device.connect()
        await device.listen("start", "manual")
        await device.stream_pcm(tone_pcm(0.4), speed=4.0)
        await device.listen("stop", "manual")
        for i in range(sent):
            await qq.send(group_message(f"问题 {i}", user_id=20000 + i))
        assert await qq.wait_replies(1, timeout_s=10)  # the first one was answered
        served.proc.send_signal(signal.SIGTERM)
        await qq.wait_closed(timeout_s=20)
        code, reason = await device.wait_closed(timeout_s=10)
        await device.close()
    out = served.output()
    assert len(qq.replies) == sent, (qq.replies, out)  # nobody was left without an answer
    told = [r for r in qq.replies if r.startswith(SHUTDOWN_REPLY_PREFIX)]
    assert told and len(told) < sent
    assert qq.close_code == 1001 and "shutting down" in qq.close_reason
    assert code == 1001 and "shutting down" in reason
    assert device.messages("tts")[-1]["state"] == "stop"  # its turn was closed first
    assert served.proc.returncode is not None
