"""espeak-ng TTS through its command line (Debian package ``espeak-ng``).

One ``espeak-ng -v VOICE --stdout`` process per sentence (text passed on stdin, so no text is
ever parsed as an option); its WAV is parsed, resampled and yielded, with ``check()`` between
sentences. Robotic but real: the Mandarin fallback when no better Chinese voice is configured.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator

import numpy as np

from core.errors import InferenceError, ModelLoadError
from core.models.audio import Resampler, parse_wav_header, to_int16
from core.models.base import CancelCheck
from core.models.tts import PcmChunk, Tts, TtsSettings, split_sentences

_PROBE_TIMEOUT_S = 10.0


class EspeakTts(Tts):
    def __init__(self, settings: TtsSettings) -> None:
        self._settings = settings
        self._binary: str | None = None

    def load(self) -> None:
        binary = shutil.which(self._settings.espeak_binary)
        if binary is None:
            raise ModelLoadError(
                f"{self._settings.espeak_binary!r} not found (apt-get install espeak-ng)"
            )
        try:
            probe = subprocess.run(
                [binary, f"--voices={self._settings.espeak_voice.split('-')[0]}"],
                capture_output=True,
                timeout=_PROBE_TIMEOUT_S,
                check=True,
            )
        except (OSError, subprocess.SubprocessError) as e:
            raise ModelLoadError(f"espeak-ng does not run: {e}") from e
        listed = probe.stdout.decode("utf-8", "replace").lower().split()
        if self._settings.espeak_voice.lower() not in listed:
            raise ModelLoadError(f"espeak-ng has no voice {self._settings.espeak_voice!r}")
        self._binary = binary

    def unload(self) -> None:
        self._binary = None

    def synthesize(
        self, text: str, *, sample_rate_hz: int, check: CancelCheck
    ) -> Iterator[PcmChunk]:
        if self._binary is None:
            raise ModelLoadError("espeak TTS used before load()")
        resampler: Resampler | None = None
        for sentence in split_sentences(text):
            check()
            samples, native_hz = self._speak(self._binary, sentence)
            if native_hz != sample_rate_hz:
                if resampler is None:
                    resampler = Resampler(native_hz, sample_rate_hz)
                out = resampler.process(samples)
            else:
                out = samples.astype(np.float32) / 32768.0
            if len(out):
                yield PcmChunk(to_int16(out), sample_rate_hz)
        if resampler is not None:
            tail = resampler.flush()
            if len(tail):
                yield PcmChunk(to_int16(tail), sample_rate_hz)

    def _speak(self, binary: str, sentence: str) -> tuple[np.ndarray, int]:
        cmd = [
            binary,
            "-v",
            self._settings.espeak_voice,
            "-s",
            str(self._settings.espeak_words_per_minute),
            "--stdout",
        ]
        try:
            done = subprocess.run(
                cmd,
                input=sentence.encode("utf-8"),
                capture_output=True,
                timeout=self._settings.espeak_timeout_s,
                check=True,
            )
        except subprocess.TimeoutExpired as e:
            raise InferenceError(f"espeak-ng took longer than {e.timeout} s", retryable=True) from e
        except subprocess.CalledProcessError as e:
            err = e.stderr.decode("utf-8", "replace").strip()
            raise InferenceError(f"espeak-ng failed ({e.returncode}): {err}") from e
        except OSError as e:
            raise InferenceError(f"espeak-ng could not start: {e}") from e
        header = parse_wav_header(done.stdout)
        if header is None:
            raise InferenceError("espeak-ng produced no audio")
        rate_hz, channels, offset = header
        pcm = done.stdout[offset:]
        pcm = pcm[: len(pcm) - len(pcm) % (2 * channels)]
        samples = np.frombuffer(pcm, dtype="<i2").reshape(-1, channels)[:, 0].astype(np.int16)
        return samples, rate_hz
