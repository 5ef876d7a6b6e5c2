"""The JSON contract (version 1): `--once --json` documents and `--follow --json` lines.

See docs/formats.md. Add fields freely; never rename or remove one without bumping VERSION.
"""

from __future__ import annotations

from typing import Any

import orjson

from bgmon.engine import Change
from bgmon.model import TaskSnapshot
from bgmon.timefmt import iso

VERSION = 1


def task_json(s: TaskSnapshot) -> dict[str, Any]:
    return {
        "key": s.key,
        "id": s.id,
        "name": s.name,
        "source": s.source,
        "group": s.group,
        "parent": s.parent,
        "status": s.status,
        "health": s.health.badge.value,
        "reasons": [r.to_json() for r in s.health.reasons],
        "progress": {"done": s.progress.done, "total": s.progress.total} if s.progress else None,
        "step": s.step,
        "last_activity": iso(s.last_activity),
        "pid": s.pid,
        "path": s.path,
        "note": s.note,
        "warnings": list(s.warnings),
    }


def document(snaps: list[TaskSnapshot], now: float, warnings: list[str]) -> bytes:
    doc = {
        "version": VERSION,
        "now": iso(now),
        "tasks": [task_json(s) for s in snaps],
        "warnings": warnings,
    }
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n"


def change_lines(changes: list[Change], now: float) -> list[bytes]:
    """One JSON line per change, for `--follow --json`."""
    out = []
    at = iso(now)
    for c in changes:
        if c.kind == "added" and c.snapshot is not None:
            obj = {"event": "added", "at": at, "task": task_json(c.snapshot)}
        elif c.kind == "removed":
            obj = {"event": "removed", "at": at, "key": c.key}
        elif c.kind == "health" and c.snapshot is not None:
            obj = {
                "event": "health",
                "key": c.key,
                "id": c.snapshot.id,
                "from": c.previous.badge.value if c.previous else None,
                "to": c.snapshot.health.badge.value,
                "reasons": [r.to_json() for r in c.snapshot.health.reasons],
                "at": at,
            }
        else:
            continue
        out.append(orjson.dumps(obj) + b"\n")
    return out


def snapshot_line(s: TaskSnapshot, now: float) -> bytes:
    return orjson.dumps({"event": "snapshot", "at": iso(now), "task": task_json(s)}) + b"\n"
