"""The GPT-SoVITS api_v2 client against a small stand-in server on 127.0.0.1.

The stand-in speaks the api_v2 ``POST /tts`` shape: JSON body in; with ``streaming_mode`` a WAV
header (placeholder sizes) then raw PCM chunks, flushed one by one; HTTP 400 + JSON message on
a bad request.
"""

from __future__ import annotations

import json
import struct
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from core.errors import InferenceError, JobCancelled, ModelLoadError
from core.models.base import never_cancelled
from core.models.tts import GptSovitsSettings, TtsSettings, create_tts

SERVER_HZ = 32000
TONE_HZ = 440.0
CHUNKS = 20
CHUNK_SAMPLES = 1600  # 50 ms at 32 kHz


def _streamed_wav_header(rate_hz: int) -> bytes:
    fmt = struct.pack("<HHIIHH", 1, 1, rate_hz, rate_hz * 2, 2, 16)
    return b"RIFF\xff\xff\xff\xffWAVEfmt " + struct.pack("<I", 16) + fmt + b"data\xff\xff\xff\xff"


class _StandIn(BaseHTTPRequestHandler):
    requests: list[dict[str, object]]

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append(body)  # type: ignore[attr-defined]
        if self.path != "/tts" or body.get("ref_audio_path") != "ref/speaker.wav":
            payload = json.dumps({"message": "ref_audio_path not found"}).encode()
            self.send_response(400)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        self.send_response(200)
        self.send_header("Content-Type", "audio/wav")
        self.end_headers()  # HTTP/1.0: the body ends when the connection closes
        self.wfile.write(_streamed_wav_header(SERVER_HZ))
        t = np.arange(CHUNKS * CHUNK_SAMPLES) / SERVER_HZ
        tone = (12000 * np.sin(2 * np.pi * TONE_HZ * t)).astype("<i2")
        try:
            for i in range(CHUNKS):
                self.wfile.write(tone[i * CHUNK_SAMPLES : (i + 1) * CHUNK_SAMPLES].tobytes())
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            self.server.aborted = True  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: object) -> None:
        """Keep test output quiet."""


@pytest.fixture(scope="module")
def server() -> Iterator[ThreadingHTTPServer]:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _StandIn)
    srv.requests = []  # type: ignore[attr-defined]
    srv.aborted = False  # type: ignore[attr-defined]
    thread = threading.Thread(target=srv.serve_forever, name="gptsovits-stand-in", daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    thread.join(timeout=5)
    srv.server_close()


def _settings(server: ThreadingHTTPServer, ref_audio_path: str = "ref/speaker.wav") -> TtsSettings:
    host, port = server.server_address[:2]
    g = GptSovitsSettings(
        base_url=f"http://{host!s}:{port}", ref_audio_path=ref_audio_path, prompt_text="参考"
    )
    return TtsSettings(provider="gptsovits", gptsovits=g)


def test_streams_resampled_audio(server: ThreadingHTTPServer) -> None:
    tts = create_tts(_settings(server))
    tts.load()
    chunks = list(tts.synthesize("你好。", sample_rate_hz=16000, check=never_cancelled))
    assert len(chunks) >= 2
    audio = np.concatenate([c.samples for c in chunks]).astype(np.float64)
    assert all(c.sample_rate_hz == 16000 for c in chunks)
    assert len(audio) == CHUNKS * CHUNK_SAMPLES // 2
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
    assert abs(np.argmax(spectrum) * 16000 / len(audio) - TONE_HZ) < 3
    body = server.requests[-1]  # type: ignore[attr-defined]
    assert body["text"] == "你好。" and body["ref_audio_path"] == "ref/speaker.wav"
    assert body["media_type"] == "wav" and body["streaming_mode"] is True
    assert body["prompt_text"] == "参考" and body["text_lang"] == "zh"
    tts.unload()


def test_cancel_closes_the_stream(server: ThreadingHTTPServer) -> None:
    tts = create_tts(_settings(server))
    tts.load()
    seen = 0

    def check() -> None:
        nonlocal seen
        seen += 1
        if seen > 3:
            raise JobCancelled("cancelled by test")

    got = []
    with pytest.raises(JobCancelled):
        for chunk in tts.synthesize("你好。", sample_rate_hz=24000, check=check):
            got.append(chunk)
    assert 0 < sum(len(c.samples) for c in got) < CHUNKS * CHUNK_SAMPLES * 24000 // SERVER_HZ


def test_server_error_message_reaches_the_caller(server: ThreadingHTTPServer) -> None:
    tts = create_tts(_settings(server, ref_audio_path="elsewhere.wav"))
    tts.load()
    with pytest.raises(InferenceError, match="400: ref_audio_path not found") as err:
        list(tts.synthesize("x", sample_rate_hz=16000, check=never_cancelled))
    assert not err.value.retryable


def test_unreachable_server_is_retryable(server: ThreadingHTTPServer) -> None:
    free = ThreadingHTTPServer(("127.0.0.1", 0), _StandIn)
    port = free.server_address[1]
    free.server_close()  # nothing listens there now
    g = GptSovitsSettings(base_url=f"http://127.0.0.1:{port}", ref_audio_path="r.wav")
    tts = create_tts(TtsSettings(provider="gptsovits", gptsovits=g))
    tts.load()
    with pytest.raises(InferenceError, match="unreachable") as err:
        list(tts.synthesize("x", sample_rate_hz=16000, check=never_cancelled))
    assert err.value.retryable


def test_missing_reference_audio_is_a_load_error() -> None:
    with pytest.raises(ModelLoadError, match="ref_audio_path"):
        create_tts(TtsSettings(provider="gptsovits")).load()
