"""Tiny random-weight Qwen2-VL and Stable Diffusion folders, built through the real libraries.

No VL or SD weights ship on PyPI, so tests and benchmarks build structurally faithful tiny
models from configs: a locally trained byte-level BPE tokenizer and the PIL image processor for
Qwen2-VL (``mrope_section`` sums to half the head dim), and a small UNet, VAE, CLIP text model,
local byte-level CLIP tokenizer and Euler scheduler for SD. They are saved with
``save_pretrained`` and then loaded by the product backends exactly like real model folders.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any


def _lib(name: str) -> Any:
    """The libraries' own typing is partial; the builders treat them as untyped."""
    return importlib.import_module(name)


VL_SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
_CORPUS = (
    "What is in this picture? A red square on a white background.",
    "Describe the image. There is a small cat sitting on a blue chair.",
    "system user assistant You are a helpful assistant.",
)


def build_tiny_qwen2vl(out_dir: Path, *, seed: int = 0, v2_5: bool = False) -> Path:
    """Qwen2-VL, or Qwen2.5-VL (windowed vision attention) with ``v2_5``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    torch, transformers = _lib("torch"), _lib("transformers")
    image_processing = _lib("transformers.models.qwen2_vl.image_processing_pil_qwen2_vl")

    out_dir.mkdir(parents=True, exist_ok=True)
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=list(VL_SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(list(_CORPUS) * 10, trainer)
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>"
    )
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in VL_SPECIAL_TOKENS}
    head_dim = 64 // 4
    vision: dict[str, Any] = {
        "depth": 2,
        "embed_dim": 32,
        "hidden_size": 64,
        "num_heads": 2,
        "mlp_ratio": 2,
        "in_channels": 3,
        "patch_size": 14,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
    }
    if v2_5:
        vision = {
            **{k: vision[k] for k in ("depth", "num_heads", "in_channels", "patch_size")},
            **{k: vision[k] for k in ("spatial_merge_size", "temporal_patch_size")},
            "hidden_size": 32,
            "intermediate_size": 64,
            "out_hidden_size": 64,  # the language model's hidden size
            "window_size": 56,
            "fullatt_block_indexes": [1],
        }
    config_cls = transformers.Qwen2_5_VLConfig if v2_5 else transformers.Qwen2VLConfig
    model_cls = (
        transformers.Qwen2_5_VLForConditionalGeneration
        if v2_5
        else transformers.Qwen2VLForConditionalGeneration
    )
    config = config_cls(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 1024,
            # multimodal rope: temporal/height/width sections must sum to head_dim / 2
            "rope_parameters": {
                "rope_type": "default",
                "mrope_section": [2, 3, head_dim // 2 - 5],
                "rope_theta": 10000.0,
            },
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
            "bos_token_id": ids["<|endoftext|>"],
        },
        vision_config=vision,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    torch.manual_seed(seed)
    model = model_cls(config).eval()
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    image_processing.Qwen2VLImageProcessorPil(
        min_pixels=28 * 28 * 4, max_pixels=28 * 28 * 16, patch_size=14, merge_size=2
    ).save_pretrained(out_dir)
    return out_dir


def build_tiny_sd(out_dir: Path, *, seed: int = 0) -> Path:
    from tokenizers import pre_tokenizers

    torch, diffusers, transformers = _lib("torch"), _lib("diffusers"), _lib("transformers")

    out_dir.mkdir(parents=True, exist_ok=True)
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = [*alphabet, *(c + "</w>" for c in alphabet), "<|startoftext|>", "<|endoftext|>"]
    tokenizer = transformers.CLIPTokenizer(
        vocab={token: i for i, token in enumerate(vocab)}, merges=[], model_max_length=32
    )
    torch.manual_seed(seed)
    text_encoder = transformers.CLIPTextModel(
        transformers.CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=32,
            projection_dim=32,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    unet = diffusers.UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(32, 64),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=32,
    )
    vae = diffusers.AutoencoderKL(
        in_channels=3,
        out_channels=3,
        # four blocks, as in SD 1.5: the VAE downsamples by 8 (64x64 px -> 8x8 latents)
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(32, 32, 32, 32),
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=32,
        sample_size=64,
    )
    scheduler = diffusers.EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        num_train_timesteps=1000,
        steps_offset=1,
    )
    pipe = diffusers.StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(out_dir)
    return out_dir
