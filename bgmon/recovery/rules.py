"""Rule-based proposals: the failure catalogue applied to a task snapshot.

This is the graceful-degradation path (no API key, API down, breaker open), so the diagnosis has
to stand on its own: what was seen, what it means, what to do, and why bgmon proposes exactly
these actions (or none).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from typing import Any

from bgmon.clip import flat
from bgmon.model import Badge, EventKind, TaskSnapshot
from bgmon.recovery.breaker import backoff_delay
from bgmon.recovery.patterns import SEVERITIES, Catalogue, Pattern
from bgmon.recovery.proposal import (
    DEFAULT_GRACE,
    Action,
    Kill,
    Mark,
    Proposal,
    Restart,
    action_to_json,
    basis_of,
    new_id,
)
from bgmon.recovery.redact import redact
from bgmon.recovery.validate import status_file, supervised, task_cwd, validate_actions

_ERROR_FIELDS = ("error", "last_error", "failure", "reason", "exit_reason")
_ERROR_EVENTS = {EventKind.ERROR, EventKind.API_ERROR, EventKind.TURN_ABORTED}
_SCAN_EVENTS = 40  # how far back in `recent` error texts are looked for


@dataclass(frozen=True, slots=True)
class Match:
    pattern: Pattern
    evidence: str  # what matched: the error text, or the health rule and its detail
    by_text: bool  # found in error text (more specific) rather than by a health rule

    def to_json(self) -> dict[str, Any]:
        return {**self.pattern.classification(), "strategy": self.pattern.strategy,
                "evidence": self.evidence}


def error_texts(snapshot: TaskSnapshot) -> list[str]:
    """Texts that describe what went wrong, newest first."""
    out: list[str] = []
    for name in _ERROR_FIELDS:
        value = snapshot.fields.get(name)
        if isinstance(value, str) and value.strip():
            out.append(value.strip())
    for ev in reversed(snapshot.recent[-_SCAN_EVENTS:]):
        if ev.error:
            out.append(ev.error)
        if ev.text and (
            ev.kind in _ERROR_EVENTS
            or ev.ok is False
            or (ev.kind is EventKind.MESSAGE and ev.text.startswith("[stderr]"))
        ):
            out.append(ev.text)
    out.extend(r.detail for r in snapshot.health.reasons if r.detail)
    return out


def match(snapshot: TaskSnapshot, catalogue: Catalogue) -> list[Match]:
    """Every catalogue pattern the snapshot shows, strongest first (see `_rank`)."""
    found: dict[str, Match] = {}
    for reason in snapshot.health.reasons:
        for p in catalogue.match_rules([reason.rule]):
            evidence = redact(f"{reason.rule}: {flat(reason.detail, 200)}")
            found.setdefault(p.name, Match(p, evidence, by_text=False))
    for text in error_texts(snapshot):
        hit = catalogue.match_text(text)
        if hit is not None and (hit.name not in found or not found[hit.name].by_text):
            # Quoted in the diagnosis, the journal and the UI: no secrets.
            found[hit.name] = Match(hit, redact(flat(text, 200)), by_text=True)
    return sorted(found.values(), key=_rank, reverse=True)


def _rank(m: Match) -> tuple[int, int]:
    # Severity first (a full disk outranks the restart a dead process would suggest), then text
    # evidence over a generic health rule (it names the cause, the rule only the symptom).
    return (SEVERITIES.index(m.pattern.severity), int(m.by_text))


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def _disk_note(cwd: str | None) -> str:
    if not cwd or not os.path.isdir(cwd):
        return ""
    try:
        usage = shutil.disk_usage(cwd)
    except OSError:
        return ""
    return f" The filesystem holding {cwd} has {_size(usage.free)} free of {_size(usage.total)}."


def _pid(snapshot: TaskSnapshot) -> int | None:
    """The task's pid; None also for 0 and 1 (the kernel, init), which are never a task's
    process whatever its status.json says: nothing to stop or signal."""
    pid = snapshot.pid
    return pid if pid is not None and pid > 1 else None


def _alive(snapshot: TaskSnapshot) -> bool:
    if _pid(snapshot) is None:
        return False
    return snapshot.proc is None or snapshot.proc.alive


def _children(snapshot: TaskSnapshot) -> int | None:
    return len(snapshot.proc.children) if snapshot.proc is not None else None


def _kill(snapshot: TaskSnapshot) -> Kill:
    pid = _pid(snapshot)
    assert pid is not None
    return Kill(pid=pid, grace=DEFAULT_GRACE, children=_children(snapshot))


def _restart(snapshot: TaskSnapshot, delay: float = 0.0) -> Restart | None:
    cwd = task_cwd(snapshot)
    if not snapshot.command or cwd is None:
        return None
    alive = _alive(snapshot)
    return Restart(
        argv=tuple(snapshot.command),
        cwd=cwd,
        pid=_pid(snapshot) if alive else None,
        grace=DEFAULT_GRACE,
        delay=delay,
        status_file=status_file(snapshot),
        children=_children(snapshot) if alive else None,
        supervised=supervised(snapshot),
    )


def _no_command(snapshot: TaskSnapshot) -> str:
    if task_cwd(snapshot) is None:
        return " bgmon cannot restart it: no working directory is recorded."
    return (
        " bgmon cannot restart it: no command is recorded for it (a `command` argv in its"
        " status.json, or start it with `bgmon run`)."
    )


def propose(
    snapshot: TaskSnapshot,
    catalogue: Catalogue,
    *,
    degraded_reason: str | None = None,
    restarts: int = 0,
    refused: tuple[dict[str, Any], ...] = (),
) -> Proposal:
    """A rule-based proposal. `restarts`: restarts bgmon already ran for this task recently (from
    the journal), which makes `restart_once` stop and `wait_restart` back off further."""
    matches = match(snapshot, catalogue)
    diagnosis, confidence, planned = _plan(snapshot, matches, restarts)
    actions, refused_now = _checked(planned, snapshot)
    if refused_now:
        why = "; ".join(str(r["reason"]) for r in refused_now)
        diagnosis += f" Refused by validation, so not proposed: {why}."
    return Proposal(
        id=new_id(),
        task=snapshot.key,
        task_id=snapshot.id,
        source="rules",
        model=None,
        degraded_reason=degraded_reason,
        diagnosis=diagnosis,
        confidence=confidence,
        actions=actions,
        refused=(*refused, *refused_now),
        patterns=tuple(m.pattern.name for m in matches),
        basis=basis_of(snapshot),
    )


def _checked(
    planned: list[Action], snapshot: TaskSnapshot
) -> tuple[tuple[Action, ...], tuple[dict[str, Any], ...]]:
    """The rules' actions through the same validation as a model's (`validate_actions`, against
    the task): what a status.json made them say (a pid, a command) is checked the same way."""
    raws = [{k: v for k, v in action_to_json(a).items() if k != "effect"} for a in planned]
    return validate_actions(raws, snapshot)


def _plan(
    snapshot: TaskSnapshot, matches: list[Match], restarts: int
) -> tuple[str, float, list[Action]]:
    badge = snapshot.health.badge
    alive = _alive(snapshot)
    state = f"{snapshot.name} is {badge.value}"
    if snapshot.health.summary:
        state += f" ({redact(flat(snapshot.health.summary, 200))})"
    state += "."

    if badge is Badge.WAITING:
        return f"{state} It is waiting for a person, not broken: answer it where it runs.", 0.9, []
    if not badge.is_fault:
        # The badge already asked health whether it is still failing (`error_burst`): a task
        # that is not a fault is past any errors it logged.
        text = f"{state} Nothing to recover."
        if matches:
            names = ", ".join(m.pattern.name for m in matches)
            text += f" (Earlier errors matched: {names}; it is past them.)"
        return text, 0.9, []

    actions: list[Action] = []
    if not matches:
        return _unmatched(snapshot, state, restarts)

    top = matches[0]
    p = top.pattern
    # Any matched pattern that says "restarting will not help" vetoes a restart.
    veto = next((m.pattern for m in matches if m.pattern.strategy == "no_restart"), None)
    strategy = "no_restart" if veto is not None else p.strategy
    if veto is not None:
        p = veto
    evidence = next((m.evidence for m in matches if m.pattern is p), top.evidence)
    text = f"{state} Looks like {p.name.replace('_', ' ')} ({p.type}, {p.severity}): {p.advice}"
    text += f' Evidence: "{evidence}".'
    others = [m.pattern.name for m in matches if m.pattern is not p]
    if others:
        text += f" Also seen: {', '.join(others)}."
    confidence = 0.75 if any(m.by_text for m in matches if m.pattern is p) else 0.6

    if strategy in ("wait_restart", "restart", "restart_once", "kill_restart"):
        if strategy == "restart_once" and restarts >= 1:
            text += (
                f" bgmon already restarted it {restarts}x recently and it failed again the same"
                " way; another restart is unlikely to help, so none is proposed."
            )
            actions.append(Mark(note=f"needs a person: {p.name} after restart"))
            return text, confidence - 0.15, actions
        delay = 0.0
        if strategy == "wait_restart":
            # Backoff grows with each restart bgmon already did: 5s, 10s, 20s … capped at 5 min.
            delay = round(backoff_delay(restarts + 1, first=5.0, cap=300.0, jitter=0.0), 1)
        restart = _restart(snapshot, delay)
        if restart is not None:
            if strategy == "wait_restart":
                text += (
                    f" The restart waits {delay:g}s first (backoff; longer after each restart)."
                )
            actions.append(restart)
        else:
            text += _no_command(snapshot)
            if alive and strategy == "kill_restart":
                text += " Stopping it at least frees its resources; start it again by hand."
                actions.append(_kill(snapshot))
            actions.append(Mark(note=f"needs a manual restart: {p.name}"))
        return text, confidence, actions

    if strategy == "kill":
        if alive:
            actions.append(_kill(snapshot))
            text += " Restarting would likely repeat it, so only a stop is proposed."
        else:
            text += " Its process is gone already."
            actions.append(Mark(note=f"needs a person: {p.name}"))
        return text, confidence, actions

    if strategy == "no_restart":
        if p.name == "disk_full":
            text += _disk_note(task_cwd(snapshot))
        text += " No restart is proposed: it would fail the same way."
        actions.append(Mark(note=f"needs a person: {p.name.replace('_', ' ')}"))
        return text, confidence, actions

    if strategy == "wait":
        text += " No action is needed now beyond waiting; mark it so others know."
        actions.append(Mark(note=f"waiting: {p.name.replace('_', ' ')}"))
        return text, confidence, actions

    # "mark"
    text += " No automatic action is proposed."
    actions.append(Mark(note=f"needs a person: {p.name.replace('_', ' ')}"))
    return text, confidence, actions


def _unmatched(
    snapshot: TaskSnapshot, state: str, restarts: int
) -> tuple[str, float, list[Action]]:
    """A fault no catalogue pattern explains: fall back on the badge."""
    badge = snapshot.health.badge
    alive = _alive(snapshot)
    reasons = "; ".join(f"{r.rule}: {r.detail}" for r in snapshot.health.reasons)
    text = f"{state} No known failure pattern matches"
    text += f" (evidence: {redact(flat(reasons, 300))})." if reasons else "."
    actions: list[Action] = []
    if badge is Badge.STUCK:
        restart = _restart(snapshot)
        if restart is not None:
            text += " A stuck task usually needs a stop and a fresh start."
            actions.append(restart)
        elif alive:
            text += " A stuck task usually needs a stop." + _no_command(snapshot)
            actions.append(_kill(snapshot))
        return text, 0.4, actions
    if badge is Badge.FAILED:
        restart = _restart(snapshot)
        if restart is not None and restarts == 0:
            text += " The cause is unknown; one restart may help if it was transient."
            actions.append(restart)
            return text, 0.3, actions
        if restart is None:
            text += _no_command(snapshot)
        elif restarts:
            text += f" It was restarted {restarts}x recently already."
        actions.append(Mark(note="needs a person: failed, cause unknown"))
        return text, 0.3, actions
    text += " It is still making some progress; keep watching."
    actions.append(Mark(note="watching"))
    return text, 0.3, actions
