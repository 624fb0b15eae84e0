"""A device's tools' prompt evaluated ahead of its first command, while the device is idle.

Offered to the LLM, the firmware's seven tools are a 609-token prompt (7.5 s on 2 cores): the
first command the keywords miss waited for all of it (firmware emulator: "把屏幕弄得暗一点",
first audio 10.3 s). Once the device has listed its tools, one BACKGROUND-lane token of a tool
chat of the same shape as a turn's (the system prompt of the default language with the tools
line, the tools) evaluates it, and the LLM keeps it in its prompt cache, shared by every later
connection of a device with the same tools.

It runs only while this device is idle (no speech, no turn) for ``IDLE_BEFORE_S``: a device
opens its audio channel at the wake word and the user speaks a moment later, and on 2 cores the
warm-up beside that utterance's ASR slowed it by 0.5 s (bench/voice_zh_bench.py --device
firmware, the first turn). Speech or a turn cancels a running warm-up; it starts again at the
next idle moment (llama.cpp keeps the tokens evaluated so far if nothing else used the context).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from core.errors import JobCancelled, XiaoyouError
from core.models.llm import WARM_USER_TEXT, ChatMessage
from core.scheduler import JobHandle, Lane
from devices.mcp import McpTool
from devices.ports import VoiceInference
from devices.tool_loop import TOOL_TEMPERATURE, tool_specs, with_tools_prompt

log = logging.getLogger(__name__)

IDLE_BEFORE_S = 1.5  # the device quiet this long before the warm-up starts
POLL_S = 0.25


class WarmState(enum.Enum):
    WAITING = "waiting"  # for the device to be idle
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"  # no model, a full queue: the first command pays, as without it


class ToolPromptWarmer:
    def __init__(
        self,
        inference: VoiceInference,
        *,
        owner: str,
        system_prompt: str,
        busy: Callable[[], bool],
    ) -> None:
        """``busy``: the device is hearing speech or running a turn."""
        self._inference = inference
        self._owner = owner
        self._system_prompt = system_prompt
        self._busy = busy
        self._handle: JobHandle[Any] | None = None
        self.state = WarmState.WAITING
        self.attempts = 0

    def interrupt(self) -> None:
        """The device's user speaks (or a turn starts): the CPU is theirs."""
        if self._handle is not None:
            self._handle.cancel("the device is busy")

    async def run(self, tools: Sequence[McpTool]) -> None:
        if not tools:
            self.state = WarmState.DONE
            return
        primer = [ChatMessage("system", self._system_prompt), ChatMessage("user", WARM_USER_TEXT)]
        messages = with_tools_prompt(primer)
        specs = tool_specs(tools)
        while True:
            self.state = WarmState.WAITING
            await self._idle()
            self.state, self.attempts = WarmState.RUNNING, self.attempts + 1
            handle = self._inference.chat_events(
                messages,
                tools=specs,
                lane=Lane.BACKGROUND,
                owner=self._owner,
                max_tokens=1,
                temperature=TOOL_TEMPERATURE,
            )
            self._handle = handle
            try:
                async for _ in handle.stream():
                    pass
            except JobCancelled:
                continue  # interrupted: again at the next idle moment
            except XiaoyouError as exc:
                self.state = WarmState.FAILED
                log.info("%s: tools' prompt not warmed: %s", self._owner, exc.message)
                return
            finally:
                self._handle = None
                handle.cancel("warm-up ended")  # a no-op once finished
            self.state = WarmState.DONE
            log.debug("%s: tools' prompt warmed (%d attempts)", self._owner, self.attempts)
            return

    async def _idle(self) -> None:
        quiet_since_s = time.monotonic()
        while True:
            now_s = time.monotonic()
            if self._busy():
                quiet_since_s = now_s
            elif now_s - quiet_since_s >= IDLE_BEFORE_S:
                return
            await asyncio.sleep(POLL_S)
