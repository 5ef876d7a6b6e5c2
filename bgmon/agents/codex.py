"""Codex CLI: rollouts `~/.codex/sessions/YYYY/MM/DD/rollout-*.jsonl` (or $CODEX_HOME), parsed by
`bgmon.formats.codex`. The session's cwd is on the first line only, so that line is read first.
With `bgmon hooks install codex`, Codex's hooks (hooks.json, 0.114+) record the session's own word
on its state (a prompt, a tool, a permission asked, a stop); with `codex-notify`, older versions'
`notify` records each turn's end."""

from __future__ import annotations

from bgmon.agents.base import Agent, LineFormat, Scan
from bgmon.formats.codex import CHECKLIST_MARKS, parse
from bgmon.hooks import events as hook_events
from bgmon.sources.found import Found, TaskSpec, is_dir, mtime, scandir

NAME = "codex"


def _day_dirs(sessions: str, found: Found) -> list[str]:
    """Every YYYY/MM/DD folder. Not only recent ones: `codex resume` appends to the rollout in the
    folder of the day the session began, so a folder's date says nothing about its files' life
    (the files' mtimes do; that costs a stat per rollout, not a read)."""
    out = []
    for year in scandir(sessions, found):
        if not (year.name.isdigit() and is_dir(year)):
            continue
        for month in scandir(year.path, found):
            if not month.name.isdigit():
                continue
            for day in scandir(month.path, found):
                if day.name.isdigit():
                    out.append(day.path)
    return out


def discover(scan: Scan) -> None:
    assert scan.home is not None
    found = scan.found
    sessions = scan.home / "sessions"
    found.looked.append(str(sessions / "YYYY" / "MM" / "DD" / "rollout-*.jsonl"))
    if not sessions.is_dir():
        return
    found.watch.add(str(sessions))
    cutoff = scan.cutoff
    hooks = hook_events.sessions(NAME)  # hook events and `notify` turn ends, by thread (= session) id
    for day in _day_dirs(str(sessions), found):
        found.watch.add(day)
        for entry in scandir(day, found):
            if not (entry.name.startswith("rollout-") and entry.name.endswith(".jsonl")):
                continue
            if mtime(entry) < cutoff:
                continue
            stem = entry.name[len("rollout-") : -len(".jsonl")]
            session = stem[20:] if len(stem) > 20 else stem  # after the YYYY-MM-DDTHH-MM-SS- prefix
            found.specs.append(TaskSpec(
                key=f"codex:{session}", source=NAME, id=session[:13], name=session[:13],
                path=entry.path, group="codex", logs=(entry.path,), fmt="codex", transcript=True,
                signals=(hooks[session],) if session in hooks else (),
            ))


def looks_like(obj: dict) -> bool:
    return "payload" in obj and obj.get("type") in (
        "session_meta", "response_item", "event_msg", "turn_context", "compacted"
    )


AGENT = Agent(
    name=NAME,
    label="Codex CLI rollouts",
    discover=discover,
    formats=(LineFormat("codex", parse, looks_like, head_first=True, checklist_marks=CHECKLIST_MARKS),
             LineFormat(f"{NAME}-hooks", hook_events.parse)),
    home="~/.codex",
    home_env=(("CODEX_HOME", ""),),
    processes=frozenset({"codex"}),
)
