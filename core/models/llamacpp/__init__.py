"""llama.cpp provider (llama-cpp-python): local GGUF chat models."""
