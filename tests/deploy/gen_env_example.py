"""Regenerate .env.example from the Settings model and the plugins' configs.

    .venv/bin/python -m tests.deploy.gen_env_example     # from the repository root

Every setting is written as a commented ``# KEY=default`` line under its description, so the
file documents the real defaults; test_env_example.py fails when the file drifts from them.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from pathlib import Path

from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo

from core.settings import Settings
from tests.deploy.conftest import REPO, probe_nonebot

# examples for the settings a GPU deployment changes (docs/deploy.md explains them)
HINTS = {
    "XIAOYOU_SERVER__HOST": "0.0.0.0 (docker-compose.yml sets it inside the container)",
    "XIAOYOU_SCHEDULER__RESOURCES": '{"cpu": 4, "vram:0": 22000} (VRAM MB of GPU 0 for models)',
    "XIAOYOU_MODELS__LLM__MODEL_PATH": "/models/llm/qwen2.5-7b-instruct-q4_k_m.gguf (Chinese)",
    "XIAOYOU_MODELS__LLM__DEVICE": "cuda:0 (offloads n_gpu_layers to GPU 0)",
    "XIAOYOU_MODELS__ASR__MODEL_DIR": "/models/asr/SenseVoiceSmall with PROVIDER=funasr",
    "XIAOYOU_MODELS__LLM__PROVIDER": "openai (then BASE_URL, CHAT_PATH, MODEL, API_KEY below)",
    "XIAOYOU_MODELS__LLM__API_KEY": "sk-... (DeepSeek, DashScope, GLM keys)",
    "XIAOYOU_MODELS__VL__MODEL_DIR": "/models/vl/Qwen2-VL-2B-Instruct",
    "XIAOYOU_MODELS__SD__MODEL_DIR": "/models/sd/stable-diffusion-v1-5 (diffusers layout)",
    "XIAOYOU_DEVICES__PUBLIC_WS_URL": "ws://192.168.1.10:8080/xiaozhi/v1/ (what devices dial)",
    "XIAOYOU_DEVICES__TOKENS": '["a-device-token"]',
    "XIAOYOU_DEVICES__TIMEZONE_OFFSET_MIN": "480 (UTC+8, China; minutes east of UTC)",
    "XIAOYOU_BOT__SUPERUSERS": '["12345678"] (QQ numbers)',
}
# written as active, empty lines in the secrets section instead of with their defaults
SECRETS = ("XIAOYOU_BOT__ONEBOT_ACCESS_TOKEN", "XIAOYOU_ADMIN__TOKEN")

HEADER = """\
# xiaoyou settings. Copy to .env and edit: `cp .env.example .env` (.env is git-ignored).
# Every setting the service reads is listed; commented lines show the default. Nested names
# use `__` (XIAOYOU_MODELS__LLM__MODEL_PATH); lists and dicts are JSON. Tokens: generate
# them with `openssl rand -hex 32`. Nothing secret belongs in git.
# Regenerate after a settings change: .venv/bin/python -m tests.deploy.gen_env_example

# ---- docker-compose only ---------------------------------------------------------------
# GPU box: the service reserves the NVIDIA GPUs (docker-compose.gpu.yml). CPU-only box:
# COMPOSE_FILE=docker-compose.yml and XIAOYOU_IMAGE=xiaoyou:cpu (a CPU build, docs/deploy.md)
COMPOSE_FILE=docker-compose.yml:docker-compose.gpu.yml
# XIAOYOU_IMAGE=xiaoyou:latest
# OneBot implementation: gocqhttp or napcat (only one: both would log in the same QQ)
COMPOSE_PROFILES=gocqhttp
# address the service port is published on; 0.0.0.0 (or the LAN IP) lets ESP32 devices in
XIAOYOU_PUBLISH_ADDR=127.0.0.1
XIAOYOU_PUBLISH_PORT=8080
# the bot's QQ number (go-cqhttp: empty means QR-code login; NapCat: required)
GOCQ_UIN=
NAPCAT_QQ=
# NapCat runs as this uid/gid; its WebUI (QR login) listens on 127.0.0.1:NAPCAT_WEBUI_PORT
# NAPCAT_UID=1000
# NAPCAT_GID=1000
# NAPCAT_WEBUI_PORT=6099

# ---- secrets -----------------------------------------------------------------------------
# shared by the service and go-cqhttp/NapCat (reverse WebSocket /onebot/v11/ws);
# docker-compose refuses to start while it is empty
XIAOYOU_BOT__ONEBOT_ACCESS_TOKEN=
# bearer token for /admin; the dashboard (/admin/ui) asks for it in a form; empty: admin API off
XIAOYOU_ADMIN__TOKEN=
"""

PLUGIN_HEADER = """
# ---- QQ plugin settings (NoneBot) --------------------------------------------------------
# NoneBot reads these only from the .env file in its working directory, not from the
# process environment; docker-compose.yml mounts this .env there.
"""


def walk(model: type[BaseModel], prefix: str = "XIAOYOU_") -> Iterator[tuple[str, FieldInfo]]:
    """Every leaf setting as (env name, field): nested models recurse, anything else is a leaf."""
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from walk(annotation, f"{prefix}{name.upper()}__")
        else:
            yield f"{prefix}{name.upper()}", field


def walk_providers(
    model: type[BaseModel], prefix: str = "XIAOYOU_", providers: tuple[str, ...] = ()
) -> Iterator[tuple[str, FieldInfo, tuple[str, ...]]]:
    """Like :func:`walk`, with the providers that read each setting (from the settings
    classes' ``PROVIDER_FIELDS``; empty: every provider of the kind)."""
    owners: dict[str, tuple[str, ...]] = getattr(model, "PROVIDER_FIELDS", {})
    for name, field in model.model_fields.items():
        annotation = field.annotation
        readers = owners.get(name, providers)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from walk_providers(annotation, f"{prefix}{name.upper()}__", readers)
        else:
            yield f"{prefix}{name.upper()}", field, readers


def render(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, list):
        return json.dumps([render(v) if isinstance(v, SecretStr) else v for v in value])
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def section_of(key: str) -> str:
    parts = key.removeprefix("XIAOYOU_").split("__")
    return ".".join(parts[:2] if parts[0] == "MODELS" and len(parts) > 2 else parts[:1]).lower()


def provider_section(key: str, providers: tuple[str, ...]) -> tuple[str, str | None]:
    """(section title, explanation line) of a setting; provider-owned settings get their own
    section saying which ``PROVIDER`` turns them on."""
    section = section_of(key)
    if not providers:
        return section, None
    kind_key = "XIAOYOU_" + "__".join(section.upper().split(".")) + "__PROVIDER"
    title = f"{section} (provider {' / '.join(providers)})"
    routed = [p for p in providers if p != "auto"]
    if "auto" in providers and routed:  # a voice that provider auto's routing table may name
        routes_key = kind_key.removesuffix("PROVIDER") + "LANGUAGES"
        return title, (
            f"# read only when {kind_key}={' or '.join(routed)}, or =auto with a"
            f" {routes_key} route to {' / '.join(routed)}"
        )
    return title, f"# read only when {kind_key}={' or '.join(providers)}"


def generate(plugin_settings: list[tuple[str, str, str]]) -> str:
    lines = [HEADER.rstrip("\n")]
    groups: dict[str, list[tuple[str, FieldInfo]]] = {}
    notes: dict[str, str | None] = {}
    for key, field, providers in walk_providers(Settings):
        if key in SECRETS:
            continue
        title, note = provider_section(key, providers)
        groups.setdefault(title, []).append((key, field))
        notes[title] = note
    for title, entries in groups.items():
        lines += ["", f"# ---- {title} " + "-" * max(4, 86 - len(title))]
        if notes[title]:
            lines.append(str(notes[title]))
        for key, field in entries:
            lines += describe(key, field)
    lines.append(PLUGIN_HEADER.rstrip("\n"))
    for key, default, description in plugin_settings:
        if description:
            lines.append(f"# {description}")
        lines.append(f"# {key}={default}")
    return "\n".join(lines) + "\n"


def describe(key: str, field: FieldInfo) -> list[str]:
    lines = [f"# {field.description}"] if field.description else []
    if key in HINTS:
        lines.append(f"# e.g. {HINTS[key]}")
    lines.append(f"# {key}={render(field.get_default(call_default_factory=True))}")
    return lines


def main() -> None:
    with tempfile.TemporaryDirectory() as cwd:
        facts = probe_nonebot(Path(cwd))
    (REPO / ".env.example").write_text(generate(facts["plugin_settings"]), encoding="utf-8")


if __name__ == "__main__":
    main()
