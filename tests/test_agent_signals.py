"""The agents' own word on a session's state: Claude Code's per-process state files
(`sessions/<pid>.json`) and bgmon's hook events (written by the real recorder), preferred over
what the transcript suggests unless a transcript line is newer."""

from __future__ import annotations

import json
import os
import subprocess
import time

from bgmon.config import Config
from bgmon.engine import Monitor
from bgmon.hooks.install import command
from tests.conftest import Clock, append_lines, write_json

SID = "5e55a0e1-0000-4000-8000-00000000c0de"
T0 = 1_790_000_000.0


def iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".000Z"


def line(kind: str, t: float, **kw) -> dict:
    return {"type": kind, "sessionId": SID, "uuid": f"u{t}", "timestamp": iso(t), "cwd": "/work/app", **kw}


def transcript(home, *lines) -> None:
    append_lines(home / "projects" / "-work-app" / f"{SID}.jsonl", *lines)


def prompt(t: float) -> dict:
    return line("user", t, message={"role": "user", "content": "fix it"})


def tool_use(t: float, i: int = 1) -> dict:
    return line("assistant", t, message={"role": "assistant", "content": [
        {"type": "tool_use", "id": f"toolu_{i}", "name": "Bash", "input": {"command": "make"}}]})


def answer(t: float) -> dict:
    return line("assistant", t, message={"role": "assistant", "content": [{"type": "text", "text": "Done."}],
                                         "stop_reason": None})


def proc_start(pid: int) -> str:
    with open(f"/proc/{pid}/stat", "rb") as fh:
        stat = fh.read()
    return stat[stat.rfind(b")") + 2 :].split()[19].decode()


def state_file(home, status: str, t: float, pid: int | None = None, start: str | None = None) -> None:
    pid = pid or os.getpid()
    write_json(home / "sessions" / f"{pid}.json", {
        "pid": pid, "sessionId": SID, "cwd": "/work/app", "startedAt": int(T0 * 1000), "kind": "interactive",
        "procStart": start or proc_start(pid), "status": status, "statusUpdatedAt": int(t * 1000),
        "version": "2.1.150"})


def look(home, state, t: float):
    config = Config(roots=(str(home),), sources=("claude", "codex"),
                    dirs=(("claude", str(home)), ("codex", str(home / "codex"))), match_agents=False, since=1e9)
    os.environ["BGMON_STATE_DIR"] = str(state)
    try:
        monitor = Monitor(config, clock=Clock(t))
        monitor.sweep()
        monitor.evaluate()
    finally:
        del os.environ["BGMON_STATE_DIR"]
    (snap,) = [s for s in monitor.snapshots() if s.parent is None]
    return snap


def hook(state, **payload) -> None:
    env = {**os.environ, "BGMON_STATE_DIR": str(state)}
    p = subprocess.run(command("claude"), input=json.dumps({"session_id": SID, **payload}).encode(),
                       env=env, capture_output=True, timeout=30)
    assert p.returncode == 0


def test_state_file_waiting_busy_and_idle(tmp_path):
    transcript(tmp_path, prompt(T0), tool_use(T0 + 1))
    state_file(tmp_path, "waiting", T0 + 2)
    assert look(tmp_path, tmp_path / "st", T0 + 30).health.badge.value == "waiting"
    state_file(tmp_path, "idle", T0 + 3)
    assert look(tmp_path, tmp_path / "st", T0 + 30).health.badge.value == "completed"
    # A text-only reply is only a guess at the end; the state file says the turn goes on.
    transcript(tmp_path, answer(T0 + 4))
    state_file(tmp_path, "busy", T0 + 5)
    snap = look(tmp_path, tmp_path / "st", T0 + 60)
    assert snap.health.badge.value == "healthy" and snap.status == "running"


def test_a_state_file_of_a_dead_or_reused_pid_is_ignored(tmp_path):
    transcript(tmp_path, prompt(T0), tool_use(T0 + 1))
    child = subprocess.Popen(["true"])
    child.wait()
    state_file(tmp_path, "waiting", T0 + 2, pid=child.pid, start="1")  # exited: pid may be anyone's
    assert look(tmp_path, tmp_path / "st", T0 + 30).health.badge.value == "healthy"
    state_file(tmp_path, "waiting", T0 + 2, start="12345")  # a live pid, started at another time
    assert look(tmp_path, tmp_path / "st", T0 + 30).health.badge.value == "healthy"


def test_hook_events_from_the_real_recorder(tmp_path):
    state = tmp_path / "state"
    now = time.time()
    transcript(tmp_path, prompt(now - 5), tool_use(now - 4))
    hook(state, hook_event_name="UserPromptSubmit", prompt="fix it")
    hook(state, hook_event_name="PreToolUse", tool_name="Bash", tool_input={"command": "make"})
    hook(state, hook_event_name="Notification", notification_type="permission_prompt",
         message="Claude needs your permission to use Bash")
    snap = look(tmp_path, state, now + 60)
    assert snap.health.badge.value == "waiting"
    hook(state, hook_event_name="PostToolUse", tool_name="Bash")
    assert look(tmp_path, state, time.time() + 1).health.badge.value == "healthy"
    hook(state, hook_event_name="Stop", stop_hook_active=False)
    assert look(tmp_path, state, time.time() + 1).health.badge.value == "completed"  # no settling
    hook(state, hook_event_name="StopFailure", error="rate_limit")
    snap = look(tmp_path, state, time.time() + 1)
    assert snap.health.badge.value == "failed" and "rate_limit" in snap.health.summary


def test_a_newer_transcript_line_outranks_an_older_signal(tmp_path):
    state = tmp_path / "state"
    transcript(tmp_path, prompt(T0), answer(T0 + 1))
    state_file(tmp_path, "idle", T0 + 2)
    transcript(tmp_path, prompt(T0 + 100), tool_use(T0 + 101))  # a new turn after the state was written
    snap = look(tmp_path, state, T0 + 130)
    assert snap.health.badge.value == "healthy" and snap.status == "running"


def codex_session(tmp_path, sid: str) -> None:
    """A Codex rollout whose turn has started (and nothing more)."""
    path = tmp_path / "codex" / "sessions" / time.strftime("%Y/%m/%d") / f"rollout-2026-11-21T10-00-00-{sid}.jsonl"
    now = time.time()
    append_lines(path, {"timestamp": iso(now - 5), "type": "session_meta", "payload": {"id": sid, "cwd": "/w"}},
                 {"timestamp": iso(now - 4), "type": "event_msg", "payload": {"type": "task_started"}})


def codex_badge(tmp_path, state) -> str:
    config = Config(roots=(str(tmp_path),), sources=("codex",), dirs=(("codex", str(tmp_path / "codex")),),
                    match_agents=False)
    os.environ["BGMON_STATE_DIR"] = str(state)
    try:
        monitor = Monitor(config, clock=Clock(time.time() + 1))
        monitor.sweep()
        monitor.evaluate()
    finally:
        del os.environ["BGMON_STATE_DIR"]
    return monitor.snapshots()[0].health.badge.value


def test_codex_notify_ends_the_turn(tmp_path):
    state = tmp_path / "state"
    sid = "0199aaaa-bbbb-cccc-dddd-eeeeffff0000"
    codex_session(tmp_path, sid)
    env = {**os.environ, "BGMON_STATE_DIR": str(state)}
    payload = json.dumps({"type": "agent-turn-complete", "thread-id": sid, "turn-id": "1"})
    subprocess.run([*command("codex"), payload], env=env, check=True, timeout=30)
    assert codex_badge(tmp_path, state) == "completed"


def test_codex_hooks_say_waiting_on_a_permission_then_turn_ended(tmp_path):
    state = tmp_path / "state"
    sid = "019d036d-c7fa-72d2-b6fd-78878bfe34e4"
    codex_session(tmp_path, sid)
    env = {**os.environ, "BGMON_STATE_DIR": str(state)}

    def hook(event: str, **fields) -> None:
        payload = {"session_id": sid, "turn_id": "t1", "cwd": "/w", "hook_event_name": event, **fields}
        subprocess.run(command("codex"), input=json.dumps(payload).encode(), env=env, check=True, timeout=30)

    hook("UserPromptSubmit")
    hook("PermissionRequest", tool_name="Bash", tool_input={"command": "rm -rf build"})
    assert codex_badge(tmp_path, state) == "waiting"
    time.sleep(0.01)
    hook("PostToolUse", tool_name="Bash")
    assert codex_badge(tmp_path, state) == "healthy"
    time.sleep(0.01)
    hook("Stop", stop_hook_active=False)
    assert codex_badge(tmp_path, state) == "completed"
