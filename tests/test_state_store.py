"""The state store (SQLite, WAL) behind the journal: migration of a journal written by the
JSONL-only bgmon, concurrent writer processes, rotation, rebuilds, acks, and a database that is
damaged, locked, or on a full disk."""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from conftest import wait_for

from bgmon.engine import Monitor
from bgmon.live import LiveEngine
from bgmon.model import Badge
from bgmon.recovery.journal import Journal, JournalUnreadable
from bgmon.recovery.service import RecoveryService
from bgmon.recovery.state import state_path

DATA = Path(__file__).parent / "data"


def bgmon(*argv: str, cwd: Path, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bgmon", *argv], cwd=cwd, capture_output=True,
                          text=True, timeout=120, **kw)


@pytest.fixture
def old_journal(tmp_path) -> Path:
    """The journal bgmon wrote before the state store (main 17eba3f): health changes, proposals
    approved, superseded, rejected and pending, marks, an auto record, `bgmon run` restarts, a
    junk line, a malformed record and a torn last line."""
    path = tmp_path / ".agents" / "logs" / "background_monitoring.jsonl"
    path.parent.mkdir(parents=True)
    shutil.copy(DATA / "journal_v1.jsonl", path)
    return path


def test_a_journal_written_before_the_store_is_migrated_on_first_use(old_journal):
    expected = json.loads((DATA / "journal_v1.expected.json").read_text())
    assert not state_path(old_journal).exists()
    j = Journal(old_journal)
    read = j.read()
    assert state_path(old_journal).exists()
    assert (len(read.records), read.bad_lines, read.torn_tail, read.bad_records) == (
        expected["records"], expected["bad_lines"], expected["torn_tail"], expected["bad_records"])
    assert j.history() == expected["all"]
    report = j.report()
    assert report.pop("journal") == str(old_journal)
    expected["report"].pop("journal")
    assert report == expected["report"]
    assert j.marks() == expected["marks"]
    for pid in expected["ids"]:
        assert j.state(pid) == expected["states"][pid], pid
        p = j.proposal(pid)
        assert (p.to_json() if p else None) == expected["proposals"][pid]
    for task, records in expected["history"].items():
        assert j.history(task) == records, task
        assert j.restarts(task, within=10**9) == expected["restarts"][task], task
        p = j.pending_for(task)
        assert (p.id if p else None) == expected["pending_for"][task], task
    # A second process (here: a second Journal) sees the same without reading the file again.
    assert Journal(old_journal).report()["records"] == expected["records"]


def test_report_and_history_from_the_cli_after_migration(old_journal):
    root = old_journal.parents[2]
    expected = json.loads((DATA / "journal_v1.expected.json").read_text())
    done = bgmon("report", "--json", "--root", str(root), cwd=root)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["still_failing"] == expected["report"]["still_failing"]
    done = bgmon("history", "--json", "--root", str(root), cwd=root)
    assert done.returncode == 0, done.stderr
    shown = [{k: v for k, v in r.items() if k != "name"} for r in json.loads(done.stdout)]
    assert shown == expected["all"]


def test_history_of_a_gone_task_by_name_is_an_indexed_query(tmp_path):
    """`bgmon history NAME` for a task no longer running: its records by key or id, by their
    own name, or by the folder its worktree key ends in; asked of the store's indexes (the
    records are never all read), and `alpha` is not `alphabet`."""
    root = tmp_path / "ws"
    journal = root / ".agents" / "logs" / "background_monitoring.jsonl"
    journal.parent.mkdir(parents=True)
    lines = [{"kind": "health", "task": "worktree:/w/.worktrees/alpha", "to": "failed"},
             {"kind": "health", "task": "worktree:/w/.worktrees/alphabet", "to": "failed"},
             {"kind": "mark", "task": "run:/x/bg_7", "task_id": "bg_7", "name": "alpha", "note": "n"},
             {"kind": "mark", "task": "claude:s1", "note": "other"},
             {"kind": "mark", "task": "alpha", "note": "by key"}]
    lines += [{"kind": "mark", "task": f"worktree:/w/.worktrees/t{i}", "note": "x"} for i in range(50)]
    journal.write_bytes(b"".join(orjson.dumps({"ts": 1.7e9 + i, **r}) + b"\n" for i, r in enumerate(lines)))
    done = bgmon("history", "--json", "alpha", "--root", str(root), "--no-claude", "--no-codex",
                 "--no-git", cwd=root)
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    assert [r["task"] for r in shown] == ["worktree:/w/.worktrees/alpha", "run:/x/bg_7", "alpha"]

    from bgmon.recovery.state import select_records
    with Journal(journal).index.reading() as conn:
        for tasks, name in ((["alpha"], "alpha"), (["k1", "k2"], None)):
            query, args = select_records(tasks, name)
            plan = " / ".join(row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + query, args))
            assert "SCAN records" not in plan and "USING INDEX" in plan, plan


def test_action_and_proposal_sums_are_added_to_an_older_database(old_journal):
    """Schema 1 had no sums of actions by kind and outcome (the metrics exporter's): opening
    it counts them once from the result records indexed so far."""
    fresh = Journal(old_journal).index.sums("actions")
    assert sum(fresh.values()) > 0
    db = state_path(old_journal)
    conn = sqlite3.connect(db)
    conn.executescript("DROP INDEX records_name; DELETE FROM counts WHERE name = 'actions';"
                       "UPDATE meta SET value = 1 WHERE key = 'schema';")
    conn.close()
    store = Journal(old_journal).index
    assert store.sums("actions") == fresh
    with store.reading() as c:
        assert c.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()[0] == 2
        assert c.execute("SELECT 1 FROM sqlite_master WHERE name = 'records_name'").fetchone()


WRITER = """
import sys
from bgmon.recovery.journal import Journal
j = Journal(sys.argv[1])
name, n = sys.argv[2], int(sys.argv[3])
for i in range(n):
    j.append({"kind": "mark", "task": f"{name}-{i % 5}", "note": f"{name} {i}"}, durable=False)
    if i % 10 == 0:
        j.marks()  # readers interleave with the other writer's appends
"""


def test_two_writer_processes_lose_nothing(tmp_path):
    path = tmp_path / "logs" / "j.jsonl"
    n = 300
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), name, str(n)])
               for name in ("a", "b")]
    for w in writers:
        assert w.wait(120) == 0
    j = Journal(path)
    notes = [r["note"] for r in j.history()]
    assert len(notes) == 2 * n and len(set(notes)) == 2 * n
    for name in ("a", "b"):  # each writer's records in the order it wrote them
        mine = [int(x.split()[1]) for x in notes if x.startswith(name)]
        assert mine == list(range(n))
    assert len(path.read_bytes().splitlines()) == 2 * n
    assert j.marks() == {f"{w}-{k}": f"{w} {n - 5 + k}" for w in ("a", "b") for k in range(5)}
    with sqlite3.connect(state_path(path)) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_lines_appended_by_someone_else_are_indexed_once(tmp_path):
    j = Journal(tmp_path / "j.jsonl")
    j.append({"kind": "mark", "task": "a", "note": "one"})
    with open(j.path, "ab") as f:
        f.write(orjson.dumps({"kind": "mark", "task": "a", "note": "by hand"}) + b"\n")
    assert j.marks() == {"a": "by hand"}
    assert [r["note"] for r in Journal(j.path).history()] == ["one", "by hand"]
    assert len(j.history()) == 2


def test_rotation_keeps_every_record_and_a_lost_database_is_rebuilt(tmp_path):
    path = tmp_path / "j.jsonl"
    j = Journal(path, rotate_bytes=2000)
    for i in range(60):
        j.append({"kind": "health", "task": f"t{i % 3}", "task_id": "x", "from": "healthy",
                  "to": "stuck" if i % 2 else "healthy", "reasons": [], "patterns": ["stalled"]})
    segments = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("j.jsonl."))
    assert "j.jsonl.1" in segments and path.stat().st_size < 2000 + 400
    assert len(j.history()) == 60
    report = j.report()
    assert report["records"] == 60 and report["recoveries"] > 0
    # The database is moved aside: it is rebuilt from the log and its rotated segments.
    os.rename(state_path(path), tmp_path / "old.db")
    for suffix in ("-wal", "-shm"):
        if os.path.exists(str(state_path(path)) + suffix):
            os.remove(str(state_path(path)) + suffix)
    rebuilt = Journal(path)
    assert [r["ts"] for r in rebuilt.history()] == [r["ts"] for r in j.history()]
    assert {k: v for k, v in rebuilt.report().items()} == report


def test_acks_are_set_replaced_and_cleared(tmp_path):
    j = Journal(tmp_path / "j.jsonl")
    j.record_ack("wt:a", "a", Badge.STUCK.value, "known: waiting on review")
    j.record_ack("wt:b", "b", Badge.FAILED.value)
    j.record_ack("wt:a", "a", Badge.FAILED.value, "now failed, also known")
    acks = j.acks()
    assert set(acks) == {"wt:a", "wt:b"}
    assert (acks["wt:a"].badge, acks["wt:a"].note) == ("failed", "now failed, also known")
    assert acks["wt:a"].at is not None and acks["wt:b"].note is None
    j.record_ack("wt:b", "b", None)
    assert set(j.acks()) == {"wt:a"}
    assert [r["kind"] for r in j.history("wt:a")] == ["ack", "ack"]  # in the audit log too


def test_a_damaged_database_is_one_line_exit_2_and_the_monitor_keeps_running(old_journal):
    root = old_journal.parents[2]
    state_path(old_journal).write_bytes(b"this is not an SQLite database" * 100)
    for argv in (["report"], ["history"], ["approve", "p_1", "--yes"]):
        done = bgmon(*argv, "--root", str(root), cwd=root)
        assert done.returncode == 2, (argv, done.stdout, done.stderr)
        assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
        assert "is damaged" in done.stderr and "move it aside" in done.stderr


def test_the_live_engine_counts_a_damaged_database_and_goes_on(ws):
    ws.task("a", status="failed")
    journal = Journal(ws.config().journal_path())
    journal.path.parent.mkdir(parents=True, exist_ok=True)
    state_path(journal.path).write_bytes(b"this is not an SQLite database" * 100)
    seen: list = []
    engine = LiveEngine(Monitor(ws.config()), seen.extend,
                        recorder=RecoveryService(journal, use_claude=False))
    engine._step(None, True)
    assert engine.journal_errors >= 1
    assert [c.snapshot.health.badge for c in seen] == [Badge.FAILED]


LOCKER = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
time.sleep(60)
"""


def test_a_locked_database_fails_writes_with_a_message_and_still_answers_reads(tmp_path):
    j = Journal(tmp_path / "j.jsonl")
    j.append({"kind": "mark", "task": "a", "note": "before"})
    locker = subprocess.Popen([sys.executable, "-c", LOCKER, str(state_path(j.path))],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert locker.stdout.readline().strip() == "locked"
        j.index.busy_timeout = 0.2
        with pytest.raises(JournalUnreadable, match="locked by another process"):
            j.append({"kind": "mark", "task": "a", "note": "during"})
        assert b"during" not in j.path.read_bytes()  # nothing half-written
        with open(j.path, "ab") as f:  # a line the index cannot take in while it is locked
            f.write(orjson.dumps({"kind": "mark", "task": "b", "note": "by hand"}) + b"\n")
        assert j.marks() == {"a": "before"}  # what is indexed so far, without waiting
    finally:
        locker.kill()
        locker.wait(10)
    assert j.marks() == {"a": "before", "b": "by hand"}


def _full_disk() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (40_000, 40_000))


def test_no_room_for_the_database_is_one_line_exit_2(tmp_path):
    root = tmp_path
    path = root / ".agents" / "logs" / "background_monitoring.jsonl"
    path.parent.mkdir(parents=True)
    line = {"kind": "health", "task": "t", "task_id": "t", "from": "healthy", "to": "stuck",
            "reasons": [{"rule": "stuck.silent", "detail": "x" * 200}], "patterns": []}
    path.write_bytes(b"".join(orjson.dumps({**line, "task": f"t{i}"}) + b"\n" for i in range(300)))
    done = bgmon("report", "--root", str(root), cwd=root, preexec_fn=_full_disk)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert "state database" in done.stderr
    done = bgmon("report", "--json", "--root", str(root), cwd=root)  # room again: it catches up
    assert done.returncode == 0 and json.loads(done.stdout)["records"] == 300


def test_the_live_engines_marks_do_not_wait_for_a_migration(tmp_path):
    path = tmp_path / "j.jsonl"
    filler = {"kind": "health", "task": "t", "task_id": "t", "from": "healthy", "to": "stuck",
              "reasons": [{"rule": "stuck.silent", "detail": "x" * 400}], "patterns": []}
    lines = [orjson.dumps({**filler, "task": f"t{i % 100}"}) for i in range(12_000)]
    lines.append(orjson.dumps({"kind": "mark", "task": "t7", "note": "handled"}))
    path.write_bytes(b"\n".join(lines) + b"\n")
    assert path.stat().st_size > 4 << 20
    j = Journal(path)
    assert j.marks() == {}  # nothing indexed yet: answered at once, indexing goes on
    assert j.index._background is not None
    wait_for(lambda: j.marks() == {"t7": "handled"}, timeout=60, what="the background index")
    assert j.report()["records"] == 12_001


def test_the_live_engines_acks_do_not_wait_for_a_migration(tmp_path):
    """The live engine asks for acks every pass: with a big journal being indexed in the
    background, they are answered at once (none known yet) instead of waiting for the index
    (the first snapshot waited ~10 s for a 500,000-record journal)."""
    path = tmp_path / "j.jsonl"
    filler = {"kind": "health", "task": "t", "task_id": "t", "from": "healthy", "to": "stuck",
              "reasons": [{"rule": "stuck.silent", "detail": "x" * 400}], "patterns": []}
    lines = [orjson.dumps({**filler, "task": f"t{i % 100}"}) for i in range(12_000)]
    lines.append(orjson.dumps({"kind": "ack", "task": "t8", "badge": "stuck", "note": "known"}))
    path.write_bytes(b"\n".join(lines) + b"\n")
    j = Journal(path)
    assert j.acks() == {}  # nothing indexed yet: answered at once, indexing goes on
    assert j.index._background is not None
    wait_for(lambda: "t8" in j.acks(), timeout=60, what="the background index")
    assert j.acks()["t8"].badge == "stuck"
