"""The recovery journal: append-only JSON lines that survive a crash mid-write.

Every record is one `os.write` of one complete line on an O_APPEND descriptor, so concurrent
writers (the TUI and a `bgmon approve` in another shell) never interleave inside a line, and a
process killed mid-write leaves at worst one torn last line, which the reader skips. Decisions,
results and marks are fsynced: they are the records a person relies on after a crash.

Record kinds: health (a badge transition), proposal, decision (approved/rejected/superseded),
result (what the approved actions did), mark (bgmon's note on a task).
"""

from __future__ import annotations

import os
import stat
import statistics
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from bgmon.model import Badge
from bgmon.recovery.proposal import Proposal, now_iso
from bgmon.recovery.redact import scrub
from bgmon.timefmt import parse_time

DEFAULT_PATH = Path(".agents") / "logs" / "background_monitoring.jsonl"
VERSION = 1
DURABLE_KINDS = frozenset({"decision", "result", "mark"})
# `by` of decisions no person made: the monitor's auto-recover, and `bgmon run`'s restarts.
AUTOMATIC = frozenset({"auto", "bgmon run"})

# Proposal states, derived from the records that follow a proposal.
PENDING, APPROVED, REJECTED, EXECUTED, FAILED, SUPERSEDED = (
    "pending", "approved", "rejected", "executed", "failed", "superseded"
)


class JournalUnreadable(OSError):
    """The journal path exists but cannot be read as a journal (a directory, a FIFO, no
    permission); the message is one line for the person."""


@dataclass
class JournalRead:
    records: list[dict[str, Any]] = field(default_factory=list)
    bad_lines: int = 0  # lines that are not a JSON object
    torn_tail: bool = False  # the last line had no newline (a write was cut off)
    bad_records: int = 0  # JSON objects of a known kind whose fields have the wrong shape

    @property
    def skipped(self) -> int:
        """Everything the reader left out: bad lines, a torn tail, malformed records."""
        return self.bad_lines + int(self.torn_tail) + self.bad_records


class Journal:
    def __init__(self, path: Path | str) -> None:
        self.path = Path(path).expanduser()
        self._cache: tuple[tuple[int, int, int], JournalRead] | None = None

    @classmethod
    def for_root(cls, root: Path | str, path: Path | str | None = None) -> Journal:
        """The journal of a watched root; a relative `path` is taken under the root."""
        root = Path(root).expanduser()
        return cls(root / (Path(path) if path is not None else DEFAULT_PATH))

    # --- writing -------------------------------------------------------------------------------

    def append(self, record: dict[str, Any], *, durable: bool | None = None) -> dict[str, Any]:
        """Append one record (adds `v` and `ts`); fsync when `durable` (default: by kind)."""
        record = {"v": VERSION, "ts": now_iso(), **record}
        line = orjson.dumps(record, option=orjson.OPT_NON_STR_KEYS, default=str)
        # Known secrets (the API key) never reach a file bgmon writes, whatever the record holds.
        data = scrub(line.decode()).encode() + b"\n"
        if durable is None:
            durable = record.get("kind") in DURABLE_KINDS
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            size = os.fstat(fd).st_size
            # A torn last line (a writer killed mid-write) must not swallow this record.
            if size and os.pread(fd, 1, size - 1) != b"\n":
                data = b"\n" + data
            written = os.write(fd, data)
            while written < len(data):  # only on odd filesystems; a regular file writes it whole
                written += os.write(fd, data[written:])
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        return record

    # --- reading -------------------------------------------------------------------------------

    def read(self) -> JournalRead:
        """Every readable record. Cached while the file is unchanged (the TUI asks often)."""
        out = JournalRead()
        try:
            # O_NONBLOCK: a FIFO planted at the path must not hang the reader in open().
            fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            return out
        except OSError as exc:
            raise JournalUnreadable(
                f"cannot read the journal {self.path}: {exc.strerror or exc}"
            ) from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                what = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
                raise JournalUnreadable(f"cannot read the journal {self.path}: it is {what}")
            key = (st.st_ino, st.st_size, st.st_mtime_ns)
            cached = self._cache
            if cached is not None and cached[0] == key:
                return cached[1]
            with os.fdopen(fd, "rb", closefd=False) as f:
                data = f.read(st.st_size)  # what the key describes, not a write in progress
        except JournalUnreadable:
            raise
        except OSError as exc:
            raise JournalUnreadable(
                f"cannot read the journal {self.path}: {exc.strerror or exc}"
            ) from None
        finally:
            os.close(fd)
        lines = data.split(b"\n")
        if lines and lines[-1] != b"":
            out.torn_tail = True
        lines = lines[:-1]  # the last piece is "" or the torn line
        for raw in lines:
            if not raw.strip():
                continue
            try:
                obj = orjson.loads(raw)
            except orjson.JSONDecodeError:
                out.bad_lines += 1
                continue
            if not isinstance(obj, dict):
                out.bad_lines += 1
            elif not well_formed(obj):
                out.bad_records += 1
            else:
                out.records.append(obj)
        self._cache = (key, out)  # shared with later callers: treat it as read-only
        return out

    def records(self) -> list[dict[str, Any]]:
        return self.read().records

    def history(self, task: str | None = None) -> list[dict[str, Any]]:
        """All records, oldest first; only one task's (by key or id) when `task` is given."""
        recs = self.records()
        if task is None:
            return list(recs)
        return [r for r in recs if task in (r.get("task"), r.get("task_id"))]

    # --- proposals -----------------------------------------------------------------------------

    def proposal(self, proposal_id: str) -> Proposal | None:
        """The stored proposal with this id (so `bgmon approve ID` works from another shell)."""
        rec = self._proposal_record(self.records(), proposal_id)
        if rec is None:
            return None
        try:
            return Proposal.from_json(
                rec["proposal"], tuple(rec.get("patterns") or ()), rec.get("basis")
            )
        except (ValueError, KeyError, TypeError):
            return None

    @staticmethod
    def _proposal_record(recs: list[dict], proposal_id: str) -> dict | None:
        for r in recs:
            if _proposal_id(r) == proposal_id:
                return r
        return None

    def state(self, proposal_id: str, records: list[dict] | None = None) -> str | None:
        """pending | approved | rejected | executed | failed | superseded; None if unknown."""
        recs = self.records() if records is None else records
        found = False
        task = None
        state = PENDING
        for r in recs:
            kind = r.get("kind")
            if _proposal_id(r) == proposal_id:
                found = True
                task = r.get("task")
            elif found and kind == "proposal" and r.get("task") == task and state == PENDING:
                # Only a task's newest proposal can be pending: a newer one supersedes it, also
                # when two processes proposed at the same time.
                state = SUPERSEDED
            elif found and r.get("proposal") == proposal_id:
                if kind == "decision":
                    decision = r.get("decision")
                    if state == PENDING and decision in (APPROVED, REJECTED, SUPERSEDED):
                        state = decision
                elif kind == "result" and state in (PENDING, APPROVED):
                    state = EXECUTED if r.get("ok") else FAILED
        return state if found else None

    def pending_for(self, task: str) -> Proposal | None:
        """The task's newest proposal if it is still pending."""
        recs = self.records()
        for r in reversed(recs):
            if r.get("kind") == "proposal" and r.get("task") == task:
                pid = _proposal_id(r)
                if pid and self.state(pid, recs) == PENDING:
                    return self.proposal(pid)
                return None
        return None

    def restarts(self, task: str, within: float = 3600.0, now: float | None = None) -> int:
        """Restarts bgmon executed for `task` in the last `within` seconds (for backoff)."""
        import time

        now = time.time() if now is None else now
        count = 0
        for r in self.records():
            if r.get("kind") != "result" or r.get("task") != task:
                continue
            ts = parse_time(r.get("ts"))
            if ts is None or now - ts > within:
                continue
            count += sum(1 for a in _results(r) if a.get("kind") == "restart" and a.get("ok"))
        return count

    def marks(self) -> dict[str, str]:
        """Task key → its latest mark note (an empty note clears it)."""
        out: dict[str, str] = {}
        for r in self.records():
            if r.get("kind") == "mark" and isinstance(r.get("task"), str):
                note = r.get("note") or ""
                if note:
                    out[r["task"]] = note
                else:
                    out.pop(r["task"], None)
        return out

    # --- the summary -----------------------------------------------------------------------------

    def report(self) -> dict[str, Any]:
        """Failures by pattern, decisions, action success rate, time from failure to recovery.

        A failure is counted once per episode (from a task's first fault until it is healthy
        again), whether bgmon saw it as a badge change or `bgmon run` restarted after it, so
        the counts agree with what `--once` shows. A restart that started the command counts
        as *started*; it counts as succeeded only once the task is healthy again, and as
        failed again when the task fails before that."""
        read = self.read()
        recs = read.records
        failures: Counter[str] = Counter()
        fault_since: dict[str, float | None] = {}
        recoveries: list[float] = []
        proposals: Counter[str] = Counter()
        decisions: Counter[str] = Counter()
        actions_total = actions_ok = automatic = 0
        by_kind: Counter[str] = Counter()
        waiting: Counter[str] = Counter()  # task → restarts started, outcome not yet seen
        restarts = Counter({"started": 0, "recovered": 0, "failed_again": 0})
        faults = {b.value for b in Badge if b.is_fault}

        def failed(task: str, pattern: str, ts: float | None) -> None:
            restarts["failed_again"] += waiting.pop(task, 0)
            if task not in fault_since:
                failures[pattern] += 1
                fault_since[task] = ts

        for r in recs:
            kind = r.get("kind")
            task = r.get("task")
            ts = parse_time(r.get("ts"))
            if kind == "health" and isinstance(task, str):
                new = r.get("to")
                if new in faults:
                    pats = r.get("patterns")
                    failed(task, str(pats[0]) if pats else "unclassified", ts)
                elif new in (Badge.HEALTHY.value, Badge.COMPLETED.value):
                    restarts["recovered"] += waiting.pop(task, 0)
                    if task in fault_since:
                        start = fault_since.pop(task)
                        if ts is not None and start is not None:
                            recoveries.append(max(0.0, ts - start))
            elif kind == "proposal" and isinstance(r.get("proposal"), dict):
                proposals[str(r["proposal"].get("source", "?"))] += 1
            elif kind == "decision":
                if r.get("proposal"):  # `bgmon run`'s own restarts have none: not a proposal
                    decisions[str(r.get("decision"))] += 1
                if r.get("decision") == APPROVED and r.get("by") in AUTOMATIC:
                    automatic += 1
                if r.get("by") == "bgmon run" and r.get("failure") and isinstance(task, str):
                    # `bgmon run` restarts after a failure it saw, often before any monitor did.
                    failed(task, str(r.get("pattern") or r.get("failure")), ts)
            elif kind == "result":
                for a in _results(r):
                    if a.get("skipped"):
                        continue
                    actions_total += 1
                    by_kind[str(a.get("kind"))] += 1
                    if a.get("kind") == "restart" and a.get("ok") and isinstance(task, str):
                        restarts["started"] += 1
                        waiting[task] += 1  # succeeded only once the task is healthy again
                    else:
                        actions_ok += bool(a.get("ok"))
        actions_ok += restarts["recovered"]
        return {
            "journal": str(self.path),
            "records": len(recs),
            "bad_lines": read.skipped,  # unreadable lines, a torn tail and malformed records
            "failures_by_pattern": dict(failures.most_common()),
            "proposals": {"total": sum(proposals.values()), **dict(proposals)},
            "approved": decisions.get(APPROVED, 0),
            "rejected": decisions.get(REJECTED, 0),
            "superseded": decisions.get(SUPERSEDED, 0),
            "automatic": automatic,  # approved without a person: auto-recover and bgmon run
            "actions": {"total": actions_total, "ok": actions_ok, "by_kind": dict(by_kind)},
            # started: the command ran again; recovered: the task was healthy afterwards;
            # failed_again: it failed before that; the rest are still running or unseen.
            "restarts": {**restarts, "unconfirmed": sum(waiting.values())},
            "action_success_rate": (actions_ok / actions_total) if actions_total else None,
            "recoveries": len(recoveries),
            "median_recovery_seconds": statistics.median(recoveries) if recoveries else None,
            "still_failing": sorted(fault_since),
        }

    # --- typed writers -------------------------------------------------------------------------

    def record_health(
        self,
        task: str,
        task_id: str,
        old: str | None,
        new: str,
        reasons: list[dict[str, str]],
        patterns: list[str] | None = None,
    ) -> dict[str, Any]:
        return self.append({
            "kind": "health", "task": task, "task_id": task_id, "from": old, "to": new,
            "reasons": reasons, "patterns": patterns or [],
        })

    def record_proposal(self, proposal: Proposal) -> dict[str, Any]:
        return self.append({
            "kind": "proposal", "task": proposal.task, "task_id": proposal.task_id,
            "proposal": proposal.to_json(), "patterns": list(proposal.patterns),
            "basis": proposal.basis,
        })

    def record_decision(
        self, proposal: Proposal, decision: str, reason: str | None = None, by: str | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        return self.append({
            "kind": "decision", "task": proposal.task, "task_id": proposal.task_id,
            "proposal": proposal.id, "decision": decision, "reason": reason, "by": by, **extra,
        })


def _opt(value: object, *types: type) -> bool:
    return value is None or isinstance(value, types)


def well_formed(record: dict[str, Any]) -> bool:
    """Whether a record of a known kind has the shape every reader relies on (a damaged or
    hand-edited journal: `"proposal": 5`, `"patterns": 5`); unknown kinds pass unchecked."""
    kind = record.get("kind")
    if kind not in ("health", "proposal", "decision", "result", "mark"):
        return True
    if not (_opt(record.get("task"), str) and _opt(record.get("task_id"), str)):
        return False
    if kind == "health":
        return (isinstance(record.get("to"), str) and _opt(record.get("from"), str)
                and _opt(record.get("reasons"), list) and _opt(record.get("patterns"), list))
    if kind == "proposal":
        p = record.get("proposal")
        return (isinstance(p, dict) and _opt(p.get("actions"), list)
                and _opt(record.get("patterns"), list) and _opt(record.get("basis"), dict))
    if kind == "decision":
        return _opt(record.get("proposal"), str)
    if kind == "result":
        return _opt(record.get("proposal"), str) and _opt(record.get("results"), list)
    return _opt(record.get("note"), str)  # mark


def _proposal_id(record: dict) -> str | None:
    if record.get("kind") != "proposal" or not isinstance(record.get("proposal"), dict):
        return None
    pid = record["proposal"].get("id")
    return pid if isinstance(pid, str) else None


def _results(record: dict) -> list[dict]:
    results = record.get("results")
    return [a for a in results if isinstance(a, dict)] if isinstance(results, list) else []
