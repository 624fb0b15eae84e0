"""Stable Diffusion 1.5 provider through diffusers, from a local model folder."""
