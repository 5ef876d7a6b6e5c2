"""Each health rule, with the evidence it must carry. Pure functions: no files, no clock."""

from __future__ import annotations

from bgmon.activity import Activity
from bgmon.config import Thresholds
from bgmon.health import Observation, assess, roll_up
from bgmon.model import Badge, Event, EventKind, Health, ProcFacts, Reason

NOW = 1_800_000_000.0
TH = Thresholds()


def fold(*events: Event):
    act = Activity()
    act.extend(list(events))
    return act.summary()


def call(i: int, tool: str = "Bash", inp: str = '{"cmd":"pytest"}', ts: float = NOW - 5) -> Event:
    return Event(EventKind.TOOL_CALL, ts=ts, tool=tool, call_id=f"c{i}", input=inp)


def result(i: int, ok: bool, error: str | None = None) -> Event:
    return Event(EventKind.TOOL_RESULT, ts=NOW - 5, call_id=f"c{i}", ok=ok, error=error)


def running(**kw) -> Observation:
    kw.setdefault("status", "running")
    kw.setdefault("updated_at", NOW - 10)
    return Observation(**kw)


def rules(h: Health) -> list[str]:
    return [r.rule for r in h.reasons]


def test_healthy_when_running_and_recently_alive():
    h = assess(running(), NOW, TH)
    assert h.badge is Badge.HEALTHY
    assert "10s ago" in h.summary and "heartbeat" in h.summary


def test_completed_and_cancelled():
    assert assess(Observation(status="completed"), NOW, TH).badge is Badge.COMPLETED
    assert assess(Observation(status="cancelled"), NOW, TH).badge is Badge.COMPLETED


def test_failed_and_timeout_status_quote_exit_code_and_error():
    h = assess(Observation(status="failed", exit_code=2, error="boom\nmore"), NOW, TH)
    assert h.badge is Badge.FAILED
    assert rules(h) == ["status.failed"]
    assert "exit code 2" in h.summary and "boom" in h.summary
    assert assess(Observation(status="timeout"), NOW, TH).badge is Badge.FAILED


def test_unknown_status_is_shown_as_is():
    h = assess(Observation(status="paused-by-moon"), NOW, TH)
    assert h.badge is Badge.UNKNOWN
    assert "paused-by-moon" in h.summary


def test_running_with_dead_pid_fails_with_the_pid_in_evidence():
    h = assess(running(pid=4242, proc=ProcFacts(pid=4242, alive=False)), NOW, TH)
    assert h.badge is Badge.FAILED
    assert h.summary == "process 4242 exited without a final status"


def test_zombie_counts_as_gone():
    h = assess(running(pid=7, proc=ProcFacts(pid=7, alive=False, zombie=True)), NOW, TH)
    assert h.badge is Badge.FAILED and "zombie" in h.summary


def test_access_denied_is_not_death():
    h = assess(running(pid=1, proc=ProcFacts(pid=1, alive=False, access_denied=True)), NOW, TH)
    assert h.badge is Badge.HEALTHY


def test_created_with_dead_pid_fails_too():
    h = assess(Observation(status="created", pid=5, proc=ProcFacts(pid=5, alive=False)), NOW, TH)
    assert h.badge is Badge.FAILED


def test_supervisor_died_names_the_orphan():
    obs = running(
        pid=20, proc=ProcFacts(pid=20, alive=True),
        supervisor_pid=10, supervisor=ProcFacts(pid=10, alive=False),
    )
    h = assess(obs, NOW, TH)
    assert h.badge is Badge.FAILED
    assert rules(h)[0] == "supervisor.died"
    assert "supervisor 10 died" in h.summary and "orphaned child 20 still runs" in h.summary


def test_stuck_when_silent_past_the_threshold_with_evidence():
    h = assess(running(updated_at=NOW - 700, last_append=NOW - 900), NOW, TH)
    assert h.badge is Badge.STUCK
    assert rules(h) == ["stuck.silent"]
    assert "no sign of life for 11m" in h.summary and "heartbeat" in h.summary
    assert "threshold 10m" in h.summary


def test_cpu_use_of_the_tree_is_life_busy_not_stuck():
    obs = running(
        updated_at=NOW - 3600, last_cpu=NOW - 1, pid=9,
        proc=ProcFacts(pid=9, alive=True, cpu_active=True, children=(10,)),
    )
    h = assess(obs, NOW, TH)
    assert h.badge is Badge.HEALTHY
    assert rules(h) == ["busy"] and "1 child process" in h.summary


def test_expired_lease_without_life_since_is_stuck():
    obs = running(updated_at=NOW - 120, ready_until=NOW - 60)
    h = assess(obs, NOW, TH)
    assert h.badge is Badge.STUCK and rules(h) == ["stuck.lease"]
    assert "expired 1m ago" in h.summary


def test_expired_lease_with_life_after_it_is_fine():
    obs = running(updated_at=NOW - 120, ready_until=NOW - 60, last_append=NOW - 30)
    assert assess(obs, NOW, TH).badge is Badge.HEALTHY


def test_loop_of_the_same_call_five_times_is_stuck():
    events = []
    for i in range(5):
        events += [call(i), result(i, ok=True)]
    h = assess(running(activity=fold(*events)), NOW, TH)
    assert h.badge is Badge.STUCK
    assert rules(h) == ["stuck.loop"]
    assert "repeated 5 times" in h.summary and "Bash" in h.summary and "pytest" in h.summary


def test_four_repeats_or_a_different_input_is_not_a_loop():
    events = [call(i) for i in range(4)] + [call(9, inp='{"cmd":"ls"}')]
    assert assess(running(activity=fold(*events)), NOW, TH).badge is Badge.HEALTHY


def test_progress_between_repeats_breaks_the_loop():
    events = [call(0), call(1), call(2)]
    events.append(Event(EventKind.PROGRESS, done=1, total=5))
    events += [call(3), call(4)]
    assert assess(running(activity=fold(*events)), NOW, TH).badge is Badge.HEALTHY


def test_three_failures_in_a_row_is_struggling_with_the_last_error():
    events = []
    for i in range(3):
        events += [call(i, inp=str(i)), result(i, ok=False, error="exit 1")]
    h = assess(running(activity=fold(*events)), NOW, TH)
    assert h.badge is Badge.STRUGGLING
    assert rules(h) == ["struggling.streak"]
    assert h.summary.startswith("3 failed tool calls in a row (Bash: exit 1)")


def test_half_of_the_last_ten_failed_is_struggling():
    events = []
    for i in range(10):
        events += [call(i, inp=str(i)), result(i, ok=i % 2 == 0, error=None if i % 2 == 0 else "E")]
    h = assess(running(activity=fold(*events)), NOW, TH)
    assert h.badge is Badge.STRUGGLING and rules(h) == ["struggling.rate"]
    assert "5 of the last 10" in h.summary


def test_a_success_resets_the_streak():
    oks = [False, False, True, True, True, True, False]
    events = [result(i, ok) for i, ok in enumerate(oks)]
    assert assess(running(activity=fold(*events)), NOW, TH).badge is Badge.HEALTHY


def test_failed_outranks_stuck_outranks_struggling_and_all_evidence_is_kept():
    events = []
    for i in range(5):
        events += [call(i), result(i, ok=False, error="x")]
    obs = running(activity=fold(*events), pid=3, proc=ProcFacts(pid=3, alive=False))
    h = assess(obs, NOW, TH)
    assert h.badge is Badge.FAILED
    assert rules(h) == ["process.exited", "stuck.loop", "struggling.streak"]


def test_thresholds_come_from_config():
    th = Thresholds(stuck_after=30)
    assert assess(running(updated_at=NOW - 40), NOW, th).badge is Badge.STUCK


# -- transcripts (no status.json) --------------------------------------------------------------


def turn(kind: EventKind, text: str | None = None) -> Event:
    return Event(kind, ts=NOW - 60, text=text)


def test_transcript_turn_ended_is_completed_and_says_waiting_when_process_alive():
    act = fold(turn(EventKind.TURN_START), turn(EventKind.TURN_END))
    h = assess(Observation(source="claude", activity=act, agent_alive=True), NOW, TH)
    assert h.badge is Badge.COMPLETED and h.summary == "turn ended, waiting for input"
    h = assess(Observation(source="claude", activity=act, agent_alive=False), NOW, TH)
    assert h.badge is Badge.COMPLETED and "nothing of it still runs" in h.summary


def test_transcript_interrupted_waits_for_the_person_and_api_error_fails():
    act = fold(turn(EventKind.TURN_START), turn(EventKind.TURN_ABORTED, "[Request interrupted by user]"))
    h = assess(Observation(source="claude", activity=act), NOW, TH)
    assert h.badge is Badge.WAITING and rules(h) == ["waiting.interrupted"]
    # The agent process is gone: the person ended the session; nothing waits and nothing failed.
    h = assess(Observation(source="claude", activity=act, agent_alive=False), NOW, TH)
    assert h.badge is Badge.COMPLETED and rules(h) == ["turn.aborted"]
    act = fold(turn(EventKind.TURN_START), turn(EventKind.API_ERROR, "overloaded"))
    h = assess(Observation(source="codex", activity=act), NOW, TH)
    assert h.badge is Badge.FAILED and "overloaded" in h.summary


def test_transcript_mid_turn_and_growing_is_healthy():
    act = fold(turn(EventKind.TURN_START), call(1))
    h = assess(Observation(source="claude", activity=act, last_append=NOW - 3), NOW, TH)
    assert h.badge is Badge.HEALTHY


def test_transcript_pending_call_and_nothing_running_is_evidence_of_stuck():
    act = fold(call(1, ts=NOW - 7200))
    obs = Observation(source="claude", activity=act, last_append=NOW - 7200, agent_alive=False)
    h = assess(obs, NOW, TH)
    assert h.badge is Badge.STUCK
    assert "never got a result and no agent process runs" in h.summary


def test_transcript_with_background_command_running_is_not_completed():
    act = fold(
        turn(EventKind.TURN_START),
        Event(EventKind.BG_START, call_id="b1"),
        turn(EventKind.TURN_END),
    )
    h = assess(Observation(source="claude", activity=act, last_append=NOW - 5), NOW, TH)
    assert h.badge is Badge.HEALTHY


def test_transcript_with_nothing_known_is_unknown():
    assert assess(Observation(source="claude"), NOW, TH).badge is Badge.UNKNOWN


# -- roll-up -----------------------------------------------------------------------------------


def test_parent_rolls_up_the_worst_child_and_says_which():
    own = Health(Badge.HEALTHY, (Reason("active", "ok"),))
    kids = [
        ("a", Health(Badge.STRUGGLING, (Reason("struggling.streak", "3 failed"),))),
        ("b", Health(Badge.FAILED, (Reason("process.exited", "process 1 exited"),))),
    ]
    h = roll_up(own, kids)
    assert h.badge is Badge.FAILED
    assert h.reasons[0].rule == "rollup"
    assert h.summary == "child b is failed: process 1 exited"
    assert roll_up(own, [("c", Health(Badge.COMPLETED))]) is own


def test_a_guessed_turn_end_counts_only_once_it_has_settled():
    act = fold(turn(EventKind.TURN_START), Event(EventKind.TURN_END, ts=NOW - 3, text="text_only"))
    obs = Observation(source="claude", activity=act, last_append=NOW - 3)
    assert assess(obs, NOW, TH).badge is Badge.HEALTHY
    assert assess(obs, NOW + 30, TH).badge is Badge.COMPLETED


def test_polling_the_same_background_output_is_not_a_loop():
    events = [call(i, tool="TaskOutput", inp='{"task_id":"b1"}') for i in range(8)]
    assert assess(running(activity=fold(*events)), NOW, TH).badge is Badge.HEALTHY


def test_a_lease_expiring_between_process_looks_is_not_stuck_while_the_tree_is_busy():
    obs = running(
        updated_at=NOW - 120, ready_until=NOW - 1, last_cpu=NOW - 2, pid=9,
        proc=ProcFacts(pid=9, alive=True, cpu_active=True),
    )
    assert assess(obs, NOW, TH).badge is Badge.HEALTHY


def test_next_check_is_the_earliest_time_the_clock_could_change_the_verdict():
    from bgmon.health import next_check

    th = Thresholds(stuck_after=600)
    assert next_check(running(updated_at=NOW - 595), NOW, th) == NOW + 5  # stuck threshold
    assert next_check(running(updated_at=NOW - 10, ready_until=NOW + 3), NOW, th) == NOW + 3
    assert next_check(running(updated_at=NOW - 10), NOW, th) == NOW + 15  # text refresh
    obs = running(updated_at=NOW - 595)
    # and at that moment the verdict does change
    assert assess(obs, next_check(obs, NOW, th) + 0.001, th).badge is Badge.STUCK
