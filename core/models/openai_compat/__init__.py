"""OpenAI-compatible HTTP providers: chat completions, audio transcriptions, audio speech."""
