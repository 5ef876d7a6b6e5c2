"""Approved actions against real processes, validated against live state at execution time."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import psutil
import pytest
from test_recovery_support import PY, SLEEPER, cleanup, gone, running, snap, spawn, wait_for

from bgmon.model import Badge
from bgmon.recovery.actions import Executor, live_effect
from bgmon.recovery.journal import Journal
from bgmon.recovery.proposal import Kill, Mark, Proposal, Restart, Run, Signal, now_iso
from bgmon.recovery.service import RecoveryService
from bgmon.timefmt import parse_time


def proposal(*actions, task="wt:demo", created: str | None = None) -> Proposal:
    return Proposal(
        id="p_" + str(abs(hash((actions, time.time()))))[:8], task=task, task_id="demo",
        source="rules", model=None, degraded_reason="no API key", diagnosis="d", confidence=0.5,
        actions=tuple(actions), created=created or now_iso(),
    )


@pytest.fixture
def tree():
    """A shell with two sleeping children: a real process tree."""
    proc = spawn(["sh", "-c", "sleep 60 & sleep 60 & wait"])
    wait_for(lambda: len(psutil.Process(proc.pid).children()) == 2, what="the children")
    kids = [c.pid for c in psutil.Process(proc.pid).children()]
    yield proc, kids
    cleanup(proc.pid, *kids)
    proc.wait(5)


def test_kill_stops_the_whole_tree(tree):
    proc, kids = tree
    s = snap(pid=proc.pid, children=tuple(kids))
    action = Kill(proc.pid, grace=3, children=2)
    assert live_effect(action).startswith(
        f"send SIGTERM to pid {proc.pid} and its 2 children, SIGKILL after 3s; pid {proc.pid} is sh (")
    result = Executor().execute(action, proposal(action), s)
    assert result.ok, result.error
    assert gone(proc.pid) and all(gone(k) for k in kids)
    assert "2 descendant(s)" in result.detail


def test_kill_escalates_to_sigkill(tmp_path):
    ready = tmp_path / "ready"
    with running([PY, "-c", "import signal, time, pathlib; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
                 f" pathlib.Path({str(ready)!r}).touch(); time.sleep(60)"]) as proc:
        wait_for(ready.exists, what="the handler")
        action = Kill(proc.pid, grace=0.3)
        t0 = time.monotonic()
        result = Executor().execute(action, proposal(action), snap(pid=proc.pid))
        assert result.ok and "SIGKILL needed" in result.detail
        assert time.monotonic() - t0 < 3
        assert gone(proc.pid)


def test_stale_pid_is_refused(tmp_path):
    with running(SLEEPER) as proc:
        action = Kill(proc.pid)
        # The proposal is older than the process now holding this pid: the pid was reused.
        old = proposal(action, created=now_iso(time.time() - 600))
        result = Executor().execute(action, old, snap(pid=proc.pid))
        assert not result.ok and "pid reused" in result.error and not gone(proc.pid)
        # The live task has another pid now (restarted since the proposal).
        result = Executor().execute(action, proposal(action), snap(pid=proc.pid + 1))
        assert not result.ok and "request a new proposal" in result.error
        # The task is gone from the monitor.
        result = Executor().execute(action, proposal(action), None)
        assert not result.ok and "not found" in result.error
        assert not gone(proc.pid)
    result = Executor().execute(action, proposal(action), snap(pid=proc.pid))
    assert not result.ok and "not running" in result.error


def test_signal_is_delivered(tmp_path):
    ready, got = tmp_path / "ready", tmp_path / "got"
    with running([PY, "-c", "import signal, time, pathlib;"
                 f" signal.signal(signal.SIGUSR1, lambda *a: pathlib.Path({str(got)!r}).touch());"
                 f" pathlib.Path({str(ready)!r}).touch(); time.sleep(30)"]) as proc:
        wait_for(ready.exists, what="the handler")
        action = Signal(proc.pid, "SIGUSR1")
        result = Executor().execute(action, proposal(action), snap(pid=proc.pid))
        assert result.ok, result.error
        wait_for(got.exists, what="the signal")
        assert not gone(proc.pid)


def test_run_captures_output_and_exit_code(tmp_path):
    action = Run((PY, "-c", "import os, sys; print(os.getcwd()); sys.exit(3)"), str(tmp_path), 20)
    result = Executor().execute(action, proposal(action), None)
    assert not result.ok and result.exit_code == 3
    assert str(tmp_path) in result.output_tail
    ok = Run((PY, "-c", "print('fine')"), str(tmp_path), 20)
    result = Executor().execute(ok, proposal(ok), None)
    assert result.ok and result.exit_code == 0 and result.output_tail.strip() == "fine"


def test_run_times_out_and_kills_its_group(tmp_path):
    action = Run((PY, "-c", "import subprocess, time; subprocess.Popen(['sleep', '60']);"
                  " print('started', flush=True); time.sleep(60)"), str(tmp_path), 0.5)
    t0 = time.monotonic()
    result = Executor().execute(action, proposal(action), None)
    assert time.monotonic() - t0 < 8
    assert not result.ok and "timed out after 0.5s" in result.error
    assert "started" in result.output_tail


def test_run_refuses_missing_dir_and_program(tmp_path):
    r = Executor().execute(Run(("ls",), str(tmp_path / "nope"), 5), proposal(), None)
    assert not r.ok and "does not exist" in r.error
    r = Executor().execute(Run(("no-such-program-xyz",), str(tmp_path), 5), proposal(), None)
    assert not r.ok and "program not found" in r.error


def _task_dir(tmp_path: Path, pid: int, command: list[str]) -> Path:
    d = tmp_path / "task"
    d.mkdir()
    (d / "status.json").write_text(json.dumps(
        {"id": "demo", "status": "running", "pid": pid, "command": command, "cwd": str(d)}))
    return d


def test_restart_stops_the_tree_and_writes_the_new_pid(tmp_path, tree):
    proc, kids = tree
    d = _task_dir(tmp_path, proc.pid, SLEEPER)
    s = snap(pid=proc.pid, children=tuple(kids), cwd=str(d), command=tuple(SLEEPER),
             path=str(d), files=(str(d / "status.json"),))
    action = Restart(tuple(SLEEPER), str(d), pid=proc.pid, grace=3,
                     status_file=str(d / "status.json"), children=2)
    ex = Executor(output_dir=tmp_path / "bgmon-out")
    result = ex.execute(action, proposal(action), s)
    try:
        assert result.ok, result.error
        assert gone(proc.pid) and all(gone(k) for k in kids)
        new = psutil.Process(result.new_pid)
        assert new.cmdline() == SLEEPER and new.cwd() == str(d)
        assert new.create_time() > 0 and new.pid != proc.pid
        assert json.loads((d / "status.json").read_text())["pid"] == result.new_pid
        assert json.loads((d / "status.json").read_text())["command"] == SLEEPER  # rest kept
        assert sorted(p.name for p in d.iterdir()) == ["status.json"]  # no temp file left
        assert f"wrote pid {result.new_pid}" in result.detail
    finally:
        cleanup(result.new_pid)


def test_restart_of_an_exited_task_only_starts(tmp_path):
    d = _task_dir(tmp_path, 999999, SLEEPER)
    action = Restart(tuple(SLEEPER), str(d), pid=None, status_file=str(d / "status.json"))
    s = snap(pid=999999, alive=False, cwd=str(d), command=tuple(SLEEPER))
    result = Executor().execute(action, proposal(action), s)
    try:
        assert result.ok and result.new_pid
        assert json.loads((d / "status.json").read_text())["pid"] == result.new_pid
    finally:
        cleanup(result.new_pid)


def test_approve_twice_restarts_once(tmp_path, tree):
    proc, kids = tree
    d = _task_dir(tmp_path, proc.pid, SLEEPER)
    s = snap(key="wt:task", id="task", pid=proc.pid, children=tuple(kids), cwd=str(d),
             command=tuple(SLEEPER), path=str(d), files=(str(d / "status.json"),))
    service = RecoveryService(Journal(tmp_path / "logs" / "j.jsonl"), use_claude=False)
    p = service.request_proposal(s)
    assert [a.kind for a in p.actions] == ["restart"]
    assert service.request_proposal(s).id == p.id  # still pending: the same proposal

    outcomes = []
    threads = [threading.Thread(target=lambda: outcomes.append(service.approve(p.id, lambda r: s)))
               for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    new_pids = [r.new_pid for o in outcomes for r in o.results if r.new_pid]
    try:
        assert len(new_pids) == 1, outcomes
        assert sorted(o.status for o in outcomes) in (
            ["busy", "busy", "executed"], ["busy", "executed", "noop"],
            ["executed", "noop", "noop"])
        again = service.approve(p.id, lambda r: s)
        assert again.status == "noop" and "already approved and executed" in again.message
        assert service.state(p.id) == "executed"
        kinds = [r["kind"] for r in service.history("wt:task")]
        assert kinds == ["proposal", "decision", "result"]
    finally:
        cleanup(*new_pids)


def test_reject_and_marks(tmp_path):
    service = RecoveryService(Journal(tmp_path / "j.jsonl"), use_claude=False)
    s = snap(badge=Badge.STRUGGLING, reasons=(("struggling.streak", "3 failed in a row"),))
    p = service.request_proposal(s)
    out = service.reject(p.id, "I am on it")
    assert out.status == "rejected" and service.state(p.id) == "rejected"
    assert service.approve(p.id, lambda r: s).status == "refused"
    assert service.reject(p.id).status == "noop"
    p2 = service.request_proposal(s)
    assert p2.id != p.id
    assert [a.kind for a in p2.actions] == ["mark"]
    assert service.approve(p2.id, lambda r: s).ok
    assert service.marks() == {"wt:demo": p2.actions[0].note}
    service.set_mark("wt:demo", "demo", "")
    assert service.marks() == {}


def test_new_situation_supersedes_the_pending_proposal(tmp_path):
    service = RecoveryService(Journal(tmp_path / "j.jsonl"), use_claude=False)
    stuck = snap()
    p1 = service.request_proposal(stuck)
    failed = snap(badge=Badge.FAILED, reasons=(("status.failed", "failed"),))
    p2 = service.request_proposal(failed)
    assert p2.id != p1.id
    assert service.state(p1.id) == "superseded"
    out = service.approve(p1.id, lambda r: failed)
    assert out.status == "refused" and "superseded" in out.message
    assert service.request_proposal(failed, fresh=True).id != p2.id


def test_mark_action_touches_no_agent_file(tmp_path):
    d = tmp_path / "task"
    d.mkdir()
    (d / "status.json").write_text('{"pid": 5}')
    before = (d / "status.json").stat().st_mtime_ns
    service = RecoveryService(Journal(tmp_path / "logs" / "j.jsonl"), use_claude=False)
    p = proposal(Mark("handled"))
    service.journal.record_proposal(p)
    assert service.approve(p.id, lambda r: None).ok
    assert (d / "status.json").stat().st_mtime_ns == before
    assert service.marks() == {"wt:demo": "handled"}


# --- whose process: another user's, a reused pid, init ----------------------------------------

ROOT = os.geteuid() == 0
NOBODY = 65534


def _status_file(tmp_path: Path, **fields) -> Path:
    path = tmp_path / "owned" / "status.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps({"status": "running", **fields}))
    return path


@pytest.mark.skipif(not ROOT, reason="needs root to start a process as another user")
def test_a_process_of_another_user_is_refused_unless_that_user_owns_the_task(tmp_path):
    with running(["sleep", "60"], user=NOBODY, cwd="/") as proc:  # /bin/sleep: nobody may run it
        wait_for(lambda: psutil.Process(proc.pid).uids().real == NOBODY, what="the user switch")
        sfile = _status_file(tmp_path, pid=proc.pid)  # root's file naming nobody's process
        s = snap(pid=proc.pid, files=(str(sfile),))
        for action in (Kill(proc.pid, grace=1), Signal(proc.pid, "SIGTERM")):
            result = Executor().execute(action, proposal(action), s)
            assert not result.ok and f"belongs to uid {NOBODY}, not to uid 0" in result.error
            assert str(sfile) in result.error
        # Without a status.json the process must be the current user's.
        result = Executor().execute(Kill(proc.pid), proposal(Kill(proc.pid)), snap(pid=proc.pid))
        assert not result.ok and "the current user" in result.error
        assert not gone(proc.pid)
        # The task's status.json is that user's own: root may act on the user's behalf.
        os.chown(sfile, NOBODY, NOBODY)
        action = Kill(proc.pid, grace=1)
        result = Executor().execute(action, proposal(action), s)
        assert result.ok, result.error
        assert gone(proc.pid)


@pytest.mark.skipif(not ROOT, reason="needs root to chown a file to another user")
def test_a_task_file_of_another_user_does_not_let_it_name_my_process(tmp_path):
    with running(SLEEPER) as proc:
        sfile = _status_file(tmp_path, pid=proc.pid)
        os.chown(sfile, NOBODY, NOBODY)  # another user's status.json names root's process
        action = Signal(proc.pid, "SIGTERM")
        result = Executor().execute(action, proposal(action), snap(pid=proc.pid, files=(str(sfile),)))
        assert not result.ok and f"not to uid {NOBODY}" in result.error
        assert not gone(proc.pid)


def test_a_pid_reused_since_the_task_started_is_refused(tmp_path):
    with running(SLEEPER) as proc:
        wait_for(lambda: not gone(proc.pid), what="the process")
        hour_ago = now_iso(time.time() - 3600)
        # (`timestamp` alone is when the task was created, not when its pid was recorded:
        # tests/test_recovery_hostile.py.)
        for fields in ({"startedAt": hour_ago},
                       {"startedAt": hour_ago, "timestamp": now_iso(time.time() - 7200)}):
            s = snap(pid=proc.pid, fields=fields)
            for action in (Kill(proc.pid, grace=1), Signal(proc.pid, "SIGTERM")):
                # The proposal is fresh: only the task's own start shows the pid was reused.
                result = Executor().execute(action, proposal(action), s)
                assert not result.ok, fields
                assert "after the task's run started" in result.error
                assert "pid was reused by another program; refused" in result.error
            assert not gone(proc.pid)
        # startedAt wins over timestamp (a restart), and a process started with the task is its.
        s = snap(pid=proc.pid, fields={"startedAt": now_iso(time.time()), "timestamp": hour_ago})
        action = Signal(proc.pid, "SIGTERM")
        result = Executor().execute(action, proposal(action), s)
        assert result.ok, result.error


def test_a_restart_records_when_the_new_process_started(tmp_path, tree):
    # Else the restarted process would look like a reused pid to the next action.
    proc, kids = tree
    d = _task_dir(tmp_path, proc.pid, SLEEPER)
    sfile = d / "status.json"
    hour_ago = now_iso(time.time() - 3600)
    sfile.write_text(json.dumps({**json.loads(sfile.read_text()), "timestamp": hour_ago}))
    s = snap(pid=proc.pid, cwd=str(d), command=tuple(SLEEPER), path=str(d), files=(str(sfile),))
    action = Restart(tuple(SLEEPER), str(d), pid=proc.pid, grace=3, status_file=str(sfile))
    result = Executor().execute(action, proposal(action), s)
    try:
        assert result.ok, result.error
        data = json.loads(sfile.read_text())
        assert data["pid"] == result.new_pid and data["timestamp"] == hour_ago
        started = parse_time(data["startedAt"])
        assert abs(started - psutil.Process(result.new_pid).create_time()) < 2
        after = snap(pid=result.new_pid, fields=data, files=(str(sfile),))
        sig = Signal(result.new_pid, "SIGTERM")
        assert Executor().execute(sig, proposal(sig), after).ok
    finally:
        cleanup(result.new_pid)


def test_pid_1_is_refused_with_a_clear_reason(tmp_path, monkeypatch):
    def never(pid, *a, **kw):  # nothing may even look at init, let alone signal it
        raise AssertionError(f"psutil.Process({pid}) called")

    monkeypatch.setattr("bgmon.recovery.actions.psutil.Process", never)
    for pid in (1, 0, -1):
        for action in (Kill(pid), Signal(pid, "SIGTERM"),
                       Restart(tuple(SLEEPER), str(tmp_path), pid=pid)):
            result = Executor().execute(action, proposal(action), snap(pid=pid, alive=True))
            assert not result.ok
            assert f"pid {pid} is not a task's process" in result.error
        assert "refused when run" in live_effect(Kill(pid))


def test_a_restart_of_a_command_stored_redacted_is_refused(tmp_path):
    for arg in ("[REDACTED]", "[REDACTED:anthropic]", "--key=[REDACTED:api-key]"):
        action = Restart(("true", arg), str(tmp_path))
        result = Executor().execute(action, proposal(action), snap(pid=None))
        assert not result.ok and "redacted text" in result.error and result.new_pid is None
