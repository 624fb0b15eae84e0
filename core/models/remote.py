"""Remote providers: model services reached over the network, driven from the event loop.

A remote backend (OpenAI-compatible LLM/ASR/TTS, Ollama, Edge TTS) does no compute here, so
:class:`core.models.inference.Inference` runs its requests as ASYNC scheduler jobs: they hold
no executor thread and no ``cpu`` slot, only one unit of the kind's ``remote:<kind>`` resource
(``models.remote`` sizes them), so a slow cloud API can fill its own budget and nothing else.
Cancelling such a job cancels the coroutine, which closes the HTTP response or WebSocket.

Each provider is written once, async. The blocking model interfaces (``Llm.stream_chat``,
``Tts.synthesize``, ``Asr.transcribe``) still work, for callers inside THREAD jobs (e.g. a
TTS router holding several voices): :class:`RemoteBackend` runs the same coroutines on one
private loop thread of its own, started by ``load()`` and stopped by ``unload()`` (one thread
per backend, never per request), and calls ``check()`` between pieces.

Retries (:func:`retry_delay_s`): connection failures, timeouts before the first byte, HTTP
408/409/429/5xx, up to ``max_retries`` more attempts with exponential backoff (``Retry-After``
honoured up to a cap), and never once a piece has reached the consumer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from abc import abstractmethod
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

from core.errors import InferenceError, ModelLoadError
from core.models.base import CancelCheck, ModelBackend

T = TypeVar("T")
log = logging.getLogger(__name__)

RETRYABLE_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
_RETRY_AFTER_CAP_S = 10.0  # a server asking for a longer pause gets a failure instead
_POLL_S = 0.05  # blocking callers re-run check() this often while waiting for a piece
_BRIDGE_START_S = 5.0


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_retries: int = 2
    backoff_s: float = 0.5  # first pause; doubles per attempt


def retry_delay_s(
    policy: RetryPolicy, attempt: int, error: BaseException, retry_after: str | None = None
) -> float | None:
    """Seconds to wait before attempt ``attempt + 1`` after ``error``; None: do not retry."""
    if attempt >= policy.max_retries:
        return None
    if isinstance(error, InferenceError) and not error.retryable:
        return None
    delay = policy.backoff_s * (2**attempt)
    if retry_after:
        try:
            asked = float(retry_after)
        except ValueError:
            asked = None
        if asked is not None:
            if asked > _RETRY_AFTER_CAP_S:
                return None
            delay = max(delay, asked)
    return float(delay)


class StatusFailure(Exception):
    """A non-2xx answer inside a provider's request coroutine; :func:`with_retries` turns it
    into an InferenceError (retryable for RETRYABLE_STATUS) after honouring ``Retry-After``."""

    def __init__(self, service: str, response: httpx.Response, body: bytes) -> None:
        detail = body.decode("utf-8", "replace").strip()[:300]
        super().__init__(f"{service} answered HTTP {response.status_code}: {detail}")
        self.error = InferenceError(str(self), retryable=response.status_code in RETRYABLE_STATUS)
        self.status_code = response.status_code
        self.retry_after = response.headers.get("Retry-After")


async def check_status(service: str, response: httpx.Response) -> None:
    """Raise StatusFailure unless the (streamed) response is 2xx."""
    if response.status_code // 100 != 2:
        raise StatusFailure(service, response, await response.aread())


async def with_retries(
    attempt_fn: Callable[[], AsyncGenerator[T, None]], policy: RetryPolicy, service: str, url: str
) -> AsyncGenerator[T, None]:
    """Pieces of ``attempt_fn()``, re-attempted on retryable failures before the first piece.
    Errors reach the caller as InferenceError; cancellation closes the attempt's stream."""
    attempt = 0
    while True:
        started = False
        retry_after: str | None = None
        error: InferenceError
        cause: BaseException
        try:
            async with contextlib.aclosing(attempt_fn()) as pieces:
                async for piece in pieces:
                    started = True
                    yield piece
            return
        except StatusFailure as failure:
            error, cause, retry_after = failure.error, failure, failure.retry_after
        except httpx.HTTPError as exc:
            error, cause = transport_error(service, url, exc), exc
        except InferenceError as exc:
            error, cause = exc, exc
        delay = None if started else retry_delay_s(policy, attempt, error, retry_after)
        if delay is None:
            if isinstance(cause, InferenceError):
                raise error
            raise error from cause
        log.info(
            "%s: attempt %d failed (%s); retrying in %.2f s", service, attempt + 1, error, delay
        )
        await asyncio.sleep(delay)
        attempt += 1


async def call_with_retries(
    call: Callable[[], Awaitable[T]], policy: RetryPolicy, service: str, url: str
) -> T:
    """One request/response call (ASR) with the same retry rules as :func:`with_retries`."""

    async def once() -> AsyncGenerator[T, None]:
        yield await call()

    async for result in with_retries(once, policy, service, url):
        return result
    raise InferenceError(f"{service}: no answer")  # unreachable: once() always yields


def transport_error(service: str, url: str, exc: httpx.HTTPError) -> InferenceError:
    kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "failed"
    return InferenceError(f"{service} at {url} {kind}: {type(exc).__name__}: {exc}", retryable=True)


def bearer(api_key: Any) -> dict[str, str]:
    """``Authorization: Bearer`` from a SecretStr (or nothing when no key is set)."""
    if api_key is None:
        return {}
    value = api_key.get_secret_value()
    return {"Authorization": f"Bearer {value}"} if value else {}


class RemoteBackend(ModelBackend):
    """A model served over the network. Subclasses implement :meth:`aload`/:meth:`aclose`
    and their kind's async method (``astream_chat``, ``atranscribe``, ``asynthesize``)."""

    remote = True

    def __init__(self) -> None:
        self._bridge: _LoopThread | None = None
        self._http: dict[asyncio.AbstractEventLoop, httpx.AsyncClient] = {}

    # -- async side (the service loop, or the private loop of the blocking bridge) -----------
    @abstractmethod
    async def aload(self) -> None:
        """Check the service is usable (probe); raise ModelLoadError otherwise."""

    async def aclose(self) -> None:
        """Close the HTTP client of the running loop."""
        client = self._http.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.aclose()

    def http(self) -> httpx.AsyncClient:
        """This loop's HTTP client (clients are bound to the loop that created them)."""
        loop = asyncio.get_running_loop()
        client = self._http.get(loop)
        if client is None or client.is_closed:
            client = self._http[loop] = self.new_http_client()
        return client

    def new_http_client(self) -> httpx.AsyncClient:
        raise NotImplementedError(f"{type(self).__name__} uses no HTTP client")

    # -- blocking side (THREAD jobs): the same coroutines on a private loop -------------------
    def load(self) -> None:
        if self._bridge is None:
            self._bridge = _LoopThread(f"{type(self).__name__}-loop")
        self._bridge.run(self.aload)

    def unload(self) -> None:
        bridge, self._bridge = self._bridge, None
        if bridge is not None:
            try:
                bridge.run(self.aclose)
            finally:
                bridge.stop()

    def blocking_stream(
        self, make: Callable[[], AsyncIterator[T]], check: CancelCheck
    ) -> Iterator[T]:
        """Iterate ``make()`` on the private loop; ``check()`` between pieces and while waiting.
        Leaving early (cancel, consumer gone) cancels the coroutine, closing its stream."""
        if self._bridge is None:
            raise InferenceError(f"{type(self).__name__} used before load()")
        yield from self._bridge.iterate(make, check)

    def blocking_call(self, make: Callable[[], Awaitable[T]], check: CancelCheck) -> T:
        if self._bridge is None:
            raise InferenceError(f"{type(self).__name__} used before load()")
        return self._bridge.call(make, check)


_END = object()


class _LoopThread:
    """One event loop on one daemon thread, owned by one backend."""

    def __init__(self, name: str) -> None:
        self._loop = asyncio.new_event_loop()
        ready = threading.Event()

        def main() -> None:
            asyncio.set_event_loop(self._loop)
            self._loop.call_soon(ready.set)
            self._loop.run_forever()
            pending = asyncio.all_tasks(self._loop)
            for task in pending:
                task.cancel()
            self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self._loop.run_until_complete(self._loop.shutdown_asyncgens())
            self._loop.close()

        self._thread = threading.Thread(target=main, name=name, daemon=True)
        self._thread.start()
        if not ready.wait(_BRIDGE_START_S):
            raise ModelLoadError(f"{name}: private event loop did not start")

    def run(self, make: Callable[[], Coroutine[Any, Any, T]]) -> T:
        return asyncio.run_coroutine_threadsafe(make(), self._loop).result()

    def call(self, make: Callable[[], Awaitable[T]], check: CancelCheck) -> T:
        async def wrapped() -> T:
            return await make()

        future = asyncio.run_coroutine_threadsafe(wrapped(), self._loop)
        try:
            while True:
                check()
                try:
                    return future.result(timeout=_POLL_S)
                except TimeoutError:
                    continue
        finally:
            future.cancel()

    def iterate(self, make: Callable[[], AsyncIterator[T]], check: CancelCheck) -> Iterator[T]:
        pieces: queue.SimpleQueue[Any] = queue.SimpleQueue()

        async def pump() -> None:
            async for piece in make():
                pieces.put(piece)

        future = asyncio.run_coroutine_threadsafe(pump(), self._loop)
        future.add_done_callback(lambda _f: pieces.put(_END))
        try:
            while True:
                check()
                try:
                    piece = pieces.get(timeout=_POLL_S)
                except queue.Empty:
                    continue
                if piece is _END:
                    future.result()  # raises the coroutine's error, if any
                    return
                yield piece
        finally:
            future.cancel()

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=_BRIDGE_START_S)
