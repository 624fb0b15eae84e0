"""FunASR (SenseVoice / Paraformer) ASR from a user-supplied local model folder."""
