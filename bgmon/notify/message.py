"""One notification's words, built once for every sink: title, lines, environment, bodies.

Everything from task data passes bgmon's printable boundary (bgmon/printable.py) when the Alert
is made (`alert_for`), and is folded to one line, so no sink can pass a task's control
characters to a terminal, a desktop or a command, nor break an OSC sequence with a newline.
"""

from __future__ import annotations

from typing import Any

import orjson

from bgmon.clip import flat
from bgmon.model import Badge, TaskSnapshot
from bgmon.notify.policy import Alert, Batch
from bgmon.printable import printable, single_line
from bgmon.resolve import task_label

MAX_LINES = 10  # a notification lists at most this many tasks, then "… and N more"


def shown(text: str, limit: int | None = None) -> str:
    """Task text as a notification may carry it: controls made visible, on one line, and cut
    to `limit` (keys, ids and paths are never cut: a cut one cannot be typed back)."""
    return flat(printable(text), limit) if limit else single_line(text)


def alert_for(s: TaskSnapshot) -> Alert:
    first = s.health.reasons[0] if s.health.reasons else None
    return Alert(
        key=shown(s.key), id=shown(s.id), name=shown(s.name, 80), group=shown(s.group),
        path=shown(s.path), old=None, new=s.health.badge.value,
        reason=shown(first.detail, 300) if first else "",
        rule=first.rule if first else None, since=0.0,
    )


def _glyph(badge: str | None) -> str:
    try:
        return Badge(badge).glyph if badge else ""
    except ValueError:
        return ""


def open_hint(a: Alert) -> str:
    """How to get to the task: its evidence from a shell, and where its files are."""
    return f"open: bgmon history {a.id} · {a.path}"


def line(a: Alert) -> str:
    """`✗ name #id: healthy → failed: reason`, named as --once names tasks."""
    who = task_label(a.name, a.id)
    was = f"{a.old} → " if a.old else "new, "
    why = f": {a.reason}" if a.reason else ""
    return f"{_glyph(a.new)} {who}: {was}{a.new}{why}"


def title(batch: Batch) -> str:
    if len(batch.alerts) == 1:
        a = batch.alerts[0]
        return f"bgmon: {a.name} {a.new}"
    return f"bgmon: {len(batch.alerts)} tasks changed"


def lines(batch: Batch) -> list[str]:
    alerts = batch.alerts
    out = [line(a) for a in alerts[:MAX_LINES]]
    if len(alerts) == 1:
        out.append(open_hint(alerts[0]))
    elif len(alerts) > MAX_LINES:
        out.append(f"… and {len(alerts) - MAX_LINES} more (bgmon --once)")
    return out


def body(batch: Batch) -> str:
    return "\n".join(lines(batch))


def environment(batch: Batch) -> dict[str, str]:
    """BGMON_* variables for the command sink: the first (worst) task, plus the whole batch."""
    a = batch.alerts[0]
    return {
        "BGMON_OLD_BADGE": a.old or "",
        "BGMON_NEW_BADGE": a.new,
        "BGMON_TASK_KEY": a.key,
        "BGMON_TASK_ID": a.id,
        "BGMON_TASK_NAME": a.name,
        "BGMON_TASK_PATH": a.path,
        "BGMON_REASON": a.reason,
        "BGMON_RULE": a.rule or "",
        "BGMON_COUNT": str(len(batch.alerts)),
        "BGMON_TITLE": title(batch),
        "BGMON_MESSAGE": body(batch),
        "BGMON_ALERTS": orjson.dumps([alert_json(x) for x in batch.alerts]).decode(),
    }


def alert_json(a: Alert) -> dict[str, Any]:
    return {"key": a.key, "id": a.id, "name": a.name, "group": a.group, "path": a.path,
            "from": a.old, "to": a.new, "reason": a.reason, "rule": a.rule}


_NTFY_TAGS = {"failed": "x", "stuck": "pause_button", "struggling": "warning",
              "waiting": "hourglass", "healthy": "white_check_mark", "completed": "checkered_flag"}


def ntfy_body(batch: Batch, topic: str) -> dict[str, Any]:
    """ntfy's JSON publishing form (POSTed to the server's root URL, the topic in the body)."""
    worst = batch.alerts[0]
    return {
        "topic": topic,
        "title": title(batch),
        "message": body(batch),
        "tags": [_NTFY_TAGS.get(worst.new, "bell")],
        "priority": 4 if worst.severity >= 4 else 3,
    }


def slack_body(batch: Batch) -> dict[str, Any]:
    """A Slack incoming webhook's body: `text`, in Slack's plain mrkdwn."""
    text = "*" + _slack_escape(title(batch)) + "*\n" + "\n".join(_slack_escape(x) for x in lines(batch))
    return {"text": text}


def _slack_escape(text: str) -> str:
    # Slack treats these three as control characters in message text.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def json_body(batch: Batch) -> dict[str, Any]:
    return {"title": title(batch), "message": body(batch),
            "alerts": [alert_json(a) for a in batch.alerts]}
