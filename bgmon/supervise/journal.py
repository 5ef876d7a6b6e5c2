"""`bgmon run`'s automatic restarts in the recovery journal.

Every restart the policy decides on is recorded like an approved proposal: a `decision` record
(`decision: "approved"`, `by: "bgmon run"`, `automatic: true`, `proposal: null`) when it is
decided, and a `result` record once the command has started again (its new pid) or could not
(the error, or the stop signal that cancelled the wait). The journal is the one of the root the
task lives under (`ROOT/.worktrees/NAME` → `ROOT/.agents/logs/background_monitoring.jsonl`), so
`bgmon history` and the recovery rules (which back off further after recent restarts) see them.

A journal that cannot be written never breaks supervision: the failure is counted and ignored.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from bgmon.recovery.journal import Journal
from bgmon.recovery.redact import redact_obj

BY = "bgmon run"


def journal_root(task_dir: Path | str, cwd: Path | str) -> Path:
    """The watched root a task directory belongs to: ROOT for `ROOT/.worktrees/NAME`, else the
    current directory."""
    d = Path(os.path.abspath(task_dir))
    if d.parent.name == ".worktrees":
        return d.parent.parent
    return Path(os.path.abspath(cwd))


def task_key(task_dir: Path | str) -> str:
    """The key the monitor gives the task (see `bgmon.sources.discover`)."""
    return f"worktree:{os.path.abspath(task_dir)}"


class RestartJournal:
    def __init__(self, journal: Journal, task: str, task_id: str, argv: list[str], cwd: str) -> None:
        self.journal = journal
        self.task = task
        self.task_id = task_id
        self.argv = list(argv)
        self.cwd = cwd
        self.errors = 0  # records that could not be written
        self._pending: dict[str, Any] | None = None

    @classmethod
    def for_task(cls, task_dir: Path, cwd: str, task_id: str, argv: list[str]) -> RestartJournal:
        return cls(Journal.for_root(journal_root(task_dir, cwd)), task_key(task_dir), task_id,
                   argv, cwd)

    def decided(self, *, text: str, reason: str, attempt: int, delay: float,
                pattern: str | None = None, strategy: str | None = None) -> None:
        """The policy decided to restart after `delay` s. `reason`: the failure kind (a pattern
        name, `stalled`, `signal`, `exit`, or `clean exit`); `text`: the decision in words."""
        what = {"action": "restart", "failure": reason, "attempt": attempt,
                "delay": round(delay, 3), "pattern": pattern, "strategy": strategy}
        self._pending = {**what, "text": text}
        self._write({"kind": "decision", "proposal": None, "decision": "approved",
                     "reason": text, "by": BY, "automatic": True, **what})

    def started(self, pid: int) -> None:
        """The restart decided last started the command again as `pid`."""
        self._result(True, new_pid=pid, detail=f"started pid {pid}")

    def not_started(self, error: str) -> None:
        """The restart decided last did not happen (the command cannot start, or a stop
        signal came during the wait)."""
        self._result(False, error=error)

    def ended(self, badge: str, detail: str, pattern: str | None = None) -> None:
        """`bgmon run` stopped restarting: the task ends `badge` ("failed" or "completed"),
        journaled as a badge change so a restart that did not help is not counted a success."""
        self._write({"kind": "health", "from": None, "to": badge, "by": BY,
                     "reasons": [{"rule": f"status.{badge}", "detail": detail}],
                     "patterns": [pattern] if pattern else []})

    def _result(self, ok: bool, **outcome: Any) -> None:
        pending, self._pending = self._pending, None
        if pending is None:
            return
        effect = (f"restart {self.argv!r} in {self.cwd} after {pending['delay']:g}s "
                  f"({pending['failure']}, restart {pending['attempt']})")
        action = {"kind": "restart", "ok": ok, "effect": effect,
                  **{k: v for k, v in outcome.items() if v is not None}}
        self._write({"kind": "result", "proposal": None, "ok": ok, "by": BY, "automatic": True,
                     **{k: v for k, v in pending.items() if k != "text"},
                     "new_pid": outcome.get("new_pid"), "results": [action]})

    def _write(self, record: dict[str, Any]) -> None:
        try:
            # The argv (in `effect`) and a start error may hold secrets: redacted like the log.
            self.journal.append(redact_obj({"kind": record.pop("kind"), "task": self.task,
                                            "task_id": self.task_id, **record}))
        except (OSError, ValueError, TypeError):
            self.errors += 1
