"""Silero VAD run with onnxruntime from the ONNX file the silero-vad package ships."""
