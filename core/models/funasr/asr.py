"""FunASR ASR (SenseVoice, Paraformer, ...) through ``funasr.AutoModel`` from a local folder.

No weights for these ship on PyPI: the user points ``asr.model_dir`` at a downloaded model
folder (``config.yaml`` + ``model.pt`` [+ ``tokens.json``/``tokens.txt``, ``am.mvn``], or a
ModelScope ``configuration.json`` layout). The folder is checked before AutoModel sees it:
AutoModel treats a path that does not exist as a hub model name and tries to download it.

SenseVoice prefixes its text with tags such as ``<|zh|><|NEUTRAL|><|Speech|><|withitn|>``;
the language tag becomes ``Transcript.language`` and the tags are stripped from the text.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import InferenceError, ModelLoadError
from core.models.asr import Asr, AsrSettings, Transcript

_TAG = re.compile(r"<\|([^|]*)\|>")
_LANG_TAGS = {"zh", "en", "yue", "ja", "ko"}
_CONFIG_FILES = ("config.yaml", "configuration.json")


def check_model_dir(folder: Path) -> None:
    """ModelLoadError unless ``folder`` looks like a local FunASR model folder."""
    if not folder.is_dir():
        raise ModelLoadError(f"FunASR model folder does not exist: {folder}")
    if not any((folder / name).is_file() for name in _CONFIG_FILES):
        raise ModelLoadError(
            f"FunASR model folder {folder} has neither config.yaml nor configuration.json"
        )
    if (folder / "config.yaml").is_file() and not (folder / "model.pt").is_file():
        raise ModelLoadError(f"FunASR model folder {folder} has config.yaml but no model.pt")


def split_tags(raw: str) -> tuple[str, str | None]:
    """SenseVoice output without its ``<|...|>`` tags, and the language tag if present."""
    language = next((t for t in _TAG.findall(raw) if t in _LANG_TAGS), None)
    return _TAG.sub("", raw).strip(), language


class FunAsr(Asr):
    def __init__(self, settings: AsrSettings) -> None:
        if settings.model_dir is None:
            raise ModelLoadError("FunASR needs asr.model_dir: a local model folder")
        self._settings = settings
        self._folder = settings.model_dir
        self._model: Any = None

    def load(self) -> None:
        check_model_dir(self._folder)
        try:
            from funasr import AutoModel
        except ImportError as e:
            raise ModelLoadError(
                f"FunASR ASR needs the funasr extra (pip install funasr): {e}"
            ) from e
        try:
            self._model = AutoModel(
                model=str(self._folder),
                device=self._settings.device,
                ncpu=self._settings.cpu_threads,
                disable_update=True,
                disable_pbar=True,
                log_level="ERROR",
            )
        except Exception as e:  # funasr raises anything from asserts to KeyError
            raise ModelLoadError(f"cannot load FunASR model from {self._folder}: {e!r}") from e

    def unload(self) -> None:
        self._model = None

    def transcribe(self, pcm: np.ndarray, *, language: str | None = None) -> Transcript:
        if self._model is None:
            raise ModelLoadError("FunASR used before load()")
        audio = np.asarray(pcm, dtype=np.float32).reshape(-1)
        lang = language or self._settings.language
        try:
            results = self._model.generate(
                input=audio, language=lang or "auto", use_itn=True, disable_pbar=True
            )
        except Exception as e:  # funasr raises untyped errors from its models
            raise InferenceError(f"FunASR transcription failed: {e!r}") from e
        raw = "".join(str(r.get("text", "")) for r in results)
        text, tagged = split_tags(raw)
        return Transcript(
            text=text,
            language=lang or tagged or "unknown",
            audio_s=len(audio) / self.sample_rate_hz,
        )
