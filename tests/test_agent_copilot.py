"""GitHub Copilot CLI: session-state/<id>/events.jsonl, fixtures shaped like its session events
(github/copilot-sdk session-events schema: session.start, user.message, assistant.message,
tool.execution_start/complete, abort, session.error, subagent.*)."""

from __future__ import annotations

import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bgmon.agents.copilot import parse, sub_agents
from bgmon.config import Config
from bgmon.engine import Monitor
from bgmon.model import EventKind
from tests.conftest import Clock, append_lines
from tests.jsonfuzz import json_lines, json_values, mutated

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
    session, _ = look(tmp_path, T0 + 60)
    assert session.health.badge.value == "healthy"
    append_lines(path, ev("subagent.completed", {"toolCallId": "s1", "agentName": "explore",
                                                 "agentDisplayName": "Explore"}, T0 + 1),
                 ev("assistant.message", {"messageId": "m3", "content": "Done."}, T0 + 2))
    session, _ = look(tmp_path, T0 + 60)
    assert session.health.badge.value == "completed"


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


# Sub-agents (the `task` tool) write into the session's own events.jsonl. Shaped like the
# runtime's lines: the spawning call, `subagent.started` keyed by that call's id, the
# sub-agent's own lines stamped `agentId` (1.0.39+) or `data.parentToolCallId` (before).
SUB = "toolu_01Rv8BzXk3c4YQhLw7n2Sf5D"


def task_call(call_id: str = SUB, t: float = T0, agent: str | None = None) -> list[dict]:
    start = ev("tool.execution_start", {"toolCallId": call_id, "toolName": "task", "arguments": {
        "agent_type": "general-purpose", "description": "Fix the build", "prompt": "make it pass",
        "mode": "background"}}, t)
    started = ev("subagent.started", {"toolCallId": call_id, "agentName": "general-purpose",
                                      "agentDisplayName": "Fix the build",
                                      "agentDescription": "Full-capability agent"}, t)
    if agent is not None:
        start["agentId"] = agent
    started["agentId"] = agent or call_id  # the runtime stamps a sub-agent's start with its own id
    return [start, started]


def stamped(line: dict, agent: str, legacy: bool = False) -> dict:
    """A line the sub-agent `agent` wrote."""
    if legacy:
        line["data"]["parentToolCallId"] = agent
    else:
        line["agentId"] = agent
    return line


def by_key(monitor: Monitor) -> dict:
    return {s.key: s for s in monitor.snapshots()}


def test_a_sub_agent_is_its_own_task_with_its_own_failures(tmp_path):
    path = tmp_path / "session-state" / SID / "events.jsonl"
    # A background sub-agent: the `task` call returns at once, the sub-agent works on.
    launched = ev("tool.execution_complete", {"toolCallId": SUB, "success": True, "result": {
        "content": f"Agent started in background with agent_id: {SUB}"}})
    append_lines(path, start(), ev("user.message", {"content": "fix the build"}), *task_call(), launched,
                 *(stamped(line, SUB) for line in bash(1, 2) + bash(2, 2) + bash(3, 2)),
                 ev("assistant.message", {"messageId": "m1", "content": "The sub-agent is on it."}))
    clock = Clock(T0 + 60)
    monitor = Monitor(config(tmp_path), clock=clock)
    monitor.sweep()
    monitor.evaluate()
    tasks = by_key(monitor)
    session, child = tasks[f"copilot:{SID}"], tasks[f"copilot:{SID}/{SUB}"]
    assert child.parent == session.key and child.name == "Fix the build" and child.id == SUB[-8:]
    assert child.group == "/work/hack"  # it works where its session does
    # Its failed commands are its own: the session's own record has none of them.
    assert child.health.badge.value == "struggling" and "exit code 2" in child.health.summary
    assert session.own_health is not None and session.own_health.badge.value == "healthy"
    assert session.health.badge.value == "struggling"  # rolled up from the sub-agent
    assert not any(e.tool == "bash" for e in session.recent)
    assert [e.tool for e in child.recent if e.kind is EventKind.TOOL_CALL] == ["bash"] * 3

    # It fails: the sub-agent's task says so; the session's background work is over.
    append_lines(path, stamped(ev("subagent.failed", {
        "toolCallId": SUB, "agentName": "general-purpose", "agentDisplayName": "Fix the build",
        "error": "model call failed: 500", "durationMs": 9000}, T0 + 5), SUB))
    monitor.on_paths([str(path)])
    monitor.evaluate()
    tasks = by_key(monitor)
    child = tasks[f"copilot:{SID}/{SUB}"]
    assert child.health.badge.value == "failed" and "model call failed: 500" in child.health.summary
    assert tasks[f"copilot:{SID}"].own_health.badge.value == "completed"  # its own turn ended


def test_an_older_sub_agent_marks_its_lines_with_the_parent_call_and_completes(tmp_path):
    path = tmp_path / "session-state" / SID / "events.jsonl"
    sub = "call_Gx1pQ0mWb2"
    started = task_call(sub)
    del started[1]["agentId"]  # before 1.0.39: no envelope agentId at all
    append_lines(path, start(), ev("user.message", {"content": "explore"}), *started,
                 stamped(ev("assistant.message", {"messageId": "s1", "content": "Looking.",
                                                  "toolRequests": [{"toolCallId": "r1"}]}), sub, True),
                 *(stamped(line, sub, True) for line in bash(7, 0)),
                 ev("subagent.completed", {"toolCallId": sub, "agentName": "general-purpose",
                                           "agentDisplayName": "Fix the build", "totalToolCalls": 1}, T0 + 2))
    tasks = {s.key: s for s in look(tmp_path, T0 + 60)}
    child = tasks[f"copilot:{SID}/{sub}"]
    assert child.health.badge.value == "completed" and child.parent == f"copilot:{SID}"
    assert [e.kind for e in child.recent][:1] == [EventKind.TURN_START]
    # A cancelled sub-agent completes too (the runtime: cancellation is not a failure).
    assert parse(ev("subagent.completed", {"toolCallId": sub, "cancelled": True}))[0].kind is EventKind.BG_END


def test_a_sub_agent_started_by_a_sub_agent_nests_under_it(tmp_path):
    path = tmp_path / "session-state" / SID / "events.jsonl"
    inner = "toolu_01InnerQa9"
    append_lines(path, start(), ev("user.message", {"content": "go"}), *task_call(),
                 *task_call(inner, agent=SUB),
                 stamped(ev("tool.execution_start", {"toolCallId": "i1", "toolName": "view",
                                                     "arguments": {"path": "/work/hack"}}), inner))
    tasks = {s.key: s for s in look(tmp_path, T0 + 5)}
    outer_key = f"copilot:{SID}/{SUB}"
    assert tasks[f"copilot:{SID}/{inner}"].parent == outer_key
    assert tasks[outer_key].parent == f"copilot:{SID}"
    assert all(e.tool != "view" for e in tasks[outer_key].recent)


def test_sub_agents_go_with_their_session(tmp_path):
    path = tmp_path / "session-state" / SID / "events.jsonl"
    append_lines(path, start(), ev("user.message", {"content": "go"}), *task_call())
    monitor = Monitor(config(tmp_path), clock=Clock(T0 + 5))
    monitor.sweep()
    monitor.sweep()  # a second look keeps the sub-agent (discovery never lists it)
    assert f"copilot:{SID}/{SUB}" in monitor.tasks
    path.unlink()
    monitor.sweep()
    monitor.evaluate()
    assert monitor.tasks == {} and monitor.snapshots() == []


_KEYS = ["type", "data", "agentId", "timestamp", "parentId", "toolCallId", "parentToolCallId", "agentName",
         "agentDisplayName", "error", "cancelled", "toolName", "arguments", "result", "content", "success"]
_WORDS = ["subagent.started", "subagent.completed", "subagent.failed", "tool.execution_start",
          "tool.execution_complete", "assistant.message", SUB, "task"]
_values = json_values(_KEYS, _WORDS)


def _examples() -> list[dict]:
    return [start(), *task_call(), *task_call("inner", agent=SUB), *(stamped(x, SUB) for x in bash(1, 2)),
            stamped(ev("subagent.failed", {"toolCallId": SUB, "error": "x"}), SUB, legacy=True)]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(json_lines(_KEYS, _values, max_size=6), mutated(_examples, _values, most=3)))
def test_junk_lines_never_raise(obj):
    events = parse(obj)
    assert events is None or isinstance(events, list)
    for share in sub_agents(obj):
        assert isinstance(share.agent, str) and share.agent and isinstance(share.events, list)
