"""Media helpers for the plugins: fetch incoming images, compress outgoing ones, PCM to WAV.

Incoming QQ image URLs expire within minutes, so they are downloaded at once with a size
limit and a timeout; when that fails the OneBot ``get_image`` API is the fallback.
"""

from __future__ import annotations

import asyncio
import base64
import io
import ipaddress
import wave
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from nonebot.adapters.onebot.v11 import Bot, MessageSegment
from nonebot.adapters.onebot.v11.exception import ActionFailed, NetworkError
from PIL import Image, UnidentifiedImageError

from core.errors import ProtocolError
from core.models.tts import PcmChunk


class ImageTooLarge(ProtocolError):
    """An incoming image is over the configured byte limit."""

    code = "image_too_large"


JPEG_QUALITIES = (88, 80, 70, 60, 50, 40)  # tried in turn until the image fits
MIN_SIDE_PX = 256  # never shrink below this when downscaling to fit


async def download(
    client: httpx.AsyncClient, url: str, *, max_bytes: int, timeout_s: float
) -> bytes:
    """GET ``url`` into memory; ProtocolError on HTTP errors, timeouts, over ``max_bytes``."""
    try:
        async with asyncio.timeout(timeout_s), client.stream("GET", url) as response:
            if response.status_code != 200:
                raise ProtocolError(f"image download failed: HTTP {response.status_code}")
            declared = response.headers.get("content-length")
            if declared is not None and declared.isdigit() and int(declared) > max_bytes:
                raise ImageTooLarge(f"image too large: {declared} bytes > {max_bytes}")
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > max_bytes:
                    raise ImageTooLarge(f"image too large: more than {max_bytes} bytes")
            return bytes(body)
    except TimeoutError as exc:
        raise ProtocolError(
            f"image download timed out after {timeout_s} s", retryable=True
        ) from exc
    except httpx.HTTPError as exc:
        raise ProtocolError(f"image download failed: {exc!r}", retryable=True) from exc


class BlockedTarget(ProtocolError):
    """An image URL points at this machine or a private network (SSRF)."""

    code = "blocked_target"


async def check_target(url: str, *, allow_private: bool) -> None:
    """Refuse URLs whose host is (or resolves to) a loopback, private, link-local, reserved
    or multicast address: a QQ message must not make the server fetch from its own network.
    A host that does not resolve is left to the download to fail. (The HTTP client resolves
    again: a DNS answer that changes in between is not caught.)"""
    if allow_private:
        return
    parsed = httpx.URL(url)
    host = parsed.host
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port)
    except OSError:
        return
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if not address.is_global or address.is_multicast:
            raise BlockedTarget(f"image URL host {host!r} is a non-public address ({address})")


async def fetch_image(
    bot: Bot,
    client: httpx.AsyncClient,
    segment: MessageSegment,
    *,
    max_bytes: int,
    timeout_s: float,
    allow_private: bool = False,
    local_dirs: Sequence[Path] = (),
) -> bytes:
    """The bytes of an incoming image segment: its URL first, then ``get_image``. URLs to
    non-public addresses are refused unless ``allow_private``; a local file from
    ``get_image`` is read only inside one of ``local_dirs`` (none by default)."""
    url = str(segment.data.get("url") or "")
    first_error: ProtocolError | None = None
    if url.startswith(("http://", "https://")):
        try:
            await check_target(url, allow_private=allow_private)
            return await download(client, url, max_bytes=max_bytes, timeout_s=timeout_s)
        except ImageTooLarge:
            raise  # the URL works; get_image would hand us the same oversized file
        except ProtocolError as exc:
            first_error = exc
    file_id = str(segment.data.get("file") or "")
    if not file_id:
        raise first_error or ProtocolError("image segment has neither a usable url nor a file id")
    try:
        info: dict[str, Any] = await bot.call_api("get_image", file=file_id, _timeout=timeout_s)
    except (ActionFailed, NetworkError) as exc:
        raise ProtocolError(f"get_image failed: {exc!r}") from exc
    return await _from_get_image(
        client,
        info,
        url,
        max_bytes=max_bytes,
        timeout_s=timeout_s,
        allow_private=allow_private,
        local_dirs=local_dirs,
    )


async def _from_get_image(
    client: httpx.AsyncClient,
    info: dict[str, Any],
    old_url: str,
    *,
    max_bytes: int,
    timeout_s: float,
    allow_private: bool,
    local_dirs: Sequence[Path],
) -> bytes:
    # NapCat may return base64; go-cqhttp/NapCat return a local path ("file") that is only
    # readable when we share its filesystem; both may return a fresh URL.
    encoded = info.get("base64")
    if isinstance(encoded, str) and encoded:
        data = base64.b64decode(encoded.removeprefix("base64://"))
        if len(data) > max_bytes:
            raise ImageTooLarge(f"image too large: {len(data)} bytes > {max_bytes}")
        return data
    path = info.get("file")
    if isinstance(path, str) and path and not path.startswith(("http://", "https://")):
        local = Path(path.removeprefix("file://"))
        size = await asyncio.to_thread(_file_size, local, local_dirs)
        if size is not None:
            if size > max_bytes:
                raise ImageTooLarge(f"image too large: {size} bytes > {max_bytes}")
            return await asyncio.to_thread(local.read_bytes)
    url = info.get("url")
    if isinstance(url, str) and url.startswith(("http://", "https://")) and url != old_url:
        await check_target(url, allow_private=allow_private)
        return await download(client, url, max_bytes=max_bytes, timeout_s=timeout_s)
    raise ProtocolError("the image has expired and get_image gave nothing readable")


def _file_size(path: Path, local_dirs: Sequence[Path]) -> int | None:
    """The size of ``path`` if it is a file inside one of ``local_dirs`` (symlinks resolved)."""
    real = path.resolve()
    if not any(real.is_relative_to(d.resolve()) for d in local_dirs):
        return None
    return real.stat().st_size if real.is_file() else None


def compress_image(data: bytes, *, max_bytes: int, max_side_px: int) -> bytes:
    """Re-encode an image as JPEG no larger than ``max_bytes`` (lower quality, then smaller)."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            rgb = img.convert("RGB")
    except (UnidentifiedImageError, OSError) as exc:
        raise ProtocolError(f"not a readable image: {exc}") from exc
    if max(rgb.size) > max_side_px:
        rgb.thumbnail((max_side_px, max_side_px))
    while True:
        for quality in JPEG_QUALITIES:
            out = io.BytesIO()
            rgb.save(out, format="JPEG", quality=quality, optimize=True)
            if out.tell() <= max_bytes:
                return out.getvalue()
        if max(rgb.size) <= MIN_SIDE_PX:
            return out.getvalue()  # smallest we are willing to go; still sendable
        rgb = rgb.resize((max(1, rgb.width * 3 // 4), max(1, rgb.height * 3 // 4)))


def pcm_to_wav(chunks: Iterable[PcmChunk]) -> bytes:
    """Mono int16 PCM chunks (one sample rate) to a WAV file."""
    items = list(chunks)
    if not items:
        raise ProtocolError("no audio was produced")
    rate = items[0].sample_rate_hz
    if any(c.sample_rate_hz != rate for c in items):
        raise ProtocolError("audio chunks have different sample rates")
    samples = np.concatenate([np.asarray(c.samples, dtype=np.int16).reshape(-1) for c in items])
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(samples.astype("<i2").tobytes())
    return out.getvalue()
