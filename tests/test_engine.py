"""The Monitor over real files: torn status, nesting by parent, roll-up, time-based rules."""

from __future__ import annotations

import time

from bgmon.engine import Monitor, parse_progress
from bgmon.model import Badge, Progress
from tests.conftest import Clock


def snaps(monitor):
    return {s.name: s for s in monitor.snapshots()}


def test_torn_status_keeps_the_last_good_value_and_is_marked_stale(ws):
    d = ws.task("t", name="t", progress="1/4")
    m = Monitor(ws.config())
    m.sweep()
    m.evaluate()
    assert snaps(m)["t"].progress == Progress(1, 4)
    (d / "status.json").write_text('{"status": "failed", "name": "t", "progr')
    m.sweep()
    m.evaluate()
    s = snaps(m)["t"]
    assert s.health.badge is Badge.HEALTHY and s.status == "running"
    assert any("keeping the last good value" in w for w in s.warnings)
    (d / "status.json").write_text('{"status": "completed", "name": "t"}')
    m.sweep()
    m.evaluate()
    s = snaps(m)["t"]
    assert s.health.badge is Badge.COMPLETED and not s.warnings


def test_children_nest_by_parent_id_and_parents_roll_up(ws):
    ws.task("lead", id="bg_lead", name="lead")
    ws.task("helper", id="bg_help", name="helper", parent="bg_lead")
    ws.fail("helper", 3)
    m = Monitor(ws.config())
    m.sweep()
    m.evaluate()
    s = snaps(m)
    assert s["helper"].parent == s["lead"].key
    assert s["lead"].health.badge is Badge.STRUGGLING
    assert s["lead"].health.reasons[0].rule == "rollup"
    assert s["lead"].own_health.badge is Badge.HEALTHY


def test_stuck_is_found_by_the_clock_alone_without_new_reads(ws):
    clock = Clock(time.time())
    ws.task("quiet", name="quiet", updatedAt=clock.t)
    m = Monitor(ws.config(), clock=clock)
    m.sweep()
    m.look_procs()
    assert m.evaluate()[0].kind == "added"
    clock.t += 601  # time passes; no file changes
    m.tasks[next(iter(m.tasks))].status.mtime = clock.t - 601  # the status write is old too
    changes = m.evaluate()
    assert [(c.kind, c.snapshot.health.badge) for c in changes] == [("health", Badge.STUCK)]
    assert changes[0].previous.badge is Badge.HEALTHY


def test_appends_and_log_rotation_are_followed(ws):
    ws.task("w", name="w")
    log = ws.log("w", {"type": "progress", "done": 1, "total": 3})
    m = Monitor(ws.config())
    m.sweep()
    m.evaluate()
    assert snaps(m)["w"].progress == Progress(1, 3)
    log.rename(log.with_suffix(".old"))
    ws.log("w", {"type": "progress", "done": 2, "total": 3})
    assert m.on_paths([str(log)]) is False
    m.evaluate()
    assert snaps(m)["w"].progress == Progress(2, 3)


def test_removed_task_is_reported(ws):
    d = ws.task("gone")
    m = Monitor(ws.config())
    m.sweep()
    m.evaluate()
    (d / "status.json").unlink()
    m.sweep()
    assert [c.kind for c in m.evaluate()] == ["removed"]


def test_find_by_key_id_or_name(ws):
    ws.task("dir1", id="bg_1", name="first")
    m = Monitor(ws.config())
    m.sweep()
    m.evaluate()
    key = m.snapshots()[0].key
    assert m.find(key).id == m.find("bg_1").id == m.find("first").id == "bg_1"
    assert m.find("nope") is None


def test_parse_progress_forms():
    assert parse_progress({"done": 2, "total": 5}) == Progress(2, 5)
    assert parse_progress("2/5") == Progress(2, 5)
    assert parse_progress("x/5") is None and parse_progress(None) is None
    assert parse_progress({"done": True, "total": 5}) is None


def test_a_child_shows_its_parent_once_the_parent_appears(ws):
    """The child's own data did not change, but its place did: its snapshot must say so."""
    ws.task("helper", id="bg_help", name="helper", parent="bg_lead")
    m = Monitor(ws.config())
    m.sweep()
    m.evaluate()
    assert snaps(m)["helper"].parent is None
    ws.task("lead", id="bg_lead", name="lead")
    m.sweep()
    m.evaluate()
    s = snaps(m)
    assert s["helper"].parent == s["lead"].key
