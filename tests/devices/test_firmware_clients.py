"""Defects real xiaozhi clients hit (issue 13), driven by the firmware emulator over loopback."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

import httpx
import numpy as np
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, ConnectionClosedOK

from bench.devices_bench import longest_stall_s
from core.models.vad import Vad
from core.scheduler import Lane
from devices.listener import ListenConfig, Listener, Utterance
from devices.tasks import TaskOwner
from tests.devices.conftest import HubServer, StartHub
from tests.devices.fakes import EnergyVad, FakeInference, tone_pcm
from tests.devices.firmware_emulator import FirmwareEmulator


def _silence(duration_s: float) -> np.ndarray:
    return np.zeros(int(duration_s * 16_000), dtype=np.int16)


def emulator(server: HubServer, **kwargs: object) -> FirmwareEmulator:
    emu = FirmwareEmulator(server.http, **kwargs)  # type: ignore[arg-type]
    server.simulators.append(emu)
    return emu


# -- 1: listen start while a VAD batch is being scored ---------------------------------------
class _GatedVad:
    """detect_speech waits for the test to let each batch go: a batch is in flight on demand."""

    def __init__(self) -> None:
        self.vad = EnergyVad()
        self.gate = asyncio.Event()
        self.calls = 0

    def new_vad(self) -> Vad:
        return self.vad

    async def detect_speech(
        self, vad: Vad, frames: Sequence[np.ndarray], *, owner: str, lane: Lane = Lane.REALTIME
    ) -> list[float]:
        self.calls += 1
        await self.gate.wait()
        return [vad.speech_probability(f) for f in frames]


async def test_listener_reset_during_a_vad_batch_does_not_go_deaf() -> None:
    inference = _GatedVad()
    tasks = TaskOwner("test")
    heard: list[Utterance] = []
    listener = Listener(
        inference,  # type: ignore[arg-type]
        ListenConfig(owner="t", min_silence_ms=200, speculate_after_ms=0),
        tasks,
        on_speech_start=lambda: None,
        on_utterance=heard.append,
    )
    listener.feed(_silence(0.1))
    await asyncio.sleep(0)  # the batch is now being scored
    assert inference.calls == 1
    listener.reset()  # 'listen start' of a wake word while the batch is in flight
    inference.gate.set()
    await asyncio.sleep(0.01)
    listener.feed(np.concatenate([tone_pcm(0.5), _silence(0.5)]))
    for _ in range(100):
        if heard:
            break
        await asyncio.sleep(0.01)
    await tasks.cancel_all(1.0)
    assert len(heard) == 1 and 0.4 < len(heard[0].pcm) / 16_000 < 1.2


async def test_wake_word_while_listening_during_slow_vad_still_hears(
    start_hub: StartHub, fake: FakeInference
) -> None:
    fake.vad_s = 0.12  # each batch is in flight most of the time
    server = await start_hub(fake)
    emu = emulator(server)
    await emu.boot()
    for attempt in range(3):
        await emu.start_listening("auto")
        await emu.say(_silence(0.3))
        await emu.wake_word()  # abort + listen start while a batch is being scored
        start = len(emu.received)
        await emu.say(np.concatenate([tone_pcm(0.8), _silence(1.2)]), speed=2.0)
        stt = await emu.wait_message("stt", start=start, timeout_s=5)
        assert stt["text"] == fake.transcript, attempt
        await emu.wait_message("tts", state="stop", start=start, timeout_s=10)


# -- 2: typed text and wake words ('listen detect') ------------------------------------------
async def test_typed_text_gets_a_normal_turn(start_hub: StartHub, fake: FakeInference) -> None:
    server = await start_hub(fake)
    emu = emulator(server)
    await emu.boot()
    await emu.listen("detect", None, text="澳大利亚的首都是哪里？")
    await emu.start_listening("auto")  # the firmware follows detect with listen start at once
    await emu.wait_message("tts", state="stop", timeout_s=10)
    assert emu.messages("stt")[0]["text"] == "澳大利亚的首都是哪里？"
    assert fake.chat_prompts[-1][-1].content == "澳大利亚的首都是哪里？"
    assert len(emu.messages("tts")) >= 3 and emu.decoded_audio().size > 0
    assert fake.started.get("asr", 0) == 0  # no speech to recognise


async def test_wake_word_gets_the_configured_greeting_without_the_llm(
    start_hub: StartHub, fake: FakeInference
) -> None:
    server = await start_hub(fake, wake_greeting="我在呢。")
    emu = emulator(server)
    await emu.boot()
    await emu.wake_word("你好，小智！")
    await emu.wait_message("tts", state="stop", timeout_s=10)
    assert [m.get("text") for m in emu.messages("tts") if m["state"] == "sentence_start"] == [
        "我在呢。"
    ]
    assert fake.started.get("llm", 0) == 0 and emu.decoded_audio().size > 0
    # then a spoken question is answered as usual (the firmware is listening again)
    start = len(emu.received)
    await emu.say(np.concatenate([tone_pcm(0.8), _silence(1.5)]), speed=2.0)
    await emu.wait_message("tts", state="stop", start=start, timeout_s=10)
    assert fake.started["llm"] == 1
    assert all(m.content != "你好，小智！" for m in fake.chat_prompts[0])  # greeting not kept


async def test_wake_word_without_greeting_is_silent(
    start_hub: StartHub, fake: FakeInference
) -> None:
    server = await start_hub(fake, wake_greeting="")
    emu = emulator(server)
    await emu.boot()
    await emu.wake_word("小智小智")
    await asyncio.sleep(0.3)
    assert emu.messages("tts") == [] and fake.started == {}
    assert server.hub.snapshot()[0]["state"] == "listening"


# -- 3: CORS preflight of the OTA endpoint ---------------------------------------------------
_PREFLIGHT = {
    "Origin": "http://localhost:8006",
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "content-type,device-id,client-id",
}


async def test_ota_answers_cors_preflight_for_browsers(
    start_hub: StartHub, fake: FakeInference
) -> None:
    server = await start_hub(fake)
    async with httpx.AsyncClient() as client:
        pre = await client.options(f"{server.http}/xiaozhi/ota/", headers=_PREFLIGHT)
        post = await client.post(
            f"{server.http}/xiaozhi/ota/",
            json={"application": {"version": "1.0.0"}},
            headers={"Origin": "http://localhost:8006", "Device-Id": "aa", "Client-Id": "b"},
        )
    assert pre.status_code in (200, 204)
    assert pre.headers["access-control-allow-origin"] == "*"
    assert "POST" in pre.headers["access-control-allow-methods"]
    assert "device-id" in pre.headers["access-control-allow-headers"].lower()
    assert post.status_code == 200 and post.headers["access-control-allow-origin"] == "*"


async def test_ota_cors_origins_are_a_setting(start_hub: StartHub, fake: FakeInference) -> None:
    server = await start_hub(fake, ota_allowed_origins=["http://good.example"])
    url = f"{server.http}/xiaozhi/ota/"
    async with httpx.AsyncClient() as client:
        good = await client.options(url, headers={**_PREFLIGHT, "Origin": "http://good.example"})
        bad = await client.options(url, headers=_PREFLIGHT)
        bad_post = await client.post(url, json={}, headers={"Origin": "http://evil.example"})
    assert good.headers["access-control-allow-origin"] == "http://good.example"
    assert bad.status_code == 403 and "access-control-allow-origin" not in bad.headers
    assert "access-control-allow-origin" not in bad_post.headers


# -- 5: OTA websocket.version -----------------------------------------------------------------
@pytest.mark.parametrize("version", [None, 2, 3])
async def test_ota_hands_out_the_protocol_version_and_firmware_uses_it(
    start_hub: StartHub, fake: FakeInference, version: int | None
) -> None:
    settings = {} if version is None else {"ota_protocol_version": version}
    server = await start_hub(fake, **settings)
    emu = emulator(server)
    await emu.boot()
    assert emu.ota_answer is not None
    assert emu.ota_answer["websocket"]["version"] == (version or 1)
    assert emu.protocol_version == (version or 1)
    assert server.hub.snapshot()[0]["protocol_version"] == (version or 1)
    result = await emu.converse(np.concatenate([_silence(0.2), tone_pcm(0.8)]), speed=3.0)
    assert result.stt == fake.transcript and result.packets > 0


# -- the firmware's two uplink frame sizes -----------------------------------------------------
@pytest.mark.parametrize("frame_ms", [20, 60])
async def test_firmware_turn_with_20_and_60_ms_frames(
    start_hub: StartHub, fake: FakeInference, frame_ms: int
) -> None:
    server = await start_hub(fake, ota_protocol_version=2)
    emu = emulator(server, frame_ms=frame_ms)
    await emu.boot()
    result = await emu.converse(np.concatenate([_silence(0.2), tone_pcm(0.8)]), speed=2.0)
    assert result.stt == fake.transcript and result.packets > 0
    assert 0.7 < fake.asr_audio_s[0] < 1.6
    assert emu.state == "listening"  # tts stop took the firmware back to listening


# -- 7: tts start only once audio is ready -----------------------------------------------------
async def test_tts_start_comes_with_the_first_audio_frame(
    start_hub: StartHub, fake: FakeInference
) -> None:
    fake.tts_chunk_s = 0.4  # a slow first chunk: the old code announced it 0.4 s early
    server = await start_hub(fake)
    emu = emulator(server)
    await emu.boot()
    await emu.converse(np.concatenate([_silence(0.2), tone_pcm(0.8)]), speed=3.0)
    start_at = next(r.at_s for r in emu.received if r.message and r.message.get("state") == "start")
    first_audio_at = next(r.at_s for r in emu.received if r.packet is not None)
    assert first_audio_at - start_at < 0.1
    # each sentence_start arrives right before that sentence's audio, not when TTS begins it
    gaps = []
    for i, r in enumerate(emu.received):
        if r.message and r.message.get("state") == "sentence_start":
            nxt = next(x for x in emu.received[i:] if x.packet is not None)
            gaps.append(nxt.at_s - r.at_s)
    assert len(gaps) == 3 and max(gaps) < 0.1


# -- 8: idle close is a normal end --------------------------------------------------------------
async def test_idle_close_is_a_clean_close_for_websockets_clients(
    start_hub: StartHub, fake: FakeInference
) -> None:
    server = await start_hub(fake, idle_timeout_s=0.5)
    async with connect(server.url, compression=None) as ws:
        await ws.send(
            '{"type":"hello","version":1,"features":{"mcp":true},"transport":"websocket",'
            '"audio_params":{"format":"opus","sample_rate":16000,"channels":1,'
            '"frame_duration":60}}'
        )
        messages = []
        with pytest.raises(ConnectionClosedOK) as closed:  # what py-xiaozhi calls a clean end
            while True:
                messages.append(await asyncio.wait_for(ws.recv(), timeout=5))
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000
    assert '"hello"' in messages[0]


async def test_idle_listening_device_hears_goodbye_then_a_normal_close(
    start_hub: StartHub, fake: FakeInference
) -> None:
    server = await start_hub(fake, idle_timeout_s=0.6, idle_goodbye="再见啦。")
    emu = emulator(server)
    await emu.boot()
    await emu.start_listening("auto")

    async def microphone() -> None:  # a listening firmware streams silence all the time
        with contextlib.suppress(ConnectionClosed):
            await emu.say(_silence(6.0))

    mic = asyncio.get_running_loop().create_task(microphone())
    code, _ = await emu.wait_closed(timeout_s=6)
    mic.cancel()
    spoken = [m.get("text") for m in emu.messages("tts") if m["state"] == "sentence_start"]
    assert spoken == ["再见啦。"] and emu.messages("tts")[-1]["state"] == "stop"
    assert code == 1000 and emu.decoded_audio().size > 0


# -- 4: MCP: discovery, tool calls, the keyword path ------------------------------------------
async def _tools_ready(server: HubServer, emu: FirmwareEmulator) -> list[str]:
    conn = server.hub.connection(emu.device_id)
    assert conn is not None and conn.mcp is not None
    await asyncio.wait_for(conn.mcp.ready.wait(), timeout=5)
    names: list[str] = server.hub.snapshot()[0]["mcp_tools"]
    return names


async def test_mcp_discovery_after_hello_follows_next_cursor(
    start_hub: StartHub, fake: FakeInference
) -> None:
    server = await start_hub(fake)
    emu = emulator(server, padding_tools=40)  # ~17 kB of tools: three pages of 8000 bytes
    await emu.boot()
    names = await _tools_ready(server, emu)
    assert names == [t.name for t in emu.tools]  # all 43, in the device's order
    methods = [r["method"] for r in emu.mcp_requests]
    assert methods[0] == "initialize" and methods.count("tools/list") >= 3
    cursors = [r["params"].get("cursor") for r in emu.mcp_requests if r["method"] == "tools/list"]
    assert cursors[0] == "" and all(cursors[1:])


async def test_no_mcp_without_the_feature(start_hub: StartHub, fake: FakeInference) -> None:
    server = await start_hub(fake)
    sim = server.device()
    await sim.open()
    await sim.send_json({"type": "hello", "version": 1, "transport": "websocket"})
    await sim.wait_message("hello")
    await asyncio.sleep(0.2)
    assert sim.messages("mcp") == [] and server.hub.snapshot()[0]["mcp_tools"] == []


@pytest.mark.parametrize(
    ("text", "volume", "reply"),
    [
        ("把音量调到60", 60, "好的，已经把音量调到60了。"),
        ("音量调到六十五", 65, "好的，已经把音量调到65了。"),
        ("声音大一点", 80, "好的，已经把音量调到80了。"),
        ("静音", 0, "好的，已经静音了。"),
    ],
)
async def test_volume_intent_calls_the_device_tool_without_the_llm(
    start_hub: StartHub, fake: FakeInference, text: str, volume: int, reply: str
) -> None:
    server = await start_hub(fake)
    emu = emulator(server)
    await emu.boot()
    await _tools_ready(server, emu)
    await emu.listen("detect", None, text=text)
    await emu.wait_message("tts", state="stop", timeout_s=10)
    assert emu.volume == volume
    assert emu.tool_calls[-1] == ("self.audio_speaker.set_volume", {"volume": volume})
    spoken = [m["text"] for m in emu.messages("tts") if m["state"] == "sentence_start"]
    assert "".join(spoken) == reply and fake.started.get("llm", 0) == 0


async def test_tool_call_times_out_with_a_spoken_apology(
    start_hub: StartHub, fake: FakeInference
) -> None:
    server = await start_hub(fake, mcp_timeout_s=0.3)
    emu = emulator(server)
    emu.tools[1].call = lambda args: asyncio.sleep(3600)  # never answered in time
    await emu.boot()
    await _tools_ready(server, emu)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await emu.listen("detect", None, text="把音量调到60")
    await emu.wait_message("tts", state="stop", timeout_s=10)
    spoken = [m["text"] for m in emu.messages("tts") if m["state"] == "sentence_start"]
    assert "".join(spoken) == "抱歉，音量没有设置成功，设备没有响应。"
    assert loop.time() - started < 3


# -- 6: the next sentence is synthesised while the current one plays ---------------------------
async def test_audio_stays_continuous_when_tts_shares_the_cpu_with_the_llm(
    start_hub: StartHub, fake: FakeInference
) -> None:
    fake.reply = (
        "Canberra is the capital of Australia. It lies about three hundred kilometres south "
        "west of Sydney, inland. It was planned as a capital."
    )
    fake.token_s = 0.1  # the LLM computes through most of the reply
    fake.tts_ms_per_char = 40.0  # ~1 s of audio per 25 characters
    fake.tts_chunk_ms = 300
    fake.tts_chunk_s = 0.15  # twice real time alone, 0.8x real time beside the LLM
    fake.tts_contention = 4.0
    server = await start_hub(fake)
    emu = emulator(server)
    await emu.boot()
    start = len(emu.received)
    await emu.converse(np.concatenate([_silence(0.2), tone_pcm(0.8)]), speed=3.0, timeout_s=60)
    arrivals = [r.at_s for r in emu.received[start:] if r.packet is not None]
    assert len(arrivals) > 60
    # a regression guard (0.15-0.27 s here with and without this change: it does not tell them
    # apart on a loaded box); the real-model figure is in docs/benchmarks.md
    assert longest_stall_s(arrivals) < 0.6


async def test_a_slow_turn_is_not_an_idle_session(start_hub: StartHub, fake: FakeInference) -> None:
    fake.asr_s = 1.5  # a model loading for the first time; the device waits silently
    server = await start_hub(fake, idle_timeout_s=0.5)
    emu = emulator(server)
    await emu.boot()
    await emu.start_listening("auto")
    await emu.say(np.concatenate([tone_pcm(0.8), _silence(0.8)]), speed=2.0)
    await emu.wait_message("tts", state="stop", timeout_s=10)
    assert emu.messages("stt")[0]["text"] == fake.transcript
