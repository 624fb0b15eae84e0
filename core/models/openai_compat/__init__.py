"""OpenAI-compatible HTTP provider: /v1/chat/completions of Ollama, vLLM and friends."""
