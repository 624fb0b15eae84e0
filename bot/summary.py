"""What a first run needs to know, in one place: where to connect, which tokens are set,
which models and languages are active.

:func:`startup_summary` builds the text; ``xiaoyou serve`` logs it once the service has
started and ``xiaoyou check-config`` prints it before the settings. It never contains a
secret: tokens are reported as set or missing only.

:func:`with_host_defaults` fills the settings that default to a property of the host (the
time zone devices are told in OTA), read once at start-up here in ``bot/`` because ``core/``
does not look at the machine.
"""

from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel

from core.settings import Settings

ONEBOT_WS_PATH = "/onebot/v11/ws"  # nonebot-adapter-onebot's reverse WebSocket route
OTA_PATH = "/xiaozhi/ota/"  # devices.hub.OTA_PATH (not imported: it pulls in the voice stack)
DASHBOARD_PATH = "/admin/ui"
WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::"})
HOST_PLACEHOLDER = "<本机IP>"

# the embedded defaults, as core/models names them when a path setting is None
EMBEDDED_ASR = "whisper-base"
EMBEDDED_LLM = "SmolLM2-135M-Instruct"
EMBEDDED_PIPER_VOICE = "en_US-joe-medium"


def host_utc_offset_min(now_s: float | None = None) -> int:
    """The host's offset from UTC in minutes east (UTC+8: 480), daylight saving included."""
    return time.localtime(time.time() if now_s is None else now_s).tm_gmtoff // 60


def with_host_defaults(settings: Settings, *, now_s: float | None = None) -> Settings:
    """``settings`` with host-derived defaults filled in (idempotent)."""
    if settings.devices.timezone_offset_min is not None:
        return settings
    devices = settings.devices.model_copy(
        update={"timezone_offset_min": host_utc_offset_min(now_s)}
    )
    return settings.model_copy(update={"devices": devices})


def format_utc_offset(offset_min: int) -> str:
    sign = "+" if offset_min >= 0 else "-"
    hours, minutes = divmod(abs(offset_min), 60)
    return f"UTC{sign}{hours:02d}:{minutes:02d}"


@dataclass(frozen=True, slots=True)
class ConnectUrls:
    onebot_ws: str
    device_ota: str
    device_ws: str
    dashboard: str
    wildcard: bool  # the server listens on every interface: the host part is a placeholder


def connect_urls(settings: Settings) -> ConnectUrls:
    server = settings.server
    wildcard = server.host in WILDCARD_HOSTS
    host = HOST_PLACEHOLDER if wildcard else server.host
    if not wildcard and _is_ipv6(host):
        host = f"[{host}]"
    base = f"{host}:{server.port}"
    device_ws = settings.devices.public_ws_url or f"ws://{base}{settings.devices.ws_path}"
    return ConnectUrls(
        onebot_ws=f"ws://{base}{ONEBOT_WS_PATH}",
        device_ota=f"http://{base}{OTA_PATH}",
        device_ws=device_ws,
        dashboard=f"http://{base}{DASHBOARD_PATH}",
        wildcard=wildcard,
    )


def _is_ipv6(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).version == 6
    except ValueError:
        return False


def _env(*path: str) -> str:
    return "XIAOYOU_" + "__".join(p.upper() for p in path)


def _voice_language(voice: Path | None) -> str:
    """Piper voice files are named ``<lang>_<REGION>-<name>-<quality>.onnx``."""
    name = EMBEDDED_PIPER_VOICE if voice is None else voice.name
    return name.split("-", 1)[0]


def _remote(kind: BaseModel) -> str:
    """``<provider> <base_url>，模型 <model>，API key 已设置/未设置`` for HTTP providers; a
    provider's own sub-settings (``tts.openai``, ``tts.edge`` ...) are looked at first."""
    provider = str(getattr(kind, "provider", "?"))
    source = getattr(kind, provider, None)
    source = source if isinstance(source, BaseModel) else kind
    parts = [provider]
    if (url := getattr(source, "base_url", None)) is not None:
        parts[0] += f" {url}"
    if (model := getattr(source, "model", None)) is not None:
        parts.append(f"模型 {model}")
    key = getattr(source, "api_key", _NO_FIELD)
    if key is not _NO_FIELD:
        parts.append(f"API key {'已设置' if key is not None else '未设置'}")
    return "，".join(parts)


_NO_FIELD = object()


def _describe_asr(asr: BaseModel) -> str:
    provider = getattr(asr, "provider", "?")
    model_dir = getattr(asr, "model_dir", None)
    if provider == "whisper":
        return f"whisper，{model_dir or '内置 ' + EMBEDDED_ASR}"
    if provider == "funasr":
        return f"funasr，{model_dir or '未配置模型目录（models.asr.model_dir）'}"
    return _remote(asr)


def _describe_llm(llm: BaseModel) -> str:
    if getattr(llm, "provider", "?") == "llamacpp":
        path = getattr(llm, "model_path", None)
        embedded = getattr(llm, "embedded", EMBEDDED_LLM)  # newer settings name the embedded
        return f"llama.cpp，{path or '内置 ' + str(embedded)}，上下文 {getattr(llm, 'n_ctx', '?')}"
    return _remote(llm)


def _describe_voice(tts: BaseModel, provider: str) -> str:
    if provider == "piper":
        return f"piper，{getattr(tts, 'voice', None) or '内置 ' + EMBEDDED_PIPER_VOICE}"
    if provider == "espeak":
        return f"espeak-ng，{getattr(tts, 'espeak_voice', '')}"
    own = getattr(tts, provider, None)
    voices = getattr(own, "voices", None)
    if isinstance(voices, dict):  # a voice per language (edge)
        return f"{provider}（{'，'.join(f'{k} → {v}' for k, v in voices.items())}）"
    if isinstance(own, BaseModel) and hasattr(own, "base_url"):
        return f"{provider} {own.base_url}"
    return provider


def _describe_route(tts: BaseModel, language: str, provider: str) -> str:
    """One route of provider auto; a remote voice says which of its voices speaks it."""
    own = getattr(tts, provider, None)
    voices = getattr(own, "voices", None)
    if provider in ("edge", "openai") and isinstance(voices, dict):
        voice = voices.get(language) or getattr(own, "voice", None) or next(iter(voices), "")
        return f"{provider} {voice}（远程）"
    return _describe_voice(tts, provider)


def _describe_tts(tts: BaseModel) -> str:
    provider = str(getattr(tts, "provider", "?"))
    languages = getattr(tts, "languages", None)
    if provider == "auto" and isinstance(languages, dict):  # one voice per language
        routes = "；".join(
            f"{lang} → {_describe_route(tts, lang, str(v))}" for lang, v in languages.items()
        )
        return f"按语言选择：{routes}"
    return _describe_voice(tts, provider)


def model_lines(settings: Settings) -> list[str]:
    m = settings.models
    vl_what = (
        str(m.vl.model_dir) if m.vl.model_dir else "未配置：/see 不可用（models.vl.model_dir）"
    )
    sd_what = (
        str(m.sd.model_dir) if m.sd.model_dir else "未配置：/draw 不可用（models.sd.model_dir）"
    )
    return [
        f"  语音检测 VAD：{m.vad.provider}",
        f"  语音识别 ASR：{_describe_asr(m.asr)}，{m.asr.device}",
        f"  对话模型 LLM：{_describe_llm(m.llm)}，{m.llm.device}",
        f"  语音合成 TTS：{_describe_tts(m.tts)}，{m.tts.device}",
        f"  看图 VL：{vl_what}",
        f"  画图 SD：{sd_what}",
    ]


def language_lines(settings: Settings) -> list[str]:
    asr = settings.models.asr
    served = "、".join(asr.languages) if asr.provider == "whisper" else ""
    asr_language = asr.language or (f"自动检测（在 {served} 中）" if served else "自动检测")
    device_language = settings.devices.language or asr_language
    prompts = "、".join(sorted(getattr(asr, "prompts", {}))) or "无"
    return [
        f"  语音识别语言：{asr_language}（带提示词的语言：{prompts}）",
        f"  设备语音识别语言：{device_language}",
        f"  语音合成：{_tts_languages(settings.models.tts)}",
    ]


def _tts_languages(tts: BaseModel) -> str:
    provider = str(getattr(tts, "provider", "?"))
    languages = getattr(tts, "languages", None)
    if provider == "auto" and isinstance(languages, dict):
        return "、".join(languages)
    if provider == "piper":
        return _voice_language(getattr(tts, "voice", None))
    if provider == "espeak":
        return str(getattr(tts, "espeak_voice", "?"))
    own = getattr(tts, provider, None)
    voices = getattr(own, "voices", None)
    if isinstance(voices, dict):
        return "、".join(voices)
    for field in ("text_lang", "language", "voice"):
        if isinstance(own, BaseModel) and hasattr(own, field):
            return str(getattr(own, field))
    return "由 " + provider + " 决定"


def token_lines(settings: Settings) -> list[str]:
    bot, admin, devices = settings.bot, settings.admin, settings.devices
    lines = []
    if bot.enabled:
        onebot = _token_state(
            bot.onebot_access_token is not None,
            "任何能连到端口的 OneBot 客户端都能接入",
            _env("bot", "onebot_access_token"),
        )
        lines.append(f"  OneBot 访问令牌：{onebot}")
    admin_set = admin.token is not None and admin.token.get_secret_value() != ""
    admin_state = _token_state(admin_set, "管理 API 和管理面板已关闭", _env("admin", "token"))
    lines.append(f"  管理令牌：{admin_state}")
    if devices.enabled:
        device_state = _token_state(
            bool(devices.tokens), "不校验设备令牌", _env("devices", "tokens")
        )
        if devices.tokens:
            device_state += f" {len(devices.tokens)} 个"
        lines.append(f"  设备令牌：{device_state}")
    return lines


def _token_state(is_set: bool, consequence: str, env: str) -> str:
    return "已设置" if is_set else f"未设置 —— {consequence}（设置 {env}）"


def startup_summary(settings: Settings) -> str:
    """The first-run summary (Chinese, several lines, no secrets)."""
    settings = with_host_defaults(settings)
    server, urls = settings.server, connect_urls(settings)
    lines = [f"xiaoyou 监听 {server.host}:{server.port}"]
    if urls.wildcard:
        lines.append(
            f"  监听所有网卡：把 {HOST_PLACEHOLDER} 换成本机的局域网地址（本机可用 127.0.0.1）"
        )
    lines.append("连接地址：")
    if settings.bot.enabled:
        lines.append(f"  QQ 机器人（OneBot v11 反向 WebSocket）：{urls.onebot_ws}")
    else:
        lines.append("  QQ 机器人：已关闭（bot.enabled = false）")
    if settings.devices.enabled:
        lines.append(f"  设备 OTA 地址（填入固件）：{urls.device_ota}")
        lines.append(f"  设备 WebSocket：{urls.device_ws}")
    else:
        lines.append("  设备：已关闭（devices.enabled = false）")
    lines.append(f"  管理面板：{urls.dashboard}")
    lines.append("令牌：")
    lines += token_lines(settings)
    lines.append("模型：")
    lines += model_lines(settings)
    lines.append("语言：")
    lines += language_lines(settings)
    offset = settings.devices.timezone_offset_min or 0
    host = host_utc_offset_min()
    source = "与本机时区相同" if offset == host else f"本机为 {format_utc_offset(host)}"
    env = _env("devices", "timezone_offset_min")
    lines.append(f"设备时区：{format_utc_offset(offset)}（{offset} 分钟，{source}；{env}）")
    return "\n".join(lines)
