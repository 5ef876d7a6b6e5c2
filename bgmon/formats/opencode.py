"""oh-my-opencode's background task list (`.opencode/background-tasks.json`) → status fields.

The plugin keeps one JSON array of tasks (`bg_` ids, status, `progress{toolCalls,lastUpdate}`);
each entry becomes a task whose fields read like a `status.json`, so the same health rules
apply. (Later plugin versions keep this list in memory only; older ones still write it.)
"""

from __future__ import annotations

from collections.abc import Callable

from bgmon.formats import dict_at

_STATUS = {"error": "failed", "interrupted": "cancelled"}


def entries(data: object) -> list[dict]:
    """The task entries of a decoded file: dicts with a string id; anything else is skipped."""
    if not isinstance(data, list):
        return []
    return [e for e in data if isinstance(e, dict) and isinstance(e.get("id"), str) and e["id"]]


def status_fields(entry: dict) -> dict:
    progress = dict_at(entry, "progress")
    status = entry.get("status")
    fields: dict = {
        "id": entry["id"],
        "name": entry.get("description") or entry.get("agent") or entry["id"],
        "status": _STATUS.get(status, status) if isinstance(status, str) else "unknown",
        "timestamp": entry.get("startedAt"),
        "updatedAt": progress.get("lastUpdate") or entry.get("completedAt") or entry.get("startedAt"),
    }
    calls = progress.get("toolCalls")
    agent = entry.get("agent")
    if isinstance(calls, int) and not isinstance(calls, bool):
        fields["step"] = f"{agent or 'agent'}: {calls} tool call{'s' if calls != 1 else ''}"
    elif isinstance(agent, str):
        fields["step"] = f"agent {agent}"
    if entry.get("error") is not None:
        fields["error"] = entry["error"]
    return fields


def extractor(task_id: str) -> Callable[[object], dict | None]:
    """For `StatusReader`: pick one task's entry out of the whole file."""

    def extract(data: object) -> dict | None:
        for entry in entries(data):
            if entry["id"] == task_id:
                return status_fields(entry)
        return None

    return extract
