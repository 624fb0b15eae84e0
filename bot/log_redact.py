"""Keep secrets out of the logs: query values such as ``?token=`` or ``?authorization=`` are
replaced by ``***`` before any handler writes them.

uvicorn's access log writes every request line with its query string, and its WebSocket
log lines do the same; a device may dial ``/xiaozhi/v1/?authorization=Bearer...`` and old
dashboard links carried ``/admin/ui?token=...``. :func:`uvicorn_log_config` is uvicorn's own
logging configuration with :class:`RedactQuerySecrets` on each of its handlers, so records
that propagate from any logger are redacted too.
"""

from __future__ import annotations

import copy
import logging
import re
from typing import Any

REDACTED = "***"
# a query parameter whose name mentions a credential, up to the next "&", space or quote
_SECRET_QUERY = re.compile(
    r"(?P<key>[?&][^=&\s\"']*(?:token|authorization|password|secret|api_key|apikey)"
    r"[^=&\s\"']*=)[^&\s\"']*",
    re.IGNORECASE,
)


def redact(text: str) -> str:
    """``text`` with every secret-looking query value replaced by ``***``."""
    return _SECRET_QUERY.sub(lambda m: m.group("key") + REDACTED, text)


class RedactQuerySecrets(logging.Filter):
    """Redacts the message template and every string argument of a record (keeps the shape
    of ``record.args``, which uvicorn's access formatter unpacks)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {
                k: redact(v) if isinstance(v, str) else v for k, v in record.args.items()
            }
        return True


def uvicorn_log_config() -> dict[str, Any]:
    """uvicorn's default ``log_config`` with the redacting filter on every handler."""
    from uvicorn.config import LOGGING_CONFIG

    config: dict[str, Any] = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})["redact_secrets"] = {"()": RedactQuerySecrets}
    for handler in config.get("handlers", {}).values():
        handler.setdefault("filters", []).append("redact_secrets")
    return config
