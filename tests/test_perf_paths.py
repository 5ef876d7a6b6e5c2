"""The fast paths behind bench/: lazy decoding, cached nesting, cheap ticks, a budgeted sweep."""

from __future__ import annotations

import time

import orjson

from bgmon.engine import Monitor
from bgmon.live import SWEEP_SHARE, LiveEngine
from bgmon.model import Badge
from bgmon.sources.tail import TailReader
from bgmon.sources.watch import DirWatch, Inotify
from tests.conftest import Clock, wait_for


def test_read_iter_settles_the_reader_at_once_and_decodes_as_iterated(tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_bytes(b'{"n": 1}\n\n  \n{"n": 2}\n[3]\n{"n": 3')
    reader = TailReader(str(path))
    lines = reader.read_iter()
    assert reader.offset == path.stat().st_size and not reader.behind  # read before iterating
    assert reader.stats.lines == 0  # … but not decoded yet
    assert [o["n"] for o in lines] == [1, 2]
    assert reader.stats.lines == 3 and reader.stats.not_object == 1  # blank lines are not lines
    with open(path, "ab") as fh:
        fh.write(b'4}\n{"n": 5}\n')
    assert [o["n"] for o in reader.read()] == [34, 5]  # the pending part joined its line


def test_over_long_lines_are_dropped_across_chunks(tmp_path):
    path = tmp_path / "log.jsonl"
    big = b'{"x": "' + b"a" * 300 + b'"}'
    path.write_bytes(b'{"n": 1}\n' + big + b'\n{"n": 2}\n' + big[:100])
    reader = TailReader(str(path), line_cap=200, read_chunk=64)

    def read_all() -> list[dict]:
        out = reader.read()
        while reader.behind:
            out += reader.read()
        return out

    got = read_all()
    with open(path, "ab") as fh:
        fh.write(big[100:] + b'\n{"n": 3}\n')
    got += read_all()
    assert [o["n"] for o in got] == [1, 2, 3]
    assert reader.stats.too_long == 2


def test_nesting_follows_a_parent_field_that_changes_later(ws):
    ws.task("lead", id="bg_lead", name="lead")
    ws.task("helper", id="bg_help", name="helper")
    m = Monitor(ws.config())
    m.sweep()
    m.evaluate()
    m.evaluate()  # a clean tick reuses the cached nesting
    assert {s.name: s.parent for s in m.snapshots()}["helper"] is None
    ws.task("helper", id="bg_help", name="helper", parent="bg_lead")
    ws.fail("helper", 3)
    m.sweep()
    m.evaluate()
    s = {s.name: s for s in m.snapshots()}
    assert s["helper"].parent == s["lead"].key
    assert s["lead"].health.badge is Badge.STRUGGLING and s["lead"].health.reasons[0].rule == "rollup"


def test_text_refresh_copies_a_snapshot_only_when_its_text_changed(ws):
    clock = Clock(time.time())
    ws.task("t", name="t", updatedAt=clock.t, timestamp=clock.t)
    m = Monitor(ws.config(), clock=clock)
    m.sweep()
    m.evaluate()
    first = m.snapshots()[0]
    clock.t += 16  # past REFRESH_TEXT: "16s ago" now reads differently
    assert m.evaluate() == []
    second = m.snapshots()[0]
    assert second is not first and second.health != first.health
    m.tasks[first.key].built_at -= 20  # due again, but nothing moved: same text, no copy
    assert m.evaluate() == [] and m.snapshots()[0] is second


def test_a_tick_reports_no_reads_and_a_costly_sweep_is_spaced_out(ws):
    ws.task("t", name="t")
    monitor = Monitor(ws.config())
    clock = Clock(100.0)
    engine = LiveEngine(monitor, lambda changes: None, clock=clock)
    assert engine._step(None, True) is True  # the first pass sweeps
    clock.t += 1
    assert engine._step(set(), False) is False  # a tick reads nothing: no re-watch check
    assert engine._next_sweep == 100.0 + monitor.config.sweep_interval  # not watching yet

    class Slow(Monitor):
        def sweep(self) -> None:
            end = time.thread_time() + 0.05
            while time.thread_time() < end:
                pass
            super().sweep()

    slow = Slow(ws.config())
    engine = LiveEngine(slow, lambda changes: None, clock=clock)
    engine.watch = DirWatch(Inotify())  # watched: the sweep is a safety net and may be rarer
    engine._step(None, True)
    assert engine._next_sweep - clock.t >= 0.05 / SWEEP_SHARE * 0.9
    engine.watch.close()
    engine.watch = None  # no watch at all: the sweep keeps its pace
    clock.t = engine._next_sweep
    engine._step(None, False)
    assert engine._next_sweep == clock.t + slow.config.sweep_interval


def test_status_lines_stay_valid_json(tmp_path):
    # Decoding takes the fast path (orjson first); a CRLF line is still an object.
    path = tmp_path / "log.jsonl"
    path.write_bytes(orjson.dumps({"a": 1}) + b"\r\n")
    assert TailReader(str(path)).read() == [{"a": 1}]


def test_an_append_to_one_task_re_rolls_only_that_task_and_its_ancestors(ws, monkeypatch):
    """Issue 11: any task's new data rebuilt the whole family and re-compared every task, so
    append→badge latency grew with the number of tasks (p95 5.1 s at 5,000). The family is
    rebuilt only when a task's place in it changes."""
    import bgmon.engine.evaluate as evaluate

    for i in range(30):
        ws.task(f"t{i:02d}", name=f"t{i:02d}", id=f"t{i:02d}", **({"parent": "t00"} if i in (1, 2) else {}))
    monitor = Monitor(ws.config())
    monitor.sweep()
    monitor.evaluate()
    built: list[int] = []
    updated: list[str] = []
    real_families, real_update = evaluate.families, evaluate.Evaluator._update
    monkeypatch.setattr(evaluate, "families", lambda members, *more: built.append(len(members)) or real_families(members, *more))

    def update(record, *args):
        updated.append(record.spec.name)
        return real_update(record, *args)

    monkeypatch.setattr(evaluate.Evaluator, "_update", staticmethod(update))
    ws.fail("t01", 3)
    monitor.sweep()
    changes = monitor.evaluate()
    assert built == [], "an append rebuilt the family"
    assert sorted(updated) == ["t00", "t01"]  # the task and its parent, not all 30
    assert {(c.kind, c.snapshot.name) for c in changes} >= {("health", "t01")}
    ws.task("t05", name="t05", id="t05", parent="t00")  # a task's place changes: rebuilt
    monitor.sweep()
    monitor.evaluate()
    assert built == [30]


def _cycle(i: int, ok: bool = True) -> list[dict]:
    return [{"type": "tool_call", "tool": "Bash", "call_id": f"c{i}", "input": {"i": i}},
            {"type": "tool_result", "call_id": f"c{i}", "ok": ok}]


def test_start_up_folds_a_narrow_window_when_it_holds_what_health_needs(ws):
    events = [{"type": "progress", "done": 1, "total": 4}]
    for i in range(400):
        events += _cycle(i)
        if i % 20 == 0:
            events.append({"type": "progress", "done": 2, "total": 4})
    ws.task("busy", name="busy")
    ws.log("busy", *events)
    monitor = Monitor(ws.config())
    monitor.sweep()
    monitor.evaluate()
    record = next(iter(monitor.tasks.values()))
    assert record.activity.events_seen <= 100  # not the 200-line back-scan
    snap = monitor.snapshots()[0]
    assert snap.health.badge.value == "healthy" and str(snap.progress) == "2/4"


def test_start_up_widens_when_the_last_lines_cannot_judge(ws):
    """Three failures, then a long run of output lines with no result: the narrow window holds
    no result, so the back-scan widens and the streak is still seen (as before)."""
    events = [{"type": "progress", "done": 1, "total": 4}]
    for i in range(3):
        events += _cycle(i, ok=False)
    events += [{"type": "message", "stream": "stdout", "text": f"line {i}"} for i in range(100)]
    ws.task("flaky", name="flaky")
    ws.log("flaky", *events)
    monitor = Monitor(ws.config())
    monitor.sweep()
    monitor.evaluate()
    snap = monitor.snapshots()[0]
    assert snap.health.badge.value == "struggling" and str(snap.progress) == "1/4"


def test_the_safety_sweep_is_spread_over_passes_and_an_append_is_judged_meanwhile(ws):
    """Issue 11: at 10,000 tasks the safety sweep held a pass for 0.1–1 s, and an append that
    came then waited for it. With a watch, the sweep due by the clock discovers in a thread and
    reads a slice of tasks each pass: a pass never waits for all of them, and a task's new
    lines are judged in the pass after they come, sweep or not."""

    class SlowReads(Monitor):
        reads = 0

        def read(self, key: str) -> None:
            SlowReads.reads += 1
            time.sleep(0.005)  # 60 tasks: 0.3 s in all, far more than one slice
            super().read(key)

    for i in range(60):
        ws.task(f"t{i:02d}", name=f"t{i:02d}")
    monitor = SlowReads(ws.config())
    clock = Clock(100.0)
    changes: list = []
    engine = LiveEngine(monitor, changes.extend, clock=clock)
    engine.watch = DirWatch(Inotify())
    try:
        engine._step(None, True)  # the first pass sweeps in full, at once
        clock.t = engine._next_sweep  # the safety sweep is due
        SlowReads.reads = 0
        engine._step(set(), False)
        assert engine._sweeping is not None  # started: discovery in its thread
        assert wait_for(lambda: not engine._sweeping._thread.is_alive(), 30)
        if not engine._sweeping.left:  # not adopted in the pass that started it
            engine._step(set(), False)
        # Adopting what was found is a pass of its own (10,000 specs), then slices are read.
        assert SlowReads.reads == 0 and engine._sweeping.left and engine._more()
        engine._step(set(), False)
        assert 0 < SlowReads.reads < 60 and engine._more(), "one pass read every task"
        ws.fail("t07", 3)
        path = str(ws.root / ".worktrees" / "t07" / "logs" / "events.jsonl")
        changes.clear()
        engine._step({path}, False)
        assert any(c.snapshot is not None and c.snapshot.name == "t07"
                   and c.snapshot.health.badge is Badge.STRUGGLING
                   for c in changes), "an append waited for the sweep"
        for _ in range(200):
            if engine._sweeping is None:
                break
            engine._step(set(), False)
        assert engine._sweeping is None and SlowReads.reads >= 60
        assert engine._next_sweep > clock.t  # done: the next one is scheduled
        assert not engine._more()
    finally:
        engine.watch.close()


def test_the_first_load_runs_without_the_collector_and_leaves_it_on(ws, monkeypatch):
    """The first look at every task pauses the garbage collector (its full passes walked every
    task's records for nothing); afterwards it is on again, and what a live view loaded is frozen
    out of its reach. A load that fails half-way must leave it on too."""
    import gc

    from bgmon.engine import collect, first_load

    ws.task("t1")
    seen = []
    sweep = Monitor.sweep

    def watched_sweep(self):
        seen.append(gc.isenabled())
        return sweep(self)

    monkeypatch.setattr(Monitor, "sweep", watched_sweep)
    assert gc.isenabled()
    assert [s.name for s in collect(ws.config(cpu_sample=0)).snapshots()] == ["t1"]
    assert seen == [False] and gc.isenabled()
    frozen = gc.get_freeze_count()
    try:
        with first_load(keep=True):
            kept = [object() for _ in range(10)]
            raise OSError("half-way")
    except OSError:
        pass
    try:
        assert gc.isenabled() and gc.get_freeze_count() >= frozen + len(kept)
    finally:
        gc.unfreeze()


def test_tasks_loaded_together_come_due_for_their_text_refresh_spread_out(ws):
    """Unchanged tasks are re-judged every 15 s so that their reasons stay current. Loaded in
    one pass, 10,000 of them all came due in the same pass (120–240 ms, which an append landing
    then waited for): the first refresh of each is spread over the 15 s, then keeps its place."""
    import time as clock_time

    from bgmon.engine.evaluate import REFRESH_TEXT

    for i in range(300):
        ws.task(f"t{i:03d}")
    clock = Clock(clock_time.time())
    monitor = Monitor(ws.config(), clock=clock)
    monitor.sweep()
    monitor.evaluate()
    start = clock.t

    def due() -> int:
        return sum(1 for r in monitor.tasks.values() if r.recheck_at <= clock.t)

    shares = []
    for second in range(1, int(REFRESH_TEXT) + 1):
        clock.t = start + second
        shares.append(due())
    assert shares[-1] == 300  # every one within the 15 s
    per_second = [b - a for a, b in zip([0, *shares], shares, strict=False)]
    assert max(per_second) < 300 / 15 * 2.5, per_second  # about 20 a second, never all at once
