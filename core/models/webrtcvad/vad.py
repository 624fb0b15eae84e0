"""webrtcvad as a :class:`VadModel`: nothing to load but the module; each stream owns a
``webrtcvad.Vad`` (its own smoothing state). Probabilities are 0.0 or 1.0."""

from __future__ import annotations

from typing import Any

import numpy as np

from core.errors import ModelLoadError
from core.models.vad import Vad, VadModel, VadSettings

_FRAME_SAMPLES = 480  # 30 ms at 16 kHz (webrtcvad accepts 10, 20 or 30 ms)


class WebrtcVad(Vad):
    frame_samples = _FRAME_SAMPLES

    def __init__(self, module: Any, aggressiveness: int) -> None:
        self._module = module
        self._aggressiveness = aggressiveness
        self._vad = module.Vad(aggressiveness)

    def speech_probability(self, frame: np.ndarray) -> float:
        if frame.shape != (self.frame_samples,):
            raise ValueError(f"webrtc VAD needs {self.frame_samples} samples, got {frame.shape}")
        pcm = np.asarray(frame, dtype="<i2").tobytes()
        return 1.0 if self._vad.is_speech(pcm, self.sample_rate_hz) else 0.0

    def reset(self) -> None:
        self._vad = self._module.Vad(self._aggressiveness)


class WebrtcVadModel(VadModel):
    frame_samples = _FRAME_SAMPLES

    def __init__(self, settings: VadSettings) -> None:
        self._settings = settings
        self._module: Any = None

    def load(self) -> None:
        try:
            import webrtcvad
        except ImportError as e:
            raise ModelLoadError(f"webrtc VAD needs the webrtcvad-wheels package: {e}") from e
        self._module = webrtcvad

    def unload(self) -> None:
        self._module = None

    def new_stream(self) -> Vad:
        if self._module is None:
            raise ModelLoadError("webrtc VAD used before load()")
        return WebrtcVad(self._module, self._settings.webrtc_aggressiveness)
