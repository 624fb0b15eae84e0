"""Client of a GPT-SoVITS api_v2 server (POST /tts, streamed WAV)."""
