"""The journal: torn lines, kill -9 mid-write, concurrent writers, state, report."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import orjson
from test_recovery_support import wait_for

from bgmon.recovery.journal import DEFAULT_PATH, Journal
from bgmon.recovery.proposal import Mark, Proposal, now_iso


def make_proposal(pid="p_00000001", task="wt:a", *actions) -> Proposal:
    return Proposal(id=pid, task=task, task_id=task.split(":")[-1], source="rules", model=None,
                    degraded_reason="no API key", diagnosis="d", confidence=0.5,
                    actions=tuple(actions) or (Mark("x"),), patterns=("stalled",))


def test_default_location(tmp_path):
    j = Journal.for_root(tmp_path)
    assert j.path == tmp_path / DEFAULT_PATH
    assert str(j.path).endswith(".agents/logs/background_monitoring.jsonl")
    j.append({"kind": "mark", "task": "t", "note": "n"})
    assert oct(j.path.stat().st_mode & 0o777) == "0o600"
    assert Journal.for_root(tmp_path, "/abs/j.jsonl").path.as_posix() == "/abs/j.jsonl"


def test_torn_last_line_is_skipped_and_not_glued_to_the_next(tmp_path):
    j = Journal(tmp_path / "j.jsonl")
    j.append({"kind": "mark", "task": "a", "note": "one"})
    with open(j.path, "ab") as f:
        f.write(b'{"kind": "mark", "task": "a", "no')  # a writer died here
    read = j.read()
    assert read.torn_tail and len(read.records) == 1 and read.bad_lines == 0
    j.append({"kind": "mark", "task": "a", "note": "two"})
    read = j.read()
    assert [r["note"] for r in read.records] == ["one", "two"]
    assert read.bad_lines == 1 and not read.torn_tail  # the torn line became one bad line


def test_bad_lines_are_counted(tmp_path):
    j = Journal(tmp_path / "j.jsonl")
    j.path.write_bytes(b'not json\n[1,2]\n\n{"kind":"mark","task":"a","note":"ok"}\n')
    read = j.read()
    assert len(read.records) == 1 and read.bad_lines == 2
    assert j.report()["bad_lines"] == 2


WRITER = """
import sys
from bgmon.recovery.journal import Journal
j = Journal(sys.argv[1])
i = 0
while True:
    j.append({"kind": "health", "task": "t%d" % (i % 7), "task_id": "x", "from": "healthy",
              "to": "stuck", "reasons": [{"rule": "stuck.silent", "detail": "x" * (i % 3000)}]},
             durable=(i % 5 == 0))
    i += 1
"""


def test_kill_9_of_a_writer_leaves_a_readable_journal(tmp_path):
    path = tmp_path / "logs" / "j.jsonl"
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(path)]) for _ in range(2)]
    try:
        wait_for(lambda: path.exists() and path.stat().st_size > 400_000, timeout=30,
                 what="the writers to write")
    finally:
        for w in writers:
            os.kill(w.pid, signal.SIGKILL)
            w.wait(5)
    j = Journal(path)
    history = j.history()
    assert len(history) > 100
    read = j.read()
    # Concurrent O_APPEND writes never interleave inside a line; at most each killed writer's
    # last record can be cut short (a fatal signal may stop a write midway).
    assert read.bad_lines + read.torn_tail <= len(writers)
    assert all(r["kind"] == "health" and r["to"] == "stuck" for r in history)
    j.append({"kind": "mark", "task": "t0", "note": "after the crash"})
    assert j.history("t0")[-1]["note"] == "after the crash"


def test_proposal_lookup_and_states(tmp_path):
    j = Journal(tmp_path / "j.jsonl")
    p = make_proposal()
    j.record_proposal(p)
    assert j.proposal(p.id).to_json() == p.to_json()
    assert j.proposal("p_missing") is None
    assert j.state(p.id) == "pending" and j.pending_for("wt:a").id == p.id
    j.record_decision(p, "approved", by="cli")
    assert j.state(p.id) == "approved" and j.pending_for("wt:a") is None
    j.append({"kind": "result", "task": "wt:a", "proposal": p.id, "ok": False, "results": []})
    assert j.state(p.id) == "failed"
    q = make_proposal("p_00000002")
    j.record_proposal(q)
    r = make_proposal("p_00000003")
    j.record_proposal(r)
    assert j.state(q.id) == "superseded" and j.state(r.id) == "pending"
    assert j.state("p_nope") is None


def test_report(tmp_path):
    j = Journal(tmp_path / "j.jsonl")
    t0 = time.time() - 3600

    def at(offset: float, rec: dict) -> None:
        line = {"v": 1, "ts": now_iso(t0 + offset), **rec}
        with open(j.path, "ab") as f:
            f.write(orjson.dumps(line) + b"\n")

    at(0, {"kind": "health", "task": "a", "from": "healthy", "to": "stuck", "patterns": ["stalled"]})
    at(5, {"kind": "health", "task": "b", "from": None, "to": "failed", "patterns": ["disk_full"]})
    at(6, {"kind": "health", "task": "c", "from": "healthy", "to": "failed", "patterns": []})
    at(10, {"kind": "proposal", "task": "a", "proposal": {"id": "p1", "source": "rules"}})
    at(11, {"kind": "proposal", "task": "b", "proposal": {"id": "p2", "source": "claude"}})
    at(20, {"kind": "decision", "task": "a", "proposal": "p1", "decision": "approved"})
    at(21, {"kind": "decision", "task": "b", "proposal": "p2", "decision": "rejected"})
    at(30, {"kind": "result", "task": "a", "proposal": "p1", "ok": False, "results": [
        {"kind": "kill", "ok": True}, {"kind": "run", "ok": False},
        {"kind": "mark", "ok": False, "skipped": True}]})
    at(60, {"kind": "health", "task": "a", "from": "stuck", "to": "healthy"})
    at(245, {"kind": "health", "task": "b", "from": "failed", "to": "completed"})
    rep = j.report()
    assert rep["failures_by_pattern"] == {"stalled": 1, "disk_full": 1, "unclassified": 1}
    assert rep["proposals"] == {"total": 2, "rules": 1, "claude": 1}
    assert rep["approved"] == 1 and rep["rejected"] == 1
    assert rep["actions"]["total"] == 2 and rep["action_success_rate"] == 0.5
    assert rep["recoveries"] == 2 and rep["median_recovery_seconds"] == 150
    assert rep["still_failing"] == ["c"]


def test_records_of_the_wrong_shape_are_skipped_and_counted(tmp_path):
    j = Journal(tmp_path / "j.jsonl")
    good = {"kind": "mark", "task": "a", "note": "ok"}
    bad = [{"kind": "proposal", "proposal": 5}, {"kind": "health", "task": "t", "to": "failed",
           "patterns": 5}, {"kind": "mark", "task": ["a"], "note": "x"},
           {"kind": "result", "proposal": "p", "results": 5}]
    j.path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in [*bad, good, 7]))
    read = j.read()
    assert read.records == [good] and read.bad_records == 4 and read.bad_lines == 1
    assert read.skipped == 5 and j.report()["bad_lines"] == 5
    assert j.marks() == {"a": "ok"} and j.proposal("p") is None and j.restarts("t") == 0
    # A kind this version does not know is kept for whoever does.
    j.append({"kind": "auto", "task": "a", "outcome": "skipped", "reason": "r"})
    assert j.history("a")[-1]["kind"] == "auto"
