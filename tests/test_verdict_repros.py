"""The five verdicts issue 9 found wrong on main, reproduced as a user meets them: real
`bgmon run` supervisors, real signals, real transcripts, and `bgmon --once` as a subprocess."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from tests.conftest import append_lines, terminate, wait_for

PY = sys.executable
ONCE = ("--once", "--json", "--no-git", "--no-codex")


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC", "BGMON"))}
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"))
    env.pop("CLAUDE_CONFIG_DIR", None)
    env.pop("CODEX_HOME", None)
    return env


def bgmon(cwd: Path, home: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([PY, "-m", "bgmon", *args], cwd=cwd, env=_env(home),
                          capture_output=True, text=True, timeout=90)


def once(cwd: Path, home: Path, *extra: str) -> tuple[int, list[dict]]:
    p = bgmon(cwd, home, *ONCE, *extra)
    assert p.returncode in (0, 1), p.stderr
    return p.returncode, orjson.loads(p.stdout)["tasks"]


def supervise(cwd: Path, home: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([PY, "-m", "bgmon", "run", "-q", *args], cwd=cwd, env=_env(home),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def status_of(task: Path) -> dict:
    return orjson.loads((task / "status.json").read_bytes())


@pytest.fixture
def home(tmp_path) -> Path:
    h = tmp_path / "home"
    (h / ".claude" / "projects").mkdir(parents=True)
    return h


# 1. A command that logs classified errors every 0.3 s is struggling, and recovery agrees.

def test_a_stream_of_classified_errors_is_struggling_and_recovery_agrees(tmp_path, home):
    loop = 'while true; do echo "connect ECONNREFUSED 127.0.0.1:9 (Connection refused)" >&2; sleep 0.3; done'
    proc = supervise(tmp_path, home, "--name", "sync", "--", "bash", "-c", loop)
    try:
        log = tmp_path / ".worktrees" / "sync" / "logs" / "events.jsonl"
        wait_for(lambda: log.read_bytes().count(b'"connection_refused"') >= 5, timeout=30,
                 what="five classified errors")
        code, (task,) = once(tmp_path, home, "--no-claude")
        assert task["health"] == "struggling", task["reasons"]
        assert code == 1
        first = task["reasons"][0]
        assert first["rule"] == "struggling.errors"
        assert "connection_refused" in first["detail"]
        assert first["count"] >= 3 and first["pattern"] == "connection_refused"
        p = bgmon(tmp_path, home, "propose", "sync", "--json", "--no-git", "--no-claude", "--no-codex")
        assert p.returncode == 0, p.stderr
        diagnosis = orjson.loads(p.stdout)["diagnosis"]
        assert "past them" not in diagnosis
        assert "struggling" in diagnosis and "connection refused" in diagnosis
    finally:
        terminate(proc)


# 2. A silent hang is stuck although the supervisor's heartbeat keeps coming.

def test_a_silent_hang_is_stuck_despite_the_supervisors_heartbeat(tmp_path, home):
    proc = supervise(tmp_path, home, "--name", "hang", "--heartbeat", "0.3s", "--", "sleep", "100000")
    try:
        task_dir = tmp_path / ".worktrees" / "hang"
        wait_for(lambda: status_of(task_dir)["pid"], what="the child's pid")
        time.sleep(3.5)  # several heartbeats later, and past --stuck-after
        code, (task,) = once(tmp_path, home, "--no-claude", "--stuck-after", "2s")
        assert task["health"] == "stuck", task["reasons"]
        assert task["reasons"][0]["rule"] == "stuck.idle"
        assert "alive" in task["reasons"][0]["detail"]
        assert code == 1
    finally:
        terminate(proc)


# 3. A SIGSTOPped child is not healthy.

def test_a_stopped_child_is_not_healthy(tmp_path, home):
    proc = supervise(tmp_path, home, "--name", "frozen", "--", "sleep", "100000")
    task_dir = tmp_path / ".worktrees" / "frozen"
    pid = wait_for(lambda: status_of(task_dir)["pid"], what="the child's pid")
    try:
        os.kill(pid, signal.SIGSTOP)
        code, (task,) = once(tmp_path, home, "--no-claude")
        assert task["health"] == "stuck", task["reasons"]
        assert task["reasons"][0]["rule"] == "stuck.stopped"
        assert str(pid) in task["reasons"][0]["detail"]
        assert code == 1
    finally:
        os.kill(pid, signal.SIGCONT)
        terminate(proc)


# Claude transcripts: an agent process is any process whose argv[0] is `claude`, in the cwd.

def _fake_claude(cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(["bash", "-c", "exec -a claude sleep 1000"], cwd=cwd)


def _session(home: Path, cwd: Path, *lines: dict) -> Path:
    path = home / ".claude" / "projects" / "-proj" / "0b5e0c1a-0000-4000-8000-000000000001.jsonl"
    now = time.time()
    stamped = []
    for i, line in enumerate(lines):
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now - 60 + i)) + ".000Z"
        stamped.append({"sessionId": "0b5e0c1a", "cwd": str(cwd), "timestamp": ts,
                        "uuid": f"u{i}", **line})
    append_lines(path, *stamped)
    return path


PROMPT = {"type": "user", "message": {"role": "user", "content": "tidy the build scripts"}}
BASH_CALL = {"type": "assistant", "message": {"role": "assistant", "model": "claude-opus-4-5",
             "content": [{"type": "tool_use", "id": "toolu_1", "name": "Bash",
                          "input": {"command": "rm -rf build"}}], "stop_reason": "tool_use"}}


# 4. A session the user interrupted is waiting for them, not failed.

def test_an_interrupted_session_is_waiting_not_failed(tmp_path, home):
    work = tmp_path / "proj"
    work.mkdir()
    _session(home, work, PROMPT, BASH_CALL, {
        "type": "user", "message": {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "is_error": True,
             "content": "The user doesn't want to proceed with this tool use."},
            {"type": "text", "text": "[Request interrupted by user for tool use]"}]}})
    agent = _fake_claude(work)
    try:
        code, (task,) = once(tmp_path, home, "--no-worktrees")
        assert task["health"] == "waiting", task["reasons"]
        assert task["reasons"][0]["rule"] == "waiting.interrupted"
        assert code == 0  # waiting is not a fault
        p = bgmon(tmp_path, home, *ONCE, "--no-worktrees", "--fail-on", "waiting")
        assert p.returncode == 1, p.stderr
    finally:
        agent.kill()
        agent.wait()
    # With no agent process left, the interrupted session is over: not a fault either.
    code, (task,) = once(tmp_path, home, "--no-worktrees")
    assert task["health"] != "failed" and code == 0


# 5. A tool call waiting for approval while the agent idles is `waiting`, not working.

def test_a_call_awaiting_approval_is_waiting(tmp_path, home):
    work = tmp_path / "proj"
    work.mkdir()
    _session(home, work, PROMPT, BASH_CALL)
    agent = _fake_claude(work)
    try:
        code, (task,) = once(tmp_path, home, "--no-worktrees")
        assert task["health"] == "waiting", task["reasons"]
        assert task["reasons"][0]["rule"] == "waiting.approval"
        assert "Bash" in task["reasons"][0]["detail"]
        assert code == 0
        text = bgmon(tmp_path, home, "--once", "--no-git", "--no-codex", "--no-worktrees")
        assert "⚑ waiting" in text.stdout, text.stdout
    finally:
        agent.kill()
        agent.wait()


# 6. Evidence stays true: ages in reasons are formatted when a view draws, not when judged.

def test_evidence_ages_are_formatted_when_drawn(ws):
    from bgmon.engine import Monitor
    from bgmon.views.tui.detail import render_task
    from tests.conftest import Clock

    clock = Clock(time.time())
    # The status file is written now, but says its last heartbeat was 700 s ago: its own
    # updatedAt wins over its mtime.
    ws.task("quiet", updatedAt=clock.t - 700)
    monitor = Monitor(ws.config(), clock=clock)
    monitor.sweep()
    monitor.evaluate()
    (snap,) = monitor.snapshots()
    assert snap.health.badge.value == "stuck", snap.health.reasons
    reason = snap.health.reasons[0]
    assert reason.to_json()["since"] and reason.to_json()["threshold_s"] == 600
    assert "11m" in reason.at(clock.t)
    clock.t += 120  # two minutes later, the same snapshot drawn again
    assert "13m" in reason.at(clock.t)
    from rich.console import Console
    console = Console(width=200, record=True)
    console.print(render_task(snap, clock.t))
    assert "13m" in console.export_text()
