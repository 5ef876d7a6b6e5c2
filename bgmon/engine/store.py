"""The task store: every task's readers and feeds, and what its files last said.

One `TaskRecord` per task key. The store adopts tasks as discovery finds them, forgets those
that vanished, and folds new lines into each task's `Activity`. It never judges health: it only
marks a record `dirty` when something the evaluator reads has changed.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace

from bgmon.activity import RESULT_WINDOW, Activity
from bgmon.agents import by_source, doc_format, line_format
from bgmon.agents.base import SubAgentShare
from bgmon.config import Reading
from bgmon.formats import Parser, parser_for, sniff
from bgmon.health import Observation
from bgmon.model import Event, EventKind, Health, ProcFacts, TaskSnapshot
from bgmon.sources.discover import TaskSpec, named_logs, worktree_logs
from bgmon.sources.document import DocumentReader
from bgmon.sources.status import StatusReader
from bgmon.sources.tail import TailReader
from bgmon.timefmt import parse_time

_BIG = 1 << 53  # beyond this a "count" is junk (and JSON consumers lose precision)
_PID_MAX = 1 << 22  # Linux's pid_max ceiling


def as_int(value: object) -> int | None:
    """An integer from a status field (int or digit string), or None for junk."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        text = value.strip()
        value = int(text) if text.isdigit() and len(text) < 17 else None
    if isinstance(value, int) and -_BIG < value < _BIG:
        return value
    return None


def as_pid(value: object) -> int | None:
    """A usable pid: init (1) and the kernel (0) are never a task's process."""
    n = as_int(value)
    return n if n is not None and 1 < n <= _PID_MAX else None


# Slots: one record (and a feed or more) per task, 10,000 at once (bench/scale.py's RSS).
@dataclass(slots=True)
class LogFeed:
    reader: TailReader
    fmt: str
    parser: Parser | None = None
    unknown_types: int = 0
    signal: bool = False  # the agent's own word on its state (see Activity.signal)
    # Its lines also hold sub-agents' (LineFormat.sub_agents): each one's share, per line.
    sub_agents: Callable[[dict], list[SubAgentShare]] | None = None


def new_feed(path: str, fmt: str, reading: Reading, signal: bool = False) -> LogFeed:
    """A feed positioned at the start of its log, read with its format's decoder."""
    line_fmt = line_format(fmt)
    reader = TailReader(path, line_cap=reading.line_cap, read_chunk=reading.read_chunk,
                        decode=line_fmt.decode if line_fmt is not None else None)
    return LogFeed(reader=reader, fmt=fmt, signal=signal,
                   sub_agents=line_fmt.sub_agents if line_fmt is not None else None)


@dataclass(slots=True)
class TaskRecord:
    # What the files and processes said (written by the store and the process look).
    spec: TaskSpec
    status: StatusReader | None = None
    feeds: dict[str, LogFeed] = field(default_factory=dict)
    document: DocumentReader | None = None  # a whole-session document (see TaskSpec.document)
    signal_docs: dict[str, DocumentReader] = field(default_factory=dict)  # e.g. a state file
    activity: Activity = field(default_factory=Activity)
    proc: ProcFacts | None = None
    supervisor: ProcFacts | None = None
    last_cpu: float | None = None
    agent_alive: bool | None = None
    agent_busy: bool | None = None
    progress_sig: object = None  # status.json's (progress, step): a change is progress
    progress_at: float | None = None  # … and when it last changed
    pids: tuple[int | None, int | None] = (None, None)  # (pid, supervisorPid) from status.json
    fault: str | None = None  # an unexpected error reading this task's files
    # Set whenever any of the above changed; cleared by the evaluator once it has judged it.
    dirty: bool = True
    # The evaluator's caches (see evaluate.py): valid only while `dirty` is False.
    obs: Observation | None = None
    own: Health | None = None
    snapshot: TaskSnapshot | None = None
    built_at: float = 0.0
    recheck_at: float = 0.0  # see health.next_check
    cycle: str | None = None  # its `parent` link was cut to break a loop
    outside_logs: tuple[str, ...] = ()  # `log` paths outside the task directory, not read

    @property
    def fields(self) -> dict:
        return (self.status.fields if self.status else None) or {}


DRAIN_CHUNKS = 8  # read_chunk-sized reads of one log per pass
NARROW_LINES = 100  # start-up's first look back; widened to `startup_lines` when not enough
_CHECKLIST_KINDS = frozenset({EventKind.PROGRESS, EventKind.STEP, EventKind.TASK_ITEM})


class TaskStore:
    """Task key → record, and file path → task key (to route file events)."""

    def __init__(self, reading: Reading) -> None:
        self.reading = reading
        self.tasks: dict[str, TaskRecord] = {}
        self.by_file: dict[str, str] = {}  # status/log path → task key
        # Feeds opened with no to-do list in their start-up lines (see search_checklists).
        self._searches: list[tuple[TaskRecord, LogFeed]] = []
        # Sub-agents whose lines are in their session's log: their task key → the session's.
        # They have no files of their own; they are fed by the session's log and live with it.
        self.fed_by: dict[str, str] = {}

    def adopt(self, spec: TaskSpec) -> TaskRecord:
        """The record for `spec`, keeping the readers of a task whose spec changed."""
        old = self.tasks.get(spec.key)
        record = TaskRecord(spec=spec)
        if old is not None:
            record.status, record.feeds, record.activity = old.status, old.feeds, old.activity
            record.pids, record.last_cpu, record.document = old.pids, old.last_cpu, old.document
            record.progress_sig, record.progress_at = old.progress_sig, old.progress_at
            record.signal_docs = old.signal_docs
        if spec.document and (record.document is None or record.document.path != spec.document):
            fmt = doc_format(spec.fmt)
            record.document = DocumentReader(spec.document, fmt) if fmt is not None else None
        if old is None and spec.status_file:
            agent = by_source(spec.source)
            entry = agent.status_entry if agent is not None else None
            extract = entry(spec.entry) if entry is not None and spec.entry else None
            record.status = StatusReader(spec.status_file, extract=extract)
        self.tasks[spec.key] = record
        for path in (spec.status_file, spec.document):
            if path:
                self.by_file[path] = spec.key
        return record

    def forget(self, key: str) -> None:
        record = self.tasks.pop(key, None)
        self.fed_by.pop(key, None)
        for child in [c for c, session in self.fed_by.items() if session == key]:
            self.forget(child)
        if record is None:
            return
        for path in (record.spec.status_file, record.spec.document, *record.feeds, *record.signal_docs):
            if path:
                self.by_file.pop(path, None)

    def read_files(self, record: TaskRecord) -> None:
        """Read whatever changed in one task's status file and logs."""
        if record.status is not None and record.status.read():
            record.dirty = True
            fields = record.fields
            record.pids = (as_pid(fields.get("pid")), as_pid(fields.get("supervisorPid")))
            _note_progress(record, fields)
        if record.document is not None and record.document.read():
            # The document holds the whole session: its events replace what we had.
            record.activity = Activity()
            record.activity.extend(record.document.events or [])
            record.dirty = True
        logs = record.spec.logs
        if record.spec.source == "worktree":
            inside, outside = named_logs(record.spec.path, record.fields, self.reading.log_dirs)
            if tuple(outside) != record.outside_logs:
                record.outside_logs, record.dirty = tuple(outside), True
            logs = tuple(inside) if inside or outside else tuple(worktree_logs(record.spec.path, None))
        signals = {}
        for path, fmt in record.spec.signals:
            if doc_format(fmt) is not None:
                self.read_signal_doc(record, path, fmt)
            else:
                signals[path] = fmt
        for path in (*logs, *signals):
            feed = record.feeds.get(path)
            if feed is None:
                feed = self.open_feed(record, path, signals.get(path))
                continue
            self.drain(record, feed)
        logs = (*logs, *signals)
        for path in list(record.feeds):
            if path not in logs:
                del record.feeds[path]
                self.by_file.pop(path, None)

    def read_signal_doc(self, record: TaskRecord, path: str, fmt: str) -> None:
        """A state document (Claude Code's sessions/<pid>.json): when it changes, what it says
        now is the agent's word on the session."""
        doc = record.signal_docs.get(path)
        if doc is None:
            doc_fmt = doc_format(fmt)
            assert doc_fmt is not None
            doc = record.signal_docs[path] = DocumentReader(path, doc_fmt)
            self.by_file[path] = record.spec.key
        if doc.read():
            for ev in doc.events or ():
                record.activity.signal(ev)
            record.dirty = True

    def open_feed(self, record: TaskRecord, path: str, signal_fmt: str | None = None) -> LogFeed:
        reading = self.reading
        feed = new_feed(path, signal_fmt or record.spec.fmt, reading, signal=signal_fmt is not None)
        reader = feed.reader
        record.feeds[path] = feed
        self.by_file[path] = record.spec.key
        fmt = line_format(feed.fmt)
        if fmt is not None and fmt.head_first:
            # Session facts (Codex: the cwd) are on the first line only; the back-scan may not
            # reach it.
            head = reader.head()
            if head is not None:
                self.feed(record, feed, [head])
        # Start-up reads what health needs: the last lines, widened to the full back-scan only
        # when they hold too few results to judge a streak or a failure rate. (A to-do list
        # older than the window is the bounded search's, not a reason to fold more.)
        narrow = min(NARROW_LINES, reading.startup_lines)
        lines = reader.prime(reading.startup_bytes, narrow)
        if len(lines) >= narrow and narrow < reading.startup_lines and not self._enough(feed, lines):
            lines = reader.prime(reading.startup_bytes, reading.startup_lines)
        self.feed(record, feed, lines)
        if reader.window_start > 0 and record.activity.progress is None and not feed.signal:
            self._searches.append((record, feed))
        if reader.offset == 0 and reader.size:
            self.drain(record, feed)  # a single partial line or a small file: read it now
        record.dirty = True
        return feed

    def search_checklists(self) -> None:
        """Look back for the newest to-do list of each log opened since the last call whose
        start-up lines held none. Newest logs first (live sessions are the ones whose progress
        matters), within `checklist_budget` bytes in all and `checklist_search` per log, so the
        cost grows neither with log sizes nor, past the budget, with the number of tasks. A log
        left out shows its progress when its agent next writes the list."""
        wanting, self._searches = self._searches, []
        wanting.sort(key=lambda pair: pair[1].reader.mtime or 0.0, reverse=True)
        left = self.reading.checklist_budget
        for record, feed in wanting:
            if left <= 0:
                break
            if self.tasks.get(record.spec.key) is record and record.activity.progress is None:
                left -= self._find_checklist(record, feed, min(left, self.reading.checklist_search))

    def _find_checklist(self, record: TaskRecord, feed: LogFeed, budget: int) -> int:
        """Read backwards from the start-up window for the first whole list; task board items
        met on the way are kept too (the board is built from all of them). → bytes read."""
        fmt = line_format(feed.fmt)
        if fmt is None or not fmt.checklist_marks or budget <= 0:
            return 0
        parse = feed.parser or parser_for(feed.fmt)
        found: list[Event] = []  # oldest first

        def take(obj: dict) -> bool:
            events = [ev for ev in parse(obj) or () if ev.kind in _CHECKLIST_KINDS]
            found[:0] = events
            return any(ev.kind is EventKind.PROGRESS for ev in events)  # a whole list: done

        spent = feed.reader.search_back(feed.reader.window_start, budget, fmt.checklist_marks, take)
        if found:
            record.activity.older_checklist(found)
            record.dirty = True
        return spent

    @staticmethod
    def _enough(feed: LogFeed, lines: list[dict]) -> bool:
        """Do these (last) lines hold what health needs: a full window of results? Parsed
        only to count; folded by the caller."""
        if not lines:
            return False
        fmt = feed.fmt if feed.fmt != "auto" else sniff(lines[0])
        parse = parser_for(fmt)
        results = 0
        for obj in lines:
            for ev in parse(obj) or ():
                if ev.kind is EventKind.TOOL_RESULT and ev.ok is not None:
                    results += 1
                    if results >= RESULT_WINDOW:
                        return True
        return False

    def drain(self, record: TaskRecord, feed: LogFeed) -> None:
        # Bounded (with 4 MiB chunks, 32 MiB: ~0.1 s): a bigger burst is finished on the next
        # passes, which the live engine runs at once for logs still behind, so the events of
        # other tasks are not held up for the length of a gigabyte.
        for _ in range(DRAIN_CHUNKS):
            # Lines are decoded one at a time as they are folded: no batch of decoded objects
            # stays alive, which keeps the garbage collector out of big reads.
            self.feed(record, feed, feed.reader.read_iter())
            if not feed.reader.behind:
                break

    def feed(self, record: TaskRecord, feed: LogFeed, lines: Iterable[dict]) -> None:
        if feed.sub_agents is not None:
            lines = self._share_out(record, feed.sub_agents, lines)
        parse = feed.parser
        fold = record.activity.signals if feed.signal else record.activity.extend
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
            fold(events)
        if fed:
            record.dirty = True

    def _share_out(self, record: TaskRecord, split: Callable[[dict], list[SubAgentShare]],
                   lines: Iterable[dict]) -> Iterator[dict]:
        """Pass the lines on to the session's own parser, first handing each sub-agent its
        share of them (its task is made at its first line)."""
        for obj in lines:
            for share in split(obj):
                child = self._sub_agent(record, share)
                for ev in share.events:
                    child.activity.apply(ev)
                child.dirty = True
            yield obj

    def _sub_agent(self, session: TaskRecord, share: SubAgentShare) -> TaskRecord:
        key = f"{session.spec.key}/{share.agent}"
        child = self.tasks.get(key)
        if child is not None:
            return child
        parent = f"{session.spec.key}/{share.spawner}" if share.spawner else session.spec.key
        short = share.agent[-8:]  # call ids share their prefix (toolu_01…, call_…)
        spec = replace(session.spec, key=key, id=short, name=share.name or short,
                       parent=parent if parent in self.tasks else session.spec.key,
                       logs=(), signals=(), document=None, status_file=None)
        child = self.tasks[key] = TaskRecord(spec=spec)
        self.fed_by[key] = session.spec.key
        if session.activity.cwd:
            # It works where its session does (its lines never say).
            child.activity.apply(Event(EventKind.META, cwd=session.activity.cwd))
        return child

    def watch_dirs(self) -> set[str]:
        """The directories of every file a task is read from."""
        return {os.path.dirname(path) for path in self.by_file}


_NO_PROGRESS = ("None", "None")  # the signature of a status without progress or step


def _note_progress(record: TaskRecord, fields: dict) -> None:
    """A changed progress or step in status.json is progress; a rewrite that only moves
    `updatedAt` is life. Dated by the file's own `updatedAt` (its mtime if it has none)."""
    sig = (repr(fields.get("progress")), repr(fields.get("step")))
    if sig == record.progress_sig:
        return
    if sig == _NO_PROGRESS:
        sig = _NO_PROGRESS  # most tasks': one shared tuple, not three objects a task
    first = record.progress_sig is None
    record.progress_sig = sig
    if first and sig is _NO_PROGRESS:
        return
    status = record.status
    record.progress_at = parse_time(fields.get("updatedAt")) or (status.mtime if status else None)
