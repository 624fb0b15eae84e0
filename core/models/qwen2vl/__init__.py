"""Qwen2-VL / Qwen2.5-VL provider through transformers, from a local model folder."""
