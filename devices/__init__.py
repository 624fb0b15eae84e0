"""The xiaozhi ESP32 device hub: WebSocket protocol, per-device voice pipeline, simulator.

Layout (one concept per module): ``protocol`` (wire messages and binary framing), ``session``
(the lifecycle enum), ``codec`` (Opus), ``endpointer``/``listener`` (VAD endpointing),
``segmenter`` (sentences), ``memory`` (conversation), ``pacer`` (paced audio sender), ``turn``
(one ASR → LLM → TTS reply), ``pipeline`` (a device's voice loop), ``connection`` (one socket),
``hub`` (the router and the directory of devices), ``simulator`` (a firmware-like client).
"""
