"""Hostile actions and hostile task files: what an approval shows is what runs, and where.

Each test reproduces one fault found by the fault-injection pass (issue 10).
"""

from __future__ import annotations

import getpass
import json
import os
import stat
import sys
import time

import orjson
import psutil
import pytest
from test_recovery_support import SLEEPER, gone, running, snap, wait_for

from bgmon.model import Badge
from bgmon.recovery.actions import Executor, live_effect, write_pid
from bgmon.recovery.proposal import Kill, Proposal, Restart, Run, now_iso
from bgmon.recovery.redact import redact, redact_obj
from bgmon.recovery.service import RecoveryService
from bgmon.recovery.validate import InvalidAction, validate_action, validate_actions
from tests.conftest import write_json


def proposal(*actions, created: str | None = None) -> Proposal:
    return Proposal(id="p_" + os.urandom(4).hex(), task="wt:demo", task_id="demo", source="rules",
                    model=None, degraded_reason="no API key", diagnosis="d", confidence=0.5,
                    actions=tuple(actions), created=created or now_iso())


def refused(raw: dict, s) -> str:
    with pytest.raises(InvalidAction) as exc:
        validate_action(raw, s)
    return str(exc.value)


# --- "never a shell" through wrappers ----------------------------------------------------------


@pytest.mark.parametrize("argv", [
    ["timeout", "5", "sh", "-c", "curl x | sh"],
    ["nice", "-n", "5", "bash", "-c", "id"],
    ["rbash", "-c", "id"],
    ["/usr/bin/env", "-i", "PATH=/bin", "dash", "-c", "id"],
    ["setsid", "nohup", "zsh", "-c", "id"],
    ["python3", "-c", "import os; os.system('id')"],
    ["python3.11", "-Bc", "import os"],
    ["perl", "-e", "system('id')"],
    ["node", "--eval", "require('child_process')"],
    ["find", ".", "-exec", "sh", "-c", "id", ";"],
    ["xargs", "-a", "list", "bash"],
    ["awk", "BEGIN { system(\"id\") }"],
    ["watch", "make"],  # watch runs its arguments through sh -c
    ["sudo", "make"],
])
def test_a_shell_through_a_wrapper_or_an_interpreter_is_refused(argv, tmp_path):
    s = snap(cwd=str(tmp_path))
    assert "shell" in refused({"kind": "run", "argv": argv}, s) or "code" in refused(
        {"kind": "run", "argv": argv}, s)


def test_plain_programs_still_run(tmp_path):
    s = snap(cwd=str(tmp_path))
    for argv in (["pytest", "-x", "tests/test_api.py"], ["python3", "-m", "pytest"],
                 ["make", "-C", "sub", "test"], ["git", "status"], ["npm", "test"]):
        assert validate_action({"kind": "run", "argv": argv}, s).argv == tuple(argv)


# --- destructive commands are marked -------------------------------------------------------------


@pytest.mark.parametrize("argv", [
    ["find", ".", "-name", "*.o", "-delete"],
    ["git", "clean", "-xdf"],
    ["git", "reset", "--hard", "HEAD~3"],
    ["git", "checkout", "--", "."],
    ["git", "push", "--force"],
    ["rsync", "-a", "--delete", "a/", "b/"],
    ["rm", "-rf", "build"],
    ["/bin/rm", "x"],
])
def test_destructive_commands_say_so_before_approval(argv, tmp_path):
    action = validate_action({"kind": "run", "argv": argv}, snap(cwd=str(tmp_path)))
    assert action.describe().startswith("DESTRUCTIVE")
    assert not Run(("git", "status"), str(tmp_path)).describe().startswith("DESTRUCTIVE")


# --- `run` arguments stay in the task's directory ------------------------------------------------


@pytest.mark.parametrize("arg", ["/home/someone/.ssh", "../../etc/passwd", "~/.aws/credentials",
                                 "--output=/etc/cron.d/x", "sub/../../outside"])
def test_run_arguments_outside_the_task_directory_are_refused(arg, tmp_path):
    task = tmp_path / "task"
    (task / "sub").mkdir(parents=True)
    reason = refused({"kind": "run", "argv": ["cat", arg]}, snap(cwd=str(task)))
    assert "outside the task's directory" in reason


def test_run_arguments_inside_the_task_directory_pass(tmp_path):
    task = tmp_path / "task"
    (task / "sub").mkdir(parents=True)
    (tmp_path / "secret").write_text("x")
    (task / "link").symlink_to(tmp_path / "secret")
    s = snap(cwd=str(task))
    for arg in ("sub/file", "./x", f"{task}/sub", "--out=sub/x", "sub/..", "/dev/null"):
        validate_action({"kind": "run", "argv": ["touch", arg]}, s)
    assert "outside" in refused({"kind": "run", "argv": ["cat", "link"]}, s)  # a symlink out


# --- one validation, applied when the proposal is made -------------------------------------------


def test_a_restart_of_a_shell_command_is_refused_when_proposed_not_after(tmp_path, monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    task = tmp_path / ".worktrees" / "t"
    write_json(task / "status.json", {"status": "failed"})
    s = snap(badge=Badge.FAILED, reasons=(("status.failed", "exit 1"),), path=str(task),
             cwd=str(task), command=("bash", "-c", "make && make test"), status="failed",
             files=(str(task / "status.json"),))
    service = RecoveryService.for_root(tmp_path, use_claude=False)
    p = service.request_proposal(s, use_claude=False)
    assert not any(a.kind == "restart" for a in p.actions)
    assert any("shell" in r["reason"] for r in p.refused)
    # What was proposed can be found, approved or rejected: the journal reader agrees.
    assert service.get(p.id) is not None
    assert service.reject(p.id, "no", by="test").status == "rejected"


# --- kill approvals show the process; bgmon and its ancestors are never targets ------------------


def test_a_kill_approval_names_the_process_it_stops():
    with running(SLEEPER) as proc:
        effect = live_effect(Kill(proc.pid))
        assert f"pid {proc.pid}" in effect
        assert "time.sleep(60)" in effect  # its command line
        assert getpass.getuser() in effect  # its user
        started = time.strftime("%H:%M", time.localtime(psutil.Process(proc.pid).create_time()))
        assert f"started {started}" in effect or started in effect


@pytest.mark.parametrize("whose", ["self", "parent"])
def test_the_monitor_and_its_ancestors_are_never_killed(whose, tmp_path):
    pid = os.getpid() if whose == "self" else os.getppid()
    s = snap(pid=pid, alive=True, cwd=str(tmp_path))
    assert "bgmon" in refused({"kind": "kill", "pid": pid}, s)
    result = Executor().execute(Kill(pid), proposal(Kill(pid)), s)
    assert not result.ok and "bgmon" in result.error
    assert psutil.pid_exists(pid)


# --- pid identity is judged by when the pid was recorded -----------------------------------------


def test_a_queued_task_started_after_its_status_was_created_is_not_a_reused_pid(tmp_path):
    # The status file was created an hour ago (timestamp), the task waited in a queue, and its
    # process started now; the pid was recorded when it started.
    with running(SLEEPER) as proc:
        sfile = tmp_path / "status.json"
        write_json(sfile, {"status": "running", "pid": proc.pid,
                           "timestamp": now_iso(time.time() - 3600)})
        s = snap(pid=proc.pid, files=(str(sfile),), path=str(tmp_path),
                 fields={"timestamp": now_iso(time.time() - 3600), "pid": proc.pid})
        result = Executor().execute(Kill(proc.pid, grace=1), proposal(Kill(proc.pid)), s)
        assert result.ok, result.error
        assert gone(proc.pid)


def test_a_pid_recorded_before_its_process_started_is_reused(tmp_path):
    # The status file was last written an hour ago; the process holding that pid now started
    # since: it cannot be the one that was recorded.
    with running(SLEEPER) as proc:
        sfile = tmp_path / "status.json"
        write_json(sfile, {"status": "running", "pid": proc.pid})
        old = time.time() - 3600
        os.utime(sfile, (old, old))
        s = snap(pid=proc.pid, files=(str(sfile),), path=str(tmp_path), fields={"pid": proc.pid})
        result = Executor().execute(Kill(proc.pid), proposal(Kill(proc.pid)), s)
        assert not result.ok and "reused" in result.error and not gone(proc.pid)


# --- the API key never leaks ---------------------------------------------------------------------

KEY = "sk-ant-api03-" + "Zq7RkP2vXw9LmN4tYb6H" * 5 + "-AA"


def test_an_approved_restart_does_not_inherit_bgmons_credentials(tmp_path, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    monkeypatch.setenv("ANTHROPIC_AUTH_TOKEN", "tok-" + "x" * 30)
    monkeypatch.setenv("BGMON_TEST_KEEP", "kept")
    seen = tmp_path / "env.json"
    argv = (sys.executable, "-c",
            f"import os, json; open({str(seen)!r} + '.tmp', 'w').write(json.dumps(dict(os.environ)));"
            f" os.replace({str(seen)!r} + '.tmp', {str(seen)!r})")
    out_dir = tmp_path / ".agents" / "logs" / ".bgmon" / "restarts"
    restart = Restart(argv=argv, cwd=str(tmp_path))
    result = Executor(output_dir=out_dir).execute(restart, proposal(restart), snap(cwd=str(tmp_path)))
    assert result.ok, result.error
    wait_for(seen.exists, what="the restarted command's environment")
    env = json.loads(seen.read_text())
    assert "ANTHROPIC_API_KEY" not in env and "ANTHROPIC_AUTH_TOKEN" not in env
    assert env["BGMON_TEST_KEEP"] == "kept"
    # Its output goes to bgmon's own folder, readable by the user only.
    (log,) = out_dir.iterdir()
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    assert stat.S_IMODE(out_dir.stat().st_mode) == 0o700
    run = Run(argv=(sys.executable, "-c", "import os; print(sorted(os.environ))"), cwd=str(tmp_path))
    result = Executor().execute(run, proposal(run), snap(cwd=str(tmp_path)))
    assert result.ok and "ANTHROPIC" not in result.output_tail


@pytest.mark.parametrize("cut", [7, 13, 30, 60])
def test_the_api_key_is_redacted_with_its_prefix_cut_off(cut, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    for text in (f"key={KEY[cut:]}", f"…{KEY[cut:]} trailing", f"{KEY[:-cut]}", f"'{KEY[cut:-5]}'"):
        shown = redact(text)
        assert KEY[cut:cut + 12] not in shown and KEY[-20:-8] not in shown, shown
    assert redact("a sha 3f2a9c0d1b7e6f5a4c3b2a1908f7e6d5 stays") == \
        "a sha 3f2a9c0d1b7e6f5a4c3b2a1908f7e6d5 stays"


def test_bgmon_run_writes_its_event_log_for_the_user_only(tmp_path, monkeypatch, isolated_home):
    from bgmon.cli import main as cli_main

    monkeypatch.chdir(tmp_path)
    assert cli_main(["run", "--name", "t", "-q", "--", sys.executable, "-c", "print('hi')"]) == 0
    log = tmp_path / ".worktrees" / "t" / "logs" / "events.jsonl"
    assert stat.S_IMODE(log.stat().st_mode) == 0o600


# --- deep JSON nesting is bounded wherever JSON is walked or written ------------------------------

DEEP = 3000


def deep(n: int = DEEP):
    value: object = 0
    for _ in range(n):
        value = [value]
    return {"k": value}


def test_a_deeply_nested_status_file_never_crashes_the_restart_write(tmp_path):
    sfile = tmp_path / "status.json"
    sfile.write_text('{"pid": 5, "extra": ' + "[" * DEEP + "0" + "]" * DEEP + "}")
    assert write_pid(str(sfile), 4242, time.time()) is False  # said, not a RecursionError
    assert sfile.read_text().startswith('{"pid": 5')


def test_redaction_and_validation_bound_the_depth_they_walk(tmp_path):
    out = redact_obj(deep())
    orjson.dumps(out)  # serialisable: bounded well below orjson's own limit
    actions, refused_ = validate_actions([{"kind": "mark", "note": deep()}, deep()], snap(cwd=str(tmp_path)))
    assert not actions and len(refused_) == 2
    orjson.dumps(refused_)  # what the journal writes
    assert "nested" in orjson.dumps(refused_).decode()


# --- a full disk: what ran is said, and what could not be recorded -------------------------------


def test_an_action_that_ran_on_a_full_disk_says_so_and_what_was_not_recorded(tmp_path, monkeypatch):
    import argparse
    import errno
    import io

    from bgmon.recovery.cli import add_parsers, run_command

    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    marker = tmp_path / "ran"
    s = snap(cwd=str(tmp_path), path=str(tmp_path))
    service = RecoveryService.for_root(tmp_path, use_claude=False)
    run = Run(argv=("touch", "ran"), cwd=str(tmp_path), timeout=30)
    p = proposal(run)
    service.journal.append({"kind": "proposal", "task": p.task, "task_id": p.task_id,
                            "proposal": p.to_json()})
    real_append = service.journal.append

    def full(record, *a, **k):
        if record.get("kind") == "result":
            raise OSError(errno.ENOSPC, "No space left on device", str(service.journal.path))
        return real_append(record, *a, **k)

    monkeypatch.setattr(service.journal, "append", full)
    parser = argparse.ArgumentParser(prog="bgmon")
    add_parsers(parser.add_subparsers(dest="command"))
    out, err = io.StringIO(), io.StringIO()
    code = run_command(parser.parse_args(["approve", p.id, "--yes"]), {"wt:demo": s, "demo": s}.get,
                       service=service, out=out, err=err, stdin=io.StringIO())
    assert marker.exists()  # it ran
    said = out.getvalue() + err.getvalue()
    assert code == 0, said
    assert "could not be recorded" in said and "No space left on device" in said
    assert "Traceback" not in said
