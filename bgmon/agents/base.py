"""The adapter protocol: what bgmon needs to know about one agent, in one place.

An `Agent` says where its sessions live (`discover`, given a `Scan`), how to read them (its
`formats`: line formats for append-only logs, document formats for files or databases that are
rewritten), which processes are the agent (to tell a live session from an abandoned one), and
where its home is (`home`, overridable with `--NAME-dir` / `NAME_dir`). The registry in
`bgmon.agents` lists every agent; config keys and CLI flags are generated from it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

from bgmon.formats import Decoder, Parser
from bgmon.model import Event
from bgmon.sources.found import Found

if TYPE_CHECKING:
    from bgmon.config import Config


class DocumentUnreadable(Exception):
    """A document caught mid-rewrite, a database locked for now: keep the last good value."""


def parse_json(path: str, data: bytes) -> object:
    """A document's JSON; DocumentUnreadable when it does not parse (caught half-written)."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        raise DocumentUnreadable(f"{path} is not valid JSON (half-written?)") from None


def json_object(path: str, data: bytes) -> dict:
    obj = parse_json(path, data)
    if not isinstance(obj, dict):
        raise DocumentUnreadable(f"{path} holds JSON that is not an object")
    return obj


@dataclass(frozen=True, slots=True)
class SubAgentShare:
    """A line's events for one sub-agent whose lines share the session's log (Copilot writes
    them all to one file). The engine makes each such sub-agent a task of its own, nested under
    the session, or under the sub-agent that spawned it."""

    agent: str  # its id within the session
    events: list[Event]
    spawner: str | None = None  # the sub-agent that started it (None: the session itself)
    name: str | None = None  # what to call it (known on the line that starts it)


@dataclass(frozen=True, slots=True)
class LineFormat:
    """An append-only JSONL log: each decoded line → events (`None`: a line type it does not
    know; `[]`: known, nothing of interest). Pure, no state across lines."""

    name: str
    parse: Parser
    looks_like: Callable[[dict], bool] | None = None  # sniffing a worktree log's first line
    head_first: bool = False  # the first line holds session facts the start-up back-scan may miss
    # For a log that also holds its sub-agents' lines: a line → each sub-agent's share of it
    # (`parse` then gives only the session's own events, `[]` for a sub-agent's line).
    sub_agents: Callable[[dict], list[SubAgentShare]] | None = None
    # Bytes found in every line that writes the agent's to-do list (TodoWrite, update_plan, …):
    # start-up looks back for the newest one when the last lines hold none (TaskStore).
    checklist_marks: tuple[bytes, ...] = ()
    # Decodes a line into a record of only the fields `parse` reads (None: a full decode into a
    # dict). For logs whose lines carry far more than health needs (Claude's tool output).
    decode: Decoder | None = None


@dataclass(frozen=True, slots=True)
class DocFormat:
    """A document read whole when it changes: path → every event of the session, in order.
    Raises DocumentUnreadable when caught mid-write or locked (the reader keeps the last good
    value); `signature` tells cheaply whether it changed (default: the file's stat)."""

    name: str
    load: Callable[[str], list[Event]]
    signature: Callable[[str], object] | None = None


@dataclass(frozen=True, slots=True)
class Scan:
    """One discovery pass, as an adapter sees it."""

    config: Config
    now: float
    found: Found
    home: Path | None  # the agent's home folder (None for agents that live in the roots)
    git: object | None = None  # GitWorktrees, for the worktrees adapter

    @property
    def cutoff(self) -> float:
        """Sessions whose files changed before this are not shown (`--since`)."""
        return self.now - self.config.since

    def roots(self) -> list[str]:
        return [os.path.abspath(os.path.expanduser(r)) for r in self.config.roots]


@dataclass(frozen=True, slots=True)
class Agent:
    name: str  # config key, flag (--no-NAME, --NAME-dir), task key prefix and `source`
    label: str  # what it is, for help texts and docs: "Claude Code transcripts"
    discover: Callable[[Scan], None]
    formats: tuple[LineFormat | DocFormat, ...] = ()
    home: str | None = None  # default home folder; None: the agent lives in the roots
    home_env: tuple[tuple[str, str], ...] = ()  # (variable, sub-folder) tried before `home`
    processes: frozenset[str] = frozenset()  # its process names (argv[0], or the script node runs)
    # For agents whose status file lists many tasks: task id → picks its entry out of the file.
    status_entry: Callable[[str], Callable[[object], dict | None]] | None = None
    source: str = ""  # its tasks' `source` in snapshots and JSON (default: the name)

    @property
    def task_source(self) -> str:
        return self.source or self.name

    def home_dir(self, explicit: str | None) -> Path | None:
        if self.home is None:
            return None
        if explicit:
            return Path(explicit).expanduser()
        for var, sub in self.home_env:
            value = os.environ.get(var)
            if value:
                return Path(value).expanduser() / sub if sub else Path(value).expanduser()
        return Path(self.home).expanduser()

    @property
    def home_help(self) -> str:
        envs = " or ".join(f"${v}" + (f"/{s}" if s else "") for v, s in self.home_env)
        return f"{envs} or {self.home}" if envs else str(self.home)
