"""Recovery on a remote host's task: `bgmon propose | approve | reject … --json` run on that host
(through ssh, or the `cmd:` remote's own bgmon), so the proposal is made, checked and carried
out where the task's processes and journal are. The approval screen shows the exact local argv
that will run and, from the host, each action's effect there.

`RoutedRecovery` gives the TUI's recovery panel one service: a remote task's calls go to its
host, every other call to this machine's `RecoveryService`.
"""

from __future__ import annotations

import shlex
import subprocess
import tempfile
import threading
import time
from dataclasses import replace
from typing import Any

import orjson

from bgmon.model import TaskSnapshot
from bgmon.recovery.actions import ActionResult
from bgmon.recovery.proposal import Proposal
from bgmon.recovery.service import NOT_FOUND, Outcome, RecoveryService, SnapshotLookup
from bgmon.remote.spec import RemoteSpec
from bgmon.views.jsonout import remote_key, split_remote_key

TIMEOUT = 180.0  # a proposal may wait on the API over there (30 s, retried), an action on a run


class RemoteFailed(RuntimeError):
    """The command on the host did not give an answer; the message says why (one line)."""


class RemoteRecovery:
    def __init__(self, spec: RemoteSpec, timeout: float = TIMEOUT) -> None:
        self.spec = spec
        self.timeout = timeout
        self._effects: dict[str, list[str]] = {}  # proposal id → its effect, as the host says
        self._states: dict[str, str | None] = {}

    def _argv(self, args: list[str]) -> list[str]:
        argv = self.spec.command_argv(args)
        if argv is None:
            raise RemoteFailed(
                f"recovery on {self.spec.name} needs ssh://…, or a cmd: remote of the form "
                "`… --follow --json [ROOT…]` (bgmon reuses the part before --follow)")
        return argv

    def _run(self, args: list[str], cancel: threading.Event | None = None) -> dict[str, Any] | None:
        """Run `bgmon ARGS` on the host; → its JSON answer, or None when cancelled."""
        argv = self._argv(args)
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            try:
                proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                        start_new_session=True)
            except OSError as exc:
                raise RemoteFailed(f"cannot run {argv[0]}: {exc.strerror or exc}") from None
            deadline = time.monotonic() + self.timeout
            while proc.poll() is None:
                if (cancel is not None and cancel.is_set()) or time.monotonic() > deadline:
                    proc.kill()
                    proc.wait()
                    if cancel is not None and cancel.is_set():
                        return None
                    raise RemoteFailed(f"no answer from {self.spec.name} within "
                                       f"{self.timeout:.0f}s")
                time.sleep(0.05)
            out.seek(0)
            err.seek(0)
            body, problem = out.read(1 << 22), err.read(1 << 16).decode("utf-8", "replace")
        try:
            answer = orjson.loads(body)
        except orjson.JSONDecodeError:
            answer = None
        if not isinstance(answer, dict):
            last = [x for x in problem.splitlines() if x.strip()]
            why = last[-1].strip()[:300] if last else f"exit status {proc.returncode}, no answer"
            raise RemoteFailed(f"{self.spec.name}: {why}")
        return answer

    # -- the service's interface, as the recovery panel uses it -------------------------------

    def propose(self, ref: str, *, fresh: bool = False, rules: bool = False,
                model: str | None = None, cancel: threading.Event | None = None) -> Proposal | None:
        """`bgmon propose REF --json` on the host (REF: a task's name, id or key there, which
        the host resolves); → the proposal with its task as `@HOST/KEY`, or None when cancelled."""
        args = ["propose", ref, "--json"] + (["--fresh"] if fresh else []) + (
            ["--rules"] if rules else []) + (["--model", model] if model else [])
        answer = self._run(args, cancel)
        return None if answer is None else self._learn(answer)

    def request_proposal(self, snapshot: TaskSnapshot, *, cancel: threading.Event | None = None,
                         fresh: bool = False, model: str | None = None,
                         use_claude: bool | None = None, **_: Any) -> Proposal | None:
        where = split_remote_key(snapshot.key)
        if where is None:
            raise RemoteFailed(f"{snapshot.key} is not a task of {self.spec.name}")
        return self.propose(where[1], fresh=fresh, rules=use_claude is False, model=model,
                            cancel=cancel)

    def get(self, proposal_id: str) -> Proposal:
        """The host's proposal, with its effect there as it is now and its state
        (`bgmon approve ID --dry-run --json`, which runs nothing)."""
        answer = self._run(["approve", proposal_id, "--dry-run", "--json"])
        assert answer is not None  # no cancel event given
        return self._learn(answer)

    def _learn(self, answer: dict[str, Any]) -> Proposal:
        """A proposal as the host sent it (with its `effect` and `state`): checked here too."""
        try:
            proposal = Proposal.from_json(answer)  # its actions checked here too: a closed set
        except ValueError as exc:
            raise RemoteFailed(f"{self.spec.name} sent a proposal bgmon cannot use: {exc}") from None
        proposal = replace(proposal, task=remote_key(self.spec.name, proposal.task))
        effect = answer.get("effect")
        self._effects[proposal.id] = [str(x) for x in effect] if isinstance(effect, list) else []
        state = answer.get("state")
        self._states[proposal.id] = state if isinstance(state, str) else None
        return proposal

    def state(self, proposal_id: str) -> str | None:
        return self._states.get(proposal_id)

    def preview(self, proposal: Proposal) -> list[str]:
        """What `y` runs here (the exact argv) and what it does on the host (the host's words)."""
        argv = self._argv(["approve", proposal.id, "--yes", "--json"])
        lines = [f"on {self.spec.name}: {shlex.join(argv)}"]
        effects = self._effects.get(proposal.id)
        if effects is None:
            effects = [f"{i}. {line}" for i, line in enumerate(proposal.describe(), 1)]
        return lines + [f"  {line}" for line in effects]

    def approve(self, proposal_id: str, lookup: SnapshotLookup | None = None, *,
                by: str = "tui") -> Outcome:
        return self._outcome(proposal_id, self._run(["approve", proposal_id, "--yes", "--json"]))

    def reject(self, proposal_id: str, reason: str | None = None, *, by: str = "tui") -> Outcome:
        args = ["reject", proposal_id, "--json"] + (["--reason", reason] if reason else [])
        return self._outcome(proposal_id, self._run(args))

    def _outcome(self, proposal_id: str, answer: dict[str, Any] | None) -> Outcome:
        answer = answer or {}
        results = tuple(
            ActionResult(
                kind=str(r.get("kind", "?")), ok=bool(r.get("ok")), effect=str(r.get("effect", "")),
                exit_code=r.get("exit_code") if type(r.get("exit_code")) is int else None,
                output_tail=_opt(r.get("output_tail")), new_pid=r.get("new_pid")
                if type(r.get("new_pid")) is int else None, error=_opt(r.get("error")),
                detail=_opt(r.get("detail")), skipped=bool(r.get("skipped")),
            )
            for r in answer.get("results") or () if isinstance(r, dict)
        ) if isinstance(answer.get("results"), list) else ()
        said = answer.get("status")
        status = said if isinstance(said, str) else NOT_FOUND
        message = _opt(answer.get("message")) or f"no answer from {self.spec.name}"
        if status in ("executed", "failed", "rejected"):  # final: no need to ask the host again
            self._states[proposal_id] = status
        return Outcome(proposal_id, status, f"{self.spec.name}: {message}", results)


def _opt(value: object) -> str | None:
    return value if isinstance(value, str) else None


class RoutedRecovery:
    """The recovery panel's one service: remote tasks to their host, the rest to this machine."""

    def __init__(self, local: RecoveryService | None, remotes: dict[str, RemoteRecovery]) -> None:
        self.local = local
        self.remotes = remotes
        self._owner: dict[str, RemoteRecovery] = {}  # proposal id → the host that made it

    def for_task(self, key: str) -> RemoteRecovery | RecoveryService | None:
        where = split_remote_key(key)
        if where is None:
            return self.local
        return self.remotes.get(where[0])

    def _for(self, proposal_id: str) -> Any:
        service = self._owner.get(proposal_id, self.local)
        if service is None:
            raise RemoteFailed("recovery is off on this machine")
        return service

    def request_proposal(self, snapshot: TaskSnapshot, **kw: Any) -> Proposal | None:
        service = self.for_task(snapshot.key)
        if service is None:
            raise RemoteFailed(f"no recovery for {snapshot.key}")
        proposal = service.request_proposal(snapshot, **kw)
        if proposal is not None and isinstance(service, RemoteRecovery):
            self._owner[proposal.id] = service
        return proposal

    def state(self, proposal_id: str) -> str | None:
        return self._for(proposal_id).state(proposal_id)

    def preview(self, proposal: Proposal) -> list[str]:
        return self._for(proposal.id).preview(proposal)

    def approve(self, proposal_id: str, lookup: SnapshotLookup, *, by: str = "tui") -> Outcome:
        return self._for(proposal_id).approve(proposal_id, lookup, by=by)

    def reject(self, proposal_id: str, reason: str | None = None, *, by: str = "tui") -> Outcome:
        return self._for(proposal_id).reject(proposal_id, reason, by=by)
