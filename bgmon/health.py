"""Health rules: pure functions of what was observed and the time. No disk, no clock, no psutil.

`assess(obs, now, thresholds)` returns a `Health` whose reasons carry the evidence: the rule id,
a sentence with the threshold and what was seen, and the facts behind it (moments, counts,
thresholds) so views can draw ages as of their own moment. Every view and `--once` call this
through the engine, so they cannot disagree. Rule ids are stable (tests, patterns and the
journal use them): status.*, process.exited, supervisor.died, stuck.idle, stuck.silent,
stuck.stopped, stuck.lease, stuck.loop, struggling.streak, struggling.rate, struggling.errors,
waiting.*, turn.*, busy, active, rollup.

Two facts are kept apart: *life* (a heartbeat, a lease, a status rewrite, any log line: the
process is there) and *progress* (the task's own output and events, CPU used by its process
tree, a progress or step change). Stuck means no progress for `stuck_after`, whether or not it
is alive.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from bgmon.activity import POLLING_TOOLS, ActivitySummary
from bgmon.clip import clip
from bgmon.config import Thresholds
from bgmon.model import Badge, Event, Health, ProcFacts, Reason, quote
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
    status_progress_at: float | None = None  # when status.json's progress or step last changed
    exit_code: object = None
    error: str | None = None
    last_append: float | None = None  # newest log write
    last_cpu: float | None = None  # last time the process tree was seen using CPU
    agent_alive: bool | None = None  # transcripts: a matching claude/codex process runs
    agent_busy: bool | None = None  # … and its process tree used CPU at the last look
    activity: ActivitySummary = ActivitySummary()


# Helper sub-agents are no workers: their failures are not the session's, so they do not roll up
# into it. Claude Code's (context compaction, prompt suggestions) by file name; Codex's by the
# kind its rollout gives (engine.snapshot.subagent_name).
HELPER_AGENTS = ("agent-acompact", "agent-aprompt_suggestion", "agent-aside_question",
                 "compact sub-agent", "memory_consolidation sub-agent")
# Tools that ask the person a question by design: pending means waiting for an answer.
QUESTION_TOOLS = frozenset({"AskUserQuestion", "request_user_input"})


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
    return f"{what}: {clip(first, 80)}"


def _secs(seconds: float) -> str:
    """A window as people say it: "60 s", "5m"."""
    return f"{seconds:g} s" if seconds < 120 else ago(seconds)


def last_sign_of_life(obs: Observation) -> tuple[float | None, str]:
    """The newest proof that the task is there: heartbeat, status write, log append, CPU use,
    logged event; and which one it was. A status file's mtime stands in for its `updatedAt`
    only when it has none (a copied or touched file must not make an old heartbeat new).
    A transcript's mtime alone is no life either: its lines carry their own times.
    (A plain loop: this runs for every task on every tick.)"""
    best, what = None, "creation"
    written = obs.status_written_at if obs.updated_at is None else None
    append = obs.last_append if obs.status is not None or _untimed(obs) else None
    for t, name in (
        (obs.updated_at, "heartbeat"),
        (append, "log append"),
        (obs.last_cpu, "CPU use"),
        (written, "status write"),
        (obs.activity.last_event_at, "event"),
    ):
        if t is not None and (best is None or t > best):
            best, what = t, name
    if best is None:
        return obs.created_at, "creation"
    return best, what


def _untimed(obs: Observation) -> bool:
    """The task's newest work has no time of its own (or its log has no events we read): the
    log file's mtime is the best clock there is."""
    act = obs.activity
    return act.untimed_progress or (act.last_event_at is None and act.last_progress_at is None)


def last_progress(obs: Observation) -> tuple[float | None, str]:
    """The newest sign of the task's own work: its output and events, CPU used by its process
    tree, a progress or step change in its status; else when it was created."""
    best, what = None, "start"
    append = obs.last_append if _untimed(obs) else None
    for t, name in (
        (obs.activity.last_progress_at, "output"),
        (obs.last_cpu, "CPU use"),
        (obs.status_progress_at, "progress change"),
        (append, "log append"),
    ):
        if t is not None and (best is None or t > best):
            best, what = t, name
    if best is None:
        return obs.created_at, "start"
    return best, what


def _struggling(act: ActivitySummary, now: float, th: Thresholds) -> list[Reason]:
    reasons = []
    if act.fail_streak >= th.fail_streak:
        reasons.append(Reason.judged(
            "struggling.streak",
            f"{act.fail_streak} failed tool calls in a row ({quote(_failure_text(act.last_failure))})"
            f" [threshold {th.fail_streak}]", now, count=act.fail_streak, threshold=th.fail_streak,
        ))
    window = act.results[-th.fail_window :]
    failed = window.count(False)
    if len(window) >= th.fail_window_min and failed * 2 >= len(window) and not reasons:
        reasons.append(Reason.judged(
            "struggling.rate",
            f"{failed} of the last {len(window)} tool results failed"
            f" (last: {quote(_failure_text(act.last_failure))}) [threshold: half]", now,
            count=failed, of=len(window),
        ))
    burst = error_burst(act, now, th)
    if burst is not None:
        reasons.insert(0, burst)
    return reasons


def error_burst(act: ActivitySummary, now: float, th: Thresholds) -> Reason | None:
    """Is it still failing? `fail_streak` error events with no success between them, the last
    within `error_window`: named by pattern and rate. Recovery asks this same function."""
    last = act.last_error
    if act.error_streak < th.fail_streak or last is None:
        return None
    if last.ts is not None and now - last.ts > th.error_window:
        return None  # the run of errors is over: nothing new for a whole window
    recent = [t for t in act.error_times if now - t <= th.error_window]
    count = len(recent) if recent else act.error_streak
    pattern = last.pattern or "error"
    plural = "s" if count != 1 else ""
    said = (last.text or last.error or "").strip().splitlines()
    named = f"{quote(last.pattern)} " if last.pattern else ""
    template = f"{count} {named}error{plural} in the last {_secs(th.error_window)}"
    if act.error_streak > count:
        template += f", {act.error_streak} since the last success"
    if said:
        template += f" (last {{last_error}} ago: {quote(clip(said[0], 100))})"
    template += f" [threshold {th.fail_streak} in a row]"
    return Reason.judged(
        "struggling.errors", template, now, count=count, pattern=pattern, window_s=th.error_window,
        streak=act.error_streak, last_error=last.ts, threshold=th.fail_streak,
    )


def _stuck(obs: Observation, now: float, th: Thresholds) -> list[Reason]:
    act = obs.activity
    reasons = []
    if act.loop_count >= th.loop_repeats:
        reasons.append(Reason.judged(
            "stuck.loop",
            f"the same call repeated {act.loop_count} times in a row: {quote(_call_text(act.loop_call))}"
            f" [threshold {th.loop_repeats}]", now, count=act.loop_count, threshold=th.loop_repeats,
        ))
    proc = obs.proc
    if proc is not None and proc.alive and proc.stopped:
        reasons.insert(0, Reason.judged(
            "stuck.stopped",
            f"process {obs.pid} is stopped (SIGSTOP, ctrl-Z or a debugger): it cannot make"
            " progress until it is continued (SIGCONT)", now, pid=obs.pid,
        ))
        return reasons
    if proc is not None and proc.cpu_active:
        # The latest process look saw the tree using CPU: busy now, whatever the clock says
        # since that look (looks are seconds apart; a lease may expire in between).
        return reasons
    life, life_what = last_sign_of_life(obs)
    done, done_what = last_progress(obs)
    threshold = f" [threshold {ago(th.stuck_after)}]"
    if done is not None and now - done > th.stuck_after:
        alive = (life is not None and now - life <= th.stuck_after) or (
            obs.pid is not None and proc is not None and proc.alive and not proc.access_denied)
        if alive:
            template = f"alive but no output and no CPU use for {{since}} (last progress: {done_what})"
            if life is not None and life > done:
                template += f"; it is alive: {life_what} {{last_life}} ago"
            if obs.pid is not None and proc is not None and proc.alive:
                template += f"; process {obs.pid} is idle"
            reasons.append(Reason.judged(
                "stuck.idle", template + threshold, now, since=done, last_life=life,
                threshold_s=th.stuck_after,
            ))
            return reasons
    if life is not None and now - life > th.stuck_after:
        template = f"no sign of life for {{since}} (last: {life_what})"
        if act.pending and obs.agent_alive is False:
            template += f"; {quote(_call_text(act.pending[-1]))} never got a result and no agent process runs"
        reasons.append(Reason.judged(
            "stuck.silent", template + threshold, now, since=life, threshold_s=th.stuck_after,
        ))
    elif obs.ready_until is not None and now > obs.ready_until and (life is None or life <= obs.ready_until):
        reasons.append(Reason.judged(
            "stuck.lease",
            "heartbeat lease expired {expired_at} ago with no heartbeat, log append or CPU use since",
            now, expired_at=obs.ready_until,
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


def waiting_for_person(obs: Observation, now: float, th: Thresholds) -> Reason | None:
    """Blocked on a person: a source said so (a `waiting` event not yet answered), or a
    transcript's last tool call has had no result for `approval_after` while its agent process
    runs and idles (a permission prompt), or it asked a question (unless its agent is gone)."""
    act = obs.activity
    if act.waiting is not None:
        said = (act.waiting.text or "").strip()
        template = "blocked on a person" + (f": {quote(said[:160])}" if said else "")
        if act.waiting.ts is not None:
            template += " (for {asked_at})"
        return Reason.judged("waiting.person", template, now, asked_at=act.waiting.ts,
                             reason=said or None)
    if obs.status is not None or not act.pending or obs.agent_alive is False or obs.agent_busy:
        return None
    call = act.pending[-1]
    if call.ts is None or call.tool in POLLING_TOOLS or act.turn != "running":
        return None
    if act.last_event_at is not None and act.last_event_at > call.ts:
        return None  # something happened since the call (a heartbeat of a running command)
    what = quote(_call_text(call))
    if call.tool in QUESTION_TOOLS:
        # The question says itself that a person is asked: no process look is needed (replay
        # and agent matching off have none); only an agent known gone asks nobody.
        return Reason.judged("waiting.question", f"asked the person a question ({what}) {{asked_at}} ago",
                             now, asked_at=call.ts, tool=call.tool)
    if not obs.agent_alive or now - call.ts < th.approval_after:
        return None
    return Reason.judged(
        "waiting.approval",
        f"{what} has had no result for {{asked_at}} while the agent idles: likely a permission"
        f" prompt [threshold {_secs(th.approval_after)}]", now, asked_at=call.ts, tool=call.tool,
        threshold_s=th.approval_after,
    )


def _running(obs: Observation, now: float, th: Thresholds) -> Health:
    """The rules for a task that is (or claims to be) running."""
    failed = _liveness(obs)
    stuck = _stuck(obs, now, th)
    struggling = _struggling(obs.activity, now, th)
    if failed:
        return Health(Badge.FAILED, tuple(failed + stuck + struggling))
    if stuck and stuck[0].rule == "stuck.stopped":
        return Health(Badge.STUCK, tuple(stuck + struggling))
    waiting = waiting_for_person(obs, now, th)
    if waiting is not None:
        return Health(Badge.WAITING, (waiting, *struggling))
    if stuck:
        return Health(Badge.STUCK, tuple(stuck + struggling))
    if struggling:
        return Health(Badge.STRUGGLING, tuple(struggling))
    if obs.proc is not None and obs.proc.cpu_active:
        kids = len(obs.proc.children)
        extra = f" ({kids} child process{'es' if kids != 1 else ''})" if kids else ""
        return Health(Badge.HEALTHY, (_reason("busy", f"process tree of {obs.pid} is using CPU{extra}"),))
    done, what = last_progress(obs)
    if done is not None:
        return Health(Badge.HEALTHY, (Reason.judged(
            "active", f"last progress {{since}} ago ({what})", now, since=done),))
    life, life_what = last_sign_of_life(obs)
    if life is not None:
        return Health(Badge.HEALTHY, (Reason.judged(
            "active", f"alive ({life_what} {{last_life}} ago); no progress recorded yet", now,
            last_life=life),))
    return Health(Badge.HEALTHY, (_reason("active", "running; no activity recorded yet"),))


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
        said = _said(act.turn_text)
        if obs.agent_alive is False:
            return Health(Badge.COMPLETED, (_reason(
                "turn.aborted", f"interrupted by the person{said}; no agent process runs"),))
        return Health(Badge.WAITING, (Reason.judged(
            "waiting.interrupted", f"interrupted by the person {{asked_at}} ago{quote(said)};"
            " waiting for them", now, asked_at=act.turn_at),))
    if act.turn == "api_error":
        return Health(Badge.FAILED, (Reason(
            "turn.api_error", f"last turn ended on an API error{_said(act.turn_text)}",
            {"failed_at": act.turn_at}),))
    tentative = act.turn_text in TENTATIVE_ENDS and act.turn_at is not None and now - act.turn_at < TURN_SETTLE
    if act.turn == "ended" and not act.background and not tentative:
        if obs.agent_alive:
            return Health(Badge.COMPLETED, (Reason(
                "turn.ended", "turn ended, waiting for input", {"ended_at": act.turn_at}),))
        return Health(Badge.COMPLETED, (Reason(
            "turn.ended", "last turn ended; nothing of it still runs", {"ended_at": act.turn_at}),))
    if act.turn is None:
        # A file's mtime alone is no life: a session with no model turn (only local commands,
        # a title, a snapshot) cannot be judged.
        return Health(Badge.UNKNOWN, (_reason("status.unknown", "no model turn recorded"),))
    return _running(obs, now, th)


def _said(text: str | None) -> str:
    if not text:
        return ""
    first = text.strip().splitlines()[0] if text.strip() else ""
    return f": {clip(first, 120)}" if first else ""


def next_check(obs: Observation, now: float, th: Thresholds, refresh: float = 15.0) -> float:
    """The earliest time at which the clock alone could change this task's verdict (a stuck
    threshold or a lease running out, a guessed turn end settling), and at the latest
    `refresh` seconds from now so that reasons quoting ages stay current. Until then, with
    no new data, `assess` would say the same: the engine skips it."""
    due = now + refresh
    life, _ = last_sign_of_life(obs)
    done, _ = last_progress(obs)
    act = obs.activity
    last_error = act.last_error.ts if act.last_error is not None else None
    call = act.pending[-1].ts if act.pending else None
    for t in (
        life + th.stuck_after if life is not None else None,
        done + th.stuck_after if done is not None else None,
        obs.ready_until,
        act.turn_at + TURN_SETTLE if act.turn_at is not None and act.turn_text in TENTATIVE_ENDS else None,
        last_error + th.error_window if last_error is not None else None,
        call + th.approval_after if call is not None else None,
    ):
        if t is not None and now < t < due:
            due = t
    return due


def assess(obs: Observation, now: float, th: Thresholds) -> Health:
    if obs.status is None:
        return _from_turns(obs, now, th)
    return _from_status(obs, now, th)


def _ended_at(health: Health) -> float | None:
    """When a transcript's last turn ended (its own badge is completed by `turn.ended`)."""
    first = health.reasons[0] if health.reasons else None
    value = first.evidence.get("ended_at") if first is not None and first.rule == "turn.ended" else None
    return value if isinstance(value, int | float) else None


def _fault_at(health: Health) -> float | None:
    """When a fault happened (a failure) or began (the last life before a silence)."""
    first = health.reasons[0] if health.reasons else None
    if first is None:
        return None
    value = first.evidence.get("failed_at", first.evidence.get("since"))
    return value if isinstance(value, int | float) else None


def roll_up(own: Health, children: Iterable[tuple[str, Health]]) -> Health:
    """A parent shows the worst of itself and its children, saying which child it comes from."""
    worst_name, worst = None, own
    moved_on = _ended_at(own)
    for name, health in children:
        if name.startswith(HELPER_AGENTS):
            continue  # a helper (compaction, prompt suggestions) is not the session's work
        if moved_on is not None and health.badge.is_fault:
            when = _fault_at(health)
            if when is not None and when < moved_on:
                continue  # the parent's later turns went on past this child's fault
        if health.badge.severity > worst.badge.severity:
            worst_name, worst = name, health
    if worst_name is None:
        return own
    first = worst.reasons[0] if worst.reasons else None
    why = Reason(
        "rollup", f"child {worst_name} is {worst.badge.value}: {worst.summary}",
        dict(first.evidence) if first else {},
        f"child {quote(worst_name)} is {worst.badge.value}: {first.template}" if first and first.template else None,
    )
    return Health(worst.badge, (why, *own.reasons))
