"""The error taxonomy shared by every part of xiaoyou.

Every error the service raises on purpose derives from :class:`XiaoyouError`. Whether an
operation may be retried is data (``retryable``), not a guess made from the class name.

    XiaoyouError                      root; ``code`` (stable string) and ``retryable``
    ├── ConfigError                   settings are invalid (raised at start-up)
    ├── SchedulerError                raised by core.scheduler to a submitter
    │   ├── SchedulerClosed           submit after shutdown began (not retryable)
    │   ├── QueueFull                 a lane or owner queue is full (retryable; carries the limit)
    │   ├── ResourceUnsatisfiable     a job needs more of a resource than the budget holds
    │   ├── JobCancelled              the job was cancelled (by its owner, an admin, or shutdown)
    │   ├── DeadlineExceeded          the job's deadline passed, queued or running (retryable)
    │   └── WorkerDied                the process running the job died (retryable)
    ├── ModelError                    raised by core.models
    │   ├── ModelNotConfigured        no model of that name / kind in settings
    │   ├── ModelLoadError            loading failed (bad path, corrupt weights, missing extra)
    │   │   └── DiskFull              no room in the data dir to assemble an embedded model
    │   ├── InferenceError            the backend failed while running a request
    │   ├── GpuOutOfMemory            an allocation past the GPU's capacity (the allocator)
    │   └── VramUnavailable           no room could be made for a model in time (retryable)
    ├── ProtocolError                 a peer (device, OneBot implementation) sent bad input
    └── QuotaExceeded                 a user hit a cooldown or daily quota (bot plugins)
"""

from __future__ import annotations

import errno


class XiaoyouError(Exception):
    """Root of all deliberate xiaoyou errors."""

    code: str = "error"
    retryable: bool = False

    def __init__(self, message: str, *, retryable: bool | None = None) -> None:
        super().__init__(message)
        self.message = message
        if retryable is not None:
            self.retryable = retryable

    def to_dict(self) -> dict[str, object]:
        """A JSON-friendly view used by the admin API and wire error messages."""
        return {"code": self.code, "message": self.message, "retryable": self.retryable}


class ConfigError(XiaoyouError):
    code = "config"


class SchedulerError(XiaoyouError):
    code = "scheduler"


class SchedulerClosed(SchedulerError):
    code = "scheduler_closed"


class QueueFull(SchedulerError):
    """A bounded queue refused a job. ``limit`` is the bound that was hit."""

    code = "queue_full"
    retryable = True

    def __init__(self, message: str, *, limit: int, scope: str) -> None:
        super().__init__(message)
        self.limit = limit
        self.scope = scope

    def to_dict(self) -> dict[str, object]:
        return {**super().to_dict(), "limit": self.limit, "scope": self.scope}


class ResourceUnsatisfiable(SchedulerError):
    code = "resource_unsatisfiable"


class JobCancelled(SchedulerError):
    code = "cancelled"


class DeadlineExceeded(SchedulerError):
    code = "deadline_exceeded"
    retryable = True


class WorkerDied(SchedulerError):
    code = "worker_died"
    retryable = True


class ModelError(XiaoyouError):
    code = "model"


class ModelNotConfigured(ModelError):
    code = "model_not_configured"


class ModelLoadError(ModelError):
    code = "model_load_failed"


class DiskFull(ModelLoadError):
    """The data dir has no room (ENOSPC, EDQUOT) for a file the model needs written."""

    code = "disk_full"


DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


def is_disk_full(exc: OSError) -> bool:
    return exc.errno in DISK_FULL_ERRNOS


class InferenceError(ModelError):
    code = "inference_failed"


class GpuOutOfMemory(ModelError):
    """Raised by a :class:`core.models.gpu_memory.GpuMemory` allocator (the simulated one, or
    torch's CUDA allocator translated): the residency accounting let something past the card."""

    code = "gpu_out_of_memory"


class VramUnavailable(ModelError):
    """The model manager could not make room for a model on its GPU within
    ``models.vram_wait_timeout_s`` (the memory is held by models in use)."""

    code = "vram_unavailable"
    retryable = True


class ProtocolError(XiaoyouError):
    code = "protocol"


class QuotaExceeded(XiaoyouError):
    code = "quota_exceeded"
    retryable = True
