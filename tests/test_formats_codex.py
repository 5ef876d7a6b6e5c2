"""The Codex CLI adapter: hand-written rollout lines (one per exit-code form), then the corpus.

The corpus tests read ../shared/corpus next to the repository and skip cleanly without it.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bgmon.formats import canonical_input, sniff
from bgmon.formats.codex import parse
from bgmon.model import EventKind as K
from bgmon.timefmt import parse_time
from tests.conftest import CORPUS
from tests.jsonfuzz import json_lines, json_values, mutated

TS = "2026-03-13T02:44:07.241Z"


def env(kind: str, /, **payload) -> dict:
    return {"timestamp": TS, "type": kind, "payload": payload}


def item(kind: str, /, **fields) -> dict:
    return env("response_item", type=kind, **fields)


def event(kind: str, /, **fields) -> dict:
    return env("event_msg", type=kind, **fields)


def call(name: str, call_id: str = "call_1", **args) -> dict:
    return item("function_call", name=name, arguments=json.dumps(args), call_id=call_id)


def output(text, call_id: str = "call_1") -> dict:
    return item("function_call_output", call_id=call_id, output=text)


def kinds(events) -> list[K]:
    return [e.kind for e in events]


def only_result(events):
    results = [e for e in events if e.kind is K.TOOL_RESULT]
    assert len(results) == 1
    return results[0]


# -- session facts -----------------------------------------------------------------------


def test_session_meta_gives_cwd_and_session_id():
    obj = env("session_meta", id="019be37c-2706", timestamp=TS, cwd="/work/app",
              originator="codex_cli_rs", cli_version="0.80.0", source={"subagent": "review"})
    (meta,) = parse(obj)
    assert (meta.kind, meta.cwd, meta.text, meta.ts) == (K.META, "/work/app", "019be37c-2706", parse_time(TS))


def test_turn_context_updates_cwd():
    assert [(e.kind, e.cwd) for e in parse(env("turn_context", cwd="/work/b", model="gpt-5.4"))] == [(K.META, "/work/b")]
    assert parse(env("turn_context", model="gpt-5.4")) == []


def test_sniff_routes_rollouts_here():
    assert sniff(env("session_meta", id="x")) == "codex"


def test_unknown_and_junk_envelopes():
    assert parse({"timestamp": TS, "type": "something_new", "payload": {}}) is None
    assert parse({"type": {"x": 1}}) is None
    assert parse(env("compacted", message="summary")) == []
    assert parse({"timestamp": TS, "type": "event_msg", "payload": "junk"}) == []
    assert parse(event("token_count", info=None)) == []
    assert parse(event("agent_reasoning", text="thinking")) == []
    assert parse(item("reasoning", summary=[], content=None)) == []


# -- calls -------------------------------------------------------------------------------


def test_function_call_input_is_the_parsed_arguments():
    (ev,) = parse(call("shell_command", "call_Bk", command="ls", workdir="/w"))
    assert (ev.kind, ev.tool, ev.call_id) == (K.TOOL_CALL, "shell_command", "call_Bk")
    assert ev.input == canonical_input({"command": "ls", "workdir": "/w"})
    same = item("function_call", name="shell_command", call_id="call_2",
                arguments='{"workdir": "/w",  "command": "ls"}')
    assert parse(same)[0].input == ev.input  # key order and spacing do not matter


def test_unparseable_arguments_are_kept_as_text():
    (ev,) = parse(item("function_call", name="exec_command", call_id="c", arguments="{not json"))
    assert ev.input == "{not json"


def test_update_plan_gives_progress_and_step():
    plan = [{"step": "Read code", "status": "completed"}, {"step": "Fix parser", "status": "in_progress"},
            {"step": "Run tests", "status": "pending"}]
    events = parse(call("update_plan", plan=plan, explanation="next"))
    assert kinds(events) == [K.TOOL_CALL, K.PROGRESS, K.STEP]
    assert (events[1].done, events[1].total, events[2].text) == (1, 3, "Fix parser")


def test_custom_and_local_shell_calls():
    (patch,) = parse(item("custom_tool_call", status="completed", call_id="call_p", name="apply_patch",
                          input="*** Begin Patch\n*** End Patch\n"))
    assert (patch.tool, patch.call_id, patch.input) == ("apply_patch", "call_p", "*** Begin Patch\n*** End Patch\n")
    (shell,) = parse(item("local_shell_call", call_id="call_s", status="completed",
                          action={"type": "exec", "command": ["bash", "-lc", "ls"]}))
    assert (shell.tool, shell.call_id, shell.input) == ("local_shell", "call_s", canonical_input(["bash", "-lc", "ls"]))


# -- results: the three exit-code forms --------------------------------------------------


def test_form1_json_metadata_exit_code_zero():
    text = json.dumps({"output": "ok\n", "metadata": {"exit_code": 0, "duration_seconds": 0.1}})
    res = only_result(parse(output(text)))
    assert (res.call_id, res.ok, res.error) == ("call_1", True, None)


def test_form1_json_metadata_exit_code_nonzero():
    text = json.dumps({"output": "error: no such file\n", "metadata": {"exit_code": 2, "duration_seconds": 0.1}})
    res = only_result(parse(output(text)))
    assert res.ok is False
    assert res.error == "exit code 2: error: no such file"


def test_form2_exit_code_text_zero():
    res = only_result(parse(output("Exit code: 0\nWall time: 0.1 seconds\nOutput:\nAGENTS.md\n")))
    assert res.ok is True


def test_form2_exit_code_text_nonzero():
    res = only_result(parse(output("Exit code: 1\nWall time: 2.3 seconds\nOutput:\nFAILED test_x\n")))
    assert (res.ok, res.error) == (False, "exit code 1: FAILED test_x")


def test_form3_process_exited_zero():
    text = "Chunk ID: a1\nWall time: 0.5 seconds\nProcess exited with code 0\nOriginal token count: 3\nOutput:\nok\n"
    assert only_result(parse(output(text))).ok is True


def test_form3_process_exited_nonzero():
    text = "Chunk ID: a1\nWall time: 9.0 seconds\nProcess exited with code 101\nOriginal token count: 3\nOutput:\npanic\n"
    res = only_result(parse(output(text)))
    assert (res.ok, res.error) == (False, "exit code 101: panic")


def test_form3_still_running_is_not_a_failure_and_starts_a_background_session():
    text = "Chunk ID: s\nWall time: 1.0 seconds\nProcess running with session ID 27299\nOriginal token count: 2\nOutput:\nbuilding\n"
    events = parse(output(text, "call_exec"))
    assert kinds(events) == [K.TOOL_RESULT, K.BG_START]
    assert (events[0].call_id, events[0].ok) == ("call_exec", True)
    assert events[1].call_id == "27299"


def test_exit_code_words_in_the_output_body_do_not_count():
    text = "Exit code: 0\nWall time: 1 seconds\nOutput:\nProcess exited with code 1\n"
    assert only_result(parse(output(text))).ok is True
    body = "Chunk ID: x\nWall time: 1 seconds\nProcess exited with code 0\nOutput:\n" + "Process exited with code 3\n"
    assert only_result(parse(output(body))).ok is True


def test_plain_outputs_and_failures_without_exit_codes():
    assert only_result(parse(output("Plan updated"))).ok is True
    res = only_result(parse(output("failed to parse function arguments: missing field `cmd`")))
    assert res.ok is False and res.error.startswith("failed to parse")
    assert only_result(parse(output({"content": "denied", "success": False}))).ok is False
    assert only_result(parse(output([{"type": "input_text", "text": "fine"}]))).ok is True
    patch = item("custom_tool_call_output", call_id="call_p",
                 output=json.dumps({"output": "Success. Updated the following files:\nM a.py\n",
                                    "metadata": {"exit_code": 0, "duration_seconds": 0.0}}))
    assert only_result(parse(patch)).ok is True


def test_exec_command_end_ends_a_background_session_but_is_not_a_result():
    end = event("exec_command_end", call_id="call_exec", process_id="27299", turn_id="t",
                exit_code=1, status="failed", aggregated_output="boom", duration={"secs": 3, "nanos": 0})
    (ev,) = parse(end)
    assert (ev.kind, ev.call_id, ev.ok, ev.error) == (K.BG_END, "27299", False, "exit code 1")
    ok = event("exec_command_end", call_id="c", process_id=4242, exit_code=0, status="completed")
    assert [(e.kind, e.call_id, e.ok) for e in parse(ok)] == [(K.BG_END, "4242", True)]
    assert parse(event("exec_command_end", call_id="c", exit_code=0)) == []  # no process: nothing to end


@pytest.mark.parametrize(
    "lines",
    [
        # ≤0.7x: shell, JSON output
        [call("shell", "c1", command=["ls"]),
         event("exec_command_end", call_id="c1", exit_code=0, status="completed"),
         output(json.dumps({"output": "", "metadata": {"exit_code": 0}}), "c1")],
        # ~0.80: shell_command
        [call("shell_command", "c1", command="ls"), output("Exit code: 0\nWall time: 0 s\nOutput:\n", "c1")],
        # 0.12x: a quick command, its end event written before the output
        [call("exec_command", "c1", cmd="ls"),
         event("exec_command_end", call_id="c1", process_id="51", exit_code=0, status="completed"),
         output("Chunk ID: a\nWall time: 0.1 seconds\nProcess exited with code 0\nOutput:\n", "c1")],
        # 0.12x: a long command, polled with write_stdin, its end event written last
        [call("exec_command", "c1", cmd="cargo build"),
         output("Chunk ID: a\nWall time: 10 seconds\nProcess running with session ID 52\nOutput:\n", "c1"),
         call("write_stdin", "c2", session_id=52, chars=""),
         output("Chunk ID: b\nWall time: 5 seconds\nProcess exited with code 0\nOutput:\n", "c2"),
         event("exec_command_end", call_id="c1", process_id="52", exit_code=0, status="completed")],
    ],
    ids=["shell-json", "shell_command", "exec-quick", "exec-background"],
)
def test_exactly_one_result_per_call_in_every_version(lines):
    events = [e for obj in lines for e in parse(obj)]
    calls = Counter(e.call_id for e in events if e.kind is K.TOOL_CALL)
    results = Counter(e.call_id for e in events if e.kind is K.TOOL_RESULT)
    assert results == calls
    started = [e.call_id for e in events if e.kind is K.BG_START]
    ended = {e.call_id for e in events if e.kind is K.BG_END}
    assert set(started) <= ended


# -- turns and messages ------------------------------------------------------------------


def test_turn_events():
    assert kinds(parse(event("task_started", turn_id="t1", model_context_window=258400))) == [K.TURN_START]
    assert kinds(parse(event("turn_started", turn_id="t1"))) == [K.TURN_START]
    (prompt,) = parse(event("user_message", message="review the validator", images=[]))
    assert (prompt.kind, prompt.text) == (K.TURN_START, "review the validator")
    assert parse(event("user_message", message="<environment_context>…", kind="environment_context")) == []
    assert kinds(parse(event("task_complete", turn_id="t1", last_agent_message="done"))) == [K.TURN_END]
    (aborted,) = parse(event("turn_aborted", reason="interrupted"))
    assert (aborted.kind, aborted.text) == (K.TURN_ABORTED, "interrupted")


def test_errors():
    (err,) = parse(event("error", message="You've hit your usage limit."))
    assert (err.kind, err.text) == (K.API_ERROR, "You've hit your usage limit.")
    (retry,) = parse(event("stream_error", message="Reconnecting... 2/5"))
    assert (retry.kind, retry.text) == (K.ERROR, "Reconnecting... 2/5")


def test_assistant_messages_and_turn_ends():
    def msg(phase=None, text="I'm tracing the streaming path first."):
        fields = {"role": "assistant", "content": [{"type": "output_text", "text": text}]}
        if phase:
            fields["phase"] = phase
        return parse(item("message", **fields))

    commentary = msg("commentary")
    assert kinds(commentary) == [K.MESSAGE]
    assert commentary[0].text == "I'm tracing the streaming path first."
    final = msg("final_answer")
    assert kinds(final) == [K.MESSAGE, K.TURN_END] and final[1].text == "final_answer"
    legacy = msg()
    assert kinds(legacy) == [K.MESSAGE, K.TURN_END] and legacy[1].text == "text_only"
    assert len(msg(text="y" * 3000)[0].text) == 400
    user = item("message", role="user", content=[{"type": "input_text", "text": "# AGENTS.md instructions"}])
    assert parse(user) == []
    assert parse(event("agent_message", message="dup of the item", phase="commentary")) == []


# -- never raises ------------------------------------------------------------------------

_KEYS = [
    "type", "payload", "timestamp", "name", "arguments", "call_id", "output", "input", "action",
    "command", "role", "content", "text", "phase", "message", "cwd", "id", "process_id",
    "exit_code", "status", "reason", "plan", "step", "metadata", "success", "kind",
]
_WORDS = [
    "session_meta", "response_item", "event_msg", "turn_context", "compacted", "function_call",
    "function_call_output", "custom_tool_call", "custom_tool_call_output", "local_shell_call",
    "message", "assistant", "final_answer", "update_plan", "task_started", "task_complete",
    "turn_aborted", "error", "stream_error", "exec_command_end", "user_message", "in_progress",
    "completed", "Exit code: 3\nOutput:\n", "Process exited with code 1", "Process running with session ID 7",
    '{"output": "x", "metadata": {"exit_code": 1}}', '{"plan": [{"step": "a", "status": "in_progress"}]}', TS,
]
_values = json_values(_KEYS, _WORDS)
_lines = json_lines(_KEYS, _values, max_size=6)
_enveloped = st.builds(
    lambda t, p, ts: {"type": t, "payload": p, "timestamp": ts},
    st.sampled_from(["session_meta", "response_item", "event_msg", "turn_context", "compacted"]) | _values,
    st.builds(lambda d, t: {**d, "type": t}, _lines, st.sampled_from(_WORDS) | _values) | _values,
    _values,
)


def _examples() -> list[dict]:
    plan = [{"step": "a", "status": "in_progress"}, {"step": "b", "status": "completed"}]
    return [
        env("session_meta", id="x", cwd="/w"),
        env("turn_context", cwd="/w"),
        call("update_plan", plan=plan),
        item("custom_tool_call", call_id="c", name="apply_patch", input="*** Begin Patch"),
        item("local_shell_call", call_id="c", action={"type": "exec", "command": ["ls"]}),
        output(json.dumps({"output": "x", "metadata": {"exit_code": 1}})),
        output("Exit code: 2\nWall time: 1\nOutput:\nx"),
        output("Process running with session ID 9\nOutput:\n"),
        output({"content": [{"type": "input_text", "text": "x"}], "success": False}),
        event("exec_command_end", call_id="c", process_id="9", exit_code=2, status="failed"),
        event("turn_aborted", reason="interrupted"),
        event("user_message", message="hi", kind="plain"),
        item("message", role="assistant", content=[{"type": "output_text", "text": "done"}], phase="final_answer"),
    ]


_mutated = mutated(lambda: _examples(), _values, most=3)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(_lines, _enveloped, _mutated))
def test_parse_never_raises(obj):
    events = parse(obj)
    assert events is None or isinstance(events, list)
    for ev in events or ():
        for value in (ev.text, ev.error, ev.input):
            assert value is None or (isinstance(value, str) and len(value) <= 400)


# -- the real corpus ---------------------------------------------------------------------

SESSIONS = CORPUS / "cchistory" / "mock_data" / ".codex" / "sessions"
needs_corpus = pytest.mark.skipif(not SESSIONS.is_dir(), reason="no ../shared/corpus next to the repository")


def _rollouts() -> list[Path]:
    return sorted(SESSIONS.rglob("rollout-*.jsonl"))


def _raw_lines(path: Path) -> list[dict]:
    return [orjson.loads(raw) for raw in path.read_bytes().splitlines() if raw.strip()]


def _truth(objs: list[dict]) -> Counter:
    c: Counter = Counter()
    for o in objs:
        p = o.get("payload") or {}
        kind = (o.get("type"), p.get("type"))
        if kind[0] == "response_item" and kind[1] in ("function_call", "custom_tool_call", "local_shell_call"):
            c["calls"] += 1
        if kind[0] == "response_item" and kind[1] in ("function_call_output", "custom_tool_call_output"):
            c["outputs"] += 1
        if kind in (("event_msg", "task_started"), ("event_msg", "user_message")):
            c["turn_starts"] += 1
        if kind[0] == "response_item" and kind[1] == "message" and p.get("role") == "assistant":
            c["assistant_messages"] += 1
        if o.get("type") == "session_meta":
            c["sessions"] += 1
    return c


@needs_corpus
def test_corpus_has_the_four_rollouts_and_every_line_parses():
    files = _rollouts()
    assert len(files) == 4
    for path in files:
        for obj in _raw_lines(path):
            assert parse(obj) is not None, f"{path.name}: unknown envelope {obj.get('type')!r}"


@needs_corpus
def test_corpus_counts_and_exactly_one_result_per_answered_call():
    totals: Counter = Counter()
    for path in _rollouts():
        objs = _raw_lines(path)
        truth = _truth(objs)
        events = [e for o in objs for e in parse(o)]
        got = Counter(e.kind for e in events)
        assert got[K.TOOL_CALL] == truth["calls"], path.name
        assert got[K.TOOL_RESULT] == truth["outputs"], path.name
        assert got[K.TURN_START] == truth["turn_starts"], path.name
        assert got[K.MESSAGE] == truth["assistant_messages"], path.name
        assert sum(1 for e in events if e.kind is K.META and e.text) == truth["sessions"] == 1
        results = Counter(e.call_id for e in events if e.kind is K.TOOL_RESULT)
        calls = {e.call_id for e in events if e.kind is K.TOOL_CALL}
        assert all(n == 1 for n in results.values()), path.name
        assert set(results) <= calls, path.name
        assert all(e.ts == parse_time(o.get("timestamp")) for o in objs for e in parse(o))
        totals.update(truth)
    assert totals["calls"] == 2 and totals["outputs"] == 1  # the files are cut to 24–28 lines


@needs_corpus
def test_corpus_0_80_shell_command_result_is_read_from_its_exit_code():
    (path,) = [p for p in _rollouts() if "019be37c" in p.name]
    events = [e for o in _raw_lines(path) for e in parse(o)]
    (res,) = [e for e in events if e.kind is K.TOOL_RESULT]
    (call_ev,) = [e for e in events if e.kind is K.TOOL_CALL]
    assert (call_ev.tool, res.call_id, res.ok) == ("shell_command", call_ev.call_id, True)
    assert events[0].kind is K.META and events[0].cwd.endswith("log-query-validator")


# -- code mode: the exit status only in item_completed --------------------------------------


def command_item(status: str, exit_code, call_id: str = "call_9", **extra) -> dict:
    return event("item_completed", thread_id="th", turn_id="t1",
                 item={"type": "command_execution", "id": call_id, "command": "pytest -q",
                       "aggregated_output": "1 failed", "exit_code": exit_code,
                       "status": status, **extra})


def test_item_completed_command_gives_its_result():
    bad = only_result(parse(command_item("failed", 1)))
    assert (bad.call_id, bad.ok, bad.error) == ("call_9", False, "exit code 1: 1 failed")
    good = only_result(parse(command_item("completed", 0)))
    assert (good.ok, good.error) == (True, None)
    assert parse(command_item("in_progress", None)) == []  # no verdict yet
    assert parse(event("item_completed", item={"type": "agent_message", "text": "hi"})) == []


def test_code_mode_counts_each_call_once_whatever_forms_appear():
    from bgmon.activity import Activity

    act = Activity()
    lines = [
        call("exec_command", "c1", cmd="pytest -q"),
        command_item("failed", 1, call_id="c1"),  # code mode: the only verdict
        call("exec_command", "c2", cmd="ls"),
        command_item("completed", 0, call_id="c2"),
        output("Chunk ID: a\nWall time: 0.1 seconds\nProcess exited with code 0\nOutput:\n", "c2"),
        event("exec_command_end", call_id="c2", process_id="7", exit_code=0, status="completed"),
        call("exec_command", "c3", cmd="false"),
        output("Chunk ID: b\nWall time: 0.1 seconds\nProcess exited with code 1\nOutput:\n", "c3"),
        command_item("failed", 1, call_id="c3"),
    ]
    for obj in lines:
        act.extend(parse(obj))
    assert list(act.results) == [False, True, False]
    assert act.fail_streak == 1 and not act.pending
