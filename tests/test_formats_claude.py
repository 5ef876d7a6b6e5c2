"""The Claude Code adapter: hand-written lines modelled on real transcripts, then the real corpus.

The corpus tests read ../shared/corpus next to the repository and skip cleanly without it. Their
expected numbers come from a small independent scan of the raw JSON, never from the adapter.

Every line is parsed both ways the engine can meet it (`parse` below): decoded in full into a
dict, and through the format's own decoder (the fields the adapter reads, the rest skipped),
which must give the same events.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bgmon.formats import canonical_input, claude, sniff
from bgmon.model import EventKind as K
from bgmon.timefmt import parse_time
from tests.conftest import CORPUS
from tests.jsonfuzz import json_lines, json_values, mutated


def parse(obj):
    """The adapter's events for a line decoded in full, checked against the same line's bytes
    through the format's decoder (unless that decoder refuses the line's shape: then the reader
    decodes it in full, as here)."""
    full = claude.parse(obj)
    try:
        record = claude.decode(orjson.dumps(obj))
    except (TypeError, ValueError, RecursionError):  # not JSON, or a shape the schema refuses
        return full
    assert claude.parse(record) == full, obj
    return full


TS = "2026-02-12T16:02:25.227Z"
CWD = "/home/u/projects/app"


def line(kind: str, **fields) -> dict:
    base = {
        "parentUuid": "p-1",
        "isSidechain": False,
        "userType": "external",
        "cwd": CWD,
        "sessionId": "s-1",
        "version": "2.1.39",
        "gitBranch": "main",
        "type": kind,
        "uuid": "u-1",
        "timestamp": TS,
    }
    base.update(fields)
    return base


def assistant(*content: dict, stop_reason: str | None = None, **fields) -> dict:
    message = {
        "model": "claude-opus-4-6",
        "id": "msg_01",
        "type": "message",
        "role": "assistant",
        "content": list(content),
        "stop_reason": stop_reason,
        "stop_sequence": None,
    }
    return line("assistant", message=message, requestId="req_1", **fields)


def user(content, **fields) -> dict:
    return line("user", message={"role": "user", "content": content}, **fields)


def tool_use(name: str, call_id: str = "toolu_01", **input_) -> dict:
    return {"type": "tool_use", "id": call_id, "name": name, "input": input_, "caller": {"type": "direct"}}


def tool_result(call_id: str = "toolu_01", content="ok", is_error: bool | None = None) -> dict:
    item = {"type": "tool_result", "tool_use_id": call_id, "content": content}
    if is_error is not None:
        item["is_error"] = is_error
    return item


def text(value: str) -> dict:
    return {"type": "text", "text": value}


def kinds(events) -> list[K]:
    return [e.kind for e in events]


def without_meta(events):
    return [e for e in events if e.kind is not K.META]


def notification(task_id: str, status: str = "completed", summary: str = "done") -> str:
    return (
        f"<task-notification>\n<task-id>{task_id}</task-id>\n"
        f"<output-file>/tmp/claude-1000/x/tasks/{task_id}.output</output-file>\n"
        f"<status>{status}</status>\n<summary>{summary}</summary>\n</task-notification>\n"
        f"Read the output file to retrieve the result: /tmp/claude-1000/x/tasks/{task_id}.output"
    )


# -- META and cheap lines ----------------------------------------------------------------


def test_every_line_with_cwd_gives_meta_with_its_time():
    events = parse(user("fix the build"))
    meta = [e for e in events if e.kind is K.META]
    assert len(meta) == 1
    assert meta[0].cwd == CWD
    assert meta[0].ts == parse_time(TS)


def test_timestamp_fast_path_agrees_with_parse_time():
    for stamp in ("2026-02-12T16:02:25.227Z", "2026-02-12T16:02:25Z", "2026-02-12T16:02:25+02:00"):
        assert parse(user("x", timestamp=stamp))[0].ts == parse_time(stamp)
    assert parse(user("x", timestamp="not a time"))[0].ts is None


def test_hook_progress_is_known_and_silent():
    obj = line("progress", data={"type": "hook_progress", "hookEvent": "PreToolUse"},
               parentToolUseID="toolu_01", toolUseID="toolu_01")
    assert parse(obj) == []


def test_bash_progress_is_a_heartbeat_for_its_call():
    obj = line("progress", data={"type": "bash_progress", "output": "compiling", "elapsedTimeSeconds": 2},
               parentToolUseID="toolu_01", toolUseID="bash-progress-0")
    events = parse(obj)
    assert kinds(events) == [K.HEARTBEAT]
    assert events[0].call_id == "toolu_01"
    assert events[0].ts == parse_time(TS)


def test_waiting_for_task_heartbeat_says_what_it_waits_for():
    obj = line("progress", data={"type": "waiting_for_task", "taskDescription": "Run tests", "taskType": "local_bash"},
               parentToolUseID="toolu_02")
    (event,) = parse(obj)
    assert event.kind is K.HEARTBEAT
    assert event.text == "waiting for Run tests"


def test_quiet_known_types_and_unknown_ones():
    snapshot = {"type": "file-history-snapshot", "messageId": "m", "snapshot": {}, "isSnapshotUpdate": False}
    assert parse(snapshot) == []
    assert parse({"type": "summary", "summary": "Fix login", "leafUuid": "u"}) == []
    assert parse({"type": "queue-operation", "operation": "remove", "timestamp": TS}) == []
    assert parse({"type": "something-new", "cwd": CWD}) is None
    assert parse({"type": ["user"]}) is None
    assert parse({}) is None


def test_sniff_routes_these_lines_to_this_adapter():
    assert sniff(user("hi")) == "claude"
    assert sniff(assistant(text("hi"))) == "claude"


# -- assistant lines ---------------------------------------------------------------------


def test_tool_use_gives_tool_call_with_canonical_input():
    events = without_meta(parse(assistant(tool_use("Bash", "toolu_9", command="make", timeout=30000))))
    assert kinds(events) == [K.TOOL_CALL]
    call = events[0]
    assert (call.tool, call.call_id) == ("Bash", "toolu_9")
    assert call.input == canonical_input({"command": "make", "timeout": 30000})


def test_todowrite_gives_progress_and_current_step():
    todos = [
        {"content": "Write parser", "activeForm": "Writing parser", "status": "completed"},
        {"content": "Write tests", "activeForm": "Writing tests", "status": "in_progress"},
        {"content": "Ship", "activeForm": "Shipping", "status": "pending"},
    ]
    events = without_meta(parse(assistant(tool_use("TodoWrite", todos=todos))))
    assert kinds(events) == [K.TOOL_CALL, K.PROGRESS, K.STEP]
    assert (events[1].done, events[1].total) == (1, 3)
    assert events[2].text == "Writing tests"


def test_todowrite_step_falls_back_to_content_and_empty_list_is_no_progress():
    todos = [{"content": "Write tests", "status": "in_progress"}]
    events = without_meta(parse(assistant(tool_use("TodoWrite", todos=todos))))
    assert events[-1].kind is K.STEP and events[-1].text == "Write tests"
    assert kinds(without_meta(parse(assistant(tool_use("TodoWrite", todos=[]))))) == [K.TOOL_CALL]


def test_todos_snapshot_on_a_prompt_line_gives_progress():
    todos = [{"content": "a", "status": "completed"}, {"content": "b", "activeForm": "Doing b", "status": "in_progress"}]
    events = without_meta(parse(user("continue", todos=todos)))
    assert kinds(events) == [K.TURN_START, K.PROGRESS, K.STEP]
    assert (events[1].done, events[1].total, events[2].text) == (1, 2, "Doing b")


def test_task_board_items_from_task_create_results_and_task_update_calls():
    update = tool_use("TaskUpdate", "toolu_u", taskId="2", status="in_progress", activeForm="Running the suite")
    events = without_meta(parse(assistant(update)))
    assert kinds(events) == [K.TOOL_CALL, K.TASK_ITEM]
    assert (events[1].call_id, events[1].input, events[1].text) == ("2", "in_progress", "Running the suite")
    created = user([tool_result("toolu_c", "Task #7 created")], toolUseResult={"task": {"id": "7", "subject": "Parse"}})
    item = [e for e in parse(created) if e.kind is K.TASK_ITEM]
    assert [(e.call_id, e.input, e.text) for e in item] == [("7", "pending", "Parse")]


def test_task_board_gives_progress_and_step_through_the_activity():
    from bgmon.activity import Activity
    from bgmon.model import Progress

    act = Activity()
    for n, subject in enumerate(["Parse", "Test", "Ship", "Oops"], 1):
        act.extend(parse(user([tool_result(f"c{n}")], toolUseResult={"task": {"id": str(n), "subject": subject}})))
    for task_id, status, form in (("1", "completed", None), ("2", "in_progress", "Running tests"), ("4", "deleted", None)):
        act.extend(parse(assistant(tool_use("TaskUpdate", f"u{task_id}", taskId=task_id, status=status,
                                            **({"activeForm": form} if form else {})))))
    assert act.progress == Progress(1, 3)
    assert act.step == "Running tests"


def test_text_gives_message_and_a_text_only_line_may_end_the_turn():
    events = without_meta(parse(assistant(text("All done. Tests pass."))))
    assert kinds(events) == [K.MESSAGE, K.TURN_END]
    assert events[0].text == "All done. Tests pass."
    assert events[1].text == "text_only"


def test_text_with_a_tool_call_does_not_end_the_turn():
    events = without_meta(parse(assistant(text("Let me check."), tool_use("Read", file_path="/a"))))
    assert kinds(events) == [K.TOOL_CALL, K.MESSAGE]


def test_blank_text_and_thinking_give_nothing_but_meta():
    assert without_meta(parse(assistant(text("\n\n")))) == []
    assert without_meta(parse(assistant({"type": "thinking", "thinking": "hmm", "signature": "x"}))) == []


def test_stop_reason_decides_when_present():
    ended = without_meta(parse(assistant(text("Here is the review."), stop_reason="end_turn")))
    assert kinds(ended) == [K.MESSAGE, K.TURN_END]
    assert ended[1].text == "end_turn"
    mid = without_meta(parse(assistant(text("Checking."), stop_reason="tool_use")))
    assert kinds(mid) == [K.MESSAGE]
    calls = without_meta(parse(assistant(tool_use("Bash", command="ls"), stop_reason="tool_use")))
    assert kinds(calls) == [K.TOOL_CALL]


def test_long_text_is_clipped():
    events = without_meta(parse(assistant(text("x" * 5000))))
    assert len(events[0].text) == 400
    assert events[0].text.endswith("…")


def test_api_error_message_gives_api_error_only():
    obj = assistant(text("API Error: 529 Overloaded. Try again later."), stop_reason="stop_sequence",
                    isApiErrorMessage=True, error="server_error", apiErrorStatus=529)
    obj["message"]["model"] = "<synthetic>"
    events = without_meta(parse(obj))
    assert kinds(events) == [K.API_ERROR]
    assert events[0].text.startswith("API Error: 529")


def test_synthetic_api_error_text_without_the_flag_is_still_an_api_error():
    obj = assistant(text("API Error: Connection error."))
    obj["message"]["model"] = "<synthetic>"
    assert kinds(without_meta(parse(obj))) == [K.API_ERROR]


def test_retried_api_error_is_an_error_not_the_end_of_the_turn():
    obj = line("system", subtype="api_error", level="error", retryAttempt=2, maxRetries=10, retryInMs=500,
               error={"status": 529, "message": "overloaded"})
    events = without_meta(parse(obj))
    assert kinds(events) == [K.ERROR]
    assert events[0].text == "API error (retry 2/10): 529 overloaded"


def test_turn_duration_and_stop_hooks_end_the_turn_and_other_system_lines_are_quiet():
    assert kinds(without_meta(parse(line("system", subtype="turn_duration", durationMs=341765)))) == [K.TURN_END]
    boundary = line("system", subtype="compact_boundary", content="Conversation compacted",
                    compactMetadata={"trigger": "auto", "preTokens": 170251})
    assert kinds(parse(boundary)) == [K.META]
    # The Stop hooks run when the turn ends: the only end a thinking-only last reply shows.
    hooks = line("system", subtype="stop_hook_summary", hookCount=1, hookErrors=[])
    assert kinds(without_meta(parse(hooks))) == [K.TURN_END]


# -- user lines --------------------------------------------------------------------------


def test_tool_result_ok():
    events = without_meta(parse(user([tool_result("toolu_01", "file contents", is_error=False)],
                                     toolUseResult={"stdout": "x", "stderr": ""})))
    assert kinds(events) == [K.TOOL_RESULT]
    assert (events[0].call_id, events[0].ok, events[0].error) == ("toolu_01", True, None)
    assert events[0].tool is None  # the engine names it from the call


def test_tool_result_without_is_error_is_ok():
    events = without_meta(parse(user([tool_result("toolu_02", [text("report")])])))
    assert events[0].ok is True


def test_tool_result_error_carries_clipped_text():
    content = "<tool_use_error>String to replace not found in file.</tool_use_error>"
    events = without_meta(parse(user([tool_result("toolu_03", content, is_error=True)],
                                     toolUseResult="Error: String to replace not found in file.")))
    assert (events[0].ok, events[0].error) == (False, "String to replace not found in file.")
    long = without_meta(parse(user([tool_result("toolu_04", "E" * 10_000, is_error=True)])))
    assert len(long[0].error) == 400


def test_error_string_tool_use_result_means_failure_even_without_the_flag():
    events = without_meta(parse(user([tool_result("toolu_05", "Exit code 1")], toolUseResult="Error: Exit code 1\nboom")))
    assert events[0].ok is False
    assert events[0].error.startswith("Error: Exit code 1")


def test_background_bash_gives_bg_start_named_by_its_task_id():
    result = {"stdout": "", "stderr": "", "interrupted": False, "isImage": False,
              "noOutputExpected": False, "backgroundTaskId": "b7636e2"}
    events = without_meta(parse(user([tool_result("toolu_06", "Command running in background with ID: b7636e2.",
                                                  is_error=False)], toolUseResult=result)))
    assert kinds(events) == [K.TOOL_RESULT, K.BG_START]
    assert events[0].ok is True
    assert events[1].call_id == "b7636e2"


def test_background_agent_gives_bg_start():
    result = {"isAsync": True, "status": "async_launched", "agentId": "a1b2c3", "description": "review"}
    events = without_meta(parse(user([tool_result("toolu_07", "launched")], toolUseResult=result)))
    assert kinds(events) == [K.TOOL_RESULT, K.BG_START]
    assert events[1].call_id == "a1b2c3"


def test_task_output_poll_ends_a_finished_background_task():
    def poll(status, code):
        result = {"retrieval_status": "success" if status != "running" else "timeout",
                  "task": {"task_id": "be613ab", "task_type": "local_bash", "status": status, "exitCode": code}}
        return without_meta(parse(user([tool_result("toolu_08", "<retrieval_status>…")], toolUseResult=result)))

    assert kinds(poll("running", None)) == [K.TOOL_RESULT]
    done = poll("completed", 0)
    assert kinds(done) == [K.TOOL_RESULT, K.BG_END]
    assert (done[1].call_id, done[1].ok) == ("be613ab", True)
    failed = poll("completed", 2)
    assert (failed[1].ok, failed[1].error) == (False, "exit code 2")


def test_task_notification_in_queue_operation_gives_bg_end():
    obj = {"type": "queue-operation", "operation": "enqueue", "timestamp": TS, "sessionId": "s-1",
           "content": notification("b7636e2", summary='Background command "Run tests" completed (exit code 0)')}
    (event,) = parse(obj)
    assert (event.kind, event.call_id, event.ok) == (K.BG_END, "b7636e2", True)
    assert event.ts == parse_time(TS)
    failed = parse({**obj, "content": notification("b1", "failed", "Background command failed with exit code 1")})
    assert (failed[0].ok, failed[0].error) == (False, "Background command failed with exit code 1")


def test_queued_prompt_that_is_not_a_notification_is_quiet():
    assert parse({"type": "queue-operation", "operation": "enqueue", "timestamp": TS, "content": "check again"}) == []


def test_task_notification_delivered_as_a_prompt_ends_the_task_and_starts_a_turn():
    events = without_meta(parse(user(notification("bd0afab"))))
    assert kinds(events) == [K.BG_END, K.TURN_START]
    assert events[0].call_id == "bd0afab"


def test_task_notification_attachment_gives_bg_end():
    obj = {"type": "attachment", "timestamp": TS,
           "attachment": {"type": "queued_command", "commandMode": "task-notification", "prompt": notification("a9")}}
    assert [(e.kind, e.call_id) for e in parse(obj)] == [(K.BG_END, "a9")]
    assert parse({"type": "attachment", "attachment": {"type": "skill_listing", "skills": []}}) == []


def test_a_prompt_starts_a_turn():
    events = without_meta(parse(user("start phoenix in background", todos=[], permissionMode="bypassPermissions")))
    assert kinds(events) == [K.TURN_START]
    assert events[0].text == "start phoenix in background"


def test_harness_text_is_not_a_prompt():
    caveat = "<local-command-caveat>Caveat: The messages below were generated by the user…</local-command-caveat>"
    assert without_meta(parse(user(caveat, isMeta=True))) == []
    assert without_meta(parse(user([text("Base directory for this skill: /x")], isMeta=True))) == []
    summary = "This session is being continued from a previous conversation that ran out of context."
    assert without_meta(parse(user(summary, isCompactSummary=True, isVisibleInTranscriptOnly=True))) == []
    local = "<command-name>/mcp</command-name>\n            <command-message>mcp</command-message>"
    assert without_meta(parse(user(local))) == []
    assert without_meta(parse(user("<local-command-stdout>Reconnected.</local-command-stdout>"))) == []
    assert without_meta(parse(user("<bash-input>ls</bash-input>"))) == []


def test_a_prompt_command_starts_a_turn_named_by_the_command():
    cmd = ("<command-message>review</command-message>\n<command-name>/review</command-name>\n"
           "<command-args>Audit the wrapper.</command-args>")
    events = without_meta(parse(user(cmd)))
    assert kinds(events) == [K.TURN_START]
    assert events[0].text == "/review Audit the wrapper."


def test_interruption_aborts_the_turn():
    for content in ([text("[Request interrupted by user]")], "[Request interrupted by user for tool use]"):
        events = without_meta(parse(user(content)))
        assert kinds(events) == [K.TURN_ABORTED]
        assert events[0].text.startswith("[Request interrupted by user")


# -- never raises ------------------------------------------------------------------------

_KEYS = [
    "type", "message", "content", "text", "name", "id", "input", "todos", "status", "activeForm",
    "tool_use_id", "is_error", "toolUseResult", "backgroundTaskId", "cwd", "timestamp", "stop_reason",
    "isApiErrorMessage", "isMeta", "isCompactSummary", "subtype", "data", "operation", "taskId",
    "subject", "task", "task_id", "exitCode", "retrieval_status", "model", "error", "agentId",
    "retryAttempt", "maxRetries", "parentToolUseID", "attachment", "prompt", "taskDescription",
]
_WORDS = [
    "assistant", "user", "progress", "system", "queue-operation", "attachment", "summary",
    "tool_use", "tool_result", "text", "thinking", "TodoWrite", "TaskUpdate", "TaskCreate",
    "in_progress", "completed", "pending", "failed", "end_turn", "tool_use", "<synthetic>",
    "API Error: 500", "Error: boom", "[Request interrupted by user]", "enqueue", "turn_duration",
    "api_error", "bash_progress", "waiting_for_task", "async_launched", "queued_command",
    "<task-notification><task-id>x</task-id><status>failed</status>", "<command-message>",
    "<task-notification>", TS, "\n\n",
]
_values = json_values(_KEYS, _WORDS)
_lines = json_lines(_KEYS, _values, max_size=10)
_typed = st.builds(
    lambda d, t: {**d, "type": t},
    _lines,
    st.sampled_from(["assistant", "user", "progress", "system", "queue-operation", "attachment"]) | _values,
)
_item = st.builds(
    lambda d, t: {**d, "type": t},
    st.dictionaries(st.sampled_from(_KEYS), _values, max_size=6),
    st.sampled_from(["tool_use", "tool_result", "text", "thinking"]) | _values,
)
_shaped = st.builds(
    lambda d, t, content, extra: {**d, "type": t, "message": {**extra, "content": content}},
    _lines,
    st.sampled_from(["assistant", "user"]),
    st.lists(_item, max_size=4) | _values,
    st.dictionaries(st.sampled_from(_KEYS), _values, max_size=3),
)



def _examples() -> list[dict]:
    """Valid lines of every kind above, for the mutation strategy below."""
    todos = [{"content": "a", "activeForm": "A", "status": "in_progress"}, {"content": "b", "status": "completed"}]
    return [
        assistant(text("done"), tool_use("TodoWrite", todos=todos), stop_reason="end_turn"),
        assistant(tool_use("TaskUpdate", taskId="1", status="in_progress", subject="s")),
        {**assistant(text("API Error: 500")), "isApiErrorMessage": True, "error": "server_error"},
        user([tool_result("t", [text("boom")], is_error=True)], toolUseResult="Error: boom"),
        user([tool_result("t")], toolUseResult={"backgroundTaskId": "b1", "stdout": ""}),
        user([tool_result("t")], toolUseResult={"status": "async_launched", "agentId": "a1"}),
        user([tool_result("t")], toolUseResult={"retrieval_status": "success",
                                                "task": {"task_id": "b1", "status": "completed", "exitCode": 1}}),
        user(notification("b2", "failed")),
        user("<command-message>x</command-message><command-name>/x</command-name><command-args>y</command-args>"),
        user([text("[Request interrupted by user]")], todos=todos),
        line("progress", data={"type": "waiting_for_task", "taskDescription": "t"}, parentToolUseID="p"),
        line("system", subtype="api_error", retryAttempt=1, maxRetries=3,
             error={"status": 503, "error": {"error": {"message": "busy"}}}),
        line("system", subtype="turn_duration"),
        {"type": "queue-operation", "operation": "enqueue", "content": notification("b3")},
        {"type": "attachment", "attachment": {"type": "queued_command", "prompt": notification("b4")}},
    ]


_mutated = mutated(lambda: _examples(), _values, most=4)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(_lines, _typed, _shaped, _mutated))
def test_parse_never_raises(obj):
    events = parse(obj)
    assert events is None or isinstance(events, list)
    for event in events or ():
        for value in (event.text, event.error, event.input):
            assert value is None or (isinstance(value, str) and len(value) <= 400)


# -- the real corpus ---------------------------------------------------------------------

needs_corpus = pytest.mark.skipif(not CORPUS.is_dir(), reason="no ../shared/corpus next to the repository")


def _corpus_files() -> list[Path]:
    files = sorted((CORPUS / "spotter").rglob("*.jsonl"))
    files += sorted((CORPUS / "cchistory" / "mock_data" / ".claude" / "projects").rglob("*.jsonl"))
    return files


def _raw_lines(path: Path) -> list[dict]:
    return [json.loads(raw) for raw in path.read_text(encoding="utf-8").splitlines() if raw.strip()]


def _truth(objs: list[dict]) -> Counter:
    """What the raw JSON says, counted without the adapter."""
    c: Counter = Counter()
    for o in objs:
        msg = o.get("message") or {}
        content = msg.get("content") if isinstance(msg, dict) else None
        items = content if isinstance(content, list) else []
        for item in items:
            if item.get("type") == "tool_use":
                c["calls"] += 1
            if item.get("type") == "tool_result":
                c["results"] += 1
                err = item.get("is_error") is True or str(o.get("toolUseResult", "")).startswith("Error:")
                c["errors"] += err
        tur = o.get("toolUseResult")
        if isinstance(tur, dict) and tur.get("backgroundTaskId"):
            c["bg_started"] += 1
        if o.get("subtype") == "turn_duration":
            c["turn_duration"] += 1
        texts = [content] if isinstance(content, str) else [i.get("text") for i in items if i.get("type") == "text"]
        if o.get("type") == "user" and any(str(t).startswith("[Request interrupted by user") for t in texts):
            c["interrupted"] += 1
    return c


@needs_corpus
def test_corpus_every_claude_line_parses():
    files = _corpus_files()
    assert len(files) >= 20
    for path in files:
        for raw in path.read_bytes().splitlines():
            if not raw.strip():
                continue
            events = parse(orjson.loads(raw))
            assert events is not None, f"{path.name}: unknown line type in {raw[:80]!r}"


@needs_corpus
def test_corpus_tool_heavy_counts_match_the_raw_json():
    objs = _raw_lines(CORPUS / "spotter" / "tool_heavy.jsonl")
    truth = _truth(objs)
    events = [e for o in objs for e in parse(o) or ()]
    got = Counter(e.kind for e in events)
    assert (truth["calls"], truth["results"], truth["errors"]) == (6, 6, 0)  # the scan works here
    assert got[K.TOOL_CALL] == truth["calls"]
    assert got[K.TOOL_RESULT] == truth["results"]
    assert sum(1 for e in events if e.kind is K.TOOL_RESULT and e.ok is False) == truth["errors"]
    assert got[K.BG_START] == truth["bg_started"] == 1
    assert got[K.TURN_ABORTED] == truth["interrupted"] == 2
    assert got[K.TURN_START] == 2  # "start phoenix…" and "scrolling back…"; /mcp is local


@needs_corpus
def test_corpus_largest_session_counts_match_the_raw_json():
    path = CORPUS / "spotter" / "fa812bfe-b295-4cca-9c2f-fdf01028cb46.jsonl"
    if not path.exists():
        pytest.skip("file not in this corpus")
    objs = _raw_lines(path)
    truth = _truth(objs)
    assert (truth["calls"], truth["results"], truth["errors"]) == (197, 197, 8)
    events = [e for o in objs for e in parse(o) or ()]
    failures = [e for e in events if e.kind is K.TOOL_RESULT and e.ok is False]
    assert sum(1 for e in events if e.kind is K.TOOL_CALL) == 197
    assert sum(1 for e in events if e.kind is K.TOOL_RESULT) == 197
    assert len(failures) == 8 and all(e.error for e in failures)


@needs_corpus
def test_corpus_counts_match_the_raw_json_in_every_file():
    totals: Counter = Counter()
    for path in _corpus_files():
        objs = _raw_lines(path)
        truth = _truth(objs)
        events = [e for o in objs for e in parse(o) or ()]
        got = Counter(e.kind for e in events)
        name = path.name
        assert got[K.TOOL_CALL] == truth["calls"], name
        assert got[K.TOOL_RESULT] == truth["results"], name
        assert sum(1 for e in events if e.kind is K.TOOL_RESULT and e.ok is False) == truth["errors"], name
        assert got[K.BG_START] == truth["bg_started"], name
        assert got[K.TURN_ABORTED] == truth["interrupted"], name
        assert sum(1 for e in events if e.kind is K.TURN_END and e.text == "turn_duration") == truth["turn_duration"]
        assert got[K.API_ERROR] == 0, name
        # exactly one result per call, and every result answers a call of the same file
        results = Counter(e.call_id for e in events if e.kind is K.TOOL_RESULT)
        calls = {e.call_id for e in events if e.kind is K.TOOL_CALL}
        assert max(results.values(), default=1) == 1, name
        assert set(results) <= calls, name
        totals.update(truth)
    assert totals["calls"] > 1000 and totals["errors"] > 50


@needs_corpus
def test_corpus_background_tasks_start_and_end():
    path = CORPUS / "spotter" / "4d5611e5-241a-462a-8d15-5122611a9569.jsonl"
    if not path.exists():
        pytest.skip("file not in this corpus")
    events = [e for o in _raw_lines(path) for e in parse(o) or ()]
    started = {e.call_id for e in events if e.kind is K.BG_START}
    ended = {e.call_id for e in events if e.kind is K.BG_END}
    assert started == {"b7636e2"}
    assert started <= ended
    assert all(e.ok is True for e in events if e.kind is K.BG_END)


@needs_corpus
def test_corpus_timestamps_come_from_each_line():
    for path in _corpus_files()[:4]:
        for o in _raw_lines(path):
            for e in parse(o) or ():
                assert e.ts == parse_time(o.get("timestamp"))
