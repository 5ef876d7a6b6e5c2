"""Adapters: each log format's lines → `Event`s.

An adapter is a pure function `parse(obj) -> list[Event] | None` over one decoded JSON line (a
dict, or the format's own record when it has a decoder of its own: `LineFormat.decode`): `None`
means "not a line type this format knows" (the reader counts it as skipped), `[]` means "known,
nothing of interest". Adapters hold no state; the engine's task state resolves call ids.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import orjson

from bgmon.model import Event, EventKind, clip

Parser = Callable[[Any], "list[Event] | None"]  # a dict, or a format's record (LineFormat.decode)
# A line's bytes → a record of the fields a format reads; raises ValueError (msgspec's errors are
# ValueErrors) for a line it cannot take, which the reader then decodes in full.
Decoder = Callable[[bytes], object]

_INPUT_LIMIT = 200


def dict_at(obj: dict, key: str) -> dict:
    """`obj[key]` when it is a JSON object, else an empty one (other programs' lines vary)."""
    value = obj.get(key)
    return value if isinstance(value, dict) else {}


def canonical_input(value: object) -> str | None:
    """A stable short text for a tool call's input: equal inputs give equal text.

    Long inputs keep a readable head and a digest of the whole, so two inputs that differ only
    after the cut are still told apart by the loop rule.
    """
    if value is None:
        return None
    if isinstance(value, str):
        text = value
    else:
        try:
            text = orjson.dumps(value, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS).decode()
        except (TypeError, orjson.JSONEncodeError):
            # Nested deeper than orjson allows (or not JSON at all): not worth a repr that
            # could recurse as deep; such inputs all compare equal, which is harmless.
            text = f"<{type(value).__name__} input that is not plain JSON>"
    if len(text) <= _INPUT_LIMIT:
        return text
    digest = hashlib.blake2b(text.encode("utf-8", "replace"), digest_size=6).hexdigest()
    return f"{text[:_INPUT_LIMIT - 16]}…#{digest}"


def checklist_events(
    items: object, step_of: Callable[[dict], object], ts: float | None, out: list[Event]
) -> None:
    """An agent's to-do list (Claude's TodoWrite, Codex's update_plan) → PROGRESS (completed of
    all) and STEP (the first in_progress item's text, as `step_of` finds it)."""
    if not isinstance(items, list):
        return
    done = total = 0
    current = None
    for item in items:
        if not isinstance(item, dict):
            continue
        total += 1
        status = item.get("status")
        if status == "completed":
            done += 1
        elif status == "in_progress" and current is None:
            current = step_of(item)
    if total == 0:
        return
    out.append(Event(EventKind.PROGRESS, ts=ts, done=done, total=total))
    # Nothing in progress in the newest list: the old step is over (an empty STEP clears it).
    step = clip(current, 400) if isinstance(current, str) and current else ""
    out.append(Event(EventKind.STEP, ts=ts, text=step))


def parser_for(name: str) -> Parser:
    """The line parser of a format name (the agents' registry knows them all)."""
    from bgmon.agents import parser_for as registered

    return registered(name)


def sniff(obj: dict) -> str:
    """Guess the format of a log from one decoded line (worktree logs may be any of them)."""
    from bgmon.agents import sniff as registered

    return registered(obj)
