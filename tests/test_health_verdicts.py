"""Issue 9's rules, each with its evidence: liveness is not progress, errors count, waiting is
its own state, and reasons carry facts views can age. Pure: no files, no clock."""

from __future__ import annotations

from bgmon.health import Observation, assess, error_burst, next_check, roll_up
from bgmon.model import Badge, Event, EventKind, Health, ProcFacts
from tests.test_health import NOW, TH, fold, rules


def error(ts: float, pattern: str | None = "connection_refused", source: str | None = None) -> Event:
    return Event(EventKind.ERROR, ts=ts, text="connect ECONNREFUSED 127.0.0.1:9", pattern=pattern,
                 source=source)


def heartbeat(ts: float) -> Event:
    return Event(EventKind.HEARTBEAT, ts=ts, source="bgmon")


# -- liveness is not progress ------------------------------------------------------------

def test_heartbeats_prove_life_not_progress():
    act = fold(Event(EventKind.MESSAGE, ts=NOW - 700, text="starting"), heartbeat(NOW - 5))
    obs = Observation(status="running", created_at=NOW - 800, updated_at=NOW - 5,
                      ready_until=NOW + 60, activity=act)
    h = assess(obs, NOW, TH)
    assert h.badge is Badge.STUCK and rules(h) == ["stuck.idle"]
    r = h.reasons[0]
    assert "11m" in r.detail and "heartbeat 5s ago" in r.detail
    assert r.evidence["since"] == NOW - 700 and r.evidence["threshold_s"] == TH.stuck_after
    assert r.to_json()["since"].endswith("Z")


def test_lines_bgmon_run_writes_about_the_command_are_not_its_progress():
    act = fold(Event(EventKind.MESSAGE, ts=NOW - 5, text="bgmon run: started", source="bgmon"))
    obs = Observation(status="running", created_at=NOW - 700, updated_at=NOW - 5, activity=act)
    assert rules(assess(obs, NOW, TH)) == ["stuck.idle"]


def test_output_cpu_and_a_progress_change_are_progress():
    base = dict(status="running", created_at=NOW - 900, updated_at=NOW - 5)
    out = fold(Event(EventKind.MESSAGE, ts=NOW - 30, text="compiled 3 files"))
    assert assess(Observation(**base, activity=out), NOW, TH).badge is Badge.HEALTHY
    assert assess(Observation(**base, last_cpu=NOW - 30), NOW, TH).badge is Badge.HEALTHY
    assert assess(Observation(**base, status_progress_at=NOW - 30), NOW, TH).badge is Badge.HEALTHY


def test_a_busy_child_is_not_stuck_and_a_stopped_one_is():
    busy = ProcFacts(pid=42, alive=True, cpu_active=True, children=(43,))
    obs = Observation(status="running", pid=42, proc=busy, created_at=NOW - 3600)
    h = assess(obs, NOW, TH)
    assert h.badge is Badge.HEALTHY and rules(h) == ["busy"]
    stopped = ProcFacts(pid=42, alive=True, stopped=True)
    h = assess(Observation(status="running", pid=42, proc=stopped, updated_at=NOW), NOW, TH)
    assert h.badge is Badge.STUCK and rules(h) == ["stuck.stopped"] and "42" in h.summary


def test_no_life_at_all_is_silent_and_the_status_mtime_does_not_override_updated_at():
    obs = Observation(status="running", updated_at=NOW - 700, status_written_at=NOW - 1)
    h = assess(obs, NOW, TH)
    assert rules(h) == ["stuck.silent"] and "heartbeat" in h.summary
    # Without an updatedAt, the file's mtime is the heartbeat.
    assert assess(Observation(status="running", status_written_at=NOW - 1), NOW, TH).badge is Badge.HEALTHY


def test_an_untimed_log_is_dated_by_its_appends():
    act = fold(Event(EventKind.MESSAGE, text="no ts here"))
    obs = Observation(status="running", created_at=NOW - 900, updated_at=NOW - 5,
                      last_append=NOW - 3, activity=act)
    assert assess(obs, NOW, TH).badge is Badge.HEALTHY


# -- classified errors drive health ----------------------------------------------------

def test_a_run_of_errors_is_struggling_naming_pattern_and_rate():
    act = fold(*[error(NOW - 30 + i * 2) for i in range(14)])
    h = assess(Observation(status="running", updated_at=NOW, activity=act), NOW, TH)
    assert h.badge is Badge.STRUGGLING and rules(h) == ["struggling.errors"]
    r = h.reasons[0]
    assert r.detail.startswith("14 connection_refused errors in the last 60 s")
    assert r.evidence["count"] == 14 and r.evidence["pattern"] == "connection_refused"
    assert r.to_json()["window_s"] == 60


def test_a_success_ends_the_run_and_old_errors_are_past():
    act = fold(error(NOW - 9), error(NOW - 8), error(NOW - 7),
               Event(EventKind.TOOL_RESULT, ts=NOW - 6, call_id="x", ok=True))
    assert error_burst(act, NOW, TH) is None
    act = fold(error(NOW - 300), error(NOW - 299), error(NOW - 298))
    assert error_burst(act, NOW, TH) is None  # nothing new for a whole window
    act = fold(error(NOW - 3), error(NOW - 2))
    assert error_burst(act, NOW, TH) is None  # below the threshold


def test_the_error_window_is_when_the_verdict_is_due_again():
    act = fold(error(NOW - 3), error(NOW - 2), error(NOW - 1))
    obs = Observation(status="running", updated_at=NOW, activity=act)
    assert next_check(obs, NOW, TH, refresh=600) <= NOW - 1 + TH.error_window


# -- waiting: needs a person -------------------------------------------------------------

def test_a_waiting_event_waits_until_resumed_or_answered():
    ask = Event(EventKind.WAITING, ts=NOW - 90, text="permission to run Bash: rm -rf build")
    obs = Observation(status="running", updated_at=NOW, activity=fold(ask))
    h = assess(obs, NOW, TH)
    assert h.badge is Badge.WAITING and rules(h) == ["waiting.person"]
    assert "rm -rf build" in h.summary and "1m" in h.summary
    assert h.reasons[0].to_json()["reason"] == "permission to run Bash: rm -rf build"
    resumed = fold(ask, Event(EventKind.RESUMED, ts=NOW - 10))
    assert assess(Observation(status="running", updated_at=NOW, activity=resumed), NOW, TH).badge is Badge.HEALTHY
    answered = fold(ask, Event(EventKind.TOOL_RESULT, ts=NOW - 10, call_id="c", ok=True))
    assert assess(Observation(status="running", updated_at=NOW, activity=answered), NOW, TH).badge is Badge.HEALTHY
    # An older line read later (another file of the task) does not answer it.
    late = fold(ask, Event(EventKind.TOOL_RESULT, ts=NOW - 100, call_id="c", ok=True))
    assert assess(Observation(status="running", updated_at=NOW, activity=late), NOW, TH).badge is Badge.WAITING


def test_waiting_is_not_stuck_but_a_dead_process_still_fails():
    ask = Event(EventKind.WAITING, ts=NOW - 3600, text="a question")
    obs = Observation(status="running", updated_at=NOW - 3600, activity=fold(ask))
    assert assess(obs, NOW, TH).badge is Badge.WAITING
    gone = Observation(status="running", pid=7, proc=ProcFacts(pid=7, alive=False), activity=fold(ask))
    assert assess(gone, NOW, TH).badge is Badge.FAILED


def _pending(tool: str = "Bash", ts: float = NOW - 40, *after: Event):
    return fold(Event(EventKind.TURN_START, ts=ts - 1, text="go"),
                Event(EventKind.TOOL_CALL, ts=ts, tool=tool, call_id="t1", input='{"command":"rm -rf build"}'),
                *after)


def test_a_pending_call_with_an_idle_agent_is_waiting_for_approval():
    obs = Observation(source="claude", agent_alive=True, agent_busy=False, activity=_pending())
    h = assess(obs, NOW, TH)
    assert h.badge is Badge.WAITING and rules(h) == ["waiting.approval"]
    assert "Bash" in h.summary and "40s" in h.summary


def test_a_pending_call_is_working_when_the_agent_is_busy_gone_or_it_is_recent_or_reporting():
    def badge(**kw):
        kw.setdefault("activity", _pending())
        kw.setdefault("agent_alive", True)
        return assess(Observation(source="claude", **kw), NOW, TH).badge
    assert badge(agent_busy=True) is Badge.HEALTHY
    assert badge(agent_alive=False) is not Badge.WAITING
    assert badge(activity=_pending(ts=NOW - 5)) is Badge.HEALTHY
    beat = Event(EventKind.HEARTBEAT, ts=NOW - 2, call_id="t1")
    assert badge(activity=_pending("Bash", NOW - 40, beat)) is Badge.HEALTHY
    assert badge(activity=_pending("TaskOutput")) is Badge.HEALTHY  # polling is working


def test_a_question_waits_at_once():
    obs = Observation(source="claude", agent_alive=True, activity=_pending("AskUserQuestion", NOW - 2))
    h = assess(obs, NOW, TH)
    assert h.badge is Badge.WAITING and rules(h) == ["waiting.question"]
    # The question says so itself: it needs no process look (replay, agent matching off)…
    unknown = Observation(source="claude", agent_alive=None, activity=_pending("AskUserQuestion", NOW - 2))
    assert rules(assess(unknown, NOW, TH)) == ["waiting.question"]
    # … but nobody is asked once the agent is gone.
    gone = Observation(source="claude", agent_alive=False, activity=_pending("AskUserQuestion", NOW - 2))
    assert assess(gone, NOW, TH).badge is not Badge.WAITING


def test_waiting_rolls_up_below_faults():
    waiting = Health(Badge.WAITING, ())
    stuck = Health(Badge.STUCK, ())
    ok = Health(Badge.HEALTHY, ())
    assert roll_up(ok, [("a", waiting)]).badge is Badge.WAITING
    assert roll_up(ok, [("a", waiting), ("b", stuck)]).badge is Badge.STUCK
    assert not Badge.WAITING.is_fault and Badge.WAITING.needs_person


def test_a_session_with_no_model_turn_is_unknown_whatever_its_mtime():
    act = fold(Event(EventKind.META, ts=NOW - 5, cwd="/w"))
    h = assess(Observation(source="claude", last_append=NOW - 1, activity=act), NOW, TH)
    assert h.badge is Badge.UNKNOWN
