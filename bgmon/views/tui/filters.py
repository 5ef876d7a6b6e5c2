"""Which tasks the tree shows: a text filter and faults-only, ancestors kept for context."""

from __future__ import annotations

from collections.abc import Collection, Mapping

from bgmon.model import TaskSnapshot


def matches(s: TaskSnapshot, text: str) -> bool:
    """Case-insensitive substring of name, id, step or group."""
    needle = text.strip().lower()
    if not needle:
        return True
    return any(needle in (v or "").lower() for v in (s.name, s.id, s.step, s.group))


def visible_keys(snaps: Mapping[str, TaskSnapshot], text: str = "", faults_only: bool = False,
                 hidden: Collection[str] = ()) -> set[str]:
    """Keys of the tasks to show: those that pass, plus their ancestors (a sub-task is shown
    under its parent). `hidden`: keys left out by the default view (aged out)."""
    if not text.strip() and not faults_only:
        return set(snaps).difference(hidden) if hidden else set(snaps)
    out: set[str] = set()
    for key, s in snaps.items():
        if key in hidden:
            continue
        if faults_only and not s.health.badge.needs_person:
            continue
        if not matches(s, text):
            continue
        k: str | None = key
        for _ in range(64):  # parents form a tree; the bound guards against a bad cycle
            if k is None or k in out:
                break
            out.add(k)
            parent = snaps.get(k)
            k = parent.parent if parent is not None else None
    return out
