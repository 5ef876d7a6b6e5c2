"""Where tasks live: worktree status files, Claude Code transcripts, Codex rollouts.

Discovery only lists files and stats them; it never reads logs (bar one head line of flat
Claude sub-agent files, to learn their session). Each found task is a `TaskSpec`.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import orjson

from bgmon.config import Config
from bgmon.formats import opencode
from bgmon.sources.files import read_regular

STATUS_FILE = "status.json"
OPENCODE_TASKS = os.path.join(".opencode", "background-tasks.json")
TRANSCRIPTS = frozenset({"claude", "codex"})
LOG_DIRS = (".agents/logs", "logs")


@dataclass(frozen=True, slots=True)
class TaskSpec:
    key: str
    source: str  # worktree | claude | codex
    id: str
    name: str
    path: str  # task directory (worktree) or transcript file
    group: str
    parent: str | None = None  # parent key (sub-agents)
    status_file: str | None = None
    logs: tuple[str, ...] = ()  # transcripts: the file itself; worktrees: resolved by the engine
    fmt: str = "auto"  # native | claude | codex | auto (sniffed from the first line)
    entry: str | None = None  # the task's id inside a status file that lists many tasks

    @property
    def transcript(self) -> bool:
        """An agent transcript (no status file: judged from its turns and its process)."""
        return self.source in TRANSCRIPTS


@dataclass
class Found:
    specs: list[TaskSpec] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    watch: set[str] = field(default_factory=set)  # directories to watch (non-recursive)
    looked: list[str] = field(default_factory=list)  # where we looked, for the empty screen
    keep: set[str] = field(default_factory=set)  # key prefixes not to drop (file unreadable now)


def _scandir(path: str, found: Found) -> list[os.DirEntry]:
    try:
        with os.scandir(path) as it:
            return list(it)
    except FileNotFoundError:
        return []
    except NotADirectoryError:
        return []
    except OSError as exc:
        found.warnings.append(f"cannot read directory {path}: {exc.strerror or exc}")
        return []


# -- worktrees -------------------------------------------------------------------------------


class GitWorktrees:
    """`git worktree list --porcelain` per root, cached: it is a subprocess, not a stat."""

    def __init__(self, ttl: float = 30.0) -> None:
        self.ttl = ttl
        self._cache: dict[str, tuple[float, list[str]]] = {}

    def list(self, root: str) -> list[str]:
        hit = self._cache.get(root)
        now = time.monotonic()
        if hit and now - hit[0] < self.ttl:
            return hit[1]
        paths: list[str] = []
        if os.path.exists(os.path.join(root, ".git")):
            try:
                out = subprocess.run(
                    ["git", "-C", root, "worktree", "list", "--porcelain"],
                    capture_output=True, text=True, timeout=5, check=False,
                ).stdout
                paths = [line[9:] for line in out.splitlines() if line.startswith("worktree ")]
            except (OSError, subprocess.SubprocessError):
                paths = []
        self._cache[root] = (now, paths)
        return paths


def worktree_logs(task_dir: str, fields: dict | None) -> list[str]:
    """A worktree task's logs: its `log` field, else every *.jsonl in .agents/logs/ and logs/."""
    log = fields.get("log") if isinstance(fields, dict) else None
    if isinstance(log, str):
        log = [log]
    if isinstance(log, list):
        paths = [p for p in log if isinstance(p, str) and p.strip() and "\0" not in p]
        if paths:
            return [os.path.normpath(os.path.join(task_dir, p)) for p in paths]
    out = []
    for sub in LOG_DIRS:
        d = os.path.join(task_dir, sub)
        try:
            names = sorted(n for n in os.listdir(d) if n.endswith(".jsonl"))
        except OSError:
            continue
        # bgmon's own journal lives in .agents/logs too; it is not a task log.
        out += [os.path.join(d, n) for n in names if n != "background_monitoring.jsonl"]
    return out


def _worktree_spec(task_dir: str, root: str) -> TaskSpec:
    name = os.path.basename(task_dir.rstrip(os.sep)) or task_dir
    return TaskSpec(
        key=f"worktree:{task_dir}",
        source="worktree",
        id=name,
        name=name,
        path=task_dir,
        group=root,
        status_file=os.path.join(task_dir, STATUS_FILE),
    )


def find_worktrees(config: Config, found: Found, git: GitWorktrees | None) -> None:
    for raw_root in config.roots:
        root = os.path.abspath(os.path.expanduser(raw_root))
        if not os.path.isdir(root):
            found.warnings.append(f"root {raw_root} is not a directory")
            continue
        found.looked.append(os.path.join(root, ".worktrees", "*", STATUS_FILE))
        found.watch.add(root)
        candidates = []
        wt_dir = os.path.join(root, ".worktrees")
        entries = _scandir(wt_dir, found)
        if entries:
            found.watch.add(wt_dir)
        candidates += [e.path for e in entries if _is_dir(e)]
        if git is not None and config.git:
            candidates += [p for p in git.list(root) if os.path.abspath(p) != root]
        seen = set()
        for task_dir in candidates:
            task_dir = os.path.abspath(task_dir)
            if task_dir in seen:
                continue
            seen.add(task_dir)
            found.watch.add(task_dir)
            if os.path.isfile(os.path.join(task_dir, STATUS_FILE)):
                found.specs.append(_worktree_spec(task_dir, root))
                for sub in LOG_DIRS:
                    if os.path.isdir(os.path.join(task_dir, sub)):
                        found.watch.add(os.path.join(task_dir, sub))


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def _mtime(entry: os.DirEntry) -> float:
    try:
        return entry.stat().st_mtime
    except OSError:
        return 0.0


# -- Claude Code -----------------------------------------------------------------------------


def _project_cwd(project_dir_name: str) -> str:
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


def find_claude(config: Config, now: float, found: Found) -> None:
    projects = config.claude_home / "projects"
    found.looked.append(str(projects / "*" / "*.jsonl"))
    if not projects.is_dir():
        return
    found.watch.add(str(projects))
    cutoff = now - config.since
    for project in _scandir(str(projects), found):
        if not _is_dir(project):
            continue
        group = _project_cwd(project.name)
        entries = _scandir(project.path, found)
        found.watch.add(project.path)
        sessions: dict[str, os.DirEntry] = {e.name[:-6]: e for e in entries if e.name.endswith(".jsonl")}
        for stem, entry in sessions.items():
            if stem.startswith("agent-") or _mtime(entry) < cutoff:
                continue
            found.specs.append(_claude_spec(f"claude:{stem}", stem, entry.path, group, None))
        for entry in entries:
            if entry.name.startswith("agent-") and entry.name.endswith(".jsonl") and _mtime(entry) >= cutoff:
                # Claude ≤ 2.0: flat sub-agent files beside the session; the session id is inside.
                stem = entry.name[:-6]
                parent = _session_of(entry.path)
                parent_key = f"claude:{parent}" if parent else None
                key = f"claude:{parent or '?'}/{stem}"
                found.specs.append(_claude_spec(key, stem, entry.path, group, parent_key))
            elif _is_dir(entry):
                _claude_subagents(entry, group, cutoff, found)


def _claude_subagents(session_dir: os.DirEntry, group: str, cutoff: float, found: Found) -> None:
    sub = os.path.join(session_dir.path, "subagents")
    entries = _scandir(sub, found)
    if entries:
        found.watch.add(sub)
    found.watch.add(session_dir.path)
    for entry in entries:
        if entry.name.endswith(".jsonl") and _mtime(entry) >= cutoff:
            stem = entry.name[:-6]
            parent_key = f"claude:{session_dir.name}"
            found.specs.append(
                _claude_spec(f"{parent_key}/{stem}", stem, entry.path, group, parent_key)
            )


def _claude_spec(key: str, stem: str, path: str, group: str, parent: str | None) -> TaskSpec:
    short = stem if stem.startswith("agent-") else stem[:8]
    return TaskSpec(
        key=key, source="claude", id=short, name=short if parent else os.path.basename(group) or short,
        path=path, group=group, parent=parent, logs=(path,), fmt="claude",
    )


# -- Codex CLI -------------------------------------------------------------------------------


def _day_dirs(sessions: str, first: date, found: Found) -> list[str]:
    out = []
    for year in _scandir(sessions, found):
        if not (year.name.isdigit() and _is_dir(year)) or int(year.name) < first.year:
            continue
        for month in _scandir(year.path, found):
            if not month.name.isdigit():
                continue
            for day in _scandir(month.path, found):
                try:
                    d = date(int(year.name), int(month.name), int(day.name))
                except ValueError:
                    continue
                if d >= first:
                    out.append(day.path)
    return out


def find_codex(config: Config, now: float, found: Found) -> None:
    sessions = config.codex_home / "sessions"
    found.looked.append(str(sessions / "YYYY" / "MM" / "DD" / "rollout-*.jsonl"))
    if not sessions.is_dir():
        return
    found.watch.add(str(sessions))
    cutoff = now - config.since
    # Folders are named by local date; a day of slack covers time zones.
    first = (datetime.fromtimestamp(cutoff) - timedelta(days=1)).date()
    for day in _day_dirs(str(sessions), first, found):
        found.watch.add(day)
        for entry in _scandir(day, found):
            if not (entry.name.startswith("rollout-") and entry.name.endswith(".jsonl")):
                continue
            if _mtime(entry) < cutoff:
                continue
            stem = entry.name[len("rollout-") : -len(".jsonl")]
            session = stem[20:] if len(stem) > 20 else stem  # after the YYYY-MM-DDTHH-MM-SS- prefix
            found.specs.append(TaskSpec(
                key=f"codex:{session}", source="codex", id=session[:13], name=session[:13],
                path=entry.path, group="codex", logs=(entry.path,), fmt="codex",
            ))


def find_opencode(config: Config, found: Found) -> None:
    """oh-my-opencode's task list in each root: one task per entry (the file is small)."""
    for raw_root in config.roots:
        root = os.path.abspath(os.path.expanduser(raw_root))
        path = os.path.join(root, OPENCODE_TASKS)
        found.looked.append(path)
        try:
            data = orjson.loads(read_regular(path, 1 << 20))
        except FileNotFoundError:
            continue
        except (OSError, orjson.JSONDecodeError) as exc:
            # Caught mid-write, or unreadable: known tasks keep their last good value.
            found.warnings.append(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}")
            found.keep.add(f"opencode:{root}:")
            continue
        found.watch.add(os.path.dirname(path))
        for entry in opencode.entries(data):
            task_id = entry["id"]
            found.specs.append(TaskSpec(
                key=f"opencode:{root}:{task_id}", source="opencode", id=task_id,
                name=str(entry.get("description") or task_id), path=path, group=root,
                status_file=path, fmt="none", entry=task_id,
            ))


def discover(config: Config, now: float, git: GitWorktrees | None = None) -> Found:
    found = Found()
    if config.worktrees:
        find_worktrees(config, found, git)
    if config.claude:
        find_claude(config, now, found)
    if config.codex:
        find_codex(config, now, found)
    if config.opencode:
        find_opencode(config, found)
    return found
