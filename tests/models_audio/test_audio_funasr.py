"""FunASR through the real ``funasr.AutoModel`` path, offline.

No FunASR weights ship on PyPI, so the fixture builds a tiny Paraformer folder the way a
downloaded one looks (``config.yaml``, ``tokens.txt``, ``model.pt``): the config is
``data/tiny_paraformer.yaml``; ``model.pt`` is made by letting AutoModel initialise the network
randomly from an empty checkpoint once and saving its full state dict. The tests then load that
folder exactly as a user's SenseVoice/Paraformer folder would be loaded.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from core.errors import ModelLoadError
from core.models.asr import AsrSettings, create_asr
from core.models.funasr.asr import FunAsr

pytestmark = pytest.mark.slow

torch = pytest.importorskip("torch")
pytest.importorskip("funasr")

TOKENS = ["<blank>", "<s>", "</s>", "你", "好", "天", "气", "<unk>"]


def _folder(root: Path) -> Path:
    root.mkdir()
    shutil.copyfile(Path(__file__).parent / "data" / "tiny_paraformer.yaml", root / "config.yaml")
    (root / "tokens.txt").write_text("\n".join(TOKENS) + "\n", encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def paraformer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = _folder(tmp_path_factory.mktemp("funasr") / "tiny-paraformer")
    torch.save({}, folder / "model.pt")
    seed = FunAsr(AsrSettings(provider="funasr", model_dir=folder, cpu_threads=1))
    seed.load()
    torch.save(seed._model.model.state_dict(), folder / "model.pt")
    return folder


def test_tiny_paraformer_loads_and_transcribes(paraformer_dir: Path) -> None:
    asr = create_asr(
        AsrSettings(provider="funasr", model_dir=paraformer_dir, cpu_threads=1, language="zh"),
        cache_dir=paraformer_dir,
    )
    asr.load()
    pcm = np.random.default_rng(0).normal(0, 0.1, 16000).astype(np.float32)
    result = asr.transcribe(pcm)
    assert result.language == "zh"
    assert result.audio_s == pytest.approx(1.0)
    assert set(result.text) <= set("".join(TOKENS[3:7]))  # random weights: any in-vocab text
    asr.unload()
    with pytest.raises(ModelLoadError):
        asr.transcribe(pcm)


def test_corrupt_checkpoint_is_a_model_load_error(tmp_path: Path) -> None:
    folder = _folder(tmp_path / "corrupt")
    (folder / "model.pt").write_bytes(b"\x00not a torch checkpoint")
    with pytest.raises(ModelLoadError, match="cannot load FunASR model"):
        FunAsr(AsrSettings(provider="funasr", model_dir=folder)).load()


def test_config_without_weights_is_refused_before_automodel(tmp_path: Path) -> None:
    folder = _folder(tmp_path / "no-weights")
    with pytest.raises(ModelLoadError, match=r"no model\.pt"):
        FunAsr(AsrSettings(provider="funasr", model_dir=folder)).load()
