"""Tiny random-weight Qwen2-VL and Stable Diffusion folders through the real backends."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from core.errors import InferenceError, JobCancelled, ModelLoadError, ModelNotConfigured
from core.models.base import never_cancelled
from core.models.diffusers_sd.sd import DiffusersSd
from core.models.qwen2vl.vl import Qwen2Vl
from core.models.sd import DrawRequest, SdSettings, create_sd
from core.models.vl import VlSettings, create_vl

pytestmark = [
    pytest.mark.slow,
    # diffusers' Euler scheduler calls np.array() on a torch tensor (numpy 2 deprecation)
    pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword"),
]


def png(width: int, height: int, color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def vl(tiny_vl_dir: Path) -> Iterator[Qwen2Vl]:
    backend = create_vl(VlSettings(model_dir=tiny_vl_dir, max_tokens=12))
    assert isinstance(backend, Qwen2Vl)
    backend.load()
    yield backend
    backend.unload()


@pytest.fixture(scope="module")
def sd(tiny_sd_dir: Path) -> Iterator[DiffusersSd]:
    backend = create_sd(SdSettings(model_dir=tiny_sd_dir))
    assert isinstance(backend, DiffusersSd)
    backend.load()
    yield backend
    backend.unload()


def test_vl_answers_about_an_image(vl: Qwen2Vl) -> None:
    answer = vl.answer(
        png(64, 48), "What is in this picture?", max_tokens=12, check=never_cancelled
    )
    assert isinstance(answer, str) and answer  # random weights: text, not sense


def test_qwen25_vl_answers_too(tiny_vl25_dir: Path) -> None:
    assert json.loads((tiny_vl25_dir / "config.json").read_text())["model_type"] == "qwen2_5_vl"
    backend = create_vl(VlSettings(model_dir=tiny_vl25_dir))
    backend.load()
    answer = backend.answer(png(64, 48), "What is this?", max_tokens=6, check=never_cancelled)
    backend.unload()
    assert isinstance(answer, str) and answer


def test_vl_checks_before_every_token(vl: Qwen2Vl) -> None:
    calls = 0

    def check() -> None:
        nonlocal calls
        calls += 1
        if calls == 4:
            raise JobCancelled("stop")

    with pytest.raises(JobCancelled):
        vl.answer(png(32, 32), "Describe the image.", max_tokens=50, check=check)
    assert calls == 4


def test_vl_rejects_bad_image(vl: Qwen2Vl) -> None:
    with pytest.raises(InferenceError, match="image"):
        vl.answer(b"not an image", "what?", max_tokens=4, check=never_cancelled)


def test_vl_load_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelNotConfigured):
        create_vl(VlSettings())
    with pytest.raises(ModelLoadError, match=r"config\.json"):
        create_vl(VlSettings(model_dir=tmp_path)).load()
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(ModelLoadError, match="not Qwen2-VL"):
        create_vl(VlSettings(model_dir=tmp_path)).load()


@pytest.mark.parametrize(("width", "height"), [(64, 48), (60, 44)])
def test_sd_returns_png_of_requested_size(sd: DiffusersSd, width: int, height: int) -> None:
    request = DrawRequest("a red cat", width=width, height=height, steps=2, seed=1)
    data = sd.generate(request, check=never_cancelled)
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    image = Image.open(io.BytesIO(data))
    assert image.size == (width, height) and image.format == "PNG"


def test_sd_cancel_stops_within_one_step(sd: DiffusersSd) -> None:
    steps_seen = 0

    def check() -> None:
        nonlocal steps_seen
        steps_seen += 1
        if steps_seen == 3:  # 1 before the pipeline, then one per finished step
            raise JobCancelled("stop")

    with pytest.raises(JobCancelled):
        sd.generate(DrawRequest("a dog", width=32, height=32, steps=20, seed=2), check=check)
    assert steps_seen == 3  # step 2 ended, no further step ran


def test_sd_rejects_bad_requests(sd: DiffusersSd, tmp_path: Path) -> None:
    with pytest.raises(InferenceError, match="size"):
        sd.generate(DrawRequest("x", width=4096, height=64), check=never_cancelled)
    with pytest.raises(InferenceError, match="steps"):
        sd.generate(DrawRequest("x", width=64, height=64, steps=0), check=never_cancelled)
    with pytest.raises(ModelLoadError, match=r"model_index\.json"):
        create_sd(SdSettings(model_dir=tmp_path)).load()


def test_sd_offloaded_while_paused_then_restored_draws_the_same_image(sd: DiffusersSd) -> None:
    """The manager offloads a paused drawing's pipeline and restores it before the step goes
    on (here on the CPU, where the move is to the same device: the path, not the copy)."""
    request = DrawRequest("a red cat", width=32, height=32, steps=3, seed=5)
    plain = sd.generate(request, check=never_cancelled)
    calls = 0

    def pause_at_step_two() -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            sd.offload()
            assert sd._pipe.device.type == "cpu"
            sd.restore()

    assert sd.generate(request, check=pause_at_step_two) == plain and calls >= 2


def test_vl_offloaded_while_paused_then_restored_answers_the_same(vl: Qwen2Vl) -> None:
    plain = vl.answer(png(64, 64), "what colour?", max_tokens=6, check=never_cancelled)
    calls = 0

    def pause_at_token_three() -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            vl.offload()
            vl.restore()

    again = vl.answer(png(64, 64), "what colour?", max_tokens=6, check=pause_at_token_three)
    assert again == plain and calls >= 3
