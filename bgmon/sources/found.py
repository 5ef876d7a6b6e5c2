"""What discovery produces: a `TaskSpec` per task and the `Found` of one look, plus the small
directory-listing helpers every adapter's discovery shares (they never raise: an unreadable
folder is a warning)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class TaskSpec:
    key: str
    source: str  # the adapter's name: worktrees | claude | codex | omo | gemini | opencode | copilot
    id: str
    name: str
    path: str  # task directory (worktree), transcript or session document
    group: str
    parent: str | None = None  # parent key (sub-agents)
    status_file: str | None = None
    logs: tuple[str, ...] = ()  # transcripts: the file itself; worktrees: resolved by the engine
    fmt: str = "auto"  # the line or document format of `logs`/`document` (auto: sniffed)
    entry: str | None = None  # the task's id inside a status file that lists many tasks
    transcript: bool = False  # no status file: judged from its turns and its process
    # A whole-session document (a JSON file rewritten as it grows, a session in a database):
    # re-read when it changes, and the task's events rebuilt from it.
    document: str | None = None
    # The agent's own word on the session's state (hook events, a state file): (path, format).
    # Preferred over what the transcript suggests.
    signals: tuple[tuple[str, str], ...] = ()


@dataclass
class Found:
    specs: list[TaskSpec] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    watch: set[str] = field(default_factory=set)  # directories to watch (non-recursive)
    looked: list[str] = field(default_factory=list)  # where we looked, for the empty screen
    keep: set[str] = field(default_factory=set)  # key prefixes not to drop (file unreadable now)


def scandir(path: str, found: Found) -> list[os.DirEntry]:
    try:
        with os.scandir(path) as it:
            return list(it)
    except (FileNotFoundError, NotADirectoryError):
        return []
    except OSError as exc:
        found.warnings.append(f"cannot read directory {path}: {exc.strerror or exc}")
        return []


def is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def mtime(entry: os.DirEntry | str) -> float:
    try:
        return entry.stat().st_mtime if isinstance(entry, os.DirEntry) else os.stat(entry).st_mtime
    except OSError:
        return 0.0
