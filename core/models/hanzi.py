"""What counts as a hanzi (a CJK ideograph), in one place: the reply guard, the reply-language
rule, whisper's loop check, TTS routing and the sentence segmenter all ask the same question."""

from __future__ import annotations

# unified, extension A, compatibility, extensions B and beyond, and 〇 (a regex class body)
HAN_CLASS = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003ffff\u3007"


def is_han(ch: str) -> bool:
    """A CJK ideograph (unified, extension A, compatibility, extensions B and beyond, 〇)."""
    cp = ord(ch)
    return (
        0x4E00 <= cp <= 0x9FFF
        or 0x3400 <= cp <= 0x4DBF
        or 0xF900 <= cp <= 0xFAFF
        or 0x20000 <= cp <= 0x3FFFF
        or cp == 0x3007
    )
