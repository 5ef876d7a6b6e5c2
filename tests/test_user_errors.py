"""What a new user meets first, on a fresh HOME: every mistake in a command line or a config file
is one line on stderr saying what to fix, exit 2, no traceback, and nothing created."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from conftest import bgmon_cmd


@pytest.fixture
def fresh(tmp_path) -> tuple[Path, dict[str, str]]:
    """(an empty working folder, the environment of a user with an empty HOME)."""
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    env = {k: v for k, v in os.environ.items()
           if k not in ("CLAUDE_CONFIG_DIR", "CODEX_HOME", "XDG_DATA_HOME", "GEMINI_CLI_HOME",
                        "COPILOT_HOME", "ANTHROPIC_API_KEY", "XDG_CONFIG_HOME")}
    (work / "afile").write_text("not a folder\n")
    (work / "broken.toml").write_text("[monitor\nroots = 3\n")
    return work, {**env, "HOME": str(home), "NO_COLOR": "1"}


def run(work: Path, env: dict[str, str], *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(bgmon_cmd(*argv), cwd=work, env=env, capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL)


def assert_one_line_exit_2(r: subprocess.CompletedProcess, *words: str) -> None:
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("bgmon"), lines
    for word in words:
        assert word in lines[0], (word, lines[0])
    assert r.stdout == "", r.stdout


@pytest.mark.parametrize(("argv", "words"), [
    (("--once", "no-such-folder"), ("no-such-folder", "not a directory")),
    (("--once", "afile"), ("afile", "not a directory")),
    (("--once", "--config", "broken.toml"), ("broken.toml", "not valid TOML")),
    (("--once", "--config", "missing.toml"), ("missing.toml",)),
    (("--bogus",), ("--bogus", "bgmon --help")),
    (("--once", "--stuck-after", "soon"), ("--stuck-after", "soon")),
    (("--once", "--fail-on", "bogus"), ("--fail-on",)),
    (("wait",), ("TASK", "--until", "bgmon wait --help")),
    (("wait", "build"), ("--until",)),
    (("wait", "build", "--until", "bogus"), ("--until", "bogus")),
    (("wait", "build", "--until", "completed", "--timeout", "abc"), ("--timeout", "abc")),
    (("wait", "nosuchtask", "--until", "completed"), ("nosuchtask",)),
    (("ack",), ("TASK", "bgmon ack --help")),
    (("history", "--bogus"), ("--bogus", "bgmon history --help")),
    (("report", "extra"), ("extra",)),
    (("run",), ("no command",)),
    (("run", "--", "no-such-command-bgmon-test"), ("no-such-command-bgmon-test", "not found")),
    (("run", "--", "./no-such-script.sh"), ("./no-such-script.sh", "no such file")),
    (("run", "--", "afile"), ("afile", "not found")),
    (("run", "--", "./afile"), ("./afile", "executable")),
    (("demo", "--bogus"), ("--bogus", "bgmon demo --help")),
    (("replay", "no-such.jsonl"), ("no-such.jsonl", "not a file")),
    (("replay", "afile", "--stuck-after", "x"), ("--stuck-after",)),
    (("hooks",), ("bgmon hooks --help",)),
    (("hooks", "install", "nosuchagent"), ("nosuchagent",)),
])
def test_a_user_error_is_one_line_exit_2_and_creates_nothing(fresh, argv, words):
    work, env = fresh
    before = sorted(p.name for p in work.iterdir())
    assert_one_line_exit_2(run(work, env, *argv), *words)
    assert sorted(p.name for p in work.iterdir()) == before  # no .worktrees, no .agents


def test_a_broken_config_in_its_default_place_is_one_line(fresh):
    work, env = fresh
    config = Path(env["HOME"]) / ".config" / "bgmon" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text("[health]\nstuck_after = 'whenever'\n")
    for argv in (("--once",), ("history",), ("wait", "x", "--until", "completed")):
        assert_one_line_exit_2(run(work, env, *argv), str(config), "stuck_after")


def test_the_first_commands_work_on_an_empty_folder(fresh):
    work, env = fresh
    r = run(work, env, "--once")
    assert r.returncode == 0 and "No background tasks found" in r.stdout, r.stderr
    r = run(work, env, "history", "nosuchtask")
    assert r.returncode == 0 and "no records for nosuchtask" in r.stdout, r.stderr
    assert sorted(p.name for p in work.iterdir()) == ["afile", "broken.toml"]


@pytest.mark.parametrize("argv", [("--once",), ("--once", "--json"), ("history",)])
def test_a_reader_that_leaves_early_is_not_an_error(fresh, argv):
    """`bgmon --once | head -1`: the reader closed the pipe; bgmon exits as it would have (0 here:
    nothing is at fault), saying nothing, instead of Rich's exit 1 that reads as "a task failed"."""
    work, env = fresh
    for _ in range(3):  # the write always finds the pipe closed: the read end is gone first
        read, write = os.pipe()
        os.close(read)
        proc = subprocess.run(bgmon_cmd(*argv), cwd=work, env=env, stdout=write,
                              stderr=subprocess.PIPE, text=True, timeout=120)
        os.close(write)
        assert (proc.returncode, proc.stderr) == (0, ""), proc.stderr
