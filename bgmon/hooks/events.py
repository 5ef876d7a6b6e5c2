"""Reading what the hook recorder wrote: hooks/<agent>/<session>.jsonl → events.

Each line is `{"ts", "event", …}` (see record.py). The events it gives are the agent's own
word on the session's state, which the engine prefers over what a transcript suggests
(`Activity.signal`): a prompt or a tool use means running, a permission prompt means waiting on
a person, a stop means the turn ended, a failed stop means it ended on an error.
"""

from __future__ import annotations

import os
from pathlib import Path

from bgmon.hooks.record import state_dir
from bgmon.model import Event, EventKind, clip
from bgmon.timefmt import parse_time


def hook_dir(agent: str) -> Path:
    return Path(state_dir()) / "hooks" / agent


def sessions(agent: str) -> dict[str, tuple[str, str]]:
    """Session id → (its hook event file, the line format), for every session with one."""
    folder = hook_dir(agent)
    try:
        names = os.listdir(folder)
    except OSError:
        return {}
    fmt = f"{agent}-hooks"
    return {n[:-6]: (str(folder / n), fmt) for n in names if n.endswith(".jsonl")}


def parse(obj: dict) -> list[Event] | None:
    event = obj.get("event")
    if not isinstance(event, str):
        return None
    ts = parse_time(obj.get("ts"))
    tool = obj.get("tool_name") if isinstance(obj.get("tool_name"), str) else None
    if event == "UserPromptSubmit":
        return [Event(EventKind.TURN_START, ts=ts, text="prompt submitted (hook)")]
    if event in ("PreToolUse", "PostToolUse", "PostToolUseFailure"):
        return [Event(EventKind.RESUMED, ts=ts, text=f"{event}: {tool or 'tool'} (hook)")]
    if event == "PermissionRequest" or (event == "Notification" and obj.get("notification_type") in _ASKS):
        what = _ASKS.get(str(obj.get("notification_type")), f"permission to use {tool or 'a tool'}")
        return [Event(EventKind.WAITING, ts=ts, text=what)]
    if event in ("Stop", "SessionEnd", "agent-turn-complete"):
        return [Event(EventKind.TURN_END, ts=ts, text=f"{event} (hook)")]
    if event == "StopFailure":
        return [Event(EventKind.API_ERROR, ts=ts, text=clip(f"turn stopped on an error: {obj.get('error') or '?'}", 200))]
    if event == "SubagentStop":
        return [Event(EventKind.MESSAGE, ts=ts, text=f"sub-agent {obj.get('agent_type') or ''} stopped (hook)")]
    return []


# Notification types that mean the agent waits on a person, and how to say it.
_ASKS = {"permission_prompt": "a permission prompt", "elicitation_dialog": "a question"}
