"""The Monitor: one engine behind every view.

It drives the parts: discovery and the `TaskStore` (readers and feeds), process looks, and the
`Evaluator` (health, families, snapshots → changes). `--once`, `--follow --json` and the TUI all
drive this class, so they classify identically; views only render the `TaskSnapshot`s and
`Change`s it produces.

Driving it: `sweep()` (discover + read everything that changed), `on_paths(paths)` (targeted
reads after file events), `look_procs()` (psutil), then `evaluate()` (health → changes).
"""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import replace

from bgmon.config import Config
from bgmon.engine.evaluate import Change, Evaluator
from bgmon.engine.store import TaskRecord, TaskStore
from bgmon.model import Acknowledged, TaskSnapshot
from bgmon.procs import ProcessTable
from bgmon.sources.discover import Found, GitWorktrees, discover

PROGRESS_WINDOW = 60.0  # seconds: logged progress within this needs no CPU sample


def _last_progress(record: TaskRecord) -> float:
    """When the task's own log last showed progress. Heartbeats and `bgmon run`'s own lines
    append too, but prove only life (health.last_progress): those tasks get a full look."""
    act = record.activity
    if act.untimed_progress:
        return max((f.reader.mtime or 0.0 for f in record.feeds.values()), default=0.0)
    return act.last_progress_at or 0.0


class Monitor:
    def __init__(
        self,
        config: Config,
        clock: Callable[[], float] = time.time,
        procs: ProcessTable | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.procs = procs or ProcessTable()
        self.store = TaskStore(config.reading)
        self.tasks: dict[str, TaskRecord] = self.store.tasks  # the same dict, never rebound
        self.found = Found()
        self.notes: dict[str, str] = {}  # task key → bgmon's own mark (from recovery)
        self.acks: dict[str, Acknowledged] = {}  # task key → a person's `bgmon ack`
        self.evaluator = Evaluator()
        self._git = GitWorktrees() if config.git else None
        self._agent_cwds: dict[str, list[int]] = {}

    # -- reading ---------------------------------------------------------------------------

    def sweep(self) -> None:
        """Discover tasks (added/removed) and read whatever changed in every task's files."""
        for key in self.adopt(self.discover()):
            self.read(key)
        self.swept()

    def swept(self) -> None:
        """Once every task was read (a sweep, at once or spread over passes): what needs them
        all, the bounded search for to-do lists (newest logs first)."""
        self.store.search_checklists()

    def discover(self) -> Found:
        """The tasks on disk now. Changes nothing here: the live engine runs it in a thread
        of its own (one at a time) while passes go on, then hands the result to `adopt`."""
        return discover(self.config, self.clock(), self._git)

    def adopt(self, found: Found) -> list[str]:
        """Take a discovery: forget the tasks gone, adopt the new and changed ones; → the keys
        of every current task, for the caller to `read` (all at once, or some each pass)."""
        current = {spec.key: spec for spec in found.specs}
        # The specs live on in the records (an unchanged task keeps the spec it has): a second
        # copy of every one, held here until the next discovery, cost ~0.5 KB a task.
        self.found = replace(found, specs=[])
        keep = tuple(found.keep)
        for key in list(self.tasks):
            # Sub-agents fed by their session's log go when their session does.
            if key not in current and not key.startswith(keep) and key not in self.store.fed_by:
                self.store.forget(key)
        for key, spec in current.items():
            record = self.tasks.get(key)
            if record is None or record.spec != spec:
                self.store.adopt(spec)
        return list(current)

    def read(self, key: str) -> None:
        """Read whatever changed in one task's files (if it is still a task)."""
        record = self.tasks.get(key)
        if record is not None:
            self._read(record)

    def on_paths(self, paths: Iterable[str]) -> bool:
        """Read the files named by file events. Returns True if an unknown path was seen
        (a new task may exist: the caller should sweep)."""
        unknown = False
        touched: set[str] = set()
        for path in paths:
            key = self.store.by_file.get(path)
            if key is None:
                parent = os.path.dirname(path)
                if not path.endswith((".jsonl", "status.json")) and parent not in self.found.watch:
                    continue
                unknown = True
                continue
            touched.add(key)
        for key in touched:
            record = self.tasks.get(key)
            if record is not None:
                self._read(record)
        self.store.search_checklists()
        return unknown

    def _read(self, record: TaskRecord) -> None:
        """Read one task's files. Whatever its files do, the fault stays this task's warning:
        one bad task must not stop the monitor or hide the others."""
        try:
            self._read_files(record)
            record.fault = None
        except (OSError, ValueError, TypeError) as exc:
            record.fault = f"cannot read this task's files: {exc}"
            record.dirty = True

    def _read_files(self, record: TaskRecord) -> None:
        self.store.read_files(record)

    # -- processes -------------------------------------------------------------------------

    def look_procs(self) -> None:
        """One psutil look at every recorded pid (and agent processes for transcripts)."""
        now = self.clock()
        match = self.config.match_agents
        # Only tasks with a pid (or facts to clear, or a transcript to match) need a look: a
        # thousand quiet tasks without processes cost nothing here.
        involved = [
            r for r in self.tasks.values()
            if r.pids != (None, None) or r.proc is not None or r.supervisor is not None
            or (match and r.spec.transcript)
        ]
        # A task whose log grew lately proves progress by itself: its process gets a liveness
        # read only (its tree's CPU would not change the verdict), the tree now and then.
        recent = now - min(PROGRESS_WINDOW, self.config.thresholds.stuck_after / 2)
        light = {r.pids[0] for r in involved if r.pids[0] and _last_progress(r) >= recent}
        wants_agents = match and any(r.spec.transcript for r in involved)
        self._agent_cwds = self.procs.agent_cwds() if wants_agents else {}
        # Agent processes are looked at too: an idle agent with a call pending is waiting.
        agents = {p for pids in self._agent_cwds.values() for p in pids}
        facts = self.procs.look({p for r in involved for p in r.pids if p} | agents, light=light)
        for record in involved:
            pid, sup_pid = record.pids
            proc = facts.get(pid) if pid else None
            sup = facts.get(sup_pid) if sup_pid else None
            if proc != record.proc or sup != record.supervisor:
                record.dirty = True
            record.proc, record.supervisor = proc, sup
            if proc is not None and proc.cpu_active:
                record.last_cpu = now
            if record.spec.transcript and match:
                cwd = record.activity.cwd
                pids = self._agent_cwds.get(cwd, ()) if cwd else ()
                alive = bool(pids)
                busy = any(f.cpu_active for p in pids if (f := facts.get(p)) is not None)
                if alive != record.agent_alive or busy != record.agent_busy:
                    record.dirty = True
                record.agent_alive, record.agent_busy = alive, busy

    # -- health ----------------------------------------------------------------------------

    def evaluate(self) -> list[Change]:
        """Assess every task (time-based rules need `now`), roll up, and report changes."""
        return self.evaluator.evaluate(self.tasks, self.clock(), self.config.thresholds, self.notes,
                                       self.acks)

    # -- outputs ---------------------------------------------------------------------------

    def snapshots(self) -> list[TaskSnapshot]:
        return [r.snapshot for r in self.tasks.values() if r.snapshot is not None]

    def warnings(self) -> list[str]:
        out = list(self.found.warnings)
        for record in self.tasks.values():
            if record.snapshot is not None:
                out += [f"{record.snapshot.name} ({record.spec.key}): {w}" for w in record.snapshot.warnings]
        return out

    def set_notes(self, notes: dict[str, str]) -> None:
        """bgmon's own marks on tasks (from the recovery journal); shown in every view."""
        self._touch(self.notes, notes)
        self.notes = dict(notes)

    def set_acks(self, acks: dict[str, Acknowledged]) -> None:
        """People's acknowledgements (from the state store); each holds for its badge only."""
        self._touch(self.acks, acks)
        self.acks = dict(acks)

    def _touch(self, old: dict, new: dict) -> None:
        """Mark the tasks whose entry differs between `old` and `new` for a rebuild."""
        if new == old:
            return
        for key in old.keys() | new.keys():
            if old.get(key) != new.get(key) and key in self.tasks:
                self.tasks[key].dirty = True

    def find(self, ref: str) -> TaskSnapshot | None:
        """A task by key, id or name (as shown by `--once`); see bgmon.resolve."""
        from bgmon.resolve import AmbiguousTask, resolve_task

        try:
            return resolve_task(ref, self.snapshots())
        except AmbiguousTask:
            return None

    def watch_dirs(self) -> set[str]:
        return set(self.found.watch) | self.store.watch_dirs()


@contextmanager
def first_load(keep: bool) -> Iterator[None]:
    """The first look at every task, without the garbage collector. What it builds (every
    task's record, readers, snapshot) is not garbage, but each full collection during the load
    walks all of it: four of them cost ~0.3 s at 10,000 tasks, and held up everything else.
    `keep`: the load lives as long as the process (the live views): freeze it out of later
    collections' reach. (No collection first: it found 5 objects of garbage and held the
    interpreter for 160 ms at 10,000 tasks.)"""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if keep:
            gc.freeze()
        if enabled:
            gc.enable()


def collect(config: Config, clock: Callable[[], float] = time.time) -> Monitor:
    """One full look, as `--once` does it: read, two CPU samples apart, evaluate."""
    monitor = Monitor(config, clock=clock)
    with first_load(keep=False):
        monitor.sweep()
    monitor.look_procs()
    # Two looks tell busy from idle: for tasks' processes, and for agents a transcript matched.
    if config.cpu_sample > 0 and any(r.fields.get("pid") or r.agent_alive for r in monitor.tasks.values()):
        time.sleep(config.cpu_sample)
        monitor.look_procs()
    monitor.evaluate()
    return monitor
