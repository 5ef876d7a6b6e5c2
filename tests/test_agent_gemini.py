"""Gemini CLI sessions: the whole-document JSON form (rewritten as it grows, so it can be read
half-written) and the JSONL form (records appended again as they change), with sub-agents.
Fixtures are modelled on Gemini CLI's ConversationRecord (chatRecordingTypes.ts)."""

from __future__ import annotations

import os
import time

import orjson

from bgmon.agents.gemini import load
from bgmon.config import Config
from bgmon.engine import Monitor
from bgmon.model import EventKind
from tests.conftest import Clock, append_lines

T0 = 1_790_000_000.0


def iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".000Z"


def shell(i: int, code: int, status: str = "success", t: float = T0) -> dict:
    output = f"Command: make t{i}\nDirectory: (root)\nOutput: boom\nError: (none)\nExit Code: {code}\n"
    return {"id": f"run_shell_command-{i}", "name": "run_shell_command", "args": {"command": f"make t{i}"},
            "status": status, "timestamp": iso(t),
            "result": [{"functionResponse": {"id": f"run_shell_command-{i}", "name": "run_shell_command",
                                             "response": {"output": output}}}],
            "resultDisplay": "boom" if code else "ok"}


def todos(*states: str) -> dict:
    items = [{"description": f"step {n}", "status": s} for n, s in enumerate(states)]
    return {"id": "write_todos-1", "name": "write_todos", "args": {"todos": items}, "status": "success",
            "timestamp": iso(T0), "result": [{"functionResponse": {"response": {"output": "ok"}}}]}


def user(mid: str, text: str, t: float = T0) -> dict:
    return {"id": mid, "timestamp": iso(t), "type": "user", "content": [{"text": text}]}


def gemini(mid: str, text: str = "", calls=(), t: float = T0) -> dict:
    return {"id": mid, "timestamp": iso(t), "type": "gemini", "content": text, "toolCalls": list(calls),
            "thoughts": [], "model": "gemini-2.5-pro"}


def conversation(*messages, sid="3b44bc68-aaaa-bbbb-cccc-ddddeeeeffff") -> dict:
    return {"sessionId": sid, "projectHash": "ab" * 32, "startTime": iso(T0), "lastUpdated": iso(T0),
            "messages": list(messages)}


def layout(home, project="/work/app"):
    tmp = home / "tmp" / ("ab" * 32)
    (tmp / "chats").mkdir(parents=True)
    (tmp / ".project_root").write_text(project)
    return tmp / "chats"


def config(home) -> Config:
    return Config(roots=(str(home),), sources=("gemini",), dirs=(("gemini", str(home)),),
                  match_agents=False, since=1e9)


def test_json_session_failures_progress_and_cwd(tmp_path):
    chats = layout(tmp_path)
    doc = chats / "session-2026-11-21T10-00-3b44bc68.json"
    doc.write_bytes(orjson.dumps(conversation(
        user("u1", "fix the build"),
        gemini("g1", "Let me plan.", [todos("completed", "in_progress", "pending")]),
        gemini("g2", "", [shell(1, 1), shell(2, 2), shell(3, 127)], t=T0 + 5),
    )))
    clock = Clock(T0 + 10)
    monitor = Monitor(config(tmp_path), clock=clock)
    monitor.sweep()
    monitor.evaluate()
    (snap,) = monitor.snapshots()
    assert snap.key == "gemini:3b44bc68" and snap.source == "gemini"
    assert snap.group == "/work/app" and snap.name == "app"
    assert str(snap.progress) == "1/3" and snap.step == "step 1"
    assert snap.health.badge.value == "struggling"
    assert "run_shell_command: boom" in snap.health.summary


def test_exit_code_zero_is_a_success_and_a_plain_answer_ends_the_turn(tmp_path):
    chats = layout(tmp_path)
    (chats / "session-2026-11-21T10-00-3b44bc68.json").write_bytes(orjson.dumps(conversation(
        user("u1", "run tests"), gemini("g1", "", [shell(1, 0)]), gemini("g2", "All green.", t=T0 + 2))))
    clock = Clock(T0 + 60)
    monitor = Monitor(config(tmp_path), clock=clock)
    monitor.sweep()
    monitor.evaluate()
    (snap,) = monitor.snapshots()
    assert snap.health.badge.value == "completed" and snap.status == "idle"


def test_half_written_document_keeps_the_last_good_events(tmp_path):
    chats = layout(tmp_path)
    doc = chats / "session-2026-11-21T10-00-3b44bc68.json"
    good = orjson.dumps(conversation(user("u1", "go"), gemini("g1", "", [shell(1, 1), shell(2, 1), shell(3, 1)])))
    doc.write_bytes(good)
    clock = Clock(T0 + 10)
    monitor = Monitor(config(tmp_path), clock=clock)
    monitor.sweep()
    monitor.evaluate()
    assert monitor.snapshots()[0].health.badge.value == "struggling"
    # Gemini CLI rewrites the file in place: a reader can see the first half of the new text.
    grown = orjson.dumps(conversation(user("u1", "go"), gemini("g1", "", [shell(1, 1), shell(2, 1), shell(3, 1)]),
                                      gemini("g2", "", [shell(i, 0) for i in range(4, 8)])))
    doc.write_bytes(grown[: len(grown) // 2])
    monitor.on_paths([str(doc)])
    monitor.evaluate()
    snap = monitor.snapshots()[0]
    assert snap.health.badge.value == "struggling"  # the last good value, not a failure
    assert any("keeping the last good value" in w for w in snap.warnings)
    doc.write_bytes(grown)
    os.utime(doc, (T0 + 20, T0 + 20))
    monitor.on_paths([str(doc)])
    monitor.evaluate()
    snap = monitor.snapshots()[0]
    assert snap.health.badge.value == "healthy" and not snap.warnings


def test_jsonl_records_are_folded_by_id_and_rewinds_drop_messages(tmp_path):
    chats = layout(tmp_path)
    path = chats / "session-2026-11-21T10-00-3b44bc68.jsonl"
    running = shell(1, 0, status="executing")
    append_lines(path,
                 {"sessionId": "3b44bc68-aaaa", "projectHash": "ab" * 32, "startTime": iso(T0)},
                 user("u1", "first try"), gemini("g1", "", [shell(9, 1)]),
                 {"$rewindTo": "u1"},
                 user("u2", "second try"), gemini("g2", "", [running]),
                 {"$set": {"lastUpdated": iso(T0 + 1)}},
                 gemini("g2", "", [shell(1, 0)]))  # the same message again, its call finished
    kinds = [e.kind for e in load(str(path))]
    assert kinds.count(EventKind.TOOL_CALL) == 1 and kinds.count(EventKind.TOOL_RESULT) == 1
    texts = [e.text for e in load(str(path)) if e.kind is EventKind.TURN_START]
    assert texts == ["second try"]
    with open(path, "ab") as fh:
        fh.write(b'{"id": "g3", "type": "gem')  # a torn last line: skipped, not an error
    assert [e.kind for e in load(str(path))] == [e.kind for e in load(str(path))]


def test_subagent_sessions_nest_under_their_parent(tmp_path):
    chats = layout(tmp_path)
    (chats / "session-2026-11-21T10-00-3b44bc68.json").write_bytes(orjson.dumps(conversation(
        user("u1", "investigate"), gemini("g1", "", [{"id": "inv-1", "name": "codebase_investigator",
                                                        "args": {"objective": "x"}, "status": "executing",
                                                        "timestamp": iso(T0)}]))))
    sub = chats / "3b44bc68-aaaa-bbbb-cccc-ddddeeeeffff" / "7f00aa11-2222.jsonl"
    append_lines(sub, {"sessionId": "7f00aa11-2222", "projectHash": "ab" * 32, "kind": "subagent",
                       "directories": ["/work/app"]},
                 user("s1", "objective x"), gemini("s2", "", [shell(1, 1)]),
                 {"id": "s3", "type": "error", "timestamp": iso(T0 + 1), "content": "[API Error: quota]"})
    monitor = Monitor(config(tmp_path), clock=Clock(T0 + 5))
    monitor.sweep()
    monitor.evaluate()
    snaps = {s.key: s for s in monitor.snapshots()}
    child = snaps["gemini:3b44bc68/7f00aa11-2222"]
    assert child.parent == "gemini:3b44bc68"
    assert (child.own_health or child.health).badge.value == "failed"
    assert snaps["gemini:3b44bc68"].health.badge.value == "failed"  # rolled up from the child


def test_a_call_awaiting_approval_waits_on_the_person(tmp_path):
    chats = layout(tmp_path)
    call = {**shell(1, 0), "status": "awaiting_approval", "result": None}
    (chats / "session-2026-11-21T10-00-3b44bc68.json").write_bytes(orjson.dumps(conversation(
        user("u1", "deploy"), gemini("g1", "", [call]))))
    monitor = Monitor(config(tmp_path), clock=Clock(T0 + 3600))
    monitor.sweep()
    monitor.evaluate()
    snap = monitor.snapshots()[0]
    assert snap.health.badge.value == "waiting" and "run_shell_command" in snap.health.summary


def test_junk_documents_never_raise(tmp_path):
    chats = layout(tmp_path)
    for i, junk in enumerate([b"[]", b"{\"messages\": 3}", b"{\"messages\": [1, {\"type\": \"gemini\", "
                              b"\"toolCalls\": [7, {\"status\": \"success\", \"result\": {\"x\": []}}]}]}"]):
        (chats / f"session-2026-11-21T10-00-0000000{i}.json").write_bytes(junk)
    monitor = Monitor(config(tmp_path), clock=Clock(T0))
    monitor.sweep()
    monitor.evaluate()
    assert len(monitor.snapshots()) == 3
