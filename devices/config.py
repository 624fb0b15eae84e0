"""Hub settings: ``core.settings.DeviceSettings`` plus the voice-pipeline knobs it lacks so far.

The extra fields are defaults computed here until the lead adds them to DeviceSettings; the hub
accepts either class (:func:`hub_settings`).
"""

from __future__ import annotations

from pydantic import Field

from core.settings import DeviceSettings


class HubSettings(DeviceSettings):
    hello_timeout_s: float = Field(10.0, gt=0, description="the device must say hello within this")
    close_timeout_s: float = Field(
        5.0, ge=0, description="shutdown: time for turns and sockets to end"
    )
    downlink_sample_rate_hz: int = Field(
        24_000, description="TTS audio sent to devices: 16000 or 24000"
    )
    frame_ms: int = Field(
        60, description="Opus frame duration both ways (firmware OPUS_FRAME_DURATION_MS)"
    )
    lead_ms: int = Field(
        300, ge=0, le=2000, description="audio burst ahead of playback (device buffer 2.4 s)"
    )
    vad_threshold: float = Field(0.5, ge=0, le=1)
    min_speech_ms: int = Field(200, ge=0, description="speech this long starts an utterance")
    min_silence_ms: int = Field(
        500, ge=0, description="silence this long ends an utterance (auto mode)"
    )
    preroll_ms: int = Field(300, ge=0, description="audio kept before the detected start")
    max_utterance_s: float = Field(30.0, gt=0)
    max_exchanges: int = Field(6, ge=0, description="conversation memory per device")
    max_reply_tokens: int | None = Field(96, ge=1, description="None: the model's default")
    language: str | None = Field(None, description="ASR language; None: detect")
    firmware_version: str = Field("0.0.0", description="OTA: the newest firmware offered")
    firmware_url: str = Field("", description="OTA: where to download it (empty: no update)")


def hub_settings(settings: DeviceSettings) -> HubSettings:
    if isinstance(settings, HubSettings):
        return settings
    return HubSettings.model_validate(dict(settings))
