"""The one text-clipping helper: every view and every bounded text goes through here.

A cut is always marked with "…" and falls at a word boundary when one is near, so evidence
reads "connection to server…" rather than "connection to serve)". Ids and keys are never
passed through it: they are shown whole (a cut id cannot be typed back into a command).
"""

from __future__ import annotations

ELLIPSIS = "…"
# A word boundary is used when it keeps at least this share of the room (else cut mid-word:
# one 300-character token must still show its start).
_WORD_SHARE = 0.6


def clip(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters, ending in "…" when cut."""
    if len(text) <= limit:
        return text
    if limit <= 1:
        return ELLIPSIS[:max(0, limit)]
    room = limit - 1
    head = text[:room]
    if not text[room].isspace():  # the cut falls inside a word: back up to its start
        space = head.rfind(" ")
        if space >= room * _WORD_SHARE:
            head = head[:space]
    return head.rstrip(" ,;:") + ELLIPSIS


def clip_start(text: str, limit: int) -> str:
    """`text` cut from the start, for paths whose end says most: `…/work/shop`."""
    if len(text) <= limit:
        return text
    return ELLIPSIS + text[len(text) - max(0, limit - 1):] if limit > 0 else ""


def clip_optional(text: str | None, limit: int) -> str | None:
    return None if text is None else clip(text, limit)


def one_line(text: str | None, limit: int) -> str:
    """Whitespace runs and newlines folded to single spaces (newlines shown as ⏎), clipped."""
    if not text:
        return ""
    lines = [" ".join(part.split()) for part in text.strip().splitlines()]
    return clip(" ⏎ ".join(line for line in lines if line), limit)


def flat(text: str, limit: int) -> str:
    """Whitespace (newlines too) folded to single spaces, clipped: for one-line messages."""
    return clip(" ".join(text.split()), limit)
