"""Automatic recovery: `autoRecover: true` tasks recovered by the rules without a person (real
engine, real processes, real journal), and `bgmon run`'s own restarts in the journal."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import orjson
import psutil
import pytest
from conftest import wait_for, write_json
from test_recovery_support import snap

from bgmon.cli import main as cli_main
from bgmon.engine import Change, Monitor
from bgmon.model import Badge, Health, ProcFacts, Reason
from bgmon.recovery import rules
from bgmon.recovery.actions import ActionResult
from bgmon.recovery.auto import AutoRecovery, auto_allowed, grant_auto_recover, trust_problem
from bgmon.recovery.cli import format_record
from bgmon.recovery.journal import PENDING, Journal
from bgmon.recovery.proposal import Mark, Proposal, Restart, Run, basis_of
from bgmon.recovery.service import DONE, Outcome, RecoveryService
from bgmon.supervise.journal import journal_root, task_key

PY = sys.executable
DEADLINE = 20.0


# ---- helpers ----------------------------------------------------------------------------


def alive(pid: object) -> bool:
    if not isinstance(pid, int):
        return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def kill(*pids: object) -> None:
    for pid in pids:
        if isinstance(pid, int) and pid > 0:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


def status(task: Path) -> dict:
    return orjson.loads((task / "status.json").read_bytes())


def journal(root: Path) -> list[dict]:
    return Journal.for_root(root).records()


def kinds(records: list[dict], kind: str) -> list[dict]:
    return [r for r in records if r.get("kind") == kind]


def look(monitor: Monitor) -> list[Change]:
    monitor.sweep()
    monitor.look_procs()
    return monitor.evaluate()


@pytest.fixture
def sleeper(tmp_path: Path) -> list[str]:
    path = tmp_path / "sleeper.py"
    path.write_text("import time\ntime.sleep(60)\n")
    return [PY, str(path)]


def failed_by_the_engine(ws, sleeper: list[str], grant: bool = True,
                         **extra) -> tuple[Monitor, list[Change], Path]:
    """A worktree task whose process runs, then is killed: the engine sees it fail. `grant`:
    opted in the way `bgmon run --auto-recover` does (a record in bgmon's state directory)."""
    proc = subprocess.Popen(sleeper, stdin=subprocess.DEVNULL, start_new_session=True)
    task = ws.task("sync", name="sync", id="bg_sync", pid=proc.pid, command=sleeper,
                   cwd=str(ws.root), **extra)
    if grant and extra.get("autoRecover"):
        grant_auto_recover(task / "status.json", sleeper, str(ws.root))
    monitor = Monitor(ws.config())
    added = look(monitor)
    assert [c.kind for c in added] == ["added"]
    assert added[0].snapshot.health.badge is Badge.HEALTHY
    proc.kill()
    proc.wait(10)
    changes = look(monitor)
    health = [c for c in changes if c.kind == "health"]
    assert health and health[0].snapshot.health.badge is Badge.FAILED
    assert health[0].previous.badge is Badge.HEALTHY
    return monitor, changes, task


# ---- the monitor acts on autoRecover tasks --------------------------------------------------


def test_a_failed_auto_recover_task_is_restarted_and_journaled(ws, sleeper, isolated_home):
    monitor, changes, task = failed_by_the_engine(ws, sleeper, autoRecover=True)
    old = status(task)["pid"]
    service = RecoveryService.for_root(ws.root, use_claude=False)
    auto = AutoRecovery(service)
    new_pid = None
    try:
        auto.on_changes(changes, monitor.find)  # returns at once: the attempt runs in a thread
        new_pid = wait_for(lambda: (p := status(task)["pid"]) != old and alive(p) and p,
                           what="a new live pid in status.json")
        assert auto.join(DEADLINE)
        recs = journal(ws.root)
        (prop,) = kinds(recs, "proposal")
        assert prop["proposal"]["source"] == "rules"
        assert [a["kind"] for a in prop["proposal"]["actions"]] == ["restart"]
        (decision,) = kinds(recs, "decision")
        assert decision["decision"] == "approved" and decision["by"] == "auto"
        assert decision["proposal"] == prop["proposal"]["id"]
        (result,) = kinds(recs, "result")
        assert result["ok"] and result["results"][0]["new_pid"] == new_pid
        assert service.state(prop["proposal"]["id"]) == "executed"
        assert service.report()["automatic"] == 1
        # The engine sees the task healthy again under its new pid.
        after = wait_for(lambda: [c for c in look(monitor) if c.kind == "health"],
                         what="the health change back")
        assert after[0].snapshot.health.badge is Badge.HEALTHY
        assert after[0].snapshot.pid == new_pid
        auto.on_changes(after, monitor.find)
        assert not auto.busy()
    finally:
        auto.close()
        kill(new_pid, status(task).get("pid"))


def test_a_cloned_status_file_never_opts_in_by_itself(ws, sleeper, isolated_home):
    # A repository with a committed `.worktrees/X/status.json` (autoRecover, a command): after
    # `git clone` the file is this user's and 0644, so every check on the file passes. The
    # opt-in must come from what a clone cannot carry: the record `bgmon run --auto-recover`
    # keeps in bgmon's own state directory.
    monitor, changes, task = failed_by_the_engine(ws, sleeper, autoRecover=True, grant=False)
    old = status(task)["pid"]
    service = RecoveryService.for_root(ws.root, use_claude=False)
    auto = AutoRecovery(service)
    try:
        auto.on_changes(changes, monitor.find)
        assert auto.join(DEADLINE)
        assert status(task)["pid"] == old and not alive(old)  # nothing was started
        (skip,) = kinds(journal(ws.root), "auto")
        assert skip["outcome"] == "skipped" and "bgmon run --auto-recover" in skip["reason"]
        # A record for another command (the file's command changed after the grant) is no
        # opt-in either.
        grant_auto_recover(task / "status.json", ["true"], str(ws.root))
        assert "another command" in trust_problem(monitor.find("sync"))
        grant_auto_recover(task / "status.json", sleeper, str(ws.root))
        assert trust_problem(monitor.find("sync")) is None
    finally:
        auto.close()
        kill(status(task).get("pid"))


def test_a_task_without_auto_recover_is_left_alone(ws, sleeper, isolated_home):
    monitor, changes, task = failed_by_the_engine(ws, sleeper)
    old = status(task)["pid"]
    service = RecoveryService.for_root(ws.root, use_claude=False)
    auto = AutoRecovery(service)
    auto.on_changes(changes, monitor.find)
    auto.on_changes(look(monitor), monitor.find)
    assert auto.join(DEADLINE)
    assert not auto.events and not auto.busy()
    assert status(task)["pid"] == old and not alive(old)
    assert not kinds(journal(ws.root), "proposal")


@pytest.mark.parametrize("how, why", [
    ("world", "is world-writable (mode 0646)"),
    ("group", "is group-writable (mode 0620)"),
    ("both", "is group- and world-writable (mode 0666)"),
    ("other user", "is owned by uid 65534, not by the user running bgmon"),
    ("symlink", "is a symbolic link"),
])
def test_a_status_file_someone_else_controls_is_skipped_and_said_why(
        ws, sleeper, isolated_home, tmp_path, how, why):
    if how == "other user" and os.geteuid() != 0:
        pytest.skip("needs root to give the file to another user")
    monitor, changes, task = failed_by_the_engine(ws, sleeper, autoRecover=True)
    sfile = task / "status.json"
    old = status(task)["pid"]
    if how in ("world", "group", "both"):
        sfile.chmod({"world": 0o646, "group": 0o620, "both": 0o666}[how])
    elif how == "other user":
        os.chown(sfile, 65534, 65534)
    else:
        real = tmp_path / "elsewhere.json"
        real.write_bytes(sfile.read_bytes())
        sfile.unlink()
        sfile.symlink_to(real)
    service = RecoveryService.for_root(ws.root, use_claude=False)
    auto = AutoRecovery(service)
    try:
        auto.on_changes(changes, monitor.find)
        assert auto.join(DEADLINE)
        auto.on_changes(changes, monitor.find)  # the same failure again: said once
        assert auto.join(DEADLINE)
        assert status(task)["pid"] == old and not alive(old)  # nothing was started
        recs = journal(ws.root)
        assert not kinds(recs, "proposal") and not kinds(recs, "decision")
        (skip,) = kinds(recs, "auto")
        assert skip["outcome"] == "skipped" and skip["task"] == changes[0].snapshot.key
        assert f"{sfile} {why}" in skip["reason"]
        ((key, text),) = auto.events
        assert key == skip["task"] and text == f"skipped: {skip['reason']}"
        assert f"auto-recover skipped: {sfile} {why}" in format_record(skip)
    finally:
        auto.close()
        kill(status(task).get("pid"))


def test_a_non_retryable_failure_gets_a_mark_never_a_restart(ws, isolated_home, tmp_path):
    task = ws.task("disk", name="disk", id="bg_disk", pid=None, command=[PY, "-c", "pass"],
                   cwd=str(tmp_path), autoRecover=True)
    grant_auto_recover(task / "status.json", [PY, "-c", "pass"], str(tmp_path))
    monitor = Monitor(ws.config())
    look(monitor)
    data = status(task)
    data.update(status="failed", exitCode=1,
                error='exit code 1 after "OSError: [Errno 28] No space left on device" (disk_full)')
    write_json(task / "status.json", data)
    changes = look(monitor)
    assert [c.snapshot.health.badge for c in changes if c.kind == "health"] == [Badge.FAILED]
    service = RecoveryService.for_root(ws.root, use_claude=False)
    auto = AutoRecovery(service)
    auto.on_changes(changes, monitor.find)
    assert auto.join(DEADLINE)
    recs = journal(ws.root)
    (prop,) = kinds(recs, "proposal")
    assert prop["patterns"][0] == "disk_full"
    assert [a["kind"] for a in prop["proposal"]["actions"]] == ["mark"]
    (decision,) = kinds(recs, "decision")
    assert decision["by"] == "auto"
    (result,) = kinds(recs, "result")
    assert [a["kind"] for a in result["results"]] == ["mark"]
    assert service.marks()[monitor.find("disk").key] == "needs a person: disk full"
    assert status(task)["pid"] is None  # nothing was started
    # Only marks: the rules say a person is needed, so nothing more happens in this episode.
    data["error"] = "still full: no space left on device"
    write_json(task / "status.json", data)
    auto.on_changes(look(monitor), monitor.find)
    assert auto.join(DEADLINE)
    assert len(kinds(journal(ws.root), "proposal")) == 1


def test_a_model_proposal_pending_for_the_task_is_never_approved(ws, sleeper, isolated_home):
    monitor, changes, task = failed_by_the_engine(ws, sleeper, autoRecover=True)
    service = RecoveryService.for_root(ws.root, use_claude=False)
    failed = next(c.snapshot for c in changes if c.kind == "health")
    # A person asked Claude, which proposes running a program: pending, for this very situation.
    pending = Proposal(
        id="p_model01", task=failed.key, task_id=failed.id, source="claude", model="claude-x",
        degraded_reason=None, diagnosis="d", confidence=0.9,
        actions=(Run(argv=("touch", "ran"), cwd=str(ws.root)),),
        patterns=tuple(m.pattern.name for m in rules.match(failed, service.catalogue)),
        basis=basis_of(failed),
    )
    service.journal.record_proposal(pending)
    auto = AutoRecovery(service)
    auto.on_changes(changes, monitor.find)
    assert auto.join(DEADLINE)
    assert service.state("p_model01") == PENDING  # left for the person
    assert not kinds(journal(ws.root), "decision")
    assert not (ws.root / "ran").exists()
    assert "not approved automatically" in auto.events[-1][1]


def test_only_rule_actions_may_run_automatically():
    base = dict(task="t", task_id="t", model=None, degraded_reason=None, diagnosis="d",
                confidence=0.5)
    restart = Restart(argv=("x",), cwd="/")
    assert auto_allowed(Proposal(id="p1", source="rules", actions=(restart, Mark("m")), **base)) is None
    run = Run(argv=("rm", "-rf", "x"), cwd="/")
    assert "run never runs" in auto_allowed(Proposal(id="p2", source="rules", actions=(run,), **base))
    assert "only rule-based" in auto_allowed(Proposal(id="p3", source="claude", actions=(restart,), **base))
    assert auto_allowed(Proposal(id="p4", source="rules", actions=(), **base)) == "it has no actions"


# ---- episodes, backoff, bgmon run in charge (a scripted service, no processes) ---------------


class FakeService:
    """Stands in for RecoveryService: each request gives a rules proposal with a restart."""

    def __init__(self) -> None:
        self.approved: list[tuple[str, str]] = []
        self.marks: list[str] = []
        self.n = 0

    def request_proposal(self, snapshot, *, use_claude=None, **_):
        assert use_claude is False
        self.n += 1
        return Proposal(id=f"p{self.n}", task=snapshot.key, task_id=snapshot.id, source="rules",
                        model=None, degraded_reason="rules requested", diagnosis="d",
                        confidence=0.5, actions=(Restart(argv=("x",), cwd="/"),))

    def approve(self, proposal_id, lookup, *, by="tui"):
        assert lookup("wt:demo") is not None  # the newest snapshot the engine handed over
        self.approved.append((proposal_id, by))
        return Outcome(proposal_id, DONE, "done")

    def set_mark(self, task, task_id, note, *, proposal=None):
        self.marks.append(note)


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def change(s) -> list[Change]:
    return [Change("health", s.key, s)]


@pytest.fixture
def trusted(tmp_path: Path, isolated_home) -> str:
    """A status.json automatic recovery trusts: this user's, writable only by them, and opted
    in by bgmon run (its record in bgmon's state directory)."""
    path = tmp_path / "task" / "status.json"
    write_json(path, {"status": "failed", "autoRecover": True})
    path.chmod(0o600)
    grant_auto_recover(path, None, None)
    return str(path)


def fresh(status_file: str, **kw):
    """A hand-made snapshot whose last sign of life is now (not a fault from long ago)."""
    return replace(snap(files=(status_file,), **kw), last_activity=time.time())


FIELDS = {"autoRecover": True}


def test_attempts_back_off_stop_after_the_limit_and_reset_once_healthy(trusted):
    svc, clock = FakeService(), Clock()
    auto = AutoRecovery(svc, max_attempts=3, first_delay=0.01, cap=0.05, reset_after=60,
                        clock=clock, rng=lambda: 0.5)
    assert [auto._delay(n) for n in (1, 2, 3)] == [0.0, 0.01, 0.02]
    failed = fresh(trusted, badge=Badge.FAILED, reasons=(("process.exited", "gone"),), fields=FIELDS)
    healthy = fresh(trusted, badge=Badge.HEALTHY, reasons=(("active", "ok"),), fields=FIELDS)
    lookup = {failed.key: failed}.get
    for _ in range(3):
        auto.on_changes(change(failed), lookup)
        auto.on_changes(change(failed), lookup)  # the same badge again: not a new failure
        assert auto.join(DEADLINE)
        clock.t += 5
        auto.on_changes(change(healthy), lookup)  # up again, but not for long
        clock.t += 5
    assert [by for _, by in svc.approved] == ["auto"] * 3
    auto.on_changes(change(failed), lookup)  # a 4th failure in the same episode: give up
    assert auto.join(DEADLINE)
    assert len(svc.approved) == 3 and svc.marks == ["auto-recover gave up after 3 attempts"]
    clock.t += 5
    auto.on_changes(change(healthy), lookup)
    clock.t += 61  # healthy long enough: a new episode
    auto.on_changes(change(failed), lookup)
    assert auto.join(DEADLINE)
    assert len(svc.approved) == 4


def test_nothing_while_bgmon_run_supervises_then_act_once_it_died(trusted):
    svc = FakeService()
    auto = AutoRecovery(svc)
    # bgmon run (here: this live process) still supervises: it restarts by itself.
    busy = fresh(trusted, badge=Badge.FAILED, reasons=(("status.timeout", "stalled"),),
                fields={**FIELDS, "supervisorPid": os.getpid(), "restartAt": "soon"})
    auto.on_changes(change(busy), {busy.key: busy}.get)
    assert auto.join(DEADLINE) and not svc.approved
    # The supervisor is gone (its exit changes nothing in the snapshot): the engine's lookup
    # shows it on the next pass, even with no changes.
    dead = subprocess.Popen([PY, "-c", "pass"])
    dead.wait(10)
    died = fresh(trusted, badge=Badge.FAILED, reasons=(("status.failed", "gave up"),),
                fields={**FIELDS, "supervisorPid": dead.pid})
    auto.on_changes([], {died.key: died}.get)
    assert auto.join(DEADLINE)
    assert svc.approved == [("p1", "auto")]


def test_a_child_failing_does_not_restart_its_parent(trusted):
    svc = FakeService()
    auto = AutoRecovery(svc)
    parent = fresh(trusted, badge=Badge.FAILED, reasons=(("rollup", "child failed"),), fields=FIELDS)
    parent = replace(parent, own_health=Health(Badge.HEALTHY, (Reason("active", "ok"),)))
    auto.on_changes(change(parent), {parent.key: parent}.get)
    assert auto.join(DEADLINE) and not svc.approved


def test_a_fault_found_long_ago_at_start_up_is_left_alone():
    svc = FakeService()
    auto = AutoRecovery(svc, stale_after=600)
    old = snap(badge=Badge.FAILED, reasons=(("status.failed", "x"),), fields=FIELDS)  # 12 min
    auto.on_changes([Change("added", old.key, old)], {old.key: old}.get)
    assert auto.join(DEADLINE) and not svc.approved
    assert "old; left alone" in auto.events[-1][1]


def test_the_restarted_process_dying_is_a_new_failure_even_if_the_badge_stays(trusted):
    # A task whose status.json says failed keeps that badge after a restart (only its pid is
    # rewritten), so the death of the process auto-recover started counts as the next failure.
    svc = FakeService()
    svc.approve = lambda pid, lookup, by: Outcome(pid, DONE, "done", (
        ActionResult("restart", True, "restart", new_pid=4242),))
    auto = AutoRecovery(svc, first_delay=0.01, rng=lambda: 0.5)
    failed = fresh(trusted, badge=Badge.FAILED, reasons=(("status.failed", "x"),), fields=FIELDS)
    auto.on_changes(change(failed), {}.get)
    assert auto.join(DEADLINE) and svc.n == 1
    running = replace(failed, pid=4242, proc=ProcFacts(4242, alive=True))
    auto.on_changes([Change("updated", failed.key, running)], {}.get)
    assert auto.join(DEADLINE) and svc.n == 1
    died = replace(failed, pid=4242, proc=ProcFacts(4242, alive=False))
    auto.on_changes([Change("updated", failed.key, died)], {}.get)
    assert auto.join(DEADLINE) and svc.n == 2


# ---- bgmon run journals its own automatic restarts -------------------------------------------

REFUSED = "import socket; socket.create_connection(('127.0.0.1', 9))"


def test_bgmon_run_journals_its_automatic_restarts(tmp_path, monkeypatch, isolated_home):
    monkeypatch.chdir(tmp_path)
    code = cli_main(["run", "--name", "api", "--auto-recover", "-q", "--", PY, "-c", REFUSED])
    assert code == 1
    task = tmp_path / ".worktrees" / "api"
    st = status(task)
    assert st["autoRecover"] is True and st["status"] == "failed" and st["restarts"] == 3
    recs = Journal.for_root(tmp_path).history(f"worktree:{task}")
    decisions, results = kinds(recs, "decision"), kinds(recs, "result")
    assert [d["attempt"] for d in decisions] == [1, 2, 3]
    for d in decisions:
        assert d["by"] == "bgmon run" and d["automatic"] and d["decision"] == "approved"
        assert d["action"] == "restart" and d["pattern"] == "connection_refused"
        assert d["failure"] == "connection_refused" and d["reason"].startswith("restarting in")
        assert d["strategy"] == "wait_restart" and d["delay"] > 0 and d["task_id"] == st["id"]
    assert [r["attempt"] for r in results] == [1, 2, 3]
    assert all(r["ok"] and isinstance(r["new_pid"], int) for r in results)
    assert [r["results"][0]["new_pid"] for r in results] == [r["new_pid"] for r in results]
    # The rules count them: a later proposal backs off further.
    journal_ = Journal.for_root(tmp_path)
    assert journal_.restarts(f"worktree:{task}") == 3
    assert "None" not in format_record(decisions[0]) + format_record(results[0])
    assert journal_.report()["approved"] == 0  # no proposal was approved by a person
    assert journal_.report()["automatic"] == 3


def test_an_unwritable_journal_never_breaks_supervision(tmp_path, monkeypatch, isolated_home):
    (tmp_path / ".agents").write_text("not a directory")
    monkeypatch.chdir(tmp_path)
    code = cli_main(["run", "--name", "api", "-q", "--", PY, "-c", REFUSED])
    assert code == 1
    st = status(tmp_path / ".worktrees" / "api")
    assert st["status"] == "failed" and st["restarts"] == 3 and "gave up" in st["error"]


def test_the_journal_root_of_a_task_directory(tmp_path):
    assert journal_root(tmp_path / "r" / ".worktrees" / "t", "/elsewhere") == tmp_path / "r"
    assert journal_root(tmp_path / "custom" / "t", tmp_path / "cwd") == tmp_path / "cwd"
    assert task_key(tmp_path / ".worktrees" / "t") == f"worktree:{tmp_path}/.worktrees/t"
