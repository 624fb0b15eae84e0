"""The device's tools with the real embedded LLM (Qwen2.5-Coder-0.5B, its native tool-call
template) and the real voices, driven by the firmware emulator over loopback (keywords off): a
typed command becomes a ``tools/call`` on the device and a spoken Chinese answer; a
question calls nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from core.models.inference import Inference
from core.models.manager import ModelManager
from core.scheduler import Scheduler
from core.settings import build_settings
from tests.devices.conftest import StartHub
from tests.devices.firmware_emulator import FirmwareEmulator

pytestmark = [pytest.mark.slow]


@pytest.fixture(scope="module")
async def real(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Inference]:
    settings = build_settings()
    if settings.models.llm.provider != "llamacpp" or settings.models.llm.model_path is not None:
        pytest.skip("needs the embedded llama.cpp model")
    scheduler = Scheduler(settings.scheduler)
    await scheduler.start()
    manager = ModelManager(settings.models, scheduler, tmp_path_factory.mktemp("models"))
    inference = Inference(scheduler, manager, settings.models)
    for name in ("llm", "tts"):
        await manager.load(name)
    yield inference
    await scheduler.stop()
    await manager.close()


async def test_real_llm_calls_the_device_tool_and_answers(
    start_hub: StartHub, real: Inference
) -> None:
    # the keywords know themes now (devices/intents.py): off, so the LLM makes the call
    server = await start_hub(real, max_reply_tokens=48, keyword_intents=False)
    emu = FirmwareEmulator(server.http)
    server.simulators.append(emu)
    await emu.boot()
    conn = server.hub.connection(emu.device_id)
    assert conn is not None and conn.mcp is not None
    await asyncio.wait_for(conn.mcp.ready.wait(), timeout=10)

    async def typed(text: str) -> str:
        start = len(emu.received)
        await emu.listen("detect", None, text=text)
        await emu.wait_message("tts", state="stop", start=start, timeout_s=240)
        tts = [r.message for r in emu.received[start:] if r.message and r.message["type"] == "tts"]
        return "".join(m["text"] for m in tts if m["state"] == "sentence_start")

    reply = await typed("把屏幕换成深色主题")  # the LLM's function call
    assert emu.tool_calls == [("self.screen.set_theme", {"theme": "dark"})]
    assert emu.theme == "dark" and reply and "{" not in reply
    reply = await typed("澳大利亚的首都是哪里")
    assert len(emu.tool_calls) == 1 and reply  # a question: no tool
