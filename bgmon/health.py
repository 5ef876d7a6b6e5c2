"""Health rules: pure functions of what was observed and the time. No disk, no clock, no psutil.

`assess(obs, now, thresholds)` returns a `Health` whose reasons carry the evidence: the rule id,
and a sentence with the threshold and what was seen. Every view and `--once` call this through
the engine, so they cannot disagree. Rule ids are stable (tests, patterns and the journal use
them): status.*, process.exited, supervisor.died, stuck.silent, stuck.lease, stuck.loop,
struggling.streak, struggling.rate, turn.*, busy, active, rollup.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from bgmon.activity import ActivitySummary
from bgmon.clip import clip
from bgmon.config import Thresholds
from bgmon.model import Badge, Event, Health, ProcFacts, Reason
from bgmon.timefmt import ago

RUNNING = frozenset({"running"})
NOT_STARTED = frozenset({"created", "pending", "queued"})
FINAL_OK = frozenset({"completed", "cancelled"})
FINAL_BAD = frozenset({"failed", "timeout"})
KNOWN_STATUSES = RUNNING | NOT_STARTED | FINAL_OK | FINAL_BAD
# Claude 2.1.3x writes no stop_reason: a text-only reply may be a preamble to a tool call
# (the corpus: median 1 s, p90 6 s later). Such a guessed end counts only once it has settled.
TENTATIVE_ENDS = frozenset({"text_only"})
TURN_SETTLE = 15.0
PID_REUSE_SLACK = 2.0  # seconds of clock and mtime granularity


@dataclass(frozen=True, slots=True)
class Observation:
    """Everything the rules may look at for one task. Built by the engine from readers and
    psutil; built by hand in tests."""

    source: str = "worktree"
    status: str | None = None  # from status.json; None for transcripts (derived from turns)
    pid: int | None = None
    proc: ProcFacts | None = None  # facts about `pid`
    supervisor_pid: int | None = None
    supervisor: ProcFacts | None = None
    created_at: float | None = None
    updated_at: float | None = None  # heartbeat
    ready_until: float | None = None  # heartbeat lease
    status_written_at: float | None = None  # mtime of status.json
    exit_code: object = None
    error: str | None = None
    last_append: float | None = None  # newest log write
    last_cpu: float | None = None  # last time the process tree was seen using CPU
    agent_alive: bool | None = None  # transcripts: a matching claude/codex process runs
    activity: ActivitySummary = ActivitySummary()


def _reason(rule: str, detail: str) -> Reason:
    return Reason(rule, detail)


def _proc_gone(proc: ProcFacts | None, written_at: float | None = None) -> bool:
    """The recorded process no longer runs: exited, a zombie, or its pid now belongs to a
    process started after the status file named it (a pid written at time W names a process
    that existed at W)."""
    if proc is None or proc.access_denied:
        return False
    if not proc.alive:
        return True
    return _reused(proc, written_at)


def _reused(proc: ProcFacts | None, written_at: float | None) -> bool:
    return (
        proc is not None and proc.started is not None and written_at is not None
        and proc.started > written_at + PID_REUSE_SLACK
    )


def _call_text(ev: Event | None) -> str:
    if ev is None:
        return "?"
    text = ev.tool or "call"
    if ev.input:
        shown = clip(ev.input, 60)
        text += f" {shown}"
    return text


def _failure_text(ev: Event | None) -> str:
    if ev is None:
        return ""
    what = ev.tool or "tool"
    err = (ev.error or ev.text or "error").strip().splitlines()
    first = err[0] if err else "error"
    return f"{what}: {first[:80]}"


def last_sign_of_life(obs: Observation) -> tuple[float | None, str]:
    """The newest of heartbeat, log append, CPU use, status write and logged event, and which
    one it was. (A plain loop: this runs for every task on every tick.)"""
    best, what = None, "creation"
    for t, name in (
        (obs.updated_at, "heartbeat"),
        (obs.last_append, "log append"),
        (obs.last_cpu, "CPU use"),
        (obs.status_written_at, "status write"),
        (obs.activity.last_event_at, "event"),
    ):
        if t is not None and (best is None or t > best):
            best, what = t, name
    if best is None:
        return obs.created_at, "creation"
    return best, what


def _struggling(act: ActivitySummary, th: Thresholds) -> list[Reason]:
    reasons = []
    if act.fail_streak >= th.fail_streak:
        reasons.append(_reason(
            "struggling.streak",
            f"{act.fail_streak} failed tool calls in a row ({_failure_text(act.last_failure)})"
            f" [threshold {th.fail_streak}]",
        ))
    window = act.results[-th.fail_window :]
    failed = window.count(False)
    if len(window) >= th.fail_window_min and failed * 2 >= len(window) and not reasons:
        reasons.append(_reason(
            "struggling.rate",
            f"{failed} of the last {len(window)} tool results failed"
            f" (last: {_failure_text(act.last_failure)}) [threshold: half]",
        ))
    return reasons


def _stuck(obs: Observation, now: float, th: Thresholds) -> list[Reason]:
    act = obs.activity
    reasons = []
    if act.loop_count >= th.loop_repeats:
        reasons.append(_reason(
            "stuck.loop",
            f"the same call repeated {act.loop_count} times in a row: {_call_text(act.loop_call)}"
            f" [threshold {th.loop_repeats}]",
        ))
    if obs.proc is not None and obs.proc.cpu_active:
        # The latest process look saw the tree using CPU: busy now, whatever the clock says
        # since that look (looks are seconds apart; a lease may expire in between).
        return reasons
    life, what = last_sign_of_life(obs)
    if life is not None and now - life > th.stuck_after:
        detail = (
            f"no sign of life for {ago(now - life)} (last: {what}) [threshold {ago(th.stuck_after)}]"
        )
        if obs.pid is not None and obs.proc is not None and obs.proc.alive:
            detail += f"; process {obs.pid} is alive but idle"
        if act.pending and obs.agent_alive is False:
            detail += f"; {_call_text(act.pending[-1])} never got a result and no agent process runs"
        reasons.append(_reason("stuck.silent", detail))
    elif obs.ready_until is not None and now > obs.ready_until and (life is None or life <= obs.ready_until):
        reasons.append(_reason(
            "stuck.lease",
            f"heartbeat lease expired {ago(now - obs.ready_until)} ago with no heartbeat,"
            f" log append or CPU use since",
        ))
    return reasons


def _liveness(obs: Observation) -> list[Reason]:
    """A task that says it runs, but whose processes are gone."""
    written = obs.status_written_at
    if obs.supervisor_pid is not None and _proc_gone(obs.supervisor, written):
        detail = f"supervisor {obs.supervisor_pid} died; status still says {obs.status}"
        if obs.pid is not None and obs.proc is not None and obs.proc.alive and not _reused(obs.proc, written):
            detail += f"; orphaned child {obs.pid} still runs"
        return [_reason("supervisor.died", detail)]
    if obs.pid is not None and _proc_gone(obs.proc, written):
        if _reused(obs.proc, written):
            why = f" (pid {obs.pid} now belongs to a process started later)"
        else:
            why = " (zombie)" if obs.proc and obs.proc.zombie else ""
        return [_reason("process.exited", f"process {obs.pid} exited without a final status{why}")]
    return []


def _running(obs: Observation, now: float, th: Thresholds) -> Health:
    """The rules for a task that is (or claims to be) running."""
    failed = _liveness(obs)
    stuck = _stuck(obs, now, th)
    struggling = _struggling(obs.activity, th)
    if failed:
        return Health(Badge.FAILED, tuple(failed + stuck + struggling))
    if stuck:
        return Health(Badge.STUCK, tuple(stuck + struggling))
    if struggling:
        return Health(Badge.STRUGGLING, tuple(struggling))
    life, what = last_sign_of_life(obs)
    if obs.proc is not None and obs.proc.cpu_active:
        kids = len(obs.proc.children)
        extra = f" ({kids} child process{'es' if kids != 1 else ''})" if kids else ""
        return Health(Badge.HEALTHY, (_reason("busy", f"process tree of {obs.pid} is using CPU{extra}"),))
    if life is None:
        return Health(Badge.HEALTHY, (_reason("active", "running; no activity recorded yet"),))
    return Health(Badge.HEALTHY, (_reason("active", f"last sign of life {ago(now - life)} ago ({what})"),))


def _from_status(obs: Observation, now: float, th: Thresholds) -> Health:
    status = obs.status or ""
    if status == "completed":
        return Health(Badge.COMPLETED, (_reason("status.completed", "status is completed"),))
    if status == "cancelled":
        return Health(Badge.COMPLETED, (_reason("status.cancelled", "cancelled (not a failure)"),))
    if status in FINAL_BAD:
        detail = f"status is {status}"
        if obs.exit_code is not None:
            detail += f", exit code {obs.exit_code}"
        if obs.error:
            detail += f": {str(obs.error).strip()[:160]}"
        return Health(Badge.FAILED, (_reason(f"status.{status}", detail),))
    if status in NOT_STARTED:
        if failed := _liveness(obs):
            return Health(Badge.FAILED, tuple(failed))
        return Health(Badge.HEALTHY, (_reason("status.waiting", f"{status}: waiting to start"),))
    if status in RUNNING:
        return _running(obs, now, th)
    return Health(Badge.UNKNOWN, (_reason("status.unknown", f"unknown status {status!r}"),))


def _from_turns(obs: Observation, now: float, th: Thresholds) -> Health:
    """Transcripts have no status file: judge from the last turn and the agent process."""
    act = obs.activity
    if act.turn == "aborted":
        return Health(Badge.FAILED, (_reason("turn.aborted", f"last turn was aborted{_said(act.turn_text)}"),))
    if act.turn == "api_error":
        return Health(Badge.FAILED, (_reason("turn.api_error", f"last turn ended on an API error{_said(act.turn_text)}"),))
    tentative = act.turn_text in TENTATIVE_ENDS and act.turn_at is not None and now - act.turn_at < TURN_SETTLE
    if act.turn == "ended" and not act.background and not tentative:
        if obs.agent_alive:
            return Health(Badge.COMPLETED, (_reason("turn.ended", "turn ended, waiting for input"),))
        return Health(Badge.COMPLETED, (_reason("turn.ended", "last turn ended; nothing of it still runs"),))
    if act.turn is None and act.last_event_at is None and obs.last_append is None:
        return Health(Badge.UNKNOWN, (_reason("status.unknown", "no turns recorded yet"),))
    return _running(obs, now, th)


def _said(text: str | None) -> str:
    if not text:
        return ""
    first = text.strip().splitlines()[0] if text.strip() else ""
    return f": {first[:120]}" if first else ""


def next_check(obs: Observation, now: float, th: Thresholds, refresh: float = 15.0) -> float:
    """The earliest time at which the clock alone could change this task's verdict (a stuck
    threshold or a lease running out, a guessed turn end settling), and at the latest
    `refresh` seconds from now so that reasons quoting ages stay current. Until then, with
    no new data, `assess` would say the same: the engine skips it."""
    due = now + refresh
    life, _ = last_sign_of_life(obs)
    act = obs.activity
    for t in (
        life + th.stuck_after if life is not None else None,
        obs.ready_until,
        act.turn_at + TURN_SETTLE if act.turn_at is not None and act.turn_text in TENTATIVE_ENDS else None,
    ):
        if t is not None and now < t < due:
            due = t
    return due


def assess(obs: Observation, now: float, th: Thresholds) -> Health:
    if obs.status is None:
        return _from_turns(obs, now, th)
    return _from_status(obs, now, th)


def roll_up(own: Health, children: Iterable[tuple[str, Health]]) -> Health:
    """A parent shows the worst of itself and its children, saying which child it comes from."""
    worst_name, worst = None, own
    for name, health in children:
        if health.badge.severity > worst.badge.severity:
            worst_name, worst = name, health
    if worst_name is None:
        return own
    why = Reason("rollup", f"child {worst_name} is {worst.badge.value}: {worst.summary}")
    return Health(worst.badge, (why, *own.reasons))
