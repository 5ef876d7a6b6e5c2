"""GitHub Copilot CLI: session-state/<id>/events.jsonl, fixtures shaped like its session events
(github/copilot-sdk session-events schema: session.start, user.message, assistant.message,
tool.execution_start/complete, abort, session.error, subagent.*)."""

from __future__ import annotations

import time

from bgmon.agents.copilot import parse
from bgmon.config import Config
from bgmon.engine import Monitor
from bgmon.model import EventKind
from tests.conftest import Clock, append_lines

T0 = 1_790_000_000.0
SID = "51854430-83f7-4543-a9bf-ec76ead71f59"


def ev(kind: str, data: dict, t: float = T0, n: list = [0]) -> dict:  # noqa: B006 (a counter)
    n[0] += 1
    return {"type": kind, "data": data, "id": f"e{n[0]}", "timestamp":
            time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".000Z", "parentId": None}


def start() -> dict:
    return ev("session.start", {"sessionId": SID, "version": 1, "producer": "copilot-agent",
                                "copilotVersion": "0.0.407", "startTime": "2026-02-04T10:51:40Z",
                                "context": {"cwd": "/work/hack", "gitRoot": "/work/hack", "branch": "main"}})


def bash(i: int, code: int) -> list[dict]:
    return [ev("tool.execution_start", {"toolCallId": f"tc{i}", "toolName": "bash",
                                        "arguments": {"command": f"make {i}", "description": "build"}}),
            ev("tool.execution_complete", {"toolCallId": f"tc{i}", "success": True,
                                           "result": {"content": f"make: *** Error\n<exited with exit code {code}>"}})]


def config(home) -> Config:
    return Config(roots=(str(home),), sources=("copilot",), dirs=(("copilot", str(home)),),
                  match_agents=False, since=1e9)


def look(home, t=T0 + 10):
    monitor = Monitor(config(home), clock=Clock(t))
    monitor.sweep()
    monitor.evaluate()
    return monitor.snapshots()


def test_session_exit_codes_todos_and_cwd(tmp_path):
    path = tmp_path / "session-state" / SID / "events.jsonl"
    todo = "- [x] read the code\n- [ ] fix the build\n- [ ] run tests"
    append_lines(path, start(), ev("user.message", {"content": "fix the build"}),
                 ev("assistant.message", {"messageId": "m1", "content": "On it.",
                                          "toolRequests": [{"toolCallId": "t0", "name": "update_todo"}]}),
                 ev("tool.execution_start", {"toolCallId": "t0", "toolName": "update_todo",
                                             "arguments": {"todos": todo}}),
                 ev("tool.execution_complete", {"toolCallId": "t0", "success": True,
                                                "result": {"content": "updated"}}),
                 *bash(1, 2), *bash(2, 2), *bash(3, 2))
    (snap,) = look(tmp_path)
    assert snap.key == f"copilot:{SID}" and snap.group == "/work/hack" and snap.name == "hack"
    assert str(snap.progress) == "1/3" and snap.step == "fix the build"
    assert snap.health.badge.value == "struggling" and "exit code 2" in snap.health.summary


def test_failed_tools_aborts_and_errors(tmp_path):
    assert parse(ev("tool.execution_complete", {"toolCallId": "x", "success": False,
                                                "error": {"message": "denied"}}))[0].ok is False
    assert parse(ev("abort", {"reason": "user initiated"}))[0].kind is EventKind.TURN_ABORTED
    assert parse(ev("session.error", {"errorType": "rate_limit", "message": "429"}))[0].kind is EventKind.API_ERROR
    assert parse(ev("session.model_change", {"newModel": "x"})) == []
    assert parse({"type": "user.message"}) is None  # not an event envelope
    append_lines(tmp_path / "session-state" / SID / "events.jsonl", start(),
                 ev("user.message", {"content": "go"}), ev("abort", {"reason": "user initiated"}))
    (snap,) = look(tmp_path)
    assert snap.health.reasons[0].rule == "waiting.interrupted"  # the person stopped it: not a failure


def test_a_plain_answer_ends_the_turn_and_a_running_subagent_keeps_it_open(tmp_path):
    path = tmp_path / "session-state" / SID / "events.jsonl"
    append_lines(path, start(), ev("user.message", {"content": "go"}),
                 ev("subagent.started", {"toolCallId": "s1", "agentName": "explore",
                                         "agentDisplayName": "Explore", "agentDescription": "d"}),
                 ev("assistant.message", {"messageId": "m2", "content": "Waiting for the explorer."}))
    (snap,) = look(tmp_path, T0 + 60)
    assert snap.health.badge.value == "healthy"
    append_lines(path, ev("subagent.completed", {"toolCallId": "s1", "agentName": "explore",
                                                 "agentDisplayName": "Explore"}, T0 + 1),
                 ev("assistant.message", {"messageId": "m3", "content": "Done."}, T0 + 2))
    (snap,) = look(tmp_path, T0 + 60)
    assert snap.health.badge.value == "completed"


def test_a_permission_request_waits_until_it_is_answered(tmp_path):
    path = tmp_path / "session-state" / SID / "events.jsonl"
    asked = ev("permission.requested", {"requestId": "r1", "permissionRequest": {
        "kind": "shell", "fullCommandText": "rm -rf build", "intention": "clean"}}, T0 + 1)
    append_lines(path, start(), ev("user.message", {"content": "clean"}), asked)
    (snap,) = look(tmp_path, T0 + 3600)
    assert snap.health.badge.value == "waiting" and "rm -rf build" in snap.health.summary
    append_lines(path, ev("permission.completed", {"requestId": "r1", "result": {"kind": "approved"}}, T0 + 2))
    (snap,) = look(tmp_path, T0 + 3)
    assert snap.health.badge.value == "healthy"


def test_flat_older_layout_is_found_too(tmp_path):
    append_lines(tmp_path / "session-state" / f"{SID}.jsonl", start(), ev("user.message", {"content": "go"}))
    assert [s.key for s in look(tmp_path)] == [f"copilot:{SID}"]
