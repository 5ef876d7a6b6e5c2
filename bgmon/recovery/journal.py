"""The recovery journal: the append-only JSONL audit log, indexed by the state store.

Every record is one `os.write` of one complete line on an O_APPEND descriptor, made while holding
the state database's write lock (see `state.py`), so concurrent writers (the TUI, `bgmon approve`
in another shell, `bgmon run`) never interleave, and a process killed mid-write leaves at worst
one torn last line, which the reader skips. Decisions, results, marks and acks are fsynced: they
are the records a person relies on after a crash. Past `rotate_bytes` the file is renamed to
`NAME.1` (`.2`, … up to `state.KEEP_ROTATED`) before the next append; the database keeps every
record, so nothing bgmon asks about is lost with an old segment.

Every question (history, proposal states, marks, restarts, the report) is a query on the state
database, which first reads whatever was appended since it last looked.
"""

from __future__ import annotations

import os
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from bgmon.model import Acknowledged
from bgmon.recovery.proposal import Proposal, now_iso
from bgmon.recovery.records import (
    APPROVED,
    AUTOMATIC,
    DURABLE_KINDS,
    EXECUTED,
    FAILED,
    PENDING,
    REJECTED,
    SUPERSEDED,
    VERSION,
    well_formed,
)
from bgmon.recovery.redact import scrub
from bgmon.recovery.state import KEEP_ROTATED, Ack, JournalUnreadable, StateStore, rotated

__all__ = [
    "APPROVED", "AUTOMATIC", "DEFAULT_PATH", "EXECUTED", "FAILED", "PENDING", "REJECTED",
    "SUPERSEDED", "Ack", "Journal", "JournalRead", "JournalUnreadable", "well_formed",
]

DEFAULT_PATH = Path(".agents") / "logs" / "background_monitoring.jsonl"
ROTATE_BYTES = 64 << 20  # the audit log is renamed aside past this size


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
    def __init__(self, path: Path | str, *, rotate_bytes: int = ROTATE_BYTES,
                 state_db: Path | str | None = None) -> None:
        self.path = Path(path).expanduser()
        self.rotate_bytes = rotate_bytes
        self.index = StateStore(self.path, Path(state_db).expanduser() if state_db else None)

    @classmethod
    def for_root(cls, root: Path | str, path: Path | str | None = None) -> Journal:
        """The journal of a watched root; a relative `path` is taken under the root."""
        root = Path(root).expanduser()
        return cls(root / (Path(path) if path is not None else DEFAULT_PATH))

    def close(self) -> None:
        """Close the state database's connection (it reopens on the next use)."""
        self.index.close()

    # --- writing -------------------------------------------------------------------------------

    def append(self, record: dict[str, Any], *, durable: bool | None = None) -> dict[str, Any]:
        """Append one record (adds `v` and `ts`); fsync when `durable` (default: by kind)."""
        record = {"v": VERSION, "ts": now_iso(), **record}
        line = orjson.dumps(record, option=orjson.OPT_NON_STR_KEYS, default=str)
        # Known secrets (the API key) never reach a file bgmon writes, whatever the record holds.
        data = scrub(line.decode()).encode() + b"\n"
        if durable is None:
            durable = record.get("kind") in DURABLE_KINDS
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise JournalUnreadable(
                f"cannot create the journal's folder {self.path.parent}: {exc.strerror or exc}"
            ) from None
        with self.index.writing():  # one writer at a time, across processes
            try:
                self._rotate()
                self._write(data, durable)
            except JournalUnreadable:
                raise
            except OSError as exc:
                raise JournalUnreadable(
                    f"cannot write the journal {self.path}: {exc.strerror or exc}") from None
        return record

    def _write(self, data: bytes, durable: bool) -> None:
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

    def _rotate(self) -> None:
        """Past `rotate_bytes`, rename the log aside (the index has read all of it: the caller
        holds the write lock and has caught up)."""
        try:
            if os.stat(self.path).st_size < self.rotate_bytes:
                return
        except FileNotFoundError:
            return
        for n in range(KEEP_ROTATED, 1, -1):
            if os.path.exists(rotated(self.path, n - 1)):
                os.replace(rotated(self.path, n - 1), rotated(self.path, n))
        os.replace(self.path, rotated(self.path, 1))

    # --- reading -------------------------------------------------------------------------------

    def read(self) -> JournalRead:
        """Every readable record, and what was skipped."""
        records = self.index.records()
        bad_lines, bad_records = self.index.counts()
        return JournalRead(records, bad_lines, self.index.torn_tail, bad_records)

    def skipped(self) -> int:
        """Lines and records the index left out (bad lines, a torn tail, malformed records)."""
        bad_lines, bad_records = self.index.counts()
        return bad_lines + bad_records + int(self.index.torn_tail)

    def records(self) -> list[dict[str, Any]]:
        return self.index.records()

    def history(self, task: str | Collection[str] | None = None,
                name: str | None = None) -> list[dict[str, Any]]:
        """All records, oldest first; only those of `task` (a key or id, or several) when
        given, and with `name` those that may be a task's of that name (see StateStore.records)."""
        return self.index.records(task, name)

    # --- proposals -----------------------------------------------------------------------------

    def proposal(self, proposal_id: str) -> Proposal | None:
        """The stored proposal with this id (so `bgmon approve ID` works from another shell)."""
        rec = self.index.proposal_record(proposal_id)
        if rec is None:
            return None
        try:
            return Proposal.from_json(
                rec["proposal"], tuple(rec.get("patterns") or ()), rec.get("basis")
            )
        except (ValueError, KeyError, TypeError):
            return None

    def state(self, proposal_id: str) -> str | None:
        """pending | approved | rejected | executed | failed | superseded; None if unknown.
        Only a task's newest proposal can be pending: a newer one supersedes it."""
        return self.index.proposal_state(proposal_id)

    def pending_for(self, task: str) -> Proposal | None:
        """The task's newest proposal if it is still pending."""
        newest = self.index.newest_proposal(task)
        if newest is None or newest[0] is None or newest[1] != PENDING:
            return None
        return self.proposal(newest[0])

    def restarts(self, task: str, within: float = 3600.0, now: float | None = None) -> int:
        """Restarts bgmon executed for `task` in the last `within` seconds (for backoff)."""
        now = time.time() if now is None else now
        return self.index.restarts(task, now - within)

    def marks(self) -> dict[str, str]:
        """Task key → its latest mark note (an empty note clears it)."""
        return self.index.marks()

    def acks(self) -> dict[str, Ack]:
        """Task key → its latest acknowledgement (a record without a badge clears it)."""
        return self.index.acks()

    def acknowledged(self) -> dict[str, Acknowledged]:
        """The acknowledgements as the engine applies them to snapshots."""
        return {task: Acknowledged(a.badge, a.note, a.at) for task, a in self.acks().items()}

    # --- the summary -----------------------------------------------------------------------------

    def report(self) -> dict[str, Any]:
        """Failures by pattern, decisions, action success rate, time from failure to recovery.

        A failure is counted once per episode (from a task's first fault until it is healthy
        again), whether bgmon saw it as a badge change or `bgmon run` restarted after it, so
        the counts agree with what `--once` shows. A restart that started the command counts
        as *started*; it counts as succeeded only once the task is healthy again, and as
        failed again when the task fails before that."""
        s = self.index.report()
        decisions = s["decisions"]
        proposals = s["proposals"]
        total, ok = s["actions_total"], s["actions_ok"] + s["restarts"]["recovered"]
        return {
            "journal": str(self.path),
            "records": s["records"],
            "bad_lines": s["skipped"],  # unreadable lines, a torn tail and malformed records
            "failures_by_pattern": s["failures_by_pattern"],
            "proposals": {"total": sum(proposals.values()), **proposals},
            "approved": decisions.get(APPROVED, 0),
            "rejected": decisions.get(REJECTED, 0),
            "superseded": decisions.get(SUPERSEDED, 0),
            "automatic": s["automatic"],  # approved without a person: auto-recover and bgmon run
            "actions": {"total": total, "ok": ok, "by_kind": s["by_kind"]},
            # started: the command ran again; recovered: the task was healthy afterwards;
            # failed_again: it failed before that; the rest are still running or unseen.
            "restarts": {**s["restarts"], "unconfirmed": s["unconfirmed"]},
            "action_success_rate": (ok / total) if total else None,
            "recoveries": s["recoveries"],
            "median_recovery_seconds": s["median_recovery_seconds"],
            "still_failing": s["still_failing"],
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

    def record_ack(self, task: str, task_id: str | None, badge: str | None,
                   note: str | None = None) -> dict[str, Any]:
        """A person acknowledged `badge` on a task (`badge=None` clears the acknowledgement)."""
        return self.append({"kind": "ack", "task": task, "task_id": task_id, "badge": badge,
                            "note": note})
