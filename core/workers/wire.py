"""The frame format between the front and a worker process: length-prefixed pickles.

Each frame is an 8-byte big-endian length and a pickle (protocol 5) of a tuple whose first item
names the message. Front to worker: ``("spec", WorkerSpec, sys_path)``, ``("call", WorkerCall)``,
``("go",)`` (continue after a step), ``("abort",)`` (abandon the call at this step),
``("stop",)``, and while a call waits at a step ``("offload",)`` / ``("restore",)`` (move the
model's weights to host memory and back; answered ``("offloaded", s)`` / ``("restored", s)``,
then the step still waits for go/abort). Worker to front: ``("ready", pid)``, ``("step", n)``
or ``("step", n, chunks)`` (the chunks emitted during that step ride on its frame),
``("chunk", chunks)`` (emitted after the last step), ``("result", value)``,
``("error", exception)``, ``("aborted",)``.
Both ends are trusted (the worker is our own child on a private socketpair).
"""

from __future__ import annotations

import pickle
import struct
from typing import Any

HEADER = struct.Struct(">Q")
HEADER_BYTES = HEADER.size

SPEC, CALL, GO, ABORT, STOP = "spec", "call", "go", "abort", "stop"
OFFLOAD, RESTORE, OFFLOADED, RESTORED = "offload", "restore", "offloaded", "restored"
READY, CHUNK, STEP, RESULT, ERROR, ABORTED = "ready", "chunk", "step", "result", "error", "aborted"

GO_FRAME = b""  # filled below: the hot-path frames are built once
ABORT_FRAME = b""


def frame(message: tuple[Any, ...]) -> bytes:
    body = pickle.dumps(message, protocol=5)
    return HEADER.pack(len(body)) + body


def body_length(header: bytes) -> int:
    length: int = HEADER.unpack(header)[0]
    return length


def load(body: bytes) -> tuple[Any, ...]:
    message: tuple[Any, ...] = pickle.loads(body)  # our own child, private socket
    return message


GO_FRAME = frame((GO,))
ABORT_FRAME = frame((ABORT,))
