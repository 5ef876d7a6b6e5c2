"""Claude Code: transcripts `~/.claude/projects/<project>/<session>.jsonl` (or $CLAUDE_CONFIG_DIR),
sub-agents in `<session>/subagents/agent-*.jsonl` (flat `agent-*.jsonl` up to 2.0). The line parser is
`bgmon.formats.claude`.
"""

from __future__ import annotations

import os

import orjson

from bgmon.agents.base import Agent, LineFormat, Scan
from bgmon.formats.claude import parse
from bgmon.sources.files import read_regular
from bgmon.sources.found import Found, TaskSpec, is_dir, mtime, scandir

NAME = "claude"


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
                found.specs.append(_spec(f"claude:{stem}", stem, entry.path, group, None))
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


def looks_like(obj: dict) -> bool:
    return "sessionId" in obj or "uuid" in obj or obj.get("type") in ("file-history-snapshot", "summary")


AGENT = Agent(
    name=NAME,
    label="Claude Code transcripts",
    discover=discover,
    formats=(LineFormat("claude", parse, looks_like),),
    home="~/.claude",
    home_env=(("CLAUDE_CONFIG_DIR", ""),),
    processes=frozenset({"claude"}),
)
