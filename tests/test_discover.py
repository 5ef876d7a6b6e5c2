"""Discovery of Claude Code and Codex sessions in their real folder layouts (synthetic homes)."""

from __future__ import annotations

import os
import time

from bgmon.config import Config
from bgmon.engine import collect
from bgmon.sources.discover import discover
from tests.conftest import append_lines

CWD = "/work/proj"


def claude_line(kind: str, content, session="s1", **extra):
    return {
        "type": kind, "sessionId": session, "cwd": CWD, "uuid": f"u{time.monotonic_ns()}",
        "timestamp": "2026-11-21T10:00:00Z", "message": {"role": kind, "content": content}, **extra,
    }


def tool_use(i, name="Bash", inp=None):
    return claude_line("assistant", [{"type": "tool_use", "id": f"t{i}", "name": name,
                                      "input": inp or {"command": f"make {i}"}}])


def tool_result(i, error=False):
    return claude_line("user", [{"type": "tool_result", "tool_use_id": f"t{i}", "is_error": error,
                                 "content": "Exit code 1" if error else "ok"}])


def claude_home(tmp_path):
    home = tmp_path / "claude"
    project = home / "projects" / "-work-proj"
    return home, project


def test_claude_sessions_and_subagents_nest_under_their_session(tmp_path):
    home, project = claude_home(tmp_path)
    append_lines(project / "s1.jsonl", tool_use(1), tool_result(1, error=True),
                 tool_use(2), tool_result(2, error=True), tool_use(3), tool_result(3, error=True))
    append_lines(project / "s1" / "subagents" / "agent-abc123.jsonl",
                 {**tool_use(9), "isSidechain": True})
    append_lines(project / "agent-flat1.jsonl", {**tool_use(8, inp={"x": 1}), "isSidechain": True})
    old = project / "s0.jsonl"
    append_lines(old, tool_use(1))
    os.utime(old, (time.time() - 3 * 86400,) * 2)  # outside --since 24h
    config = Config(roots=(str(tmp_path),), sources=("claude",), dirs=(("claude", str(home)),))
    keys = {s.key for s in discover(config, time.time()).specs}
    assert keys == {"claude:s1", "claude:s1/agent-abc123", "claude:s1/agent-flat1"}

    snaps = {s.key: s for s in collect(config).snapshots()}
    session = snaps["claude:s1"]
    assert session.source == "claude" and session.group == CWD and session.name == "proj"
    # Its lines are days old (the file's mtime alone is no life): stuck, and struggling too.
    own = session.own_health or session.health
    assert "struggling.streak" in [r.rule for r in own.reasons]
    assert snaps["claude:s1/agent-abc123"].parent == "claude:s1"
    assert snaps["claude:s1/agent-flat1"].parent == "claude:s1"


def test_claude_config_dir_env_is_honoured(tmp_path, monkeypatch):
    home, project = claude_home(tmp_path)
    append_lines(project / "s2.jsonl", tool_use(1, inp={"a": 1}))
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", str(home))
    config = Config(roots=(str(tmp_path),), sources=("claude",))
    assert [s.key for s in discover(config, time.time()).specs] == ["claude:s2"]


def test_codex_rollouts_by_date_folder_and_codex_home(tmp_path, monkeypatch):
    home = tmp_path / "codex"
    day = time.strftime("%Y/%m/%d")
    path = home / "sessions" / day / "rollout-2026-11-21T10-00-00-0199aaaa-bbbb-cccc-dddd-eeeeffff0000.jsonl"
    append_lines(path,
                 {"timestamp": "2026-11-21T10:00:00Z", "type": "session_meta",
                  "payload": {"id": "0199aaaa-bbbb-cccc-dddd-eeeeffff0000", "cwd": "/work/other"}},
                 {"timestamp": "2026-11-21T10:00:01Z", "type": "event_msg",
                  "payload": {"type": "task_started"}})
    old = home / "sessions" / "2020" / "01" / "01" / "rollout-2020-01-01T00-00-00-x.jsonl"
    append_lines(old, {"type": "session_meta", "payload": {"cwd": "/x"}})
    os.utime(old, (1_577_836_800, 1_577_836_800))  # untouched since 2020: older than --since
    monkeypatch.setenv("CODEX_HOME", str(home))
    config = Config(roots=(str(tmp_path),), sources=("codex",))
    specs = discover(config, time.time()).specs
    assert [s.key for s in specs] == ["codex:0199aaaa-bbbb-cccc-dddd-eeeeffff0000"]
    snap = collect(config).snapshots()[0]
    assert snap.group == "/work/other" and snap.source == "codex"


def test_unreadable_directory_is_a_warning_not_a_crash(tmp_path):
    home, project = claude_home(tmp_path)
    project.mkdir(parents=True)
    (project / "s1.jsonl").mkdir()  # junk where a file should be
    bad = home / "projects" / "-locked"
    bad.mkdir()
    config = Config(roots=(str(tmp_path),), sources=("claude",), dirs=(("claude", str(home)),))
    if os.geteuid() != 0:
        bad.chmod(0)
    found = discover(config, time.time())
    if os.geteuid() != 0:
        assert any("cannot read directory" in w for w in found.warnings)
    collect(config)  # no exception
