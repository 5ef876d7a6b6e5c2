"""The JSON contract (version 1): `--once --json` documents and `--follow --json` lines.

The `--follow --json` stream is also the wire protocol between bgmon hosts (`--remote`): a
`hello` line, a `snapshot` line per task, a `synced` line, then one line per change. See
docs/formats.md. Add fields and events freely (readers skip events they do not know); never
rename or remove one without bumping VERSION.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import orjson

from bgmon import __version__
from bgmon.engine import Change
from bgmon.model import Acknowledged, Badge, Health, Progress, Reason, TaskSnapshot
from bgmon.printable import json_printable
from bgmon.timefmt import iso, parse_time

VERSION = 1
# `--follow --json` writes a heartbeat this often: the only way a stream whose reader has gone
# finds out while nothing changes (behind ssh its stdout is a pipe that merely closes; the
# write gets EPIPE). Readers skip it like any event they do not use.
HEARTBEAT = 5.0


def local_host() -> str:
    """This machine's name, as the `hello` line and the metrics' `host` label give it."""
    return socket.gethostname() or "localhost"


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
        "last_progress": iso(s.last_progress),
        "pid": s.pid,
        "path": s.path,
        "note": s.note,
        "acknowledged": {"badge": s.ack.badge, "note": s.ack.note, "at": iso(s.ack.at)}
        if s.ack is not None else None,
        "warnings": list(s.warnings),
        "host": s.host,
    }


def document(snaps: list[TaskSnapshot], now: float, warnings: list[str]) -> bytes:
    doc = {
        "version": VERSION,
        "now": iso(now),
        "host": local_host(),
        "bgmon": __version__,
        "tasks": [task_json(s) for s in snaps],
        "warnings": warnings,
    }
    return json_printable(orjson.dumps(doc, option=orjson.OPT_INDENT_2)) + b"\n"


def change_lines(changes: list[Change], now: float) -> Iterator[bytes]:
    """One JSON line per change, for `--follow --json`; made as they are written (a thousand
    tasks changing at once need not be a thousand lines in memory)."""
    at = iso(now)
    for c in changes:
        obj: dict[str, Any]
        if c.kind in ("added", "updated") and c.snapshot is not None:
            obj = {"event": c.kind, "at": at, "task": task_json(c.snapshot)}
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
                "task": task_json(c.snapshot),
            }
        else:
            continue
        yield _line(obj)


def _line(obj: dict[str, Any]) -> bytes:
    """One JSON line; task text escaped, never a raw control character (bgmon.printable)."""
    return json_printable(orjson.dumps(obj)) + b"\n"


def snapshot_line(s: TaskSnapshot, now: float) -> bytes:
    return _line({"event": "snapshot", "at": iso(now), "task": task_json(s)})


def hello_line(config: Any, now: float) -> bytes:
    """The stream's first line: who is speaking, in which protocol version."""
    return _line({
        "event": "hello", "version": VERSION, "bgmon": __version__, "host": local_host(),
        "roots": list(config.roots), "at": iso(now),
    })


def synced_line(tasks: int, warnings: list[str], now: float) -> bytes:
    """After the first snapshot lines: every task has been sent once."""
    return _line({"event": "synced", "tasks": tasks, "warnings": warnings, "at": iso(now)})


def heartbeat_line(now: float) -> bytes:
    """Nothing to say, and the writer is still there (also: is the reader?)."""
    return _line({"event": "heartbeat", "at": iso(now)})


def warnings_line(warnings: list[str], now: float) -> bytes:
    """The reading warnings, whenever they change (the whole list)."""
    return _line({"event": "warnings", "warnings": warnings, "at": iso(now)})


# -- reading the stream back (remote hosts) --------------------------------------------------


def _str(value: object, default: str = "") -> str:
    return value if isinstance(value, str) else default


def _opt_str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def task_from_json(obj: object, host: str) -> TaskSnapshot | None:
    """A task object of the stream → a TaskSnapshot of `host` (its key becomes `@host/key`, its
    group `host:group`). None when it has no usable key; any other field of the wrong type is
    taken as missing, never an error (the stream is another machine's output)."""
    if not isinstance(obj, dict) or not isinstance(obj.get("key"), str) or not obj["key"]:
        return None
    health = obj.get("health")
    try:
        badge = Badge(health) if isinstance(health, str) else Badge.UNKNOWN
    except ValueError:
        badge = Badge.UNKNOWN
    reasons = tuple(
        Reason(_str(r.get("rule"), "?"), _str(r.get("detail")))
        for r in obj.get("reasons") or () if isinstance(r, dict)
    ) if isinstance(obj.get("reasons"), list) else ()
    progress = None
    p = obj.get("progress")
    if isinstance(p, dict) and type(p.get("done")) is int and type(p.get("total")) is int:
        progress = Progress(p["done"], p["total"])
    inner = _opt_str(obj.get("host"))
    where = f"{host}/{inner}" if inner else host
    seen = obj.get("acknowledged")
    ack = None
    if isinstance(seen, dict) and seen.get("badge") == badge.value:
        ack = Acknowledged(badge.value, _opt_str(seen.get("note")), parse_time(seen.get("at")))
    parent = _opt_str(obj.get("parent"))
    pid = obj.get("pid")
    key = obj["key"]
    warnings = obj.get("warnings")
    return TaskSnapshot(
        key=remote_key(host, key),
        id=_str(obj.get("id"), key),
        name=_str(obj.get("name"), key),
        source=_str(obj.get("source"), "unknown"),
        group=f"{host}:{_str(obj.get('group'))}",
        parent=remote_key(host, parent) if parent else None,
        status=_str(obj.get("status"), "unknown"),
        health=Health(badge, reasons),
        progress=progress,
        step=_opt_str(obj.get("step")),
        last_activity=parse_time(obj.get("last_activity")),
        last_progress=parse_time(obj.get("last_progress")),
        pid=pid if type(pid) is int else None,
        path=_str(obj.get("path")),
        note=_opt_str(obj.get("note")),
        ack=ack,
        warnings=tuple(w for w in warnings if isinstance(w, str)) if isinstance(warnings, list) else (),
        host=where,
    )


def remote_key(host: str, key: str) -> str:
    """A remote task's key here: `@HOST/KEY` (unique across hosts; HOST names the remote)."""
    return f"@{host}/{key}"


def split_remote_key(key: str) -> tuple[str, str] | None:
    """`@HOST/KEY` → (HOST, KEY); None for a task of this machine."""
    if not key.startswith("@") or "/" not in key:
        return None
    host, _, inner = key[1:].partition("/")
    return host, inner
