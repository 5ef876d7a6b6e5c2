"""Gemini CLI: `~/.gemini/tmp/<project>/chats/session-*.json` (one JSON document per session,
rewritten whole as it grows) and, from 0.2x, `session-*.jsonl` (a metadata line, then message
records appended again each time they change, `$set` and `$rewindTo` lines); sub-agents in
`chats/<parent session id>/<id>.jsonl`. Both are read as documents: the session's events are
rebuilt from the last good read (a half-written JSON document keeps the previous one).
"""

from __future__ import annotations

import os
import re

import orjson

from bgmon.agents.base import Agent, DocFormat, DocumentUnreadable, Scan, json_object
from bgmon.formats import canonical_input, checklist_events
from bgmon.model import Event, EventKind, clip
from bgmon.sources.files import read_regular
from bgmon.sources.found import TaskSpec, is_dir, mtime, scandir
from bgmon.timefmt import parse_time

NAME = "gemini"
MAX_DOCUMENT = 64 << 20  # a session bigger than this is not read whole (warned instead)
_EXIT = re.compile(r"Exit Code: (-?\d+)")
_SUFFIXES = (".json", ".jsonl")


# -- where sessions live --------------------------------------------------------------------


def discover(scan: Scan) -> None:
    assert scan.home is not None
    found = scan.found
    tmp = scan.home / "tmp"
    found.looked.append(str(tmp / "*" / "chats" / "session-*.json"))
    for project in scandir(str(tmp), found):
        chats = os.path.join(project.path, "chats")
        if not is_dir(project) or not os.path.isdir(chats):
            continue
        found.watch.add(chats)
        cwd = project_root(project.path)
        group = cwd or project.path
        for entry in scandir(chats, found):
            if entry.name.startswith("session-") and entry.name.endswith(_SUFFIXES):
                if mtime(entry) >= scan.cutoff:
                    short = _short_id(entry.name)
                    found.specs.append(_spec(f"{NAME}:{short}", short, entry.path, group, None))
            elif is_dir(entry):
                _subagents(entry, group, scan)


def _subagents(parent_dir: os.DirEntry, group: str, scan: Scan) -> None:
    """`chats/<parent session id>/<id>.jsonl`: the parent's short id is its first 8 characters,
    as in the parent's own file name."""
    parent_key = f"{NAME}:{parent_dir.name[:8]}"
    for entry in scandir(parent_dir.path, scan.found):
        if entry.name.endswith(_SUFFIXES) and mtime(entry) >= scan.cutoff:
            scan.found.watch.add(parent_dir.path)
            stem = entry.name.rsplit(".", 1)[0]
            found_key = f"{parent_key}/{stem}"
            scan.found.specs.append(_spec(found_key, stem[:8], entry.path, group, parent_key))


def _short_id(filename: str) -> str:
    """`session-2026-01-02T10-20-3b44bc68.json` → `3b44bc68` (the session id's first 8)."""
    return filename.rsplit(".", 1)[0].rsplit("-", 1)[-1]


def _spec(key: str, short: str, path: str, group: str, parent: str | None) -> TaskSpec:
    name = short if parent else (os.path.basename(group.rstrip("/")) or short)
    return TaskSpec(key=key, source=NAME, id=short, name=name, path=path, group=group,
                    parent=parent, fmt=NAME, transcript=True, document=path)


def project_root(project_dir: str) -> str | None:
    """The project a `tmp/<project>` folder belongs to: newer versions write its path into
    `.project_root`; older ones name the folder by a hash of it (not reversible)."""
    try:
        text = read_regular(os.path.join(project_dir, ".project_root"), 4096).decode("utf-8", "replace")
    except OSError:
        return None
    text = text.strip()
    return text if text.startswith("/") else None


# -- reading a session ------------------------------------------------------------------------


def load(path: str) -> list[Event]:
    try:
        data = read_regular(path, MAX_DOCUMENT + 1)
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise DocumentUnreadable(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_DOCUMENT:
        raise DocumentUnreadable(f"{path} is larger than {MAX_DOCUMENT >> 20} MiB; not read")
    conversation = _jsonl(data) if path.endswith(".jsonl") else json_object(path, data)
    events = []
    cwd = project_root(os.path.dirname(os.path.dirname(path)))
    dirs = conversation.get("directories")
    if cwd is None and isinstance(dirs, list) and dirs and isinstance(dirs[0], str):
        cwd = dirs[0]
    if cwd:
        events.append(Event(EventKind.META, ts=parse_time(conversation.get("startTime")), cwd=cwd))
    for message in conversation.get("messages") or ():
        if isinstance(message, dict):
            message_events(message, events)
    return events


def _jsonl(data: bytes) -> dict:
    """The append-only form, folded as Gemini CLI folds it: the latest record of a message id
    wins (in its first place), `$rewindTo` drops that message and everything after it, `$set`
    updates the metadata. A torn last line is skipped (it is complete on the next read)."""
    meta: dict = {}
    messages: dict[str, dict] = {}
    for line in data.split(b"\n"):
        if not line.strip():
            continue
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if not isinstance(record, dict):
            continue
        if isinstance(record.get("$rewindTo"), str):
            ids = list(messages)
            cut = ids.index(record["$rewindTo"]) if record["$rewindTo"] in ids else 0
            for mid in ids[cut:]:
                del messages[mid]
        elif isinstance(record.get("id"), str):
            messages[record["id"]] = record
        elif isinstance(record.get("$set"), dict):
            meta.update(record["$set"])
        elif isinstance(record.get("sessionId"), str):
            meta.update(record)
    if isinstance(meta.get("messages"), list):  # a whole history set at once
        return meta
    return {**meta, "messages": list(messages.values())}


def _text(content: object) -> str:
    """Text of a PartListUnion: a string, a part, or a list of parts (text and tool outputs)."""
    if isinstance(content, str):
        return content
    parts = content if isinstance(content, list) else [content]
    out = []
    for part in parts:
        if isinstance(part, str):
            out.append(part)
        elif isinstance(part, dict):
            if isinstance(part.get("text"), str) and not part.get("thought"):
                out.append(part["text"])
            response = (part.get("functionResponse") or {}).get("response")
            if isinstance(response, dict):
                for key in ("output", "error"):
                    if isinstance(response.get(key), str):
                        out.append(response[key])
    return "\n".join(out)


def message_events(message: dict, out: list[Event]) -> None:
    kind = message.get("type")
    ts = parse_time(message.get("timestamp"))
    text = _text(message.get("content")).strip()
    if kind == "user":
        if text:
            out.append(Event(EventKind.TURN_START, ts=ts, text=clip(text, 400)))
    elif kind == "error":
        out.append(Event(EventKind.API_ERROR, ts=ts, text=clip(text or "error", 400)))
    elif kind == "gemini":
        if text:
            out.append(Event(EventKind.MESSAGE, ts=ts, text=clip(text, 400)))
        calls = [c for c in message.get("toolCalls") or () if isinstance(c, dict)]
        for call in calls:
            _tool_call(call, ts, out)
        if text and not calls:
            # The answer after the last tool result ends the turn; nothing marks the end for
            # sure, so it is a tentative end (it settles unless more work follows).
            out.append(Event(EventKind.TURN_END, ts=ts, text="text_only"))


def _tool_call(call: dict, msg_ts: float | None, out: list[Event]) -> None:
    ts = parse_time(call.get("timestamp")) or msg_ts
    name = clip(str(call.get("name") or "tool"), 80)
    call_id = clip(str(call.get("id") or ""), 120) or None
    args = call.get("args")
    out.append(Event(EventKind.TOOL_CALL, ts=ts, tool=name, call_id=call_id, input=canonical_input(args)))
    if name == "write_todos" and isinstance(args, dict):
        checklist_events(args.get("todos"), lambda item: item.get("description"), ts, out)
    status = call.get("status")
    if status == "success":
        result = _text(call.get("result"))
        code = _EXIT.search(result)
        ok = code is None or code.group(1) == "0"
        error = None if ok else clip(_display(call) or result, 400)
        out.append(Event(EventKind.TOOL_RESULT, ts=ts, tool=name, call_id=call_id, ok=ok, error=error))
    elif status == "error":
        error = _display(call) or _text(call.get("result")) or "error"
        out.append(Event(EventKind.TOOL_RESULT, ts=ts, tool=name, call_id=call_id, ok=False,
                         error=clip(error, 400)))
    elif status == "cancelled":
        out.append(Event(EventKind.TURN_ABORTED, ts=ts, text=f"{name} cancelled"))
    elif status == "awaiting_approval":
        out.append(Event(EventKind.WAITING, ts=ts, text=f"approval to run {name}"))


def _display(call: dict) -> str | None:
    display = call.get("resultDisplay")
    return display.strip() if isinstance(display, str) and display.strip() else None


AGENT = Agent(
    name=NAME,
    label="Gemini CLI sessions",
    discover=discover,
    formats=(DocFormat(NAME, load),),
    home="~/.gemini",
    home_env=(("GEMINI_CLI_HOME", ".gemini"),),
    processes=frozenset({"gemini"}),
)
