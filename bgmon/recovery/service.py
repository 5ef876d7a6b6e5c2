"""The recovery facade the TUI and the CLI share: request, approve, reject, marks, history.

State lives only in the journal, so a proposal made in the TUI can be approved from a shell and
the other way round.

One pending proposal per task: only a task's newest proposal can be pending; an older one counts
as superseded (see `Journal.state`). `request_proposal` returns the pending proposal as long as
it was made for the same situation (same pid, badge, status, health rules and matched failure
patterns, and the same model when one is asked for); otherwise, or with `fresh=True`, it makes a
new one, which supersedes the old.

One action running per task: `approve` holds a per-task file lock while it checks the proposal
is still pending, records the decision and runs the actions, so approving twice (two keypresses,
the TUI and a shell) runs them once; the second approval is a no-op that says why.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bgmon.model import Acknowledged, Badge, TaskSnapshot
from bgmon.recovery import rules
from bgmon.recovery.actions import ActionResult, Executor, TaskBusy, live_effect, task_lock
from bgmon.recovery.journal import (
    APPROVED,
    EXECUTED,
    FAILED,
    PENDING,
    REJECTED,
    SUPERSEDED,
    Journal,
)
from bgmon.recovery.patterns import Catalogue, load_catalogue
from bgmon.recovery.proposal import Mark, Proposal, basis_of
from bgmon.recovery.redact import redact

SnapshotLookup = Callable[[str], "TaskSnapshot | None"]

# Outcome statuses.
DONE = "executed"  # the actions ran and all succeeded
ACTION_FAILED = "failed"  # an action failed (later ones were skipped)
NOOP = "noop"  # already decided/executed: nothing done again
NOT_FOUND = "not_found"
BUSY = "busy"  # an action for the task is running right now
REFUSED = "refused"  # rejected or superseded earlier: cannot be approved
RECORDED = "rejected"  # a rejection was recorded


@dataclass(frozen=True, slots=True)
class Outcome:
    proposal_id: str
    status: str
    message: str
    results: tuple[ActionResult, ...] = ()

    @property
    def ok(self) -> bool:
        return self.status in (DONE, NOOP, RECORDED)

    def to_json(self) -> dict[str, Any]:
        return {
            "proposal": self.proposal_id,
            "status": self.status,
            "ok": self.ok,
            "message": self.message,
            "results": [r.to_json() for r in self.results],
        }


class RecoveryService:
    def __init__(
        self,
        journal: Journal,
        *,
        catalogue: Catalogue | None = None,
        advisor: Any = None,  # a ClaudeAdvisor; created on first use when None
        model: str | None = None,
        use_claude: bool = True,
        executor: Executor | None = None,
        work_dir: Path | None = None,  # bgmon's own files: locks, restarted commands' output
    ) -> None:
        self.journal = journal
        self.catalogue = catalogue or load_catalogue()
        self.model = model
        self.use_claude = use_claude
        self._advisor = advisor
        self.work_dir = work_dir or journal.path.parent / ".bgmon"
        self.executor = executor or Executor(output_dir=self.work_dir / "restarts")
        self._lock = threading.Lock()

    @classmethod
    def for_root(
        cls,
        root: Path | str,
        *,
        journal_path: Path | str | None = None,
        patterns_file: Path | str | None = None,
        model: str | None = None,
        use_claude: bool = True,
    ) -> RecoveryService:
        """The service for a watched root (journal under `.agents/logs/` unless configured)."""
        return cls(
            Journal.for_root(root, journal_path),
            catalogue=load_catalogue(patterns_file),
            model=model,
            use_claude=use_claude,
        )

    @classmethod
    def from_config(cls, config: Any, *, journal_path: Path | str | None = None) -> RecoveryService:
        """The service for bgmon's effective `Config` (journal, patterns file, model)."""
        journal = (
            Journal.for_root(config.roots[0], journal_path) if journal_path is not None
            else Journal(config.journal_path())
        )
        return cls(journal, catalogue=load_catalogue(config.patterns), model=config.model)

    def close(self) -> None:
        """Release the API client's connections and the state database (on quit)."""
        with self._lock:
            advisor = self._advisor
        if advisor is not None and hasattr(advisor, "close"):
            advisor.close()
        self.journal.close()

    @property
    def advisor(self) -> Any:
        with self._lock:
            if self._advisor is None:
                from bgmon.recovery.claude import ClaudeAdvisor  # the SDK loads only when needed

                self._advisor = ClaudeAdvisor(model=self.model)
            return self._advisor

    # --- proposals -----------------------------------------------------------------------------

    def request_proposal(
        self,
        snapshot: TaskSnapshot,
        *,
        model: str | None = None,
        fresh: bool = False,
        use_claude: bool | None = None,
        cancel: threading.Event | None = None,
    ) -> Proposal | None:
        """The task's pending proposal if still current, else a new one (Claude or rules),
        recorded in the journal. Blocks on the API: call it from a worker thread. Returns None
        only when `cancel` was set while it worked (nothing is recorded then)."""
        pending = self.journal.pending_for(snapshot.key)
        if (
            pending is not None
            and not fresh
            and pending.basis == basis_of(snapshot)
            and pending.patterns == tuple(m.pattern.name for m in rules.match(snapshot, self.catalogue))
            and (model is None or pending.model == model)
        ):
            return pending
        restarts = self.journal.restarts(snapshot.key)
        claude = self.use_claude if use_claude is None else use_claude
        if claude:
            proposal = self.advisor.propose(
                snapshot, self.catalogue, restarts=restarts, model=model or self.model
            )
        else:
            proposal = rules.propose(
                snapshot, self.catalogue, degraded_reason="rules requested", restarts=restarts
            )
        if cancel is not None and cancel.is_set():
            return None
        self.journal.record_proposal(proposal)
        return proposal

    def get(self, proposal_id: str) -> Proposal | None:
        return self.journal.proposal(proposal_id)

    def state(self, proposal_id: str) -> str | None:
        """pending | approved | rejected | executed | failed | superseded; None if unknown."""
        return self.journal.state(proposal_id)

    def preview(self, proposal: Proposal) -> list[str]:
        """Each action's exact effect against the live process tree, numbered (for the
        confirmation prompt: it repeats what `y` will do)."""
        return [f"{i}. {live_effect(a)}" for i, a in enumerate(proposal.actions, 1)]

    # --- decisions -----------------------------------------------------------------------------

    def _while_pending(self, proposal_id: str, decide: Callable[[Proposal], Outcome],
                       refuse: Callable[[Proposal, str | None], Outcome], busy: str) -> Outcome:
        """`decide(proposal)` while the proposal is still pending, holding its task's lock (so a
        proposal is decided once, whichever process or screen tries); else what `refuse(proposal,
        state)` says, that there is no such proposal, or that the task is `busy`."""
        proposal = self.journal.proposal(proposal_id)
        if proposal is None:
            return Outcome(proposal_id, NOT_FOUND, f"no proposal {proposal_id} in {self.journal.path}")
        try:
            with task_lock(self.work_dir / "locks", proposal.task):
                state = self.journal.state(proposal_id)
                if state != PENDING:
                    return refuse(proposal, state)
                return decide(proposal)
        except TaskBusy as exc:
            return Outcome(proposal_id, BUSY, f"{exc}; {busy}")

    def approve(self, proposal_id: str, lookup: SnapshotLookup, *, by: str = "tui") -> Outcome:
        """Run a pending proposal's actions in order (stopping at the first failure), with the
        decision and the result recorded; `lookup(task key or id)` gives the live snapshot."""

        def run(proposal: Proposal) -> Outcome:
            self.journal.record_decision(proposal, APPROVED, by=by)
            return self._record_result(proposal, self._run(proposal, _lookup(lookup, proposal)))

        return self._while_pending(proposal_id, run, self._not_pending, "nothing done")

    def _record_result(self, proposal: Proposal, results: tuple[ActionResult, ...]) -> Outcome:
        """Journal what the approved actions did; the outcome says it, and says so if it could
        not be journalled."""
        ok = all(r.ok for r in results)
        unrecorded = ""
        try:
            self.journal.append({
                "kind": "result", "task": proposal.task, "task_id": proposal.task_id,
                "proposal": proposal.id, "ok": ok, "results": [r.to_json() for r in results],
            })
        except OSError as exc:
            # The actions ran: say what happened, and that the journal does not know it (a full
            # disk), rather than an error that reads as if nothing was done.
            unrecorded = (f"; the result could not be recorded in {self.journal.path}: "
                          f"{exc.strerror or exc} (history will show the approval without it)")
        outcome = self._outcome(proposal, results, ok)
        return replace(outcome, message=outcome.message + unrecorded) if unrecorded else outcome

    def _outcome(self, proposal: Proposal, results: tuple[ActionResult, ...], ok: bool) -> Outcome:
        proposal_id = proposal.id
        if not proposal.actions:
            return Outcome(proposal_id, DONE, "approved; the proposal has no actions", ())
        if ok:
            message = f"done: {len(results)} action(s) succeeded"
            if any(r.kind == "restart" for r in results):
                # Started is not yet recovered: the task's next badge says whether it helped.
                message = (f"done: {len(results)} action(s) ran; the restart started the task "
                           "again (`bgmon --once` shows whether it stays healthy)")
            return Outcome(proposal_id, DONE, message, results)
        bad = next(r for r in results if not r.ok and not r.skipped)
        return Outcome(proposal_id, ACTION_FAILED, f"{bad.kind} failed: {bad.error}", results)

    def _run(self, proposal: Proposal, live: TaskSnapshot | None) -> tuple[ActionResult, ...]:
        results: list[ActionResult] = []
        for action in proposal.actions:
            if results and not results[-1].ok:
                results.append(ActionResult(
                    action.kind, False, action.describe(), skipped=True,
                    error="skipped: an earlier action failed",
                ))
                continue
            result = self.executor.execute(action, proposal, live)
            if isinstance(action, Mark) and result.ok:
                self.set_mark(proposal.task, proposal.task_id, action.note, proposal=proposal.id)
            results.append(result)
        return tuple(results)

    def _not_pending(self, proposal: Proposal, state: str | None) -> Outcome:
        pid = proposal.id
        if state == SUPERSEDED:
            newer = self.journal.pending_for(proposal.task)
            hint = f" by {newer.id}" if newer is not None else ""
            return Outcome(pid, REFUSED, f"{pid} was superseded{hint} by a newer proposal; nothing done")
        if state == REJECTED:
            return Outcome(pid, REFUSED, f"{pid} was rejected; nothing done")
        if state == EXECUTED:
            return Outcome(pid, NOOP, f"{pid} was already approved and executed; nothing done again")
        if state == FAILED:
            return Outcome(
                pid, NOOP, f"{pid} was already approved and failed; request a new proposal"
            )
        if state == APPROVED:
            return Outcome(
                pid, NOOP,
                f"{pid} was already approved (no result recorded: bgmon may have stopped while it"
                " ran); nothing done again",
            )
        return Outcome(pid, NOT_FOUND, f"{pid} is in an unknown state ({state})")

    def _cannot_reject(self, proposal: Proposal, state: str | None) -> str:
        """Why a proposal that is no longer pending cannot be rejected, as one sentence."""
        pid = proposal.id
        if state == REJECTED:
            return f"{pid} is already rejected; nothing changed"
        if state == SUPERSEDED:
            newer = self.journal.pending_for(proposal.task)
            by = f" by {newer.id}" if newer is not None else " by a newer proposal"
            return f"{pid} was superseded{by}; there is nothing to reject"
        if state in (EXECUTED, FAILED, APPROVED):
            ran = {EXECUTED: "approved and has run", FAILED: "approved and its actions failed",
                   APPROVED: "already approved"}[state]
            return f"{pid} was {ran}; an approved proposal cannot be rejected"
        return f"{pid} is in an unknown state ({state}); nothing changed"

    def reject(self, proposal_id: str, reason: str | None = None, *, by: str = "tui") -> Outcome:
        why = redact(" ".join(reason.split()))[:300] if reason else None

        def record(proposal: Proposal) -> Outcome:
            self.journal.record_decision(proposal, REJECTED, reason=why, by=by)
            return Outcome(proposal_id, RECORDED, f"rejected {proposal_id}" + (f": {why}" if why else ""))

        def refuse(proposal: Proposal, state: str | None) -> Outcome:
            return Outcome(proposal_id, NOOP, self._cannot_reject(proposal, state))

        return self._while_pending(proposal_id, record, refuse, "not rejected")

    # --- marks, health, history ----------------------------------------------------------------

    def marks(self) -> dict[str, str]:
        """Task key → its latest mark note (for the tree)."""
        return self.journal.marks()

    def acks(self) -> dict[str, Acknowledged]:
        """Task key → a person's acknowledgement of its badge (`bgmon ack`, the TUI's `c`)."""
        return self.journal.acknowledged()

    def acknowledge(self, snapshot: TaskSnapshot, note: str | None = None) -> None:
        """A person has seen this task's badge: it stops counting until the badge changes."""
        note = redact(" ".join(note.split()))[:300] if note and note.strip() else None
        self.journal.record_ack(snapshot.key, snapshot.id, snapshot.health.badge.value, note)

    def clear_ack(self, task: str, task_id: str | None) -> None:
        """The task changed since it was acknowledged: the acknowledgement is spent."""
        self.journal.record_ack(task, task_id, None)

    def set_mark(
        self, task: str, task_id: str, note: str, *, proposal: str | None = None
    ) -> None:
        """Set (or, with an empty note, clear) bgmon's own note on a task."""
        self.journal.append({
            "kind": "mark", "task": task, "task_id": task_id, "note": redact(note),
            "proposal": proposal,
        })

    def record_auto(self, task: str, task_id: str, outcome: str, reason: str) -> None:
        """Journal what automatic recovery did instead of acting (`outcome`: "skipped")."""
        self.journal.append({
            "kind": "auto", "task": task, "task_id": task_id, "outcome": outcome,
            "reason": redact(reason),
        })

    def record_transition(self, snapshot: TaskSnapshot, previous: Badge | None) -> None:
        """Journal a badge change (the engine calls this), classified by failure pattern."""
        badge = snapshot.health.badge
        if previous == badge:
            return
        patterns = [m.pattern.name for m in rules.match(snapshot, self.catalogue)] if (
            badge.is_fault
        ) else []
        self.journal.record_health(
            snapshot.key,
            snapshot.id,
            previous.value if previous is not None else None,
            badge.value,
            [{"rule": r.rule, "detail": redact(r.detail)} for r in snapshot.health.reasons],
            patterns,
        )

    def history(self, task: str | Collection[str] | None = None,
                name: str | None = None) -> list[dict[str, Any]]:
        return self.journal.history(task, name)

    def report(self) -> dict[str, Any]:
        return self.journal.report()


def _lookup(lookup: SnapshotLookup, proposal: Proposal) -> TaskSnapshot | None:
    for key in (proposal.task, proposal.task_id):
        try:
            snap = lookup(key)
        except Exception:  # the engine's lookup failing must not run actions blind: None
            snap = None
        if snap is not None:
            return snap
    return None
