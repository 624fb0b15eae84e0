"""Model backends: one narrow interface per kind (vad, asr, llm, tts, vl, sd), one folder per
provider, an explicit factory per kind, and the manager that loads them under the VRAM budget."""
