"""The notification policy on a hand-moved clock: hysteresis, once per transition, coalescing,
the rate limit, acknowledgement."""

from __future__ import annotations

from bgmon.notify.policy import Alert, Policy, Rules
from tests.conftest import Clock

RULES = Rules(on=frozenset({"failed", "stuck", "struggling", "waiting"}), hold=30, coalesce=5,
              min_interval=60)


def seen(key: str, badge: str, reason: str = "why") -> Alert:
    return Alert(key=key, id=key, name=key, group="g", path=f"/w/{key}", old=None, new=badge,
                 reason=reason, rule="r", since=0.0)


def drive(policy: Policy, clock: Clock, until: float, step: float = 1.0):
    """Poll once a 'second' until `until`, as the engine's tick does; every batch sent."""
    out = []
    while clock.t < until:
        clock.t += step
        batch = policy.poll(clock.t)
        if batch is not None:
            out.append(batch)
    return out


def test_a_badge_must_hold_before_it_is_announced_once():
    clock, policy = Clock(1000.0), Policy(RULES)
    policy.baseline("a", "healthy")
    policy.observe(seen("a", "failed", "exit 2"), clock.t)
    assert drive(policy, clock, 1029) == []  # not held long enough yet
    batches = drive(policy, clock, 1040)
    assert len(batches) == 1
    (alert,) = batches[0].alerts
    assert (alert.old, alert.new, alert.reason, alert.since) == ("healthy", "failed", "exit 2", 1000.0)
    # Still failed, later updates of the same badge: nothing more.
    policy.observe(seen("a", "failed", "exit 3"), clock.t)
    assert drive(policy, clock, 1200) == []


def test_a_flapping_task_says_nothing():
    clock, policy = Clock(0.0), Policy(RULES)
    policy.baseline("a", "healthy")
    for _ in range(10):  # struggling for 10 s, healthy for 10 s, over and over
        policy.observe(seen("a", "struggling"), clock.t)
        assert drive(policy, clock, clock.t + 10) == []
        policy.observe(seen("a", "healthy"), clock.t)
        assert drive(policy, clock, clock.t + 10) == []


def test_hold_restarts_when_the_badge_moves_on_but_counts_from_the_first_sight_of_it():
    clock, policy = Clock(0.0), Policy(RULES)
    policy.baseline("a", "healthy")
    policy.observe(seen("a", "struggling"), 0)
    policy.observe(seen("a", "struggling", "more"), 20)  # an update, same badge: hold from 0
    clock.t = 20
    assert [b.alerts[0].reason for b in drive(policy, clock, 40)] == ["more"]
    policy.observe(seen("a", "stuck"), clock.t)  # a new badge: a new hold
    start = clock.t
    assert drive(policy, clock, start + 29) == []
    (batch,) = drive(policy, clock, start + 100)
    assert (batch.alerts[0].old, batch.alerts[0].new) == ("struggling", "stuck")


def test_back_to_healthy_is_quiet_by_default_but_configurable():
    clock, policy = Clock(0.0), Policy(RULES)
    policy.baseline("a", "failed")
    policy.observe(seen("a", "healthy"), 0)
    assert drive(policy, clock, 100) == []
    loud = Policy(Rules(on=RULES.on | {"healthy"}, hold=30, coalesce=5, min_interval=60))
    clock.t = 0
    loud.baseline("a", "failed")
    loud.observe(seen("a", "healthy"), 0)
    (batch,) = drive(loud, clock, 100)
    assert (batch.alerts[0].old, batch.alerts[0].new) == ("failed", "healthy")


def test_many_changes_at_once_are_one_batch_worst_first():
    clock, policy = Clock(0.0), Policy(RULES)
    for key in "abcdef":
        policy.baseline(key, "healthy")
    policy.observe(seen("a", "struggling"), 0)
    policy.observe(seen("b", "failed"), 1)
    policy.observe(seen("c", "stuck"), 2)
    policy.observe(seen("d", "waiting"), 3)
    batches = drive(policy, clock, 100)
    assert len(batches) == 1
    assert [a.key for a in batches[0].alerts][:3] == ["b", "c", "a"]
    assert {a.key for a in batches[0].alerts} == {"a", "b", "c", "d"}


def test_rate_limit_delays_but_loses_nothing():
    clock, policy = Clock(0.0), Policy(RULES)
    for key in "abc":
        policy.baseline(key, "healthy")
    policy.observe(seen("a", "failed"), 0)
    first = drive(policy, clock, 40)
    assert [[a.key for a in b.alerts] for b in first] == [["a"]]
    sent_at = first[0].at
    policy.observe(seen("b", "failed"), clock.t)  # confirmed at ~70, but the limit is 60 s
    policy.observe(seen("c", "stuck"), clock.t + 10)
    later = drive(policy, clock, 300)
    assert len(later) == 1
    assert {a.key for a in later[0].alerts} == {"b", "c"}
    assert later[0].at >= sent_at + 60


def test_news_that_went_stale_before_sending_is_dropped():
    clock, policy = Clock(0.0), Policy(RULES)
    policy.baseline("a", "healthy")
    policy.baseline("b", "healthy")
    policy.observe(seen("a", "failed"), 0)
    assert len(drive(policy, clock, 40)) == 1  # sent at ~30: the rate limit holds until ~90
    policy.observe(seen("b", "failed"), 41)
    clock.t = 75
    assert policy.poll(clock.t) is None  # confirmed at 71, waiting for the limit
    policy.observe(seen("b", "healthy"), 76)  # recovered before it went out
    assert drive(policy, clock, 400) == []


def test_acknowledged_faults_are_not_announced_and_new_tasks_are():
    clock, policy = Clock(0.0), Policy(RULES)
    policy.baseline("a", "healthy")
    policy.observe(seen("a", "failed"), 0, acknowledged=True)
    assert drive(policy, clock, 100) == []
    # A task that appears after the start with a fault is a change: from nothing to failed.
    policy.observe(seen("new", "failed"), clock.t)
    (batch,) = drive(policy, clock, 300)
    assert (batch.alerts[0].key, batch.alerts[0].old) == ("new", None)


def test_forgotten_tasks_say_nothing():
    clock, policy = Clock(0.0), Policy(RULES)
    policy.baseline("a", "healthy")
    policy.observe(seen("a", "failed"), 0)
    policy.forget("a")
    assert drive(policy, clock, 100) == []
