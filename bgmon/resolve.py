"""Which task a person means: the one resolution every command uses (`propose`, `history`,
the engine's lookup for `approve`), so a TASK that works for one works for all.

A reference is a task's key, id or name, tried in that order; each must match exactly one task.
"""

from __future__ import annotations

from collections.abc import Iterable

from bgmon.model import TaskSnapshot
from bgmon.printable import single_line


class AmbiguousTask(LookupError):
    """More than one task has this name; the message lists their ids (one line)."""


def resolve_task(ref: str, snaps: Iterable[TaskSnapshot]) -> TaskSnapshot | None:
    """The task `ref` names (key, then id, then name); None when none does.

    Raises AmbiguousTask when only a shared name matches, so a command never acts on a guess.
    """
    snaps = list(snaps)
    for attr in ("key", "id", "name"):
        matches = [s for s in snaps if getattr(s, attr) == ref]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1 and attr == "name":
            ids = ", ".join(sorted(s.id for s in matches))
            raise AmbiguousTask(f"{len(matches)} tasks are named {ref!r}: use an id ({ids})")
    return None


def task_label(name: str | None, task_id: str | None) -> str:
    """How a task is named in one line of text: `name #id`, or the id alone (line breaks in
    either shown as ⏎: the label always stays on its line)."""
    name, task_id = name and single_line(name), task_id and single_line(task_id)
    if name and task_id and name != task_id:
        return f"{name} #{task_id}"
    return name or task_id or "?"
