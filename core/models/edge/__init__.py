"""Microsoft Edge read-aloud voices through the edge-tts package."""
