"""Every agent bgmon reads, one module each, listed once here.

Adding an agent = one module with an `AGENT` (see `bgmon.agents.base.Agent`), one line in
REGISTRY, and its tests; config keys (`NAME`, `NAME_dir`) and flags (`--no-NAME`, `--NAME-dir`)
follow from this list. docs/agents.md says what each one reads and how it decides.
"""

from __future__ import annotations

from bgmon.agents import claude, codex, copilot, gemini, omo, opencode, worktrees
from bgmon.agents.base import Agent, DocFormat, LineFormat, Parser

REGISTRY: tuple[Agent, ...] = (
    worktrees.AGENT,
    claude.AGENT,
    codex.AGENT,
    omo.AGENT,
    gemini.AGENT,
    opencode.AGENT,
    copilot.AGENT,
)

_BY_NAME = {a.name: a for a in REGISTRY}
_BY_SOURCE = {a.task_source: a for a in REGISTRY}
_FORMATS = {f.name: f for a in REGISTRY for f in a.formats}
PROCESS_NAMES = frozenset().union(*(a.processes for a in REGISTRY))


def by_name(name: str) -> Agent | None:
    return _BY_NAME.get(name)


def by_source(source: str) -> Agent | None:
    """The agent behind a task's `source`."""
    return _BY_SOURCE.get(source)


def line_format(name: str) -> LineFormat | None:
    fmt = _FORMATS.get(name)
    return fmt if isinstance(fmt, LineFormat) else None


def doc_format(name: str) -> DocFormat | None:
    fmt = _FORMATS.get(name)
    return fmt if isinstance(fmt, DocFormat) else None


def parser_for(name: str) -> Parser:
    """The line parser of a format name; bgmon's native lines for any other name."""
    fmt = line_format(name) or line_format("native")
    assert fmt is not None
    return fmt.parse


def sniff(obj: dict) -> str:
    """Guess the line format of a log from one decoded line (worktree logs may be any of them)."""
    for fmt in _FORMATS.values():
        if isinstance(fmt, LineFormat) and fmt.looks_like is not None and fmt.looks_like(obj):
            return fmt.name
    return "native"


__all__ = ["REGISTRY", "Agent", "DocFormat", "LineFormat", "by_name", "by_source", "doc_format",
           "line_format", "parser_for", "sniff"]
