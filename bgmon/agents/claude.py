"""Claude Code: transcripts `~/.claude/projects/<project>/<session>.jsonl` (or $CLAUDE_CONFIG_DIR),
sub-agents in `<session>/subagents/agent-*.jsonl` (flat `agent-*.jsonl` up to 2.0), the per-process
state files `sessions/<pid>.json` (2.1.139+: status busy | idle | waiting), and bgmon's hook events
for the session when `bgmon hooks install claude` was run. The line parser is
`bgmon.formats.claude`; the state file and hook events outrank what the transcript suggests.
"""

from __future__ import annotations

import os

import orjson

from bgmon.agents.base import Agent, DocFormat, DocumentUnreadable, LineFormat, Scan, json_object
from bgmon.formats.claude import CHECKLIST_MARKS, decode, parse
from bgmon.hooks import events as hook_events
from bgmon.model import Event, EventKind
from bgmon.sources.files import read_regular
from bgmon.sources.found import Found, TaskSpec, is_dir, mtime, scandir

NAME = "claude"
STATE_FORMAT = "claude-state"


def project_cwd(project_dir_name: str) -> str:
    """Claude names a project folder after its cwd with '/' (and '.') turned into '-'.
    The transcript's own `cwd` replaces this guess once read."""
    return project_dir_name.replace("-", "/") if project_dir_name.startswith("-") else project_dir_name


def _session_of(path: str) -> str | None:
    try:
        head = read_regular(path, 64 << 10)
        obj = orjson.loads(head.split(b"\n", 1)[0])
    except (OSError, orjson.JSONDecodeError):
        return None
    sid = obj.get("sessionId") if isinstance(obj, dict) else None
    return sid if isinstance(sid, str) else None


def discover(scan: Scan) -> None:
    assert scan.home is not None
    found = scan.found
    projects = scan.home / "projects"
    found.looked.append(str(projects / "*" / "*.jsonl"))
    if not projects.is_dir():
        return
    found.watch.add(str(projects))
    cutoff = scan.cutoff
    states = _state_files(scan)
    hooks = hook_events.sessions(NAME)
    for project in scandir(str(projects), found):
        if not is_dir(project):
            continue
        group = project_cwd(project.name)
        entries = scandir(project.path, found)
        found.watch.add(project.path)
        for entry in entries:
            name = entry.name
            if name.endswith(".jsonl") and not name.startswith("agent-") and mtime(entry) >= cutoff:
                stem = name[:-6]
                signals = tuple(s for s in (states.get(stem), hooks.get(stem)) if s)
                found.specs.append(_spec(f"claude:{stem}", stem, entry.path, group, None, signals))
            elif name.startswith("agent-") and name.endswith(".jsonl") and mtime(entry) >= cutoff:
                # Claude ≤ 2.0: flat sub-agent files beside the session; the session id is inside.
                stem = name[:-6]
                parent = _session_of(entry.path)
                parent_key = f"claude:{parent}" if parent else None
                key = f"claude:{parent or '?'}/{stem}"
                found.specs.append(_spec(key, stem, entry.path, group, parent_key))
            elif is_dir(entry):
                _subagents(entry, group, cutoff, found)


def _subagents(session_dir: os.DirEntry, group: str, cutoff: float, found: Found) -> None:
    sub = os.path.join(session_dir.path, "subagents")
    entries = scandir(sub, found)
    if entries:
        found.watch.add(sub)
    found.watch.add(session_dir.path)
    for entry in entries:
        if entry.name.endswith(".jsonl") and mtime(entry) >= cutoff:
            stem = entry.name[:-6]
            parent_key = f"claude:{session_dir.name}"
            found.specs.append(_spec(f"{parent_key}/{stem}", stem, entry.path, group, parent_key))


def _spec(key: str, stem: str, path: str, group: str, parent: str | None,
          signals: tuple[tuple[str, str], ...] = ()) -> TaskSpec:
    short = stem if stem.startswith("agent-") else stem[:8]
    return TaskSpec(
        key=key, source=NAME, id=short, name=short if parent else os.path.basename(group) or short,
        path=path, group=group, parent=parent, logs=(path,), fmt="claude", transcript=True,
        signals=signals,
    )


# -- the per-process state files (sessions/<pid>.json) ------------------------------------------

_STATE_LIMIT = 64 << 10


def _state_files(scan: Scan) -> dict[str, tuple[str, str]]:
    """session id → (its state file, STATE_FORMAT), for files whose process still runs.

    Files are named by pid and outlive crashed processes; a pid may have been reused since, so
    a file counts only while its `procStart` matches the process's start (Linux) or, where that
    cannot be checked, while the pid runs. Legacy `pid-N.json` files carry no status: skipped.
    """
    assert scan.home is not None
    sessions = scan.home / "sessions"
    out: dict[str, tuple[str, str]] = {}
    entries = scandir(str(sessions), scan.found)
    if entries:
        scan.found.watch.add(str(sessions))
    for entry in entries:
        stem = entry.name[:-5]
        if not (entry.name.endswith(".json") and stem.isdigit()):
            continue
        try:
            obj = orjson.loads(read_regular(entry.path, _STATE_LIMIT))
        except (OSError, orjson.JSONDecodeError):
            continue  # caught mid-write: the next pass sees it
        if not isinstance(obj, dict) or not isinstance(obj.get("sessionId"), str):
            continue
        if "status" in obj and process_matches(int(stem), obj.get("procStart")):
            out[obj["sessionId"]] = (entry.path, STATE_FORMAT)
    return out


def process_matches(pid: int, proc_start: object) -> bool:
    """The pid runs, and is the process that wrote the file (same start time, in clock ticks
    since boot as /proc/<pid>/stat field 22 gives it) when that can be checked."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except FileNotFoundError:
        return False
    except OSError:
        return _pid_runs(pid)
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    fields = stat[stat.rfind(b")") + 2 :].split()
    if len(fields) < 20 or fields[0] == b"Z":
        return False
    if isinstance(proc_start, int | str) and str(proc_start).isdigit():
        return fields[19].decode() == str(proc_start)
    return True


def _pid_runs(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


# What the state file says → the turn state it proves.
_STATE_EVENTS = {"busy": EventKind.TURN_START, "idle": EventKind.TURN_END}


def load_state(path: str) -> list[Event]:
    """One state file → the one event its status proves (busy → running, idle → turn ended,
    waiting → blocked on a person), stamped with `statusUpdatedAt`."""
    try:
        data = read_regular(path, _STATE_LIMIT)
    except FileNotFoundError:
        return []  # the process ended and removed it: nothing to claim any more
    except OSError as exc:
        raise DocumentUnreadable(f"cannot read {path}: {exc.strerror or exc}") from None
    obj = json_object(path, data)
    status = obj.get("status")
    ts = obj.get("statusUpdatedAt") or obj.get("updatedAt")
    ts = ts / 1000.0 if isinstance(ts, int | float) and not isinstance(ts, bool) else None
    events = []
    if isinstance(obj.get("cwd"), str):
        events.append(Event(EventKind.META, ts=ts, cwd=obj["cwd"]))
    text = f"session state: {status}"
    if status == "waiting":
        events.append(Event(EventKind.WAITING, ts=ts, text="a permission prompt or a question (session state)"))
    elif status in _STATE_EVENTS:
        events.append(Event(_STATE_EVENTS[status], ts=ts, text=text))
    return events


def looks_like(obj: dict) -> bool:
    return "sessionId" in obj or "uuid" in obj or obj.get("type") in ("file-history-snapshot", "summary")


AGENT = Agent(
    name=NAME,
    label="Claude Code transcripts",
    discover=discover,
    formats=(LineFormat("claude", parse, looks_like, checklist_marks=CHECKLIST_MARKS, decode=decode),
             DocFormat(STATE_FORMAT, load_state),
             LineFormat(f"{NAME}-hooks", hook_events.parse)),
    home="~/.claude",
    home_env=(("CLAUDE_CONFIG_DIR", ""),),
    processes=frozenset({"claude"}),
)
