"""GPU bench: VRAM residency, offload and REALTIME preemption on a real CUDA card.

    python -m bench.gpu_bench                      # CUDA: SD 1.5-shaped UNet + Qwen2-VL-2B-shaped
    python -m bench.gpu_bench --sd-unet DIR        #   model (random weights from configs), or real
    python -m bench.gpu_bench --vl-dir DIR         #   weights when given
    python -m bench.gpu_bench --simulate           # no CUDA: the simulated-GPU soak (CPU only)
    python -m bench.gpu_bench --device cpu --tiny  # the torch path on CPU with tiny models (smoke)

On CUDA the VRAM budget (``scheduler.resources["vram:0"]``) is set below the card
(``--budget-fraction`` of ``mem_get_info`` total) and the real scheduler + model manager run
two backends: a drawing (the UNet's denoising steps, classifier-free guidance batch of 2,
64x64 latents) in the BACKGROUND lane and vision questions (Qwen2-VL decode steps with a KV
cache, text-only prompt) in the REALTIME lane. It prints: load, offload and restore times of
each model; peak VRAM (torch max_memory_allocated) vs the budget; the REALTIME wait for
compute, alone and while the drawing runs, in ms and in SD steps (side by side, as a ratio).

A 7B-shaped GGUF is not built here (writing ~4 GB of random GGUF tensors is not cheap); run
the llama.cpp backend with a real ``--gguf`` file on the CUDA machine instead (not wired in
this bench yet). Without CUDA the bench says so and exits 0; ``--simulate`` then runs the
simulated-GPU soak of ``bench/gpu_sim.py`` (jobs, out-of-memory errors, REALTIME wait in SD
steps), with the voice-only run beside it as the baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.models.base import CancelCheck
from core.models.sd import DrawRequest, ImageGenerator
from core.models.vl import VisionLanguage

SD15_UNET: dict[str, Any] = {  # runwayml/stable-diffusion-v1-5 unet/config.json
    "sample_size": 64,
    "in_channels": 4,
    "out_channels": 4,
    "block_out_channels": (320, 640, 1280, 1280),
    "layers_per_block": 2,
    "cross_attention_dim": 768,
    "attention_head_dim": 8,
    "down_block_types": (
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "DownBlock2D",
    ),
    "up_block_types": (
        "UpBlock2D",
        "CrossAttnUpBlock2D",
        "CrossAttnUpBlock2D",
        "CrossAttnUpBlock2D",
    ),
}
TINY_UNET: dict[str, Any] = {
    "sample_size": 8,
    "in_channels": 4,
    "out_channels": 4,
    "block_out_channels": (32, 64),
    "layers_per_block": 1,
    "cross_attention_dim": 32,
    "attention_head_dim": 4,
    "norm_num_groups": 16,
    "down_block_types": ("CrossAttnDownBlock2D", "DownBlock2D"),
    "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D"),
}
QWEN2VL_2B_TEXT: dict[str, Any] = {  # Qwen/Qwen2-VL-2B-Instruct config.json (text part)
    "vocab_size": 151936,
    "hidden_size": 1536,
    "intermediate_size": 8960,
    "num_hidden_layers": 28,
    "num_attention_heads": 12,
    "num_key_value_heads": 2,
    "max_position_embeddings": 32768,
    "rope_parameters": {"rope_type": "default", "mrope_section": [16, 24, 24], "rope_theta": 1e6},
    "tie_word_embeddings": True,
}
QWEN2VL_2B_VISION: dict[str, Any] = {
    "depth": 32,
    "embed_dim": 1280,
    "hidden_size": 1536,
    "num_heads": 16,
    "mlp_ratio": 4,
    "in_channels": 3,
    "patch_size": 14,
    "spatial_merge_size": 2,
    "temporal_patch_size": 2,
}
TINY_TEXT: dict[str, Any] = {
    "vocab_size": 512,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 1024,
    "rope_parameters": {"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 1e4},
}
TINY_VISION: dict[str, Any] = {**QWEN2VL_2B_VISION, "depth": 1, "embed_dim": 32, "hidden_size": 64}
TINY_VISION["num_heads"] = 2


@dataclass(slots=True)
class Timings:
    load_s: list[float] = field(default_factory=list)
    offload_s: list[float] = field(default_factory=list)
    restore_s: list[float] = field(default_factory=list)
    step_s: list[float] = field(default_factory=list)


class TorchUnetSd(ImageGenerator):
    """The UNet's denoising steps (random weights from the SD 1.5 config, or a real unet/)."""

    offloadable = True

    def __init__(self, device: str, tiny: bool, unet_dir: Path | None) -> None:
        self._device, self._tiny, self._dir = device, tiny, unet_dir
        self._unet: Any = None
        self.timings = Timings()

    def load(self) -> None:
        import torch
        from diffusers import UNet2DConditionModel

        started = time.perf_counter()
        dtype = torch.float16 if self._device.startswith("cuda") else torch.float32
        if self._dir is not None:
            unet = UNet2DConditionModel.from_pretrained(self._dir, torch_dtype=dtype)
        else:
            torch.manual_seed(0)
            unet = UNet2DConditionModel(**(TINY_UNET if self._tiny else SD15_UNET)).to(dtype)
        self._unet = unet.to(self._device).eval()
        _sync(self._device)
        self.timings.load_s.append(time.perf_counter() - started)

    def unload(self) -> None:
        self._unet = None

    def offload(self) -> None:
        started = time.perf_counter()
        self._unet.to("cpu")
        self.timings.offload_s.append(time.perf_counter() - started)

    def restore(self) -> None:
        started = time.perf_counter()
        self._unet.to(self._device)
        _sync(self._device)
        self.timings.restore_s.append(time.perf_counter() - started)

    def generate(self, request: DrawRequest, *, check: CancelCheck) -> bytes:
        import torch

        unet = self._unet
        side = unet.config.sample_size
        dtype = unet.dtype
        latents = torch.randn(2, 4, side, side, device=self._device, dtype=dtype)
        text = torch.randn(2, 77, unet.config.cross_attention_dim, device=self._device, dtype=dtype)
        for step in range(request.steps):
            check()  # preempted: pauses here; the manager may offload the UNet meanwhile
            started = time.perf_counter()
            with torch.inference_mode():
                noise = self._unet(latents, 999 - step * 40, encoder_hidden_states=text).sample
                latents = latents - 0.01 * noise
            _sync(self._device)
            self.timings.step_s.append(time.perf_counter() - started)
        return b"latents"


class TorchQwen2Vl(VisionLanguage):
    """Qwen2-VL decode steps with a KV cache (text-only prompt of ``prompt_tokens``)."""

    pause_keeps_model = False
    offloadable = True

    def __init__(
        self, device: str, tiny: bool, vl_dir: Path | None, prompt_tokens: int = 256
    ) -> None:
        self._device, self._tiny, self._dir = device, tiny, vl_dir
        self._prompt_tokens = prompt_tokens
        self._model: Any = None
        self.timings = Timings()

    def load(self) -> None:
        import torch
        import transformers

        started = time.perf_counter()
        dtype = torch.float16 if self._device.startswith("cuda") else torch.float32
        if self._dir is not None:
            model = transformers.Qwen2VLForConditionalGeneration.from_pretrained(
                self._dir, dtype=dtype, local_files_only=True
            )
        else:
            text = TINY_TEXT if self._tiny else QWEN2VL_2B_TEXT
            config = transformers.Qwen2VLConfig(
                text_config={**text, "bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 0},
                vision_config=TINY_VISION if self._tiny else QWEN2VL_2B_VISION,
            )
            torch.manual_seed(0)
            model = transformers.Qwen2VLForConditionalGeneration(config).to(dtype)
        self._model = model.to(self._device).eval()
        _sync(self._device)
        self.timings.load_s.append(time.perf_counter() - started)

    def unload(self) -> None:
        self._model = None

    def offload(self) -> None:
        started = time.perf_counter()
        self._model.to("cpu")
        self.timings.offload_s.append(time.perf_counter() - started)

    def restore(self) -> None:
        started = time.perf_counter()
        self._model.to(self._device)
        _sync(self._device)
        self.timings.restore_s.append(time.perf_counter() - started)

    def answer(
        self,
        image: bytes,
        question: str,
        *,
        max_tokens: int,
        check: CancelCheck,
        emit: Any = None,
    ) -> str:
        import torch

        model = self._model
        vocab = model.config.text_config.vocab_size
        ids = torch.randint(0, vocab, (1, self._prompt_tokens), device=self._device)
        with torch.inference_mode():
            out = model(input_ids=ids, use_cache=True)
            for _ in range(max_tokens):
                check()
                started = time.perf_counter()
                nxt = out.logits[:, -1:].argmax(-1)
                out = model(input_ids=nxt, cache=out["cache"], use_cache=True)
                _sync(self._device)
                self.timings.step_s.append(time.perf_counter() - started)
        return "ok"


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def _pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run_torch(args: argparse.Namespace) -> dict[str, Any]:
    """The real scheduler + manager with the two torch backends; returns the figures."""
    from core.models.inference import Inference
    from core.models.manager import ModelManager
    from core.models.sd import SdSettings
    from core.models.settings import ModelsSettings
    from core.models.vl import VlSettings
    from core.scheduler import Lane, Scheduler, SchedulerSettings

    device = args.device
    cuda = device.startswith("cuda")
    resources: dict[str, int] = {"cpu": 2}
    budget_mb = 0
    card_mb = 0
    if cuda:
        import torch

        _free, total = torch.cuda.mem_get_info(int(device.split(":")[1]))
        card_mb = int(total // 2**20)
        budget_mb = args.budget_mb or int(card_mb * args.budget_fraction)
        resources["vram:0"] = budget_mb
        torch.cuda.reset_peak_memory_stats()
    sched = Scheduler(SchedulerSettings(resources=resources, thread_workers=8, prewarm=False))
    await sched.start()
    sd = TorchUnetSd(device, args.tiny, args.sd_unet)
    vl = TorchQwen2Vl(device, args.tiny, args.vl_dir)
    unused = Path("unused")
    settings = ModelsSettings(
        vl=VlSettings(device=device, footprint_mb=args.vl_mb, model_dir=unused, placement="inline"),
        sd=SdSettings(device=device, footprint_mb=args.sd_mb, model_dir=unused, placement="inline"),
        working_mb={"vl": args.vl_working_mb, "sd": args.sd_working_mb},
        warm_start=False,
        default_idle_unload_s=0.0,
    )
    manager = ModelManager(
        settings, sched, unused, factories={"sd": lambda _s, _c: sd, "vl": lambda _s, _c: vl}
    )
    inference = Inference(sched, manager, settings)
    tokens = args.tokens

    async def ask() -> float:
        await inference.see(b"", "这是什么", owner="device:bench", lane=Lane.REALTIME)
        job = sched.jobs(kind="vl", limit=1)[0]
        return float(str(job["wait_s"]))

    settings.vl.max_tokens = tokens
    try:
        await manager.load("vl")
        await manager.load("sd")
        await ask()  # warm-up
        alone = [await ask() for _ in range(args.questions)]
        draw = inference.draw(DrawRequest("一只猫", steps=args.steps), owner="qq:bench")
        during: list[float] = []
        while not draw.done():
            during.append(await ask())
            await asyncio.sleep(args.gap_s)
        await draw.result()
        sd_step = statistics.median(sd.timings.step_s) if sd.timings.step_s else 0.0
        figures: dict[str, Any] = {
            "device": device,
            "card_mb": card_mb,
            "budget_mb": budget_mb,
            "sd_step_ms": sd_step * 1000,
            "vl_token_ms": statistics.median(vl.timings.step_s) * 1000,
            "realtime_wait_alone_ms": (_pct(alone, 0.5) * 1000, max(alone) * 1000),
            "realtime_wait_during_sd_ms": (
                (_pct(during, 0.5) * 1000, max(during) * 1000) if during else (0.0, 0.0)
            ),
            "realtime_wait_max_sd_steps": (max(during) / sd_step) if during and sd_step else 0.0,
            "questions_during_sd": len(during),
            "load_s": {"sd": sd.timings.load_s, "vl": vl.timings.load_s},
            "offload_s": {"sd": sd.timings.offload_s, "vl": vl.timings.offload_s},
            "restore_s": {"sd": sd.timings.restore_s, "vl": vl.timings.restore_s},
            "vram": manager.vram(),
        }
        if cuda:
            import torch

            figures["peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
            started = time.perf_counter()
            sd.offload()
            sd.restore()
            figures["explicit_offload_restore_s"] = time.perf_counter() - started
        return figures
    finally:
        await manager.close()
        await sched.stop()


def print_torch(figures: dict[str, Any]) -> None:
    card, budget = figures["card_mb"], figures["budget_mb"]
    print(f"device {figures['device']}: card {card} MB, budget {budget} MB")
    if "peak_mb" in figures:
        print(f"peak VRAM {figures['peak_mb']:.0f} MB vs budget {figures['budget_mb']} MB")
    print(f"SD step {figures['sd_step_ms']:.1f} ms, VL token {figures['vl_token_ms']:.1f} ms")
    alone, during = figures["realtime_wait_alone_ms"], figures["realtime_wait_during_sd_ms"]
    print(
        f"REALTIME wait for compute: alone p50 {alone[0]:.2f} ms max {alone[1]:.2f} ms; while SD"
        f" runs p50 {during[0]:.2f} ms max {during[1]:.2f} ms"
        f" = {figures['realtime_wait_max_sd_steps']:.2f} SD steps"
        f" ({figures['questions_during_sd']} questions)"
    )
    for key in ("load_s", "offload_s", "restore_s"):
        rows = ", ".join(
            f"{name} {', '.join(f'{v:.3f}' for v in values) or '-'}"
            for name, values in figures[key].items()
        )
        print(f"{key}: {rows}")
    row = figures["vram"].get(figures["device"])
    if row is not None:
        print(
            f"residency plan: peak {row['peak_mb']} MB, loads {row['loads']},"
            f" evictions {row['evictions']}, offloads {row['offloads']}"
        )


# the soak's configurations, side by side in one run: (label, soak keyword arguments)
SIM_CONFIGS: tuple[tuple[str, dict[str, object]], ...] = (
    ("before: grace 2, realtime_next_step off", {"realtime_next_step": False}),
    ("grace 0, realtime_next_step off", {"realtime_next_step": False, "preempt_grace_steps": 0}),
    ("default: grace 2, realtime_next_step on", {}),
    ("default, VL+SD in workers", {"placement": "process"}),
)


async def run_simulated(seeds: int, jobs: int, baseline_turns: int = 20) -> list[str]:
    """The simulated-GPU soak, with the voice-only run (no chats/see/draw) as the baseline,
    in each configuration of :data:`SIM_CONFIGS` (the same seeds), and a summary: the longest
    REALTIME wait in SD steps (nominal and of the longest step that really ran) per config."""
    from bench.gpu_sim import soak

    lines: list[str] = []
    baseline = await soak(0, jobs=0, min_turns=baseline_turns)
    lines.append("baseline, voice only: " + baseline.lines()[1])
    summary: dict[str, list[tuple[float, float, float, int, int]]] = {}
    for seed in range(1, seeds + 1):
        for label, kwargs in SIM_CONFIGS:
            report = await soak(seed, jobs=jobs, **kwargs)  # type: ignore[arg-type]
            lines.append(f"seed {seed}, {label}:")
            lines.extend("  " + line for line in report.lines())
            summary.setdefault(label, []).append(
                (
                    report.realtime_wait_max_steps,
                    report.realtime_wait_max_measured_steps,
                    report.realtime_within_one_step,
                    report.jobs,
                    report.out_of_memory,
                )
            )
    rows = [r for runs in summary.values() for r in runs]
    default = summary.get(SIM_CONFIGS[2][0], [])
    lines.append(
        f"TOTAL: {sum(r[3] for r in rows)} jobs, out-of-memory errors {sum(r[4] for r in rows)},"
        f" longest REALTIME wait with the default settings"
        f" {max((r[0] for r in default), default=0.0):.2f} SD steps"
        f" ({max((r[1] for r in default), default=0.0):.2f} of the longest step that ran)"
    )
    lines.append("SUMMARY (same seeds): longest REALTIME wait, in SD steps nominal / of the")
    lines.append("longest step that ran; worst share within one SD step (+10 ms); jobs; OOM")
    for label, rows in summary.items():
        lines.append(
            f"  {label:42s} {max(r[0] for r in rows):5.2f} / {max(r[1] for r in rows):4.2f}"
            f"  {min(r[2] for r in rows):6.1%}  {sum(r[3] for r in rows):5d}"
            f"  {sum(r[4] for r in rows)}"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda:0")
    parser.add_argument("--tiny", action="store_true", help="tiny configs (a smoke run)")
    parser.add_argument("--sd-unet", type=Path, help="a real SD 1.5 unet/ folder")
    parser.add_argument("--vl-dir", type=Path, help="a real Qwen2-VL folder")
    parser.add_argument("--budget-mb", type=int, default=0)
    parser.add_argument("--budget-fraction", type=float, default=0.85)
    parser.add_argument("--sd-mb", type=int, default=1800, help="declared UNet footprint")
    parser.add_argument("--vl-mb", type=int, default=4500, help="declared VL footprint")
    parser.add_argument("--sd-working-mb", type=int, default=1200)
    parser.add_argument("--vl-working-mb", type=int, default=600)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--tokens", type=int, default=8)
    parser.add_argument("--questions", type=int, default=5)
    parser.add_argument("--gap-s", type=float, default=0.05)
    parser.add_argument("--simulate", action="store_true", help="run the simulated-GPU soak")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=40)
    parser.add_argument("--baseline-turns", type=int, default=20, help="voice-only turns")
    args = parser.parse_args(argv)
    if args.simulate:
        print("simulated GPU (bench/gpu_sim.py: real scheduler + manager, stand-in backends)")
        for line in asyncio.run(run_simulated(args.seeds, args.jobs, args.baseline_turns)):
            print(line)
    if args.device.startswith("cuda"):
        try:
            import torch
        except ImportError:
            print("gpu_bench: torch is not installed: GPU part skipped")
            return 0
        if not torch.cuda.is_available():
            print(
                "gpu_bench: no CUDA device (torch.cuda.is_available() is False): GPU part skipped"
                + ("" if args.simulate else "; --simulate runs the simulated-GPU soak")
            )
            return 0
    print_torch(asyncio.run(run_torch(args)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
