"""`bgmon --once`: text, JSON, exit codes, NO_COLOR/pipes, and bad input never crashing it."""

from __future__ import annotations

import os
import re
import subprocess
import time

import orjson
import pytest

from tests.conftest import bgmon_cmd


def run(args, cwd, env_extra=None, home=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC", "BGMON"))}
    if home is not None:
        env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"))
        env.pop("CLAUDE_CONFIG_DIR", None)
        env.pop("CODEX_HOME", None)
    env.update(env_extra or {})
    return subprocess.run(bgmon_cmd(*args), cwd=cwd, env=env, capture_output=True, text=True, timeout=60)


@pytest.fixture
def sample(ws, isolated_home):
    ws.task("fix-login", id="bg_3f2a9c", name="fix-login", progress={"done": 2, "total": 5},
            step="running the test suite")
    ws.task("migrate-db", id="bg_77e1d0", name="migrate-db", progress="0/3")
    ws.fail("migrate-db", 3)
    ws.task("done", status="completed")
    return ws


def test_text_lines_match_the_documented_shape(sample, isolated_home):
    p = run(["--once", "--no-git"], cwd=sample.root, home=isolated_home)
    assert p.returncode == 1, p.stderr
    out = p.stdout
    # `name #id` as the TUI and `bgmon history` show it; the time is the task's last sign of
    # life (with its age), not the time of printing.
    assert "fix-login #bg_3f2a9c: 2/5 steps, running the test suite | ✓ healthy" in out
    assert ("migrate-db #bg_77e1d0: 0/3 steps | ⚠ struggling: 3 failed tool calls in a row "
            "(Bash: exit 1)") in out
    assert re.search(r"\[\d\d:\d\d, \d+s ago\] fix-login", out), out
    assert "● completed" in out
    assert "\x1b[" not in out  # piped: no escape codes
    assert p.stderr == ""


def test_exit_zero_when_nothing_is_wrong(ws, isolated_home):
    ws.task("ok")
    p = run(["--once", "--no-git"], cwd=ws.root, home=isolated_home)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "✓ healthy" in p.stdout


def test_json_document_follows_the_schema(sample, isolated_home):
    p = run(["--once", "--json", "--no-git", str(sample.root)], cwd="/", home=isolated_home)
    assert p.returncode == 1
    doc = orjson.loads(p.stdout)
    assert doc["version"] == 1 and doc["now"].endswith("Z")
    by_name = {t["name"]: t for t in doc["tasks"]}
    t = by_name["migrate-db"]
    assert set(t) >= {"key", "id", "name", "source", "group", "parent", "status", "health",
                      "reasons", "progress", "step", "last_activity", "pid", "path"}
    assert t["health"] == "struggling" and t["source"] == "worktree"
    assert t["reasons"][0]["rule"] == "struggling.streak"
    assert t["progress"] == {"done": 0, "total": 3}
    assert by_name["fix-login"]["progress"] == {"done": 2, "total": 5}
    assert by_name["done"]["health"] == "completed"
    assert doc["warnings"] == []


def test_no_color_and_forced_terminal_still_print_badge_words(sample, isolated_home):
    p = run(["--once", "--no-git"], cwd=sample.root, home=isolated_home,
            env_extra={"NO_COLOR": "1", "FORCE_COLOR": "1"})
    assert "⚠ struggling" in p.stdout
    assert "\x1b[3" not in p.stdout  # no colour codes


def test_usage_errors_exit_2_without_traceback(tmp_path, isolated_home):
    for args in (["--once", "--since", "yesterday"], ["--once", str(tmp_path / "nope")],
                 ["--json"], ["--once", "--config", str(tmp_path / "missing.toml")]):
        p = run(args, cwd=tmp_path, home=isolated_home)
        assert p.returncode == 2, (args, p.stdout, p.stderr)
        assert "Traceback" not in p.stderr and "bgmon" in p.stderr


def test_bad_config_file_is_a_clear_message(tmp_path, isolated_home):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[health]\nstuck_after = 'soon'\n")
    p = run(["--once", "--config", str(cfg)], cwd=tmp_path, home=isolated_home)
    assert p.returncode == 2 and "stuck_after" in p.stderr and "Traceback" not in p.stderr


def test_print_config_shows_effective_values(tmp_path, isolated_home):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[health]\nstuck_after = "20m"\nloop_repeats = 7\n')
    p = run(["--print-config", "--config", str(cfg), "--since", "2h"], cwd=tmp_path, home=isolated_home)
    assert p.returncode == 0
    # Durations as a person writes them, every section (so the output is a config file).
    assert 'stuck_after = "20m"' in p.stdout and "loop_repeats = 7" in p.stdout
    assert 'since = "2h"' in p.stdout and "[recovery]" in p.stdout
    saved = tmp_path / "saved.toml"
    saved.write_text(p.stdout)
    again = run(["--print-config", "--config", str(saved)], cwd=tmp_path, home=isolated_home)
    assert again.returncode == 0 and again.stdout == p.stdout, again.stderr


def test_nothing_found_says_where_it_looked(tmp_path, isolated_home):
    p = run(["--once", "--no-git"], cwd=tmp_path, home=isolated_home)
    assert p.returncode == 0
    assert "No background tasks found" in p.stdout and ".worktrees" in p.stdout
    assert "bgmon demo" in p.stdout


def test_bad_input_never_crashes_and_is_counted(ws, isolated_home):
    d = ws.task("torn")
    (d / "status.json").write_bytes(b'{"status": "runn')  # caught half-written
    ws.task("weird", status="running", version=99, futureField={"x": 1})
    ws.log("weird", {"type": "tool_call", "tool": "Bash", "call_id": "1"})
    with open(ws.root / ".worktrees/weird/logs/events.jsonl", "ab") as fh:
        fh.write(b'{"type": "message", "text": "\xff\xfe"}\n{not json\n{"type":"from-the-future"}\n{"partial')
    d = ws.task("unreadable")
    (d / "logs" / "x.jsonl").mkdir()  # a directory where a log should be
    p = run(["--once", "--json", "--no-git"], cwd=ws.root, home=isolated_home)
    assert p.returncode in (0, 1), p.stderr
    assert "Traceback" not in p.stderr
    doc = orjson.loads(p.stdout)
    by_name = {t["name"]: t for t in doc["tasks"]}
    assert by_name["torn"]["health"] != "failed"
    assert any("status.json unreadable" in w for w in by_name["torn"]["warnings"])
    weird = " ".join(by_name["weird"]["warnings"])
    assert "version 99" in weird and "not JSON" in weird and "unknown type" in weird
    assert "invalid UTF-8" in weird
    assert doc["warnings"], "problems must be visible at the top level too"


def test_git_worktrees_are_found(tmp_path, isolated_home):
    if subprocess.run(["git", "--version"], capture_output=True).returncode != 0:
        pytest.skip("git not installed")
    repo = tmp_path / "repo"
    repo.mkdir()
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t", "HOME": str(isolated_home)}
    for cmd in (["git", "init", "-q"], ["git", "commit", "-q", "--allow-empty", "-m", "x"],
                ["git", "worktree", "add", "-q", str(tmp_path / "elsewhere")]):
        subprocess.run(cmd, cwd=repo, env=env, check=True)
    (tmp_path / "elsewhere" / "status.json").write_text(
        orjson.dumps({"status": "running", "name": "outside", "updatedAt": time.time()}).decode())
    p = run(["--once", "--json"], cwd=repo, home=isolated_home)
    names = [t["name"] for t in orjson.loads(p.stdout)["tasks"]]
    assert names == ["outside"]
