"""Who nests under whom, and what a parent shows: pure functions of the tasks' data.

Nothing here reads a file or keeps a cache: `families` maps tasks to parents (cutting loops),
`RollUp` computes each task's shown health from its own and its children's. The evaluator
decides when to call them again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from bgmon.health import roll_up
from bgmon.model import Badge, Health

MAX_DEPTH = 20  # deeper nesting is shown flat from here on (a guard, not a real family)
# A session writes that it starts a sub-agent (Codex: `entered_review_mode`) just before the
# sub-agent's first line, and may write nothing more until it ends: its span holds a start
# this little after its newest event.
SPAWN_SLACK = 5.0


@dataclass(frozen=True, slots=True)
class Member:
    """What nesting needs to know about one task."""

    group: str
    id: str  # its own id (status.json `id`, or the spec's)
    parent: str | None  # a parent task key known from discovery (sub-agents)
    parent_ref: str | None  # else the `parent` id its status.json names, within its group
    session: str | None = None  # the agent's own session id, which a sub-agent's parent_ref names
    # A sub-agent's session. One that names no parent (Codex 0.80's `source: {subagent:
    # "review"}`), or names one not found, nests under the session that spawned it, found by
    # place and time: see `_spawner`.
    subagent: bool = False
    place: str | None = None  # where a transcript's session runs (its cwd)
    started_at: float | None = None


@dataclass(frozen=True, slots=True)
class Family:
    parents: dict[str, str | None]
    children: dict[str, list[str]]
    cut: dict[str, str]  # task key → why its parent link was cut (it closed a loop)


def families(members: Mapping[str, Member],
             last_event: Callable[[str], float | None] = lambda key: None) -> Family:
    """`last_event(key)`: the time of a task's newest event (the end of its span so far)."""
    by_id = {(m.group, m.id): key for key, m in members.items()}
    for key, m in members.items():
        if m.session:
            by_id.setdefault((m.group, m.session), key)
    sessions = _sessions_by_place(members)
    parents: dict[str, str | None] = {}
    for key, m in members.items():
        parent = m.parent
        if parent is None and m.parent_ref:
            parent = by_id.get((m.group, m.parent_ref))
        if parent is None and m.subagent:
            parent = _spawner(m, sessions.get((m.group, m.place), ()), members, last_event)
        parents[key] = parent if parent in members and parent != key else None
    cut = _break_cycles(parents)
    children: dict[str, list[str]] = {}
    for key, parent in parents.items():
        if parent is not None:
            children.setdefault(parent, []).append(key)
    return Family(parents, children, cut)


def _sessions_by_place(members: Mapping[str, Member]) -> dict[tuple[str, str | None], list[str]]:
    """(group, place) → its sessions that may have spawned a sub-agent; only where one is."""
    wanted = {(m.group, m.place) for m in members.values() if m.subagent and m.place}
    out: dict[tuple[str, str | None], list[str]] = {}
    if wanted:
        for key, m in members.items():
            if not m.subagent and m.started_at is not None and (m.group, m.place) in wanted:
                out.setdefault((m.group, m.place), []).append(key)
    return out


def _spawner(sub: Member, candidates: Iterable[str], members: Mapping[str, Member],
             last_event: Callable[[str], float | None]) -> str | None:
    """The session a sub-agent that names no parent belongs to: one of the same group and
    place whose span (start to newest event, plus SPAWN_SLACK) holds the sub-agent's start; of
    several, the one that started nearest before it. None when no session holds it (it is
    shown at the top)."""
    start = sub.started_at
    if start is None:
        return None
    best: tuple[float, str] | None = None
    for key in candidates:
        began = members[key].started_at
        if began is None or began > start or (best is not None and began <= best[0]):
            continue
        end = last_event(key)
        if end is not None and end + SPAWN_SLACK >= start:
            best = (began, key)
    return best[1] if best else None


def _break_cycles(parents: dict[str, str | None]) -> dict[str, str]:
    """`parent` fields that loop (a → b → a) would leave no root to show the tasks from:
    cut the link that closes each loop, and say why on that task."""
    cut: dict[str, str] = {}
    done: set[str] = set()
    for start in parents:
        path: list[str] = []
        on_path: set[str] = set()
        key: str | None = start
        while key is not None and key not in done:
            if key in on_path:
                last = path[-1]
                parents[last] = None
                cut[last] = f"its parent chain loops back to {key}; shown at the top"
                break
            path.append(key)
            on_path.add(key)
            key = parents.get(key)
        done.update(path)
    return cut


def ancestors(keys: set[str] | list[str], parents: Mapping[str, str | None]) -> set[str]:
    """The keys and every ancestor of theirs (whose roll-up may change with them)."""
    out: set[str] = set()
    for start in keys:
        key: str | None = start
        depth = 0
        while key is not None and key not in out and depth <= MAX_DEPTH:
            out.add(key)
            key, depth = parents.get(key), depth + 1
    return out


class RollUp:
    """A task's shown health: the worst of its own and its children's (memoised per use)."""

    def __init__(self, own: Callable[[str], Health | None], name: Callable[[str], str],
                 children: Mapping[str, list[str]]) -> None:
        self._own, self._name, self._children = own, name, children
        self._done: dict[str, Health] = {}

    def __call__(self, key: str, depth: int = 0) -> Health:
        if key in self._done:
            return self._done[key]
        own = self._own(key) or Health(Badge.UNKNOWN)
        kids = self._children.get(key, ())
        if depth > MAX_DEPTH or not kids:
            result = own
        else:
            result = roll_up(own, ((self._name(k), self(k, depth + 1)) for k in kids))
        self._done[key] = result
        return result
