"""GitHub Copilot CLI: `~/.copilot/session-state/<session id>/events.jsonl` (or $COPILOT_HOME),
one event per line `{type, data, id, timestamp, parentId}` (the schema of github/copilot-sdk's
session-events). Older versions wrote `session-state/<session id>.jsonl`.

Sub-agents (the `task` tool) write to the same file: `subagent.started` / `completed` / `failed`
name the one that started or ended by the `toolCallId` of the call that spawned it, and every
line a sub-agent writes carries that id: in the envelope's `agentId` (1.0.39+), before that in
`data.parentToolCallId`. Each sub-agent is its own task (`sub_agents`); the session's own
events (`parse`) leave its lines out.
"""

from __future__ import annotations

import os
import re

from bgmon.agents.base import Agent, LineFormat, Scan, SubAgentShare
from bgmon.formats import canonical_input, dict_at
from bgmon.model import Event, EventKind, clip
from bgmon.sources.found import TaskSpec, is_dir, mtime, scandir
from bgmon.timefmt import parse_time

NAME = "copilot"
EVENTS = "events.jsonl"
_EXIT = re.compile(r"<exited with exit code (-?\d+)>")
_TODO = re.compile(r"^\s*[-*]\s*\[([ xX~-])\]\s*(.+)$", re.M)


def discover(scan: Scan) -> None:
    assert scan.home is not None
    found = scan.found
    state = scan.home / "session-state"
    found.looked.append(str(state / "*" / EVENTS))
    entries = scandir(str(state), found)
    if entries:
        found.watch.add(str(state))
    for entry in entries:
        if is_dir(entry):
            path, sid = os.path.join(entry.path, EVENTS), entry.name
            if os.path.isfile(path):
                found.watch.add(entry.path)
        elif entry.name.endswith(".jsonl"):
            path, sid = entry.path, entry.name[:-6]
        else:
            continue
        if mtime(path) < scan.cutoff:
            continue
        found.specs.append(TaskSpec(
            key=f"{NAME}:{sid}", source=NAME, id=sid[:8], name=sid[:8], path=path, group=NAME,
            logs=(path,), fmt=NAME, transcript=True,
        ))


def _todos(text: object, ts: float | None, out: list[Event]) -> None:
    """`update_todo`'s markdown checklist → progress (checked of all) and the first open item."""
    if not isinstance(text, str):
        return
    items = _TODO.findall(text)
    if not items:
        return
    done = sum(1 for mark, _ in items if mark in "xX")
    out.append(Event(EventKind.PROGRESS, ts=ts, done=done, total=len(items)))
    current = next((t.strip() for mark, t in items if mark not in "xX"), None)
    if current:
        out.append(Event(EventKind.STEP, ts=ts, text=clip(current, 400)))


def parse(obj: dict) -> list[Event] | None:
    """The session's own events of a line ([] for a line one of its sub-agents wrote)."""
    kind, data = obj.get("type"), obj.get("data")
    if not isinstance(kind, str) or not isinstance(data, dict):
        return None
    ts = parse_time(obj.get("timestamp"))
    lifecycle = _LIFECYCLE.get(kind)
    if lifecycle is not None:
        child, spawner = _lifecycle_ids(obj, data)
        return lifecycle(data, ts, child)[1] if spawner is None else []
    if _owner(obj, data) is not None:
        return []
    handler = _HANDLERS.get(kind)
    return handler(data, ts) if handler else []


def sub_agents(obj: dict) -> list[SubAgentShare]:
    """Each sub-agent's share of a line: a line it wrote, or its start or end."""
    kind, data = obj.get("type"), obj.get("data")
    if not isinstance(kind, str) or not isinstance(data, dict):
        return []
    lifecycle = _LIFECYCLE.get(kind)
    if lifecycle is not None:
        child, spawner = _lifecycle_ids(obj, data)
        if child is None:
            return []
        own, spawner_events = lifecycle(data, parse_time(obj.get("timestamp")), child)
        name = data.get("agentDisplayName") or data.get("agentName")
        shares = [SubAgentShare(spawner, spawner_events)] if spawner is not None else []
        shares.append(SubAgentShare(child, own, spawner, clip(name, 60) if isinstance(name, str) else None))
        return shares
    owner = _owner(obj, data)
    if owner is None:
        return []
    handler = _HANDLERS.get(kind)
    return [SubAgentShare(owner, handler(data, parse_time(obj.get("timestamp"))) if handler else [])]


def _owner(obj: dict, data: dict) -> str | None:
    """The sub-agent that wrote a line (None: the session's main agent)."""
    agent = obj.get("agentId")
    if not isinstance(agent, str) or not agent:
        agent = data.get("parentToolCallId")
    return clip(agent, 120) if isinstance(agent, str) and agent else None


def _lifecycle_ids(obj: dict, data: dict) -> tuple[str | None, str | None]:
    """(the sub-agent a `subagent.*` line is about, the sub-agent that spawned it or None).
    Newer versions stamp the line with the sub-agent's own id as its `agentId`."""
    child = data.get("toolCallId")
    child = clip(child, 120) if isinstance(child, str) and child else None
    spawner = _owner(obj, data)
    return child, spawner if spawner != child else None


def _start(data: dict, ts: float | None) -> list[Event]:
    context = dict_at(data, "context")
    cwd = context.get("cwd")
    sid = data.get("sessionId")
    return [Event(EventKind.META, ts=ts, cwd=cwd if isinstance(cwd, str) else None,
                  text=sid if isinstance(sid, str) else None)]


def _user(data: dict, ts: float | None) -> list[Event]:
    text = data.get("content")
    return [Event(EventKind.TURN_START, ts=ts, text=clip(text if isinstance(text, str) else "prompt", 400))]


def _assistant(data: dict, ts: float | None) -> list[Event]:
    text = data.get("content")
    out = []
    if isinstance(text, str) and text.strip():
        out.append(Event(EventKind.MESSAGE, ts=ts, text=clip(text.strip(), 400)))
        if not data.get("toolRequests"):
            # A reply without tool requests is the turn's answer; nothing else marks the end in
            # the file (session.idle is not written), so it is a tentative end.
            out.append(Event(EventKind.TURN_END, ts=ts, text="text_only"))
    return out


def _tool_start(data: dict, ts: float | None) -> list[Event]:
    tool = clip(str(data.get("toolName") or "tool"), 80)
    call_id = clip(str(data.get("toolCallId") or ""), 120) or None
    args = data.get("arguments")
    out = [Event(EventKind.TOOL_CALL, ts=ts, tool=tool, call_id=call_id, input=canonical_input(args))]
    if tool == "update_todo" and isinstance(args, dict):
        _todos(args.get("todos"), ts, out)
    return out


def _tool_complete(data: dict, ts: float | None) -> list[Event]:
    call_id = clip(str(data.get("toolCallId") or ""), 120) or None
    result = dict_at(data, "result")
    text = result.get("content")
    content = text if isinstance(text, str) else ""
    error = dict_at(data, "error")
    ok = data.get("success") is not False
    why = None if ok else str(error.get("message") or content or "failed")
    code = _EXIT.search(content)
    if ok and code is not None and code.group(1) != "0":
        ok, why = False, f"exit code {code.group(1)}: {content[: code.start()].strip()}"
    why = clip(why, 400)
    return [Event(EventKind.TOOL_RESULT, ts=ts, call_id=call_id, ok=ok, error=why)]


def _abort(data: dict, ts: float | None) -> list[Event]:
    return [Event(EventKind.TURN_ABORTED, ts=ts, text=clip(str(data.get("reason") or "aborted"), 400))]


def _error(data: dict, ts: float | None) -> list[Event]:
    text = f"{data.get('errorType') or 'error'}: {data.get('message') or ''}".strip()
    return [Event(EventKind.API_ERROR, ts=ts, text=clip(text, 400))]


def _idle(data: dict, ts: float | None) -> list[Event]:
    kind = EventKind.TURN_ABORTED if data.get("aborted") else EventKind.TURN_END
    return [Event(kind, ts=ts, text="idle")]


def _shutdown(data: dict, ts: float | None) -> list[Event]:
    if data.get("shutdownType") == "error":
        return [Event(EventKind.API_ERROR, ts=ts, text=clip(str(data.get("errorReason") or "crashed"), 400))]
    return [Event(EventKind.TURN_END, ts=ts, text="shutdown")]


# A sub-agent's start and end: (its own events, its spawner's). For the spawner it is
# background work that keeps its turn open; its faults are the sub-agent's own (rolled up).

def _sub_started(data: dict, ts: float | None, child: str | None) -> tuple[list[Event], list[Event]]:
    what = data.get("agentDescription") or data.get("agentDisplayName") or data.get("agentName")
    own = [Event(EventKind.TURN_START, ts=ts, text=clip(str(what or "sub-agent"), 400))]
    return own, [Event(EventKind.BG_START, ts=ts, call_id=child, text=clip(str(data.get("agentName")), 80))]


def _sub_completed(data: dict, ts: float | None, child: str | None) -> tuple[list[Event], list[Event]]:
    # Torn down by a cancellation, it still completes: not a failure (the schema says so).
    why = "cancelled" if data.get("cancelled") else "completed"
    return [Event(EventKind.TURN_END, ts=ts, text=why)], [Event(EventKind.BG_END, ts=ts, call_id=child, ok=True)]


def _sub_failed(data: dict, ts: float | None, child: str | None) -> tuple[list[Event], list[Event]]:
    own = [Event(EventKind.API_ERROR, ts=ts, text=clip(f"sub-agent failed: {data.get('error') or ''}", 400))]
    return own, [Event(EventKind.BG_END, ts=ts, call_id=child, ok=False)]


def _asked(data: dict, ts: float | None) -> list[Event]:
    request = dict_at(data, "permissionRequest")
    what = request.get("fullCommandText") or request.get("kind") or data.get("question") or "a question"
    return [Event(EventKind.WAITING, ts=ts, text=clip(f"permission or answer: {what}", 200))]


def _answered(data: dict, ts: float | None) -> list[Event]:
    return [Event(EventKind.RESUMED, ts=ts, text="answered")]


def _heartbeat(data: dict, ts: float | None) -> list[Event]:
    return [Event(EventKind.HEARTBEAT, ts=ts)]


_HANDLERS = {
    "session.start": _start,
    "session.resume": _start,
    "user.message": _user,
    "assistant.message": _assistant,
    "assistant.turn_start": _heartbeat,
    "assistant.turn_end": _heartbeat,
    "tool.execution_start": _tool_start,
    "tool.execution_progress": _heartbeat,
    "tool.execution_complete": _tool_complete,
    "abort": _abort,
    "session.error": _error,
    "session.idle": _idle,
    "session.shutdown": _shutdown,
    "permission.requested": _asked,
    "permission.completed": _answered,
    "user_input.requested": _asked,
    "user_input.completed": _answered,
}
_LIFECYCLE = {
    "subagent.started": _sub_started,
    "subagent.completed": _sub_completed,
    "subagent.failed": _sub_failed,
}


def looks_like(obj: dict) -> bool:
    return isinstance(obj.get("data"), dict) and "parentId" in obj and isinstance(obj.get("type"), str) \
        and "." in obj["type"]


AGENT = Agent(
    name=NAME,
    label="GitHub Copilot CLI sessions",
    discover=discover,
    formats=(LineFormat(NAME, parse, looks_like, head_first=True, sub_agents=sub_agents),),
    home="~/.copilot",
    home_env=(("COPILOT_HOME", ""),),
    processes=frozenset({"copilot"}),
)
