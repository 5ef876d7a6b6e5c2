"""The Monitor: one engine behind every view.

It owns the readers of every task, folds their events, samples processes, and evaluates health
with `health.assess`. `--once`, `--follow --json` and the TUI all drive this class, so they
classify identically; views only render the `TaskSnapshot`s and `Change`s it produces.

Driving it: `sweep()` (discover + read everything that changed), `on_paths(paths)` (targeted
reads after file events), `look_procs()` (psutil), then `evaluate()` (health → changes).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from bgmon.activity import Activity
from bgmon.config import Config
from bgmon.formats import Parser, opencode, parser_for, sniff
from bgmon.health import Observation, assess, last_sign_of_life, next_check, roll_up
from bgmon.model import Badge, Health, ProcFacts, Progress, TaskSnapshot
from bgmon.procs import ProcessTable
from bgmon.sources.discover import Found, GitWorktrees, TaskSpec, discover, worktree_logs
from bgmon.sources.status import StatusReader
from bgmon.sources.tail import TailReader
from bgmon.timefmt import parse_time

SNAPSHOT_EVENTS = 20
REFRESH_TEXT = 15.0  # seconds between refreshes of an unchanged task's reason text


def _same_verdict(a: Health, b: Health) -> bool:
    return a.badge == b.badge and [r.rule for r in a.reasons] == [r.rule for r in b.reasons]


def _own(record: TaskRecord, health: Health) -> Health | None:
    return record.own if record.own is not None and record.own != health else None


@dataclass(frozen=True, slots=True)
class Change:
    """One thing a view must show: a task added or removed, its badge changed, or its data."""

    kind: str  # added | removed | health | updated
    key: str
    snapshot: TaskSnapshot | None = None
    previous: Health | None = None


@dataclass
class LogFeed:
    reader: TailReader
    fmt: str
    parser: Parser | None = None
    unknown_types: int = 0


@dataclass
class TaskRecord:
    spec: TaskSpec
    status: StatusReader | None = None
    feeds: dict[str, LogFeed] = field(default_factory=dict)
    activity: Activity = field(default_factory=Activity)
    proc: ProcFacts | None = None
    supervisor: ProcFacts | None = None
    last_cpu: float | None = None
    agent_alive: bool | None = None
    dirty: bool = True
    obs: Observation | None = None
    own: Health | None = None
    snapshot: TaskSnapshot | None = None
    built_at: float = 0.0
    recheck_at: float = 0.0  # see health.next_check
    pids: tuple[int | None, int | None] = (None, None)  # (pid, supervisorPid) from status.json
    fault: str | None = None  # an unexpected error reading this task's files
    cycle: str | None = None  # its `parent` link was cut to break a loop

    @property
    def fields(self) -> dict:
        return (self.status.fields if self.status else None) or {}


_BIG = 1 << 53  # beyond this a "count" is junk (and JSON consumers lose precision)
_PID_MAX = 1 << 22  # Linux's pid_max ceiling


def _int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        text = value.strip()
        value = int(text) if text.isdigit() and len(text) < 17 else None
    if isinstance(value, int) and -_BIG < value < _BIG:
        return value
    return None


def _pid(value: object) -> int | None:
    """A usable pid: init (1) and the kernel (0) are never a task's process."""
    n = _int(value)
    return n if n is not None and 1 < n <= _PID_MAX else None


def parse_progress(value: object) -> Progress | None:
    """`{"done": 2, "total": 5}` or `"2/5"` → Progress."""
    if isinstance(value, dict):
        done, total = _int(value.get("done")), _int(value.get("total"))
    elif isinstance(value, str) and "/" in value:
        left, _, right = value.partition("/")
        done, total = _int(left), _int(right)
    else:
        return None
    if done is None or total is None or total < 0:
        return None
    return Progress(max(0, done), total)


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
        self.tasks: dict[str, TaskRecord] = {}
        self.found = Found()
        self.notes: dict[str, str] = {}  # task key → bgmon's own mark (from recovery)
        self._git = GitWorktrees() if config.git else None
        self._by_file: dict[str, str] = {}  # status/log path → task key
        self._agent_cwds: dict[str, list[int]] = {}
        self._last_keys: set[str] = set()
        self._family: tuple[dict[str, str | None], dict[str, list[str]]] | None = None

    # -- reading ---------------------------------------------------------------------------

    def sweep(self) -> None:
        """Discover tasks (added/removed) and read whatever changed in every task's files."""
        now = self.clock()
        self.found = discover(self.config, now, self._git)
        current = {spec.key: spec for spec in self.found.specs}
        for key in list(self.tasks):
            if key not in current and not key.startswith(tuple(self.found.keep)):
                self._forget(key)
        for key, spec in current.items():
            record = self.tasks.get(key)
            if record is None or record.spec != spec:
                record = self._adopt(spec)
            self._read(record)

    def on_paths(self, paths: Iterable[str]) -> bool:
        """Read the files named by file events. Returns True if an unknown path was seen
        (a new task may exist: the caller should sweep)."""
        unknown = False
        touched: set[str] = set()
        for path in paths:
            key = self._by_file.get(path)
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
        return unknown

    def _adopt(self, spec: TaskSpec) -> TaskRecord:
        old = self.tasks.get(spec.key)
        record = TaskRecord(spec=spec)
        if old is not None:
            record.status, record.feeds, record.activity = old.status, old.feeds, old.activity
            record.pids, record.last_cpu = old.pids, old.last_cpu
        elif spec.status_file:
            extract = opencode.extractor(spec.entry) if spec.entry else None
            record.status = StatusReader(spec.status_file, extract=extract)
        self.tasks[spec.key] = record
        if spec.status_file:
            self._by_file[spec.status_file] = spec.key
        return record

    def _forget(self, key: str) -> None:
        record = self.tasks.pop(key, None)
        if record is None:
            return
        for path in (record.spec.status_file, *record.feeds):
            if path:
                self._by_file.pop(path, None)

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
        if record.status is not None and record.status.read():
            record.dirty = True
            fields = record.fields
            record.pids = (_pid(fields.get("pid")), _pid(fields.get("supervisorPid")))
        logs = record.spec.logs
        if record.spec.source == "worktree":
            logs = tuple(worktree_logs(record.spec.path, record.fields))
        for path in logs:
            feed = record.feeds.get(path)
            if feed is None:
                feed = self._open_feed(record, path)
                continue
            self._drain(record, feed)
        for path in list(record.feeds):
            if path not in logs:
                del record.feeds[path]
                self._by_file.pop(path, None)

    def _open_feed(self, record: TaskRecord, path: str) -> LogFeed:
        reading = self.config.reading
        reader = TailReader(path, line_cap=reading.line_cap, read_chunk=reading.read_chunk)
        feed = LogFeed(reader=reader, fmt=record.spec.fmt)
        record.feeds[path] = feed
        self._by_file[path] = record.spec.key
        if record.spec.fmt == "codex":
            # The session's cwd is on the first line only; the back-scan may not reach it.
            head = reader.head()
            if head is not None:
                self._feed(record, feed, [head])
        lines = reader.prime(reading.startup_bytes, reading.startup_lines)
        self._feed(record, feed, lines)
        if reader.offset == 0 and reader.size:
            self._drain(record, feed)  # a single partial line or a small file: read it now
        record.dirty = True
        return feed

    def _drain(self, record: TaskRecord, feed: LogFeed) -> None:
        # Bounded: a burst larger than 64 chunks is finished on the next pass.
        for _ in range(64):
            # Lines are decoded one at a time as they are folded: no batch of decoded objects
            # stays alive, which keeps the garbage collector out of big reads.
            self._feed(record, feed, feed.reader.read_iter())
            if not feed.reader.behind:
                break

    def _feed(self, record: TaskRecord, feed: LogFeed, lines: Iterable[dict]) -> None:
        parse = feed.parser
        apply = record.activity.apply
        fed = False
        for obj in lines:
            fed = True
            if parse is None:
                fmt = feed.fmt if feed.fmt != "auto" else sniff(obj)
                feed.fmt, feed.parser = fmt, parser_for(fmt)
                parse = feed.parser
            events = parse(obj)
            if events is None:
                feed.unknown_types += 1
                continue
            for ev in events:
                apply(ev)
        if fed:
            record.dirty = True

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
        facts = self.procs.look({p for r in involved for p in r.pids if p})
        wants_agents = match and any(r.spec.transcript for r in involved)
        self._agent_cwds = self.procs.agent_cwds() if wants_agents else {}
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
                alive = bool(cwd and cwd in self._agent_cwds)
                if alive != record.agent_alive:
                    record.dirty = True
                record.agent_alive = alive

    # -- health ----------------------------------------------------------------------------

    def observe(self, record: TaskRecord) -> Observation:
        fields = record.fields
        # Tasks with a status file say their status; transcripts are judged from their turns.
        status = fields.get("status") if record.status is not None else None
        if record.status is not None and not isinstance(status, str):
            status = "unknown" if record.status and record.status.fields is None else str(status)
        mtimes = [f.reader.mtime for f in record.feeds.values() if f.reader.mtime and f.reader.size]
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
            exit_code=fields.get("exitCode"),
            error=str(fields["error"]) if fields.get("error") is not None else None,
            last_append=max(mtimes) if mtimes else None,
            last_cpu=record.last_cpu,
            agent_alive=record.agent_alive,
            activity=record.activity.summary(),
        )

    def evaluate(self) -> list[Change]:
        """Assess every task (time-based rules need `now`), roll up, and report changes."""
        now = self.clock()
        th = self.config.thresholds
        reshaped = self._family is None or self.tasks.keys() != self._last_keys
        assessed: list[str] = []
        for key, record in self.tasks.items():
            if record.dirty or record.obs is None:
                record.obs = self.observe(record)  # depends on data, not on the time
                reshaped = True
            elif record.own is not None and now < record.recheck_at:
                continue  # nothing new, and the clock cannot change the verdict yet
            record.own = assess(record.obs, now, th)
            record.recheck_at = next_check(record.obs, now, th, REFRESH_TEXT)
            assessed.append(key)
        if not assessed and not reshaped:
            return []
        if reshaped or self._family is None:
            # Who nests under whom depends on the data only: rebuilt when some task's data
            # changed or the set of tasks did, not on every tick.
            parents = self._parents()
            children: dict[str, list[str]] = {}
            for key, parent in parents.items():
                if parent is not None:
                    children.setdefault(parent, []).append(key)
            self._family = (parents, children)
        parents, children = self._family
        rolled: dict[str, Health] = {}

        def health_of(key: str, depth: int = 0) -> Health:
            if key in rolled:
                return rolled[key]
            own = self.tasks[key].own or Health(Badge.UNKNOWN)
            kids = children.get(key, ())
            if depth > 20 or not kids:
                rolled[key] = own
                return own
            result = roll_up(own, ((self.tasks[k].spec.name, health_of(k, depth + 1)) for k in kids))
            rolled[key] = result
            return result

        if reshaped:
            todo: Iterable[str] = self.tasks
        else:
            # Only the re-assessed tasks and their ancestors (whose roll-up may change).
            todo = set()
            for key in assessed:
                depth = 0
                while key is not None and key not in todo and depth <= 20:
                    todo.add(key)
                    key, depth = parents.get(key), depth + 1
        changes: list[Change] = []
        for key in todo:
            record = self.tasks[key]
            health = health_of(key)
            previous = record.snapshot
            if previous is not None and not record.dirty and _same_verdict(previous.health, health):
                if now - record.built_at < REFRESH_TEXT:
                    continue
                # Reasons quote ages ("no sign of life for 12m"): refresh their text now and
                # then, without announcing it as a change (and without a copy when it reads the
                # same: a copy of a snapshot costs more than assessing the task).
                own = _own(record, health)
                if previous.health != health or previous.own_health != own:
                    record.snapshot = replace(previous, health=health, own_health=own)
                record.built_at = now
                continue
            snap = self._snapshot(record, health, parents.get(key))
            record.snapshot = snap
            record.built_at = now
            record.dirty = False
            if previous is None:
                changes.append(Change("added", key, snap))
            elif previous.health.badge != health.badge:
                changes.append(Change("health", key, snap, previous.health))
            elif previous != snap:
                changes.append(Change("updated", key, snap, previous.health))
        for key in list(self._last_keys - self.tasks.keys()):
            changes.append(Change("removed", key))
        self._last_keys = set(self.tasks)
        return changes

    def _parents(self) -> dict[str, str | None]:
        by_id: dict[tuple[str, str], str] = {}
        for key, record in self.tasks.items():
            by_id[(record.spec.group, self._task_id(record))] = key
        out: dict[str, str | None] = {}
        for key, record in self.tasks.items():
            parent = record.spec.parent
            if parent is None:
                ref = record.fields.get("parent")
                if isinstance(ref, str) and ref:
                    parent = by_id.get((record.spec.group, ref))
            out[key] = parent if parent in self.tasks and parent != key else None
        self._break_cycles(out)
        return out

    def _break_cycles(self, parents: dict[str, str | None]) -> None:
        """`parent` fields that loop (a → b → a) would leave no root to show the tasks from:
        cut the link that closes each loop, and say so on that task."""
        done: set[str] = set()
        for start in parents:
            path: list[str] = []
            on_path: set[str] = set()
            key: str | None = start
            while key is not None and key not in done:
                if key in on_path:
                    last = path[-1]
                    parents[last] = None
                    note = f"its parent chain loops back to {key}; shown at the top"
                    if self.tasks[last].cycle != note:
                        self.tasks[last].cycle, self.tasks[last].dirty = note, True
                    break
                path.append(key)
                on_path.add(key)
                key = parents.get(key)
            done.update(path)

    @staticmethod
    def _task_id(record: TaskRecord) -> str:
        value = record.fields.get("id")
        return value if isinstance(value, str) and value else record.spec.id

    def _snapshot(self, record: TaskRecord, health: Health, parent: str | None) -> TaskSnapshot:
        spec, fields, act = record.spec, record.fields, record.activity
        obs_life = last_sign_of_life(record.obs)[0] if record.obs else None
        name = fields.get("name") if isinstance(fields.get("name"), str) else None
        if name is None and spec.transcript and act.cwd and spec.parent is None:
            name = os.path.basename(act.cwd.rstrip("/")) or spec.name
        group = spec.group
        if spec.transcript and act.cwd:
            group = act.cwd
        command = fields.get("command")
        argv = tuple(str(a) for a in command) if isinstance(command, list) and command else None
        step = fields.get("step") if isinstance(fields.get("step"), str) else act.step
        files = tuple(p for p in (spec.status_file, *record.feeds) if p)
        cwd = fields.get("cwd") if isinstance(fields.get("cwd"), str) else None
        return TaskSnapshot(
            key=spec.key,
            id=self._task_id(record),
            name=name or spec.name,
            source=spec.source,
            group=group,
            parent=parent,
            status=self._status_word(record, health),
            health=health,
            own_health=_own(record, health),
            progress=parse_progress(fields.get("progress")) or act.progress,
            step=step,
            last_activity=obs_life,
            pid=record.pids[0],
            path=spec.path,
            files=files,
            fields=dict(fields),
            recent=tuple(act.recent)[-SNAPSHOT_EVENTS:],
            proc=record.proc,
            note=self.notes.get(spec.key),
            warnings=tuple(self._task_warnings(record)),
            cwd=cwd or act.cwd or (spec.path if spec.source == "worktree" else None),
            command=argv,
        )

    @staticmethod
    def _status_word(record: TaskRecord, health: Health) -> str:
        if record.status is not None:
            status = record.fields.get("status")
            return status if isinstance(status, str) else "unknown"
        turn = record.activity.turn
        return {"ended": "idle", "aborted": "aborted", "api_error": "api-error"}.get(turn or "", "running")

    @staticmethod
    def _task_warnings(record: TaskRecord) -> list[str]:
        out = [w for w in (record.fault, record.cycle) if w]
        if record.status is not None and record.status.stale:
            kept = "keeping the last good value" if record.status.fields is not None else "no good value yet"
            out.append(f"status.json unreadable ({record.status.error}); {kept}")
        version = record.fields.get("version")
        if version not in (None, 1, "1"):
            out.append(f"status.json version {version!r} is newer than this bgmon knows; reading known fields")
        for path, feed in record.feeds.items():
            name = os.path.basename(path)
            out += [f"{name}: {p}" for p in feed.reader.stats.problems()]
            if feed.unknown_types:
                out.append(f"{name}: {feed.unknown_types} line(s) of unknown type skipped")
            if feed.reader.stats.missing:
                out.append(f"{name}: log file is missing (deleted or rotated away)")
        return out

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
        if notes == self.notes:
            return
        for key in self.notes.keys() | notes.keys():
            if self.notes.get(key) != notes.get(key) and key in self.tasks:
                self.tasks[key].dirty = True
        self.notes = dict(notes)

    def find(self, ref: str) -> TaskSnapshot | None:
        """A task by key, id or name (as shown by `--once`)."""
        snaps = self.snapshots()
        for attr in ("key", "id", "name"):
            matches = [s for s in snaps if getattr(s, attr) == ref]
            if len(matches) == 1:
                return matches[0]
        return None

    def watch_dirs(self) -> set[str]:
        dirs = set(self.found.watch)
        for path in self._by_file:
            dirs.add(os.path.dirname(path))
        return dirs


def collect(config: Config, clock: Callable[[], float] = time.time) -> Monitor:
    """One full look, as `--once` does it: read, two CPU samples apart, evaluate."""
    monitor = Monitor(config, clock=clock)
    monitor.sweep()
    monitor.look_procs()
    if any(r.fields.get("pid") for r in monitor.tasks.values()) and config.cpu_sample > 0:
        time.sleep(config.cpu_sample)
        monitor.look_procs()
    monitor.evaluate()
    return monitor
