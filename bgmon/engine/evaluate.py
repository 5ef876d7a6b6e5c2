"""The evaluator: records → verdicts → the changes a view must show.

Its caches, and the one rule that keeps them honest: a record's `obs` (what the rules look at)
is rebuilt whenever the record is `dirty`; its `own` verdict is recomputed when `obs` was, or when
the clock reaches `recheck_at` (the earliest time a time-based rule could say something else);
the family (who nests under whom) is rebuilt when a task's place in it (group, id, parent) or
the set of tasks changed, never merely because some task's data did (with 10,000 tasks that
would re-roll and re-compare every task after every append); and
a snapshot is rebuilt when the record was dirty or its shown verdict changed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from zlib import crc32

from bgmon.config import Thresholds
from bgmon.engine import snapshot
from bgmon.engine.family import Family, Member, RollUp, ancestors, families
from bgmon.engine.store import TaskRecord
from bgmon.health import Observation, assess, next_check
from bgmon.model import Acknowledged, Health, TaskSnapshot
from bgmon.timefmt import parse_time

REFRESH_TEXT = 15.0  # seconds between refreshes of an unchanged task's reason text


def first_refresh(key: str) -> float:
    """When a task first loaded is next re-judged for its text, at the latest: somewhere in
    (0, REFRESH_TEXT], fixed per task. Tasks loaded together would otherwise all come due in the
    same pass every 15 s (10,000 of them: a 120–240 ms pass, which a file event landing then
    waited for); spread, each pass takes its share."""
    return REFRESH_TEXT * ((crc32(key.encode()) % 1000) + 1) / 1000


@dataclass(frozen=True, slots=True)
class Change:
    """One thing a view must show: a task added or removed, its badge changed, or its data."""

    kind: str  # added | removed | health | updated
    key: str
    snapshot: TaskSnapshot | None = None
    previous: Health | None = None


def observe(record: TaskRecord) -> Observation:
    """What the health rules may look at for one task (depends on its data, not on the time)."""
    fields = record.fields
    # Tasks with a status file say their status; transcripts are judged from their turns.
    status = fields.get("status") if record.status is not None else None
    if record.status is not None and not isinstance(status, str):
        status = "unknown" if record.status and record.status.fields is None else str(status)
    mtimes = [f.reader.mtime for f in record.feeds.values() if f.reader.mtime and f.reader.size]
    if record.document is not None and record.document.mtime:
        mtimes.append(record.document.mtime)
    return Observation(
        source=record.spec.source,
        status=status,
        pid=record.pids[0],
        proc=record.proc,
        supervisor_pid=record.pids[1],
        supervisor=record.supervisor,
        created_at=parse_time(fields.get("timestamp")),
        updated_at=parse_time(fields.get("updatedAt")),
        ready_until=parse_time(fields.get("readyUntil")),
        # A file listing many tasks changes when any of them does: not this task's life.
        status_written_at=record.status.mtime if record.status and not record.spec.entry else None,
        status_progress_at=record.progress_at,
        exit_code=fields.get("exitCode"),
        error=str(fields["error"]) if fields.get("error") is not None else None,
        last_append=max(mtimes) if mtimes else None,
        last_cpu=record.last_cpu,
        agent_alive=record.agent_alive,
        agent_busy=record.agent_busy,
        activity=record.activity.summary(),
    )


def member(record: TaskRecord) -> Member:
    ref = record.fields.get("parent")
    act = record.activity
    return Member(
        group=record.spec.group,
        id=snapshot.task_id(record),
        parent=record.spec.parent,
        parent_ref=ref if isinstance(ref, str) and ref else act.parent_session,
        session=act.session,
        subagent=act.subagent is not None,
        place=act.cwd,
        started_at=act.started_at,
    )


def _same_verdict(a: Health, b: Health) -> bool:
    return a.badge == b.badge and [r.rule for r in a.reasons] == [r.rule for r in b.reasons]


class Evaluator:
    def __init__(self) -> None:
        self._family: Family | None = None
        self._last_keys: set[str] = set()
        self._members: dict[str, Member] = {}  # each task's place in the family, last seen
        # (group, place) of sub-agents nested by time that found no session yet: a session
        # there whose span grows may now hold one (see family._spawner).
        self._unplaced: set[tuple[str, str | None]] = set()

    def evaluate(self, tasks: dict[str, TaskRecord], now: float, th: Thresholds,
                 notes: Mapping[str, str],
                 acks: Mapping[str, Acknowledged] | None = None) -> list[Change]:
        """Assess every task that needs it, roll up, and report changes."""
        reshaped = self._family is None or tasks.keys() != self._last_keys
        assessed, moved = self._assess(tasks, now, th)
        reshaped |= moved
        if not assessed and not reshaped:
            return []
        if reshaped or self._family is None:
            # Who nests under whom: rebuilt when some task's place or the set of tasks changed,
            # not on every tick nor on every append.
            for key in [k for k in self._members if k not in tasks]:
                del self._members[key]
            self._family = self._families(tasks, self._members)
        family = self._family
        rolled = RollUp(lambda k: tasks[k].own,
                        lambda k: snapshot.subagent_name(tasks[k]) or tasks[k].spec.name, family.children)
        # Only the re-assessed tasks and their ancestors (whose roll-up may change).
        todo: Iterable[str] = tasks if reshaped else ancestors(assessed, family.parents)
        changes: list[Change] = []
        for key in todo:
            change = self._update(tasks[key], rolled(key), family.parents.get(key), now,
                                  notes.get(key), acks.get(key) if acks else None)
            if change is not None:
                changes.append(change)
        if reshaped:  # else the same tasks as last time: none removed, no new key set to keep
            changes += [Change("removed", key) for key in self._last_keys - tasks.keys()]
            self._last_keys = set(tasks)
        return changes

    def _assess(self, tasks: dict[str, TaskRecord], now: float, th: Thresholds) -> tuple[list[str], bool]:
        """Re-judge the tasks that changed or whose time-based rules are due. Returns the keys
        assessed and whether any task's place in the family changed."""
        assessed: list[str] = []
        moved = False
        for key, record in tasks.items():
            if record.dirty or record.obs is None:
                record.obs = observe(record)
                place = member(record)
                if self._members.get(key) != place:
                    self._members[key] = place
                    moved = True
                elif (self._unplaced and not place.subagent
                      and (place.group, place.place) in self._unplaced):
                    moved = True
            elif record.own is not None and now < record.recheck_at:
                continue  # nothing new, and the clock cannot change the verdict yet
            refresh = REFRESH_TEXT if record.own is not None else first_refresh(key)
            record.own = assess(record.obs, now, th)
            record.recheck_at = next_check(record.obs, now, th, refresh)
            assessed.append(key)
        return assessed, moved

    def _families(self, tasks: dict[str, TaskRecord], members: dict[str, Member]) -> Family:
        places = {key: members.get(key) or member(record) for key, record in tasks.items()}
        family = families(places, lambda key: tasks[key].activity.last_event_at)
        self._unplaced = {(m.group, m.place) for key, m in places.items()
                          if m.subagent and family.parents[key] is None}
        for key, note in family.cut.items():
            record = tasks[key]
            if record.cycle != note:
                record.cycle, record.dirty = note, True
        return family

    @staticmethod
    def _update(record: TaskRecord, health: Health, parent: str | None, now: float,
                note: str | None, ack: Acknowledged | None = None) -> Change | None:
        """Rebuild one task's snapshot if it changed; the change to announce, if any."""
        previous = record.snapshot
        if (previous is not None and not record.dirty and previous.parent == parent
                and _same_verdict(previous.health, health)):
            if now - record.built_at >= REFRESH_TEXT:
                # Reasons quote ages ("no sign of life for 12m"): refresh their text now and
                # then, without announcing it as a change (and without a copy when it reads the
                # same: a copy of a snapshot costs more than assessing the task).
                own = snapshot.own_health(record, health)
                if previous.health != health or previous.own_health != own:
                    record.snapshot = replace(previous, health=health, own_health=own)
                record.built_at = now
            return None
        snap = snapshot.build(record, health, parent, note, ack)
        record.snapshot = snap
        record.built_at = now
        record.dirty = False
        if previous is None:
            return Change("added", record.spec.key, snap)
        if previous.health.badge != health.badge:
            return Change("health", record.spec.key, snap, previous.health)
        if previous != snap:
            return Change("updated", record.spec.key, snap, previous.health)
        return None
