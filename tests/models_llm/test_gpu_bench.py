"""bench/gpu_bench.py: without CUDA it says so and exits 0, and its simulated-GPU soak runs
(fast); on a CUDA machine (marked ``gpu``) the torch path keeps peak VRAM under the budget."""

from __future__ import annotations

import importlib.util

import pytest

from bench import gpu_bench


def _cuda() -> bool:
    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return bool(torch.cuda.is_available())


@pytest.mark.skipif(_cuda(), reason="this machine has CUDA: the GPU test covers it")
def test_without_cuda_the_bench_says_so_and_its_simulated_soak_runs(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert (
        gpu_bench.main(["--simulate", "--seeds", "1", "--jobs", "3", "--baseline-turns", "5"]) == 0
    )
    out = capsys.readouterr().out
    assert "no CUDA device" in out and "GPU part skipped" in out
    assert "baseline, voice only: REALTIME jobs" in out
    total = next(line for line in out.splitlines() if line.startswith("TOTAL:"))
    assert "out-of-memory errors 0" in total, out


@pytest.mark.gpu
@pytest.mark.skipif(not _cuda(), reason="needs a CUDA GPU")
def test_on_cuda_peak_vram_stays_under_the_budget(capsys: pytest.CaptureFixture[str]) -> None:
    assert gpu_bench.main(["--steps", "6", "--questions", "2", "--tokens", "4"]) == 0
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if line.startswith("peak VRAM"))
    peak_mb, budget_mb = float(line.split()[2]), float(line.split()[6])
    assert peak_mb <= budget_mb, out
