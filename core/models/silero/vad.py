"""Silero VAD v5+ on onnxruntime: one shared session, per-stream recurrent state.

The ONNX file is ``data/silero_vad.onnx`` inside the installed ``silero-vad`` package, found
with importlib (importing ``silero_vad`` itself would need torch). Each 512-sample window at
16 kHz is fed with the previous 64 samples of context prepended, and the (2, 1, 128) state is
carried between calls — the same contract as the package's own torch wrapper.
``InferenceSession.run`` is thread-safe, so many streams share one session.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import InferenceError, ModelLoadError
from core.models.vad import Vad, VadModel, VadSettings

_WINDOW_SAMPLES = 512  # 32 ms at 16 kHz: the window size the model was trained on
_CONTEXT_SAMPLES = 64  # tail of the previous window the model expects in front of each window
_STATE_SHAPE = (2, 1, 128)


def silero_onnx_path() -> Path:
    """The ONNX file shipped in the silero-vad package (ModelLoadError if not installed)."""
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError("Silero VAD needs the silero-vad package (pip install --no-deps)")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "silero_vad.onnx"
    if not path.is_file():
        raise ModelLoadError(f"Silero VAD model file missing: {path}")
    return path


class SileroVad(Vad):
    frame_samples = _WINDOW_SAMPLES

    def __init__(self, session: Any) -> None:
        self._session = session
        self._sr = np.array(self.sample_rate_hz, dtype=np.int64)
        self.reset()

    def reset(self) -> None:
        self._state = np.zeros(_STATE_SHAPE, dtype=np.float32)
        self._context = np.zeros((1, _CONTEXT_SAMPLES), dtype=np.float32)

    def speech_probability(self, frame: np.ndarray) -> float:
        if frame.shape != (self.frame_samples,):
            raise ValueError(f"Silero VAD needs {self.frame_samples} samples, got {frame.shape}")
        x = frame.astype(np.float32)[None, :] / 32768.0
        window = np.concatenate([self._context, x], axis=1)
        try:
            prob, state = self._session.run(
                None, {"input": window, "state": self._state, "sr": self._sr}
            )
        except Exception as e:  # onnxruntime raises its own untyped errors
            raise InferenceError(f"Silero VAD inference failed: {e}") from e
        self._state = state
        self._context = window[:, -_CONTEXT_SAMPLES:]
        return float(prob[0, 0])


class SileroVadModel(VadModel):
    frame_samples = _WINDOW_SAMPLES

    def __init__(self, settings: VadSettings, model_path: Path | None = None) -> None:
        self._settings = settings
        self._model_path = model_path
        self._session: Any = None

    def load(self) -> None:
        path = self._model_path or silero_onnx_path()
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise ModelLoadError(f"Silero VAD needs onnxruntime: {e}") from e
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self._settings.cpu_threads
        opts.inter_op_num_threads = 1
        try:
            self._session = ort.InferenceSession(
                str(path), sess_options=opts, providers=["CPUExecutionProvider"]
            )
        except Exception as e:  # onnxruntime raises its own untyped errors
            raise ModelLoadError(f"cannot load Silero VAD from {path}: {e}") from e

    def unload(self) -> None:
        self._session = None

    def new_stream(self) -> Vad:
        if self._session is None:
            raise ModelLoadError("Silero VAD used before load()")
        return SileroVad(self._session)
