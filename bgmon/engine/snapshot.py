"""The snapshot builder: one task's record and verdict → the `TaskSnapshot` every view renders."""

from __future__ import annotations

import os

from bgmon.engine.store import TaskRecord, as_int
from bgmon.health import last_progress, last_sign_of_life
from bgmon.model import Acknowledged, Health, Progress, TaskSnapshot


def parse_progress(value: object) -> Progress | None:
    """`{"done": 2, "total": 5}` or `"2/5"` → Progress."""
    if isinstance(value, dict):
        done, total = as_int(value.get("done")), as_int(value.get("total"))
    elif isinstance(value, str) and "/" in value:
        left, _, right = value.partition("/")
        done, total = as_int(left), as_int(right)
    else:
        return None
    if done is None or total is None or total < 0:
        return None
    return Progress(max(0, done), total)


def task_id(record: TaskRecord) -> str:
    value = record.fields.get("id")
    return value if isinstance(value, str) and value else record.spec.id


def subagent_name(record: TaskRecord) -> str | None:
    """A sub-agent session named by its kind ("review sub-agent"): its place is its parent's,
    so the place says nothing; also the name its parent's roll-up knows it by."""
    kind = record.activity.subagent
    return f"{kind} sub-agent" if record.spec.transcript and kind else None


def own_health(record: TaskRecord, health: Health) -> Health | None:
    """The task's own verdict, when its children's roll-up shows something else."""
    return record.own if record.own is not None and record.own != health else None


def build(record: TaskRecord, health: Health, parent: str | None, note: str | None,
          ack: Acknowledged | None = None) -> TaskSnapshot:
    spec, fields, act = record.spec, record.fields, record.activity
    obs_life = last_sign_of_life(record.obs)[0] if record.obs else None
    obs_work = last_progress(record.obs)[0] if record.obs else None
    name = fields.get("name") if isinstance(fields.get("name"), str) else None
    if name is None:
        name = subagent_name(record)
    if name is None and spec.transcript and act.cwd and spec.parent is None:
        name = os.path.basename(act.cwd.rstrip("/")) or spec.name
    group = spec.group
    if spec.transcript and act.cwd:
        group = act.cwd
    command = fields.get("command")
    argv = tuple(str(a) for a in command) if isinstance(command, list) and command else None
    step = fields.get("step") if isinstance(fields.get("step"), str) else act.step
    files = tuple(p for p in (spec.status_file, spec.document, *record.feeds) if p)
    cwd = fields.get("cwd") if isinstance(fields.get("cwd"), str) else None
    return TaskSnapshot(
        key=spec.key,
        id=task_id(record),
        name=name or spec.name,
        source=spec.source,
        group=group,
        parent=parent,
        status=status_word(record),
        health=health,
        own_health=own_health(record, health),
        progress=parse_progress(fields.get("progress")) or act.progress,
        step=step,
        last_activity=obs_life,
        last_progress=obs_work,
        pid=record.pids[0],
        path=spec.path,
        files=files,
        fields=fields,  # shared: a StatusReader replaces its dict, never changes it
        recent=tuple(act.recent),  # Activity keeps just the window a snapshot shows
        proc=record.proc,
        note=note,
        # An acknowledgement holds for the badge it was given for, not for the next one.
        ack=ack if ack is not None and ack.badge == health.badge.value else None,
        warnings=tuple(task_warnings(record)),
        cwd=cwd or act.cwd or (spec.path if spec.source == "worktree" else None),
        command=argv,
    )


def status_word(record: TaskRecord) -> str:
    if record.status is not None:
        status = record.fields.get("status")
        return status if isinstance(status, str) else "unknown"
    turn = record.activity.current_turn()[0]
    return {"ended": "idle", "aborted": "aborted", "api_error": "api-error"}.get(turn or "", "running")


def task_warnings(record: TaskRecord) -> list[str]:
    out = [w for w in (record.fault, record.cycle) if w]
    if record.status is not None and record.status.stale:
        kept = "keeping the last good value" if record.status.fields is not None else "no good value yet"
        out.append(f"status.json unreadable ({record.status.error}); {kept}")
    doc = record.document
    if doc is not None and doc.stale:
        kept = "keeping the last good value" if doc.events is not None else "no good value yet"
        out.append(f"session unreadable ({doc.error}); {kept}")
    version = record.fields.get("version")
    if version not in (None, 1, "1"):
        out.append(f"status.json version {version!r} is newer than this bgmon knows; reading known fields")
    out += [f"log {p} is outside the task directory; not read (allow it with log_dirs under "
            "[reading])" for p in record.outside_logs]
    for path, feed in record.feeds.items():
        name = os.path.basename(path)
        out += [f"{name}: {p}" for p in feed.reader.stats.problems()]
        if feed.unknown_types:
            out.append(f"{name}: {feed.unknown_types} line(s) of unknown type skipped")
        if feed.reader.stats.missing:
            out.append(f"{name}: log file is missing (deleted or rotated away)")
    return out
