"""bgmon's own event lines (written by `bgmon run` and custom agents; see docs/formats.md)."""

from __future__ import annotations

import sys

from bgmon.formats import canonical_input
from bgmon.model import Event, EventKind, clip
from bgmon.timefmt import parse_time

_KINDS = {
    "tool_call": EventKind.TOOL_CALL,
    "tool_result": EventKind.TOOL_RESULT,
    "progress": EventKind.PROGRESS,
    "step": EventKind.STEP,
    "error": EventKind.ERROR,
    "message": EventKind.MESSAGE,
    "heartbeat": EventKind.HEARTBEAT,
    "waiting": EventKind.WAITING,  # blocked on a person; `text` says on what
    "resumed": EventKind.RESUMED,  # running again
}


def _int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value == value:
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return None
    return None


def _text(value: object, limit: int = 400) -> str | None:
    if value is None:
        return None
    return clip(value if isinstance(value, str) else str(value), limit)


def _name(value: object) -> str | None:
    """A tool's name: a small vocabulary repeated in every task's window of events, so one
    shared string each (interned strings are freed when no event holds them any more)."""
    text = _text(value, 80)
    return sys.intern(text) if text else text


def parse(obj: dict) -> list[Event] | None:
    raw = obj.get("type")
    kind = _KINDS.get(raw) if isinstance(raw, str) else None
    if kind is None:
        return None
    ok = obj.get("ok")
    error = _text(obj.get("error"))
    if kind is EventKind.TOOL_RESULT and not isinstance(ok, bool):
        ok = error is None
    text = obj.get("text")
    stream = obj.get("stream")
    if stream and isinstance(text, str):
        text = f"[{stream}] {text}"
    return [
        Event(
            kind=kind,
            ts=parse_time(obj.get("ts")),
            tool=_name(obj.get("tool")),
            call_id=_text(obj.get("call_id"), 120),
            input=canonical_input(obj.get("input")) if kind is EventKind.TOOL_CALL else None,
            ok=ok if isinstance(ok, bool) else None,
            error=error,
            done=_int(obj.get("done")),
            total=_int(obj.get("total")),
            text=_text(text),
            source=_text(obj.get("source"), 40) if isinstance(obj.get("source"), str) else None,
            pattern=_text(obj.get("pattern"), 80) if isinstance(obj.get("pattern"), str) else None,
        )
    ]
