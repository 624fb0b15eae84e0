"""The one typed settings object, built once at start-up and passed down.

Sources, highest priority first: explicit arguments, environment variables (``XIAOYOU_``
prefix, ``__`` between nested names, e.g. ``XIAOYOU_SCHEDULER__RESOURCES='{"vram:0": 8192}'``),
a ``.env`` file, a TOML config file (``--config``), then defaults. This module is the only
place in ``core/`` that looks at the process environment, and only inside :func:`load_settings`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from core.models.settings import ModelsSettings
from core.scheduler.settings import SchedulerSettings
from core.workers.ray_settings import RaySettings


class ServerSettings(BaseModel):
    host: str = Field("127.0.0.1", description="bind address; loopback unless configured otherwise")
    port: int = Field(8080, ge=1, le=65535)
    log_level: str = "INFO"
    data_dir: Path = Field(Path("data"), description="caches (assembled model folders), quotas")
    handshake_timeout_s: float = Field(
        10.0, gt=0, description="a connection must send its request head within this"
    )
    max_connections: int = Field(
        1024, ge=1, description="open connections (HTTP and WebSocket) in total, below ulimit -n"
    )
    max_connections_per_address: int = Field(64, ge=1, description="open connections per peer IP")
    max_pending_handshakes: int = Field(
        128,
        ge=1,
        description="connections that have not sent a request yet; beyond this the oldest is"
        " dropped, so an idle-socket flood cannot lock /healthz out",
    )


class AdminSettings(BaseModel):
    token: SecretStr | None = Field(
        None, description="bearer token for /admin; admin API is off without one"
    )


DEVICE_SYSTEM_PROMPT = (
    "你是小优，一个智能音箱里的语音助手。"
    "用一到三句简短的口语回答，不用列表、标题或 Markdown，不念表情符号。"
    "用户用什么语言说话，你就用什么语言回答；不确定时说普通话。"
)
# an English utterance gets the prompt in English: with the Chinese one the 0.5B default
# answered English questions in Chinese
DEVICE_SYSTEM_PROMPTS = {
    "en": (
        "You are Xiaoyou, the voice assistant in a smart speaker. Answer in one to three short"
        " spoken sentences, in English, without lists, headings, Markdown or emoji."
    ),
}


class DeviceSettings(BaseModel):
    """The xiaozhi device hub (devices/)."""

    enabled: bool = True
    ws_path: str = "/xiaozhi/v1/"
    public_ws_url: str | None = Field(None, description="URL the OTA endpoint hands to devices")
    tokens: list[SecretStr] = Field(
        default_factory=list,
        description="static device tokens accepted on the WebSocket (never handed out by OTA)",
    )
    auth_secret: SecretStr | None = Field(
        None,
        description="HMAC key of per-device tokens: set it to require device credentials; OTA"
        " then issues tokens to allowed devices only (no secret and no tokens: open hub)",
    )
    token_ttl_s: float = Field(30 * 86400.0, gt=0, description="per-device token lifetime")
    allowed_devices: list[str] = Field(
        default_factory=list, description="device ids (MAC) OTA issues a token to at once"
    )
    activation: bool = Field(
        True,
        description="unknown devices get an activation code an admin approves"
        " (POST /admin/devices/activate); off: OTA refuses them",
    )
    activation_timeout_s: float = Field(600.0, gt=0, description="an activation code's lifetime")
    allow_shared_device_ids: bool = Field(
        False,
        description="let one device id hold several sockets at once (else a per-device token"
        " replaces the older socket and an unproven id is refused while in use)",
    )
    idle_timeout_s: float = Field(
        90.0,
        gt=0,
        description="close a session without speech or messages this long (below the"
        " firmware's own 120 s channel timeout, so the server ends it normally)",
    )
    idle_goodbye: str = Field(
        "我先休息啦，有事再叫我。",
        description="spoken before an idle close of a listening device (empty: close at once)",
    )
    max_audio_frames_per_s: float = Field(
        100.0,
        gt=0,
        description="uplink Opus frames per socket (firmware ~17/s at 60 ms, 50/s at 20 ms);"
        " more are dropped",
    )
    max_audio_bytes_per_s: int = Field(
        32_000, ge=1024, description="uplink audio bytes per socket (16 kHz Opus ~3 KB/s)"
    )
    max_frame_bytes: int = Field(64 * 1024, ge=1024)
    hello_timeout_s: float = Field(10.0, gt=0, description="the device must say hello within this")
    close_timeout_s: float = Field(
        5.0, ge=0, description="shutdown: time for turns and sockets to end"
    )
    downlink_sample_rate_hz: int = Field(
        24_000, description="TTS audio sent to devices: 16000 or 24000"
    )
    frame_ms: int = Field(
        60, description="Opus frame duration both ways (firmware OPUS_FRAME_DURATION_MS)"
    )
    lead_ms: int = Field(
        300, ge=0, le=2000, description="audio burst ahead of playback (device buffer 2.4 s)"
    )
    vad_threshold: float = Field(0.5, ge=0, le=1)
    min_speech_ms: int = Field(200, ge=0, description="speech this long starts an utterance")
    min_silence_ms: int = Field(
        500, ge=0, description="silence this long ends an utterance (auto mode)"
    )
    preroll_ms: int = Field(300, ge=0, description="audio kept before the detected start")
    speculate_after_ms: int = Field(
        64,
        ge=0,
        description="pause this long starts the reply speculatively, its output held until"
        " min_silence_ms confirms the end (0: off; lower is faster, wastes more CPU on pauses)",
    )
    prefill_while_speaking: bool = Field(
        True,
        description="a reply started at a pause the user then spoke past runs on, unheard, to"
        " its LLM's first token: the words said so far are evaluated while the user speaks, and"
        " after the end only the rest (off: dropped when speech resumes)",
    )
    first_chunk_chars: int = Field(
        12,
        ge=8,
        description="the reply's first sentence goes to TTS at the first space past this many"
        " characters if no punctuation came yet (first audio sooner; a prosody seam; 24 before:"
        " English first audio 0.90x with 12 in the same run)",
    )
    first_clause_hanzi: int = Field(
        2,
        ge=0,
        description="a Chinese reply's first clause goes to TTS at its comma once it has this"
        " many hanzi (好的，…: first audio sooner; 0: only first_chunk_chars counts)",
    )
    later_clause_hanzi: int = Field(
        0,
        ge=0,
        description="later Chinese clauses go to TTS at their comma once they have this many"
        " hanzi, e.g. 6 (0: only after 20 characters; 6 measured no shorter silences on 2 cores)",
    )
    max_utterance_s: float = Field(
        30.0,
        gt=0,
        description="longest utterance: at this length it ends (auto and manual alike) and the"
        " device gets its answer (stt, the reply, tts stop) without a pause or listen stop",
    )
    max_exchanges: int = Field(6, ge=0, description="conversation memory per device")
    system_prompt: str = Field(
        DEVICE_SYSTEM_PROMPT, min_length=1, description="the voice assistant's system prompt"
    )
    system_prompts: dict[str, str] = Field(
        default_factory=lambda: dict(DEVICE_SYSTEM_PROMPTS),
        description="system prompt by the language of the utterance (en); other languages and"
        " {}: system_prompt",
    )
    max_reply_tokens: int | None = Field(96, ge=1, description="None: the model's default")
    max_reply_sentences: int | None = Field(
        3, ge=1, description="a spoken reply ends after this many sentences (None: no bound)"
    )
    language: str | None = Field(
        None, description="ASR language, e.g. 'zh'; None: detect per utterance (auto)"
    )
    firmware_version: str = Field("0.0.0", description="OTA: the newest firmware offered")
    firmware_url: str = Field("", description="OTA: where to download it (empty: no update)")
    timezone_offset_min: int | None = Field(
        None,
        ge=-12 * 60,
        le=14 * 60,
        description="OTA server_time.timezone_offset, minutes east of UTC (UTC+8: 480); None: the"
        " host's zone, read once at start-up",
    )
    ota_protocol_version: int = Field(
        1,
        ge=1,
        le=3,
        description="OTA websocket.version: the binary framing the firmware uses from its next"
        " connection (1 raw Opus, 2 and 3 with headers)",
    )
    ota_allowed_origins: list[str] = Field(
        default_factory=lambda: ["*"],
        description="browser origins allowed to call the OTA endpoint (CORS); '*': any;"
        " empty: no browser client",
    )
    wake_words: list[str] = Field(
        default_factory=lambda: ["你好小智", "小智小智", "你好小优", "小优小优", "小优", "小智"],
        description="text of 'listen detect' that is a wake word (compared without punctuation,"
        " spaces or case); any other text is a typed question",
    )
    mcp_timeout_s: float = Field(
        5.0, gt=0, description="one MCP request to a device (initialize, tools/list, tools/call)"
    )
    synthesise_ahead: bool = Field(
        True,
        description="synthesise the next sentence while the current one plays (off: only once"
        " it has been played, the naive order; a baseline for benches)",
    )
    keyword_intents: bool = Field(
        True,
        description="common device commands (volume, brightness, themes, switches such as a"
        " lamp, state questions, several in one sentence) matched by keywords against the tools"
        " the device declared and run without the LLM, before any LLM call",
    )
    clock_answers: bool = Field(
        True,
        description='questions about the time or the date ("现在几点了", "今天星期几", "What'
        " time is it\") answered from the server's clock in timezone_offset_min, without the LLM"
        " (a small model makes a time up)",
    )
    llm_tools: bool = Field(
        True,
        description="the device's MCP tools offered to the LLM as functions; its calls run on"
        " the device and the results go back into the same turn",
    )
    warm_tool_prompt: bool = Field(
        True,
        description="once a device has listed its MCP tools, their prompt is evaluated in the"
        " background (BACKGROUND lane) and kept in the LLM's prompt cache: its first command the"
        " keywords miss does not wait for it (609 tokens with the firmware's seven tools, ~7 s"
        " on 2 cores); only with models.llm.provider llamacpp (a remote API keeps no prompt)",
    )
    wake_greeting: str = Field(
        "我在，你说。",
        description="spoken when a wake word is detected (empty: no greeting)",
    )
    failure_reply: str = Field(
        "抱歉，我这边出了点问题，请稍后再试。",
        description="spoken when a turn fails before it said anything (the firmware shows no"
        " 'error' message; empty: only error + tts stop)",
    )


class RateLimit(BaseModel):
    """Token buckets of one bot feature; a rate of 0 turns that bucket off."""

    user_per_minute: float = Field(10, ge=0, description="messages per user per minute (refill)")
    user_burst: int = Field(5, ge=1, description="messages a user may send at once")
    group_per_minute: float = Field(30, ge=0, description="messages per group per minute (refill)")
    group_burst: int = Field(10, ge=1, description="messages a group may send at once")


class SayRateLimit(RateLimit):
    """/say costs a TTS run per message: tighter than chat."""

    user_per_minute: float = Field(4, ge=0, description="messages per user per minute (refill)")
    user_burst: int = Field(2, ge=1, description="messages a user may send at once")
    group_per_minute: float = Field(12, ge=0, description="messages per group per minute (refill)")
    group_burst: int = Field(4, ge=1, description="messages a group may send at once")


class BotLimitSettings(BaseModel):
    """Rate limits before any model work; over them a user gets one short reply per streak."""

    chat: RateLimit = Field(default_factory=RateLimit)
    say: SayRateLimit = Field(default_factory=SayRateLimit)
    exempt_superusers: bool = Field(True, description="bot.superusers are never limited")


class BotSettings(BaseModel):
    """The NoneBot2 side (bot/). Plugin slices live in NoneBot's own config."""

    enabled: bool = True
    onebot_access_token: SecretStr | None = None
    max_message_chars: int = Field(
        4000, ge=100, description="incoming QQ messages are cut to this before any parsing"
    )
    screen_unaddressed: bool = Field(
        True,
        description="group messages not addressed to the bot (no @, reply, nickname or non-empty"
        " command start) are dropped before NoneBot parses them: no xiaoyou plugin reads them,"
        " and each cost the event loop milliseconds of matcher checks (false: NoneBot sees all)",
    )
    superusers: list[str] = Field(default_factory=list)
    limits: BotLimitSettings = Field(default_factory=BotLimitSettings)
    nickname: list[str] = Field(default_factory=lambda: ["xiaoyou", "小优"])
    command_start: list[str] = Field(default_factory=lambda: ["/", ""])


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="XIAOYOU_",
        env_nested_delimiter="__",
        env_file=".env",
        extra="ignore",
    )
    toml_file: ClassVar[Path | None] = None

    server: ServerSettings = Field(default_factory=ServerSettings)
    admin: AdminSettings = Field(default_factory=AdminSettings)
    scheduler: SchedulerSettings = Field(default_factory=SchedulerSettings)
    models: ModelsSettings = Field(default_factory=ModelsSettings)
    devices: DeviceSettings = Field(default_factory=DeviceSettings)
    bot: BotSettings = Field(default_factory=BotSettings)
    ray: RaySettings = Field(default_factory=RaySettings)

    @model_validator(mode="after")
    def _warm_device_prompts(self) -> Settings:
        """``models.llm.warm_prompts`` None: the device prompts, so a device's first turn in
        each language finds its system prompt evaluated (see LlmSettings.warm_prompts)."""
        llm = self.models.llm
        if llm.warm_prompts is None:
            prompts = [self.devices.system_prompt, *self.devices.system_prompts.values()]
            llm.warm_prompts = list(dict.fromkeys(p for p in prompts if p))
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings, dotenv_settings]
        if cls.toml_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=cls.toml_file))
        return tuple(sources)


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build the settings object once, at start-up. ``overrides`` win over every source."""

    class _Loaded(Settings):
        toml_file: ClassVar[Path | None] = config_file

    loaded = _Loaded(**overrides)
    return Settings.model_validate(loaded.model_dump())


def build_settings(**overrides: Any) -> Settings:
    """Settings from defaults and ``overrides`` only (no environment, no files): for tests."""
    return Settings.model_validate(overrides)
