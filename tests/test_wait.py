"""`bgmon wait` as a real subprocess, on real tasks (`bgmon run` jobs and worktree tasks) that
reach each state while it waits, and on one that does not get there in time."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import pytest

from bgmon.model import Badge
from tests.conftest import bgmon_cmd, wait_for

SOURCES = ("--no-git", "--no-claude", "--no-codex")


def env_for(home):
    return {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")}


def job(ws, home, name: str, code: int) -> subprocess.Popen:
    """`bgmon run --name NAME` of a command that exits CODE once ROOT/NAME.go exists."""
    gate = ws.root / f"{name}.go"
    body = (f"import os, sys, time\nwhile not os.path.exists({str(gate)!r}): time.sleep(0.05)\n"
            f"sys.exit({code})")
    proc = subprocess.Popen(bgmon_cmd("run", "--name", name, "--restart", "no", "--quiet", "--",
                                      sys.executable, "-c", body),
                            cwd=ws.root, env=env_for(home), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    status = ws.root / ".worktrees" / name / "status.json"
    wait_for(lambda: b'"running"' in status.read_bytes(), what=f"{name} running")
    return proc


def open_gate(ws, name: str) -> None:
    (ws.root / f"{name}.go").write_text("")


def start_wait(ws, home, *args: str) -> subprocess.Popen:
    return subprocess.Popen(bgmon_cmd("wait", *args, "--root", str(ws.root), *SOURCES),
                            env=env_for(home), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def finish(proc: subprocess.Popen, timeout: float = 60) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, out, err


def test_until_completed_reached(ws, isolated_home):
    runner = job(ws, isolated_home, "build", 0)
    waiter = start_wait(ws, isolated_home, "build", "--until", "completed")
    time.sleep(1.0)
    assert waiter.poll() is None  # still running: still waiting
    open_gate(ws, "build")
    code, out, err = finish(waiter)
    assert code == 0, err
    assert re.search(r"build\b.*\| ● completed", out) and "every task is completed" in err
    runner.wait(20)


def one_job(ws, home, name: str, exit_code: int, *wait_args: str) -> tuple[int, str, str]:
    """A job that ends with `exit_code` while `bgmon wait NAME WAIT_ARGS` waits on it."""
    runner = job(ws, home, name, exit_code)
    waiter = start_wait(ws, home, name, *wait_args)
    open_gate(ws, name)
    try:
        return finish(waiter)
    finally:
        runner.wait(20)


def test_until_completed_but_it_failed(ws, isolated_home):
    code, out, err = one_job(ws, isolated_home, "deploy", 3, "--until", "completed", "--timeout", "60s")
    assert code == 1, err
    assert re.search(r"deploy\b.*\| ✗ failed", out) and "bgmon wait: deploy is failed" in err


def test_until_settled_with_one_failure_among_several(ws, isolated_home):
    runners = [job(ws, isolated_home, "a", 0), job(ws, isolated_home, "b", 3)]
    waiter = start_wait(ws, isolated_home, "a", "b", "--until", "settled")
    open_gate(ws, "a")
    time.sleep(1.0)
    assert waiter.poll() is None  # b still runs: not settled yet
    open_gate(ws, "b")
    code, _, err = finish(waiter)
    assert code == 1 and "b is failed" in err
    for r in runners:
        r.wait(20)


def test_until_settled_all_fine(ws, isolated_home):
    code, _, err = one_job(ws, isolated_home, "only", 0, "--until", "settled")
    assert code == 0 and "every task is settled" in err


def test_until_healthy_after_struggling(ws, isolated_home):
    ws.task("worker", name="worker")
    ws.fail("worker", 3)
    waiter = start_wait(ws, isolated_home, "worker", "--until", "healthy")
    time.sleep(1.5)
    assert waiter.poll() is None
    now = time.time()
    for i in range(8):
        ws.log("worker", {"ts": now, "type": "tool_call", "tool": "Bash", "call_id": f"ok{i}",
                          "input": {"i": i}},
               {"ts": now, "type": "tool_result", "call_id": f"ok{i}", "ok": True})
    code, out, err = finish(waiter)
    assert code == 0, err
    assert "worker | ✓ healthy" in out


def test_until_fault(ws, isolated_home):
    ws.task("worker", name="worker")
    waiter = start_wait(ws, isolated_home, "worker", "--until", "fault")
    time.sleep(1.5)
    assert waiter.poll() is None
    ws.fail("worker", 3)
    code, _, err = finish(waiter)
    assert code == 0 and "worker is struggling" in err


def test_until_fault_but_it_completed(ws, isolated_home):
    code, _, err = one_job(ws, isolated_home, "tidy", 0, "--until", "fault")
    assert code == 1 and "completed without a fault" in err


def test_timeout_is_124(ws, isolated_home):
    ws.task("forever", name="forever")
    started = time.monotonic()
    code, out, err = finish(start_wait(ws, isolated_home, "forever", "--until", "completed",
                                       "--timeout", "2s"))
    assert code == 124, err
    assert time.monotonic() - started >= 2
    assert "timed out after 2s before completed" in err and "forever | ✓ healthy" in out


@pytest.mark.parametrize(("args", "message"), [
    (["nobody", "--until", "completed"], "no task matches 'nobody'"),
    (["x", "--until", "done"], "invalid choice"),
    (["x"], "--until"),
])
def test_usage_errors(ws, isolated_home, args, message):
    ws.task("x", name="x")
    code, _, err = finish(start_wait(ws, isolated_home, *args))
    assert code == 2 and message in err and "Traceback" not in err


def test_an_acknowledged_failure_does_not_end_the_wait(ws, isolated_home):
    ws.task("known", name="known", status="failed", error="flaky runner")
    ws.task("build", name="build")
    env = env_for(isolated_home)
    acked = subprocess.run(bgmon_cmd("ack", "known", "--root", str(ws.root), *SOURCES),
                           capture_output=True, text=True, env=env, timeout=60)
    assert acked.returncode == 0, acked.stderr
    waiter = start_wait(ws, isolated_home, "known", "build", "--until", "settled")
    time.sleep(1.5)
    assert waiter.poll() is None  # build still runs; the known failure does not end it
    ws.task("build", name="build", status="completed")
    code, out, err = finish(waiter)
    assert code == 0, err  # settled, and the only fault is acknowledged
    assert "(acknowledged" in out


@pytest.mark.skipif(not hasattr(Badge, "WAITING"), reason="the waiting badge is not in this bgmon")
def test_until_waiting(ws, isolated_home):
    ws.task("asker", name="asker")
    ws.log("asker", {"ts": time.time(), "type": "step", "text": "pushing"})
    waiter = start_wait(ws, isolated_home, "asker", "--until", "waiting", "--timeout", "60s")
    time.sleep(1.5)
    assert waiter.poll() is None
    ws.log("asker", {"ts": time.time(), "type": "waiting", "text": "approve: git push"})
    code, _, err = finish(waiter)
    assert code == 0, err
    assert "every task is waiting" in err
