"""Real-log misreadings from issue 9, each on a line shaped like the real ones (Claude Code
2.0-2.1.x, Codex CLI 0.1x-0.12x): parsed to the right events, and judged right."""

from __future__ import annotations

from bgmon.activity import Activity
from bgmon.config import Thresholds
from bgmon.formats import claude, codex
from bgmon.health import Observation, assess, roll_up
from bgmon.model import Badge, EventKind, Health, Reason

TH = Thresholds()
T = "2026-02-12T16:02:25.227Z"


def kinds(events):
    return [e.kind for e in events]


def test_newer_record_types_are_known_not_warnings():
    for kind in ("permission-mode", "pr-link", "agent-name", "teleported-from", "world_state",
                 "token_usage_record"):
        assert claude.parse({"type": kind, "sessionId": "s"}) == [], kind
    for kind in ("world_state", "token_usage_record"):
        assert codex.parse({"timestamp": T, "type": kind, "payload": {}}) == [], kind


def test_a_thinking_only_reply_ends_its_turn_by_the_stop_hooks():
    line = {"type": "system", "subtype": "stop_hook_summary", "hookCount": 1, "timestamp": T}
    assert kinds(claude.parse(line)) == [EventKind.TURN_END]


def test_the_harness_end_after_an_api_error_leaves_the_turn_failed():
    error = {"type": "assistant", "timestamp": T, "isApiErrorMessage": True, "message": {
        "model": "<synthetic>", "role": "assistant",
        "content": [{"type": "text", "text": "API Error: 529 Overloaded"}]}}
    act = Activity()
    act.extend(claude.parse({"type": "user", "timestamp": T, "message": {"role": "user", "content": "go"}}))
    act.extend(claude.parse(error))
    for subtype in ("turn_duration", "stop_hook_summary"):
        act.extend(claude.parse({"type": "system", "subtype": subtype, "timestamp": T}))
    h = assess(Observation(source="claude", agent_alive=False, activity=act.summary()), 1770912200.0, TH)
    assert h.badge is Badge.FAILED and h.reasons[0].rule == "turn.api_error"
    act.extend(claude.parse({"type": "user", "timestamp": T, "message": {"role": "user", "content": "again"}}))
    act.extend(claude.parse({"type": "system", "subtype": "turn_duration", "timestamp": T}))
    assert act.summary().turn == "ended"  # a new turn's end is its own


def test_killbash_ends_the_background_shell():
    act = Activity()
    act.extend(claude.parse({"type": "user", "timestamp": T, "message": {"content": [
        {"type": "tool_result", "tool_use_id": "t1", "content": "started"}]},
        "toolUseResult": {"backgroundTaskId": "bash_7"}}))
    assert act.summary().background == 1
    act.extend(claude.parse({"type": "assistant", "timestamp": T, "message": {"content": [
        {"type": "tool_use", "id": "t2", "name": "KillBash", "input": {"shell_id": "bash_7"}}]}}))
    assert act.summary().background == 0


def test_the_step_goes_when_the_newest_todo_list_has_nothing_in_progress():
    def todo(*statuses):
        return {"type": "assistant", "timestamp": T, "message": {"content": [
            {"type": "tool_use", "id": "t", "name": "TodoWrite", "input": {"todos": [
                {"content": f"item {i}", "activeForm": f"doing {i}", "status": s}
                for i, s in enumerate(statuses)]}}]}}
    act = Activity()
    act.extend(claude.parse(todo("completed", "in_progress")))
    assert act.step == "doing 1"
    act.extend(claude.parse(todo("completed", "completed")))
    assert act.step is None and str(act.progress) == "2/2"


def test_the_step_goes_when_the_task_board_has_nothing_in_progress():
    """Claude 2.1.16+: the board's items change one TaskUpdate at a time."""
    def line(kind, content, **extra):
        return {"type": kind, "timestamp": T, "message": {"content": content}, **extra}

    def update(task_id, status, form=None):
        return line("assistant", [{"type": "tool_use", "id": f"u{task_id}{status}", "name": "TaskUpdate",
                                   "input": {"taskId": task_id, "status": status,
                                             **({"activeForm": form} if form else {})}}])

    act = Activity()
    for k in ("1", "2"):
        act.extend(claude.parse(line("user", [{"type": "tool_result", "tool_use_id": f"c{k}", "content": "ok"}],
                                     toolUseResult={"task": {"id": k, "subject": f"item {k}"}})))
    act.extend(claude.parse(update("1", "in_progress", "Doing one")))
    assert act.step == "Doing one" and str(act.progress) == "0/2"
    act.extend(claude.parse(update("1", "completed")))
    assert act.step is None and str(act.progress) == "1/2"  # nothing in progress now
    act.extend(claude.parse(update("2", "in_progress")))
    assert act.step == "item 2"
    act.extend(claude.parse(update("2", "deleted")))
    assert act.step is None and str(act.progress) == "1/1"


def test_codex_approval_requests_are_waiting_until_the_call_runs():
    act = Activity()
    act.extend(codex.parse({"timestamp": "2026-03-13T02:39:05Z", "type": "response_item", "payload": {
        "type": "function_call", "name": "shell", "arguments": '{"command":["git","push"]}', "call_id": "c1"}}))
    act.extend(codex.parse({"timestamp": "2026-03-13T02:39:06Z", "type": "event_msg", "payload": {
        "type": "exec_approval_request", "call_id": "c1", "command": ["git", "push"], "cwd": "/w"}}))
    h = assess(Observation(source="codex", activity=act.summary()), 1773369600.0, TH)
    assert h.badge is Badge.WAITING and "approve command: git push" in h.summary
    act.extend(codex.parse({"timestamp": "2026-03-13T02:40:00Z", "type": "response_item", "payload": {
        "type": "function_call_output", "call_id": "c1", "output": "Exit code: 0\nOutput:\n"}}))
    assert act.summary().waiting is None


def test_codex_rollouts_from_before_the_envelope_are_read():
    head = codex.parse({"id": "0196a1b2-0000-7000-8000-000000000001", "timestamp": "2025-05-02T10:00:00.000Z",
                        "instructions": None, "git": {"branch": "main"}})
    assert kinds(head) == [EventKind.META] and head[0].ts is not None
    assert codex.parse({"record_type": "state"}) == []
    call = codex.parse({"type": "function_call", "name": "shell", "call_id": "c1",
                        "arguments": '{"command":["pytest"]}'})
    assert kinds(call) == [EventKind.TOOL_CALL] and call[0].tool == "shell"
    out = codex.parse({"type": "function_call_output", "call_id": "c1",
                       "output": '{"output":"1 failed","metadata":{"exit_code":1,"duration_seconds":0.5}}'})
    assert out[0].ok is False


def test_a_write_stdin_that_finds_the_process_exited_ends_its_session():
    act = Activity()
    lines = [
        {"type": "function_call", "name": "exec_command", "call_id": "c1", "arguments": '{"cmd":"npm run dev"}'},
        {"type": "function_call_output", "call_id": "c1", "output": "Chunk ID: a\nProcess running with session ID 12\nOutput:\nready"},
        {"type": "function_call", "name": "write_stdin", "call_id": "c2", "arguments": '{"session_id":12,"chars":""}'},
        {"type": "function_call_output", "call_id": "c2", "output": "Chunk ID: b\nProcess exited with code 0\nOutput:\n"},
    ]
    for i, payload in enumerate(lines[:2]):
        act.extend(codex.parse({"timestamp": f"2026-03-13T02:39:0{i}Z", "type": "response_item", "payload": payload}))
    assert act.summary().background == 1
    for i, payload in enumerate(lines[2:]):
        act.extend(codex.parse({"timestamp": f"2026-03-13T02:39:1{i}Z", "type": "response_item", "payload": payload}))
    assert act.summary().background == 0


def test_helper_subagents_do_not_roll_up_into_the_session():
    ok = Health(Badge.COMPLETED, (Reason("turn.ended", "ended"),))
    failed = Health(Badge.FAILED, (Reason("turn.api_error", "overloaded"),))
    assert roll_up(ok, [("agent-acompact-946d2b", failed)]).badge is Badge.COMPLETED
    assert roll_up(ok, [("agent-aprompt_suggestion-1a2b", failed)]).badge is Badge.COMPLETED
    assert roll_up(ok, [("agent-a2898e3", failed)]).badge is Badge.FAILED


def test_a_session_of_local_commands_only_is_unknown():
    act = Activity()
    for text in ("<command-name>/model</command-name>\n<command-message>model</command-message>",
                 "<local-command-stdout>Set model to opus</local-command-stdout>"):
        act.extend(claude.parse({"type": "user", "timestamp": T, "cwd": "/w", "message": {"role": "user", "content": text}}))
    h = assess(Observation(source="claude", last_append=1770912145.0, activity=act.summary()), 1770912150.0, TH)
    assert h.badge is Badge.UNKNOWN


def test_a_child_that_failed_before_its_parents_later_turns_ended_does_not_keep_it_failed():
    from bgmon.activity import Activity as A
    from bgmon.model import Event

    def health(*events):
        act = A()
        act.extend(list(events))
        return assess(Observation(source="claude", agent_alive=False, activity=act.summary()), 2000.0, TH)

    child = health(Event(EventKind.TURN_START, ts=100.0, text="look"), Event(EventKind.API_ERROR, ts=110.0, text="overloaded"))
    assert child.badge is Badge.FAILED and child.reasons[0].to_json()["failed_at"].endswith("Z")
    later = health(Event(EventKind.TURN_START, ts=500.0, text="go on"), Event(EventKind.TURN_END, ts=600.0, text="end_turn"))
    assert later.badge is Badge.COMPLETED
    assert roll_up(later, [("agent-a2898e3", child)]).badge is Badge.COMPLETED
    earlier = health(Event(EventKind.TURN_START, ts=50.0, text="go"), Event(EventKind.TURN_END, ts=60.0, text="end_turn"))
    assert roll_up(earlier, [("agent-a2898e3", child)]).badge is Badge.FAILED  # failed after it
