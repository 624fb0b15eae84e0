"""Ollama's native HTTP API (/api/chat, NDJSON streaming)."""
