"""Speech recognition through an OpenAI-compatible ``POST /v1/audio/transcriptions``.

The utterance is uploaded as a 16 kHz mono 16-bit WAV in a multipart form (``file``, ``model``,
``response_format``, and ``language``/``prompt`` when known), as the OpenAI audio API,
faster-whisper-server, whisper.cpp's server and SenseVoice API servers accept it. The answer is
``{"text": …}`` (``json``), ``{"text": …, "language": "chinese"}`` (``verbose_json``) or the
bare text (``text``). When the server names no language, it is taken from the script of the
text (any hanzi: ``zh``), so TTS routing by language still works.
"""

from __future__ import annotations

import re

import httpx
import numpy as np

from core.errors import InferenceError, ModelLoadError
from core.models.asr import AsrSettings, RemoteAsr, Transcript
from core.models.audio import wav_bytes
from core.models.base import never_cancelled
from core.models.remote import (
    RemoteBackend,
    RetryPolicy,
    StatusFailure,
    bearer,
    call_with_retries,
)

SERVICE = "ASR server"
_HANZI = re.compile(r"[\u3400-\u9fff]")
# verbose_json names languages in English (Whisper's tokenizer names)
_LANGUAGE_CODES = {"chinese": "zh", "mandarin": "zh", "english": "en", "japanese": "ja"}


def language_code(name: str | None, text: str) -> str:
    if name:
        name = name.strip().lower()
        return _LANGUAGE_CODES.get(name, name)
    return "zh" if _HANZI.search(text) else "en"


class OpenAiCompatAsr(RemoteBackend, RemoteAsr):
    def __init__(self, settings: AsrSettings) -> None:
        super().__init__()
        self._settings = settings
        self._remote = settings.openai
        self._policy = RetryPolicy(self._remote.max_retries, self._remote.retry_backoff_s)

    @property
    def url(self) -> str:
        return self._remote.base_url.rstrip("/") + "/" + self._remote.path.lstrip("/")

    def new_http_client(self) -> httpx.AsyncClient:
        r = self._remote
        return httpx.AsyncClient(
            headers=bearer(r.api_key),
            timeout=httpx.Timeout(r.timeout_s, connect=r.connect_timeout_s),
            trust_env=False,
        )

    async def aload(self) -> None:
        if not self._remote.base_url.startswith(("http://", "https://")):
            raise ModelLoadError(f"asr.openai.base_url is not an http(s) URL: {self.url}")

    def form(self, language: str | None) -> dict[str, str]:
        data = {"model": self._remote.model, "response_format": self._remote.response_format}
        if language:
            data["language"] = language
            prompt = self._settings.prompts.get(language)
            if prompt and self._remote.send_prompt:
                data["prompt"] = prompt
        return data

    async def atranscribe(self, pcm: np.ndarray, *, language: str | None = None) -> Transcript:
        lang = language or self._settings.language
        audio = wav_bytes(pcm, self.sample_rate_hz)
        form = self.form(lang)

        async def call() -> Transcript:
            files = {"file": ("utterance.wav", audio, "audio/wav")}
            response = await self.http().post(self.url, data=form, files=files)
            if response.status_code // 100 != 2:
                raise StatusFailure(SERVICE, response, response.content)
            return self._parse(response, lang, len(pcm) / self.sample_rate_hz)

        return await call_with_retries(call, self._policy, SERVICE, self.url)

    def _parse(self, response: httpx.Response, language: str | None, audio_s: float) -> Transcript:
        if self._remote.response_format == "text":
            text = response.text.strip()
            return Transcript(
                text=text, language=language or language_code(None, text), audio_s=audio_s
            )
        try:
            body = response.json()
        except ValueError as exc:
            raise InferenceError(f"{SERVICE} sent no JSON: {response.text[:200]!r}") from exc
        if not isinstance(body, dict) or not isinstance(body.get("text"), str):
            raise InferenceError(f"{SERVICE} sent no 'text': {str(body)[:200]}")
        text = body["text"].strip()
        named = body.get("language")
        return Transcript(
            text=text,
            language=language or language_code(named if isinstance(named, str) else None, text),
            audio_s=audio_s,
        )

    def transcribe(self, pcm: np.ndarray, *, language: str | None = None) -> Transcript:
        return self.blocking_call(lambda: self.atranscribe(pcm, language=language), never_cancelled)
