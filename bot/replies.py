"""User-facing texts shared by the plugins: polite error replies and splitting long replies.

Every failure a user can cause or meet gets a clear reply, never silence; the wording is
Chinese because the bot lives in QQ groups.
"""

from __future__ import annotations

import re

from core.errors import (
    DeadlineExceeded,
    DiskFull,
    JobCancelled,
    ModelError,
    ModelLoadError,
    ModelNotConfigured,
    ProtocolError,
    QueueFull,
    QuotaExceeded,
    ResourceUnsatisfiable,
    SchedulerClosed,
    WorkerDied,
    XiaoyouError,
)
from core.scheduler import SHUTDOWN_REASON

GENERIC_FAILURE = "出错了，请稍后再试。"
SHUTDOWN_REPLY = "服务正在重启，这条没来得及处理，请稍后再发一次。"
_SHUTDOWN_REASONS = (SHUTDOWN_REASON, "scheduler shutting down", "scheduler stopped")
MODEL_LOAD_FAILURE = "模型没能加载，暂时用不了，请联系管理员。"
MODEL_FAILURE = "模型运行出错了，请稍后再试。"
DISK_FULL = "服务器的存储空间满了，这个功能暂时用不了，请联系管理员。"


def describe_error(exc: BaseException) -> str:
    """The reply for a failed request; the most specific class wins."""
    if isinstance(exc, QueueFull):
        return f"现在排队的请求太多了（上限 {exc.limit}），请稍后再试～"
    if isinstance(exc, QuotaExceeded):
        return exc.message
    if isinstance(exc, JobCancelled):
        return SHUTDOWN_REPLY if exc.message in _SHUTDOWN_REASONS else "任务已取消。"
    if isinstance(exc, DeadlineExceeded):
        return "等待超时了，请稍后再试。"
    if isinstance(exc, SchedulerClosed):
        return "服务正在关闭或维护，请稍后再试。"
    if isinstance(exc, WorkerDied):
        return "处理进程意外退出了，请再试一次。"
    if isinstance(exc, ResourceUnsatisfiable):
        return "这个任务需要的资源超出了服务器配置，请联系管理员。"
    if isinstance(exc, ModelNotConfigured):
        return "这个功能还没有配置模型，请联系管理员。"
    # model errors carry backend detail (file paths, exception text): admins read it in the
    # log and /admin/models; users get a plain sentence
    if isinstance(exc, DiskFull):
        return DISK_FULL
    if isinstance(exc, ModelLoadError):
        return MODEL_LOAD_FAILURE
    if isinstance(exc, ModelError):
        return MODEL_FAILURE
    if isinstance(exc, ProtocolError):
        return f"请求有误：{exc.message}"
    if isinstance(exc, XiaoyouError):
        return f"出错了：{exc.message}"
    return GENERIC_FAILURE


# Preferred split points, best first: paragraph, line, sentence end, clause, space.
_BREAKS = (
    re.compile(r"\n\s*\n"),
    re.compile(r"\n"),
    re.compile(r"(?<=[。！？!?…])|(?<=[.])(?=\s)"),
    re.compile(r"(?<=[，；;,、：:])"),
    re.compile(r"\s"),
)


def split_text(text: str, max_chars: int, max_parts: int) -> list[str]:
    """Split ``text`` into at most ``max_parts`` pieces of at most ``max_chars`` characters,
    cutting at the most natural boundary found in the second half of each window. If the
    text needs more parts, the last one ends with an ellipsis."""
    if max_chars < 2 or max_parts < 1:
        raise ValueError("max_chars must be >= 2 and max_parts >= 1")
    rest = text.strip()
    parts: list[str] = []
    while rest and len(parts) < max_parts:
        if len(rest) <= max_chars:
            parts.append(rest)
            rest = ""
            break
        cut = _cut_point(rest, max_chars)
        parts.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    if rest:
        last = parts[-1]
        parts[-1] = (last[: max_chars - 1] if len(last) >= max_chars else last) + "…"
    return [p for p in parts if p]


def _cut_point(text: str, max_chars: int) -> int:
    window = text[:max_chars]
    floor = max_chars // 2
    for pattern in _BREAKS:
        ends = [m.end() for m in pattern.finditer(window) if m.end() >= floor]
        if ends:
            return max(ends)
    return max_chars
