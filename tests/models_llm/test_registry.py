"""The one model registry: the manager, the settings and the registry name the same kinds."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

from core.models.manager import ModelManager
from core.models.registry import MODEL_NAMES, MODELS
from core.models.settings import ModelsSettings
from core.scheduler import Scheduler, SchedulerSettings


def test_every_registered_kind_has_a_settings_section_and_nothing_else_does() -> None:
    sections = [
        name
        for name, field in ModelsSettings.model_fields.items()
        if isinstance(field.annotation, type)
        and issubclass(field.annotation, BaseModel)
        and name != "remote"  # the remote:* budgets, not a model
    ]
    assert sorted(sections) == sorted(MODEL_NAMES)
    assert tuple(MODELS) == MODEL_NAMES


def test_the_manager_holds_exactly_the_registered_kinds(tmp_path: Path) -> None:
    manager = ModelManager(ModelsSettings(), Scheduler(SchedulerSettings()), tmp_path)
    assert manager.names == MODEL_NAMES
    assert all(manager.entry(n).factory is MODELS[n] for n in MODEL_NAMES)


def test_warm_start_names_are_checked_against_the_registry() -> None:
    with pytest.raises(ValidationError, match="unknown models"):
        ModelsSettings(warm_start_models=["vad", "whisper"])
