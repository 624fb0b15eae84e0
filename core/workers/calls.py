"""What every worker host does with a call, in a process or in a Ray actor.

The host (``core/workers/child.py`` or ``core/workers/ray_actor.py``) owns the backend and the
transport; this module runs one ordinary call on the backend (``load``/``unload`` stay with the
host, which measures them its own way) and makes an error safe to send back.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterator
from typing import Any

from core.errors import InferenceError
from core.workers.base import WorkerCall


def call_backend(
    backend: Any, call: WorkerCall, *, emit: Callable[[Any], None], check: Callable[[], None]
) -> Any:
    """``backend.<method>(*args, **kwargs, check=check)`` (and ``emit=`` for a streamed call).

    A method returning an iterator streams each item as a chunk followed by a step; the result
    is then None.
    """
    if backend is None:
        raise InferenceError(f"worker for {call.model}: the model is not loaded")
    method: Callable[..., Any] = getattr(backend, call.method)
    kwargs = dict(call.kwargs)
    if call.stream:
        kwargs["emit"] = emit
    result = method(*call.args, **kwargs, check=check)
    if not isinstance(result, Iterator):
        return result
    try:
        for item in result:
            emit(item)
            check()
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    return None


def portable(exc: Exception) -> Exception:
    """``exc`` if it survives pickling, else an InferenceError naming it."""
    try:
        pickle.loads(pickle.dumps(exc, protocol=5))  # our own bytes
    except Exception:  # noqa: BLE001 - any pickling failure means: send a plain copy
        return InferenceError(f"{type(exc).__name__}: {exc}")
    return exc
