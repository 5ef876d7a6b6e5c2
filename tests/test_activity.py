"""Activity's bounded windows: what it keeps is exactly the newest of each kind, however much
comes in (memory per task is bounded; see the containers chosen in bgmon/activity.py)."""

from __future__ import annotations

from bgmon.activity import _PENDING_CAP, ERROR_WINDOW, RECENT_EVENTS, RESULT_WINDOW, Activity
from bgmon.model import Event, EventKind


def call(n: int) -> Event:
    return Event(EventKind.TOOL_CALL, ts=float(n), tool="Bash", call_id=f"c{n}", input=f'{{"n":{n}}}')


def result(n: int, ok: bool) -> Event:
    return Event(EventKind.TOOL_RESULT, ts=float(n), call_id=f"c{n}", ok=ok)


def test_recent_keeps_the_newest_window_in_order():
    act = Activity()
    act.extend(Event(EventKind.MESSAGE, ts=float(n), text=str(n)) for n in range(3 * RECENT_EVENTS))
    texts = [ev.text for ev in act.recent]
    assert texts == [str(n) for n in range(2 * RECENT_EVENTS, 3 * RECENT_EVENTS)]


def test_results_window_is_the_newest_oldest_first():
    act = Activity()
    oks = [n % 3 != 0 for n in range(RESULT_WINDOW + 7)]
    for n, ok in enumerate(oks):
        act.extend((call(n), result(n, ok)))
    summary = act.summary()
    assert summary.results == tuple(oks[-RESULT_WINDOW:])
    assert summary.fail_streak == (0 if oks[-1] else 1)


def test_error_times_are_bounded_and_cleared_by_a_success():
    act = Activity()
    act.extend(Event(EventKind.ERROR, ts=float(n), text="boom") for n in range(ERROR_WINDOW + 5))
    summary = act.summary()
    assert summary.error_times == tuple(float(n) for n in range(5, ERROR_WINDOW + 5))
    assert summary.error_streak == ERROR_WINDOW + 5
    act.extend((call(999), result(999, True)))
    assert act.summary().error_times == () and act.summary().error_streak == 0


def test_pending_calls_drop_the_oldest_past_the_cap_and_keep_order():
    act = Activity()
    act.extend(call(n) for n in range(_PENDING_CAP + 3))
    pending = act.summary().pending
    assert [ev.call_id for ev in pending] == [f"c{n}" for n in range(3, _PENDING_CAP + 3)]
    act.apply(result(3, True))  # the oldest left is answered: it is no longer pending
    assert act.summary().pending[0].call_id == "c4"
    assert act.summary().results == (True,)


def test_a_second_form_of_a_result_counts_once_until_the_cap_forgets_it():
    act = Activity()
    act.extend((call(0), result(0, False), result(0, False)))
    assert act.summary().results == (False,) and act.fail_streak == 1
    # Past the cap the oldest verdict is forgotten: a late duplicate then counts again.
    for n in range(1, _PENDING_CAP + 1):
        act.extend((call(n), result(n, True)))
    act.apply(result(0, False))
    assert act.fail_streak == 1 and act.summary().results[-1] is False
    act.apply(result(_PENDING_CAP, True))  # still remembered: ignored
    assert act.fail_streak == 1
