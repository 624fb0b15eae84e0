"""Conversations' KV caches kept across other jobs' use of the one llama.cpp context.

A device's next turn repeats its whole conversation (system prompt, earlier exchanges) plus one
new user message. Alone on the context, llama.cpp re-evaluates only the new tokens (the prompt
shares a prefix with what the context holds). Under a QQ flood, chats of other groups use the
context between two turns of the device, and the device's next prompt is evaluated from
scratch: hundreds of tokens before the first reply token (issue 14: 16 s of a 20 s first audio
with 200 queued chats). This cache keeps each finished generation's sequence (its KV cache and
tokens), keyed by its messages plus the reply; a new generation whose messages continue a
cached conversation further than the context's current one starts from that state instead.

Eviction is a segmented LRU: an entry enters on probation and moves to the protected segment
when reused. A conversation that continues (a device, an active QQ group) stays protected; a
flood of one-off chats replaces only each other on probation.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from core.models.llm import ChatMessage

MessagesKey = tuple[tuple[str, str], ...]  # (role, content) per message
S = TypeVar("S")


def messages_key(messages: Sequence[ChatMessage], reply: str | None = None) -> MessagesKey:
    key = tuple((m.role, m.content) for m in messages)
    return key if reply is None else (*key, ("assistant", reply))


def common_messages(a: MessagesKey, b: MessagesKey) -> int:
    """Leading messages ``a`` and ``b`` share exactly."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


@dataclass(slots=True)
class Hit(Generic[S]):
    key: MessagesKey
    state: S
    shared: int  # leading messages shared with the lookup


class PromptCache(Generic[S]):
    """At most ``capacity`` saved sequences (half of them protected); 0 disables it."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._protected_cap = capacity // 2
        self._probation: OrderedDict[MessagesKey, S] = OrderedDict()
        self._protected: OrderedDict[MessagesKey, S] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._probation) + len(self._protected)

    def best(self, key: MessagesKey) -> Hit[S] | None:
        """The entry continuing ``key`` furthest (ties: the most recent), or None."""
        best: Hit[S] | None = None
        for segment in (self._probation, self._protected):
            for cached, state in segment.items():
                shared = common_messages(cached, key)
                if shared and (best is None or shared >= best.shared):
                    best = Hit(cached, state, shared)
        return best

    def used(self, hit: Hit[S]) -> None:
        """``hit`` was restored: it moves to (the recent end of) the protected segment."""
        self.hits += 1
        state = self._probation.pop(hit.key, None)
        if state is None:
            state = self._protected.pop(hit.key, hit.state)
        self._protected[hit.key] = state
        while len(self._protected) > self._protected_cap:
            old, old_state = self._protected.popitem(last=False)
            self._probation[old] = old_state  # demoted: one more chance on probation
        self._trim()

    def forget(self, keep: Callable[[MessagesKey], bool]) -> int:
        """Drop every entry whose key ``keep`` rejects; how many were dropped."""
        dropped = 0
        for segment in (self._probation, self._protected):
            for key in [k for k in segment if not keep(k)]:
                del segment[key]
                dropped += 1
        return dropped

    def put(self, key: MessagesKey, state: S) -> None:
        """Keep ``state`` under ``key``. Entries ``key`` continues (a prefix of it: the same
        conversation, earlier) are dropped; a continued conversation goes to the protected
        segment, a new one on probation."""
        if self.capacity <= 0:
            return
        continued = False
        for segment in (self._probation, self._protected):
            for old in [k for k in segment if key[: len(k)] == k]:
                del segment[old]
                continued = True
        if continued:
            self._protected[key] = state
            while len(self._protected) > self._protected_cap:
                old, old_state = self._protected.popitem(last=False)
                self._probation[old] = old_state
        else:
            self._probation[key] = state
        self._trim()

    def _trim(self) -> None:
        while len(self) > self.capacity:
            segment = self._probation if self._probation else self._protected
            segment.popitem(last=False)
