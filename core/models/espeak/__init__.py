"""espeak-ng TTS through its command line: the Mandarin fallback voice cmn-latn-pinyin."""
