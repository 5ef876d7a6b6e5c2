"""How tasks are arranged for display: groups, then a tree of tasks, in a chosen order.

Shared by `--once` and the TUI so both list tasks the same way.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable

from bgmon.model import Badge, TaskSnapshot

SORTS = ("severity", "activity", "name")
_DIGITS = re.compile(r"(\d+)")


def natural(text: str) -> tuple:
    """A sort key that orders `task 2` before `task 10` (numbers by value, text caselessly)."""
    return tuple(
        (0, int(part), part) if i % 2 else (1, part.casefold(), part)
        for i, part in enumerate(_DIGITS.split(text))
        if part
    )


def sort_key(sort: str):
    if sort == "activity":
        return lambda s: (-(s.last_activity or 0.0), natural(s.name), s.key)
    if sort == "name":
        return lambda s: (natural(s.name), s.key)
    return lambda s: (-s.health.badge.severity, natural(s.name), s.key)


def arrange(
    snaps: Iterable[TaskSnapshot], sort: str = "severity"
) -> list[tuple[str, list[tuple[int, TaskSnapshot]]]]:
    """[(group, [(depth, task), …]), …]: each group's tasks depth-first, children after parents."""
    snaps = list(snaps)
    keys = {s.key for s in snaps}
    children: dict[str | None, list[TaskSnapshot]] = defaultdict(list)
    for s in snaps:
        children[s.parent if s.parent in keys else None].append(s)
    key = sort_key(sort)
    groups: dict[str, list[tuple[int, TaskSnapshot]]] = defaultdict(list)

    def walk(task: TaskSnapshot, depth: int, out: list[tuple[int, TaskSnapshot]]) -> None:
        out.append((depth, task))
        for child in sorted(children.get(task.key, ()), key=key):
            walk(child, depth + 1, out)

    for top in sorted(children.get(None, ()), key=key):
        walk(top, 0, groups[top.group])
    # Defence in depth: a task no root reaches (a parent loop) is still shown, at the top.
    shown = {t.key for rows in groups.values() for _, t in rows}
    for task in sorted((s for s in snaps if s.key not in shown), key=key):
        if task.key not in shown:
            rows = groups[task.group]
            walk(task, 0, rows)
            shown.update(t.key for _, t in rows)
    worst = {
        g: max((t.health.badge.severity for _, t in rows), default=0) for g, rows in groups.items()
    }
    # This machine's groups first, then each remote host's together (its groups are `HOST:…`).
    host = {g: rows[0][1].host or "" for g, rows in groups.items()}
    if sort == "severity":
        order = sorted(groups, key=lambda g: (host[g], -worst[g], natural(g)))
    else:
        order = sorted(groups, key=lambda g: (host[g], natural(g)))
    return [(g, groups[g]) for g in order]


def counts(snaps: Iterable[TaskSnapshot]) -> dict[Badge, int]:
    out = dict.fromkeys(Badge, 0)
    for s in snaps:
        out[s.health.badge] += 1
    return out


FINISHED = frozenset({"completed", "cancelled", "failed", "timeout"})  # status.json words


def aged_out(s: TaskSnapshot, now: float, age_out: float) -> bool:
    """A finished worktree task with no sign of life for `age_out` seconds (0: never): old news
    the default view leaves out (`--all` shows it). Transcripts age by `--since` instead."""
    if not age_out or s.source != "worktree" or s.last_activity is None:
        return False
    finished = s.status in FINISHED or s.health.badge in (Badge.COMPLETED, Badge.FAILED)
    return finished and now - s.last_activity > age_out


def current(snaps: Iterable[TaskSnapshot], now: float, age_out: float) -> list[TaskSnapshot]:
    """The tasks the default view shows: all but the aged-out ones."""
    return [s for s in snaps if not aged_out(s, now, age_out)]


def has_faults(snaps: Iterable[TaskSnapshot]) -> bool:
    return has_badge(snaps)


def has_badge(snaps: Iterable[TaskSnapshot], badges: frozenset[Badge] | None = None) -> bool:
    """Does any task have one of `badges` (default: the faults) that nobody acknowledged?
    `--once`'s exit status (`--fail-on` chooses the badges)."""
    if badges is None:
        return any(s.needs_attention for s in snaps)
    return any(s.health.badge in badges and s.ack is None for s in snaps)
