"""The one model registry: every model kind the manager holds, in order, and its factory.

A factory ``(the kind's settings, cache_dir) -> backend`` builds the configured provider's
backend, not yet loaded; choosing the provider is the kind's own ``create_*`` function (the
provider module, and with it its heavy imports, is imported only when chosen). Nothing
registers itself on import: adding a kind means a row here and a section of the same name in
:class:`core.models.settings.ModelsSettings` (a test checks the two agree).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from core.models.asr import create_asr
from core.models.base import ModelBackend
from core.models.llm import create_llm
from core.models.sd import create_sd
from core.models.tts import create_tts
from core.models.vad import create_vad
from core.models.vl import create_vl

# (the kind's settings, cache_dir) -> a backend object, not yet loaded
Factory = Callable[[Any, Path], ModelBackend]

MODELS: Mapping[str, Factory] = {
    "vad": lambda s, _cache: create_vad(s),
    "asr": create_asr,  # embedded models are assembled under cache_dir
    "llm": create_llm,
    "tts": lambda s, _cache: create_tts(s, "local" if s.mixed_routes else "all"),
    "vl": lambda s, _cache: create_vl(s),
    "sd": lambda s, _cache: create_sd(s),
}
MODEL_NAMES: tuple[str, ...] = tuple(MODELS)

TTS_REMOTE = "tts_remote"  # the remote routes of a mixed TTS routing table (tts.mixed_routes)
# models that are one part of a kind's settings, held only when that part exists:
# name -> (the kind whose settings they read, factory)
PARTS: Mapping[str, tuple[str, Factory]] = {
    TTS_REMOTE: ("tts", lambda s, _cache: create_tts(s, "remote")),
}

# the kinds that can run in a model worker process (``placement="process"``): the factory the
# worker calls with the kind's settings (module-level functions: pickled by reference)
WORKER_FACTORIES: Mapping[str, Callable[[Any], ModelBackend]] = {"vl": create_vl, "sd": create_sd}
