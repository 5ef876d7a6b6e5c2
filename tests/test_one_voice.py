"""One voice: `--once` text, `--once --json`, `history` and `report` agree about the same
workspace and journal, and every user error is one line with exit 2 (issue 15).

The workspace is made by real `bgmon run` processes that fail and are restarted, as a person
would see it; every command runs as a subprocess."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess

import orjson
import pytest

from bgmon.recovery.journal import Journal
from tests.conftest import bgmon_cmd

REFUSED = "import socket; socket.create_connection(('127.0.0.1', 9))"


def run(args, cwd, home, stdin=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC", "BGMON"))}
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"), NO_COLOR="1")
    env.pop("CLAUDE_CONFIG_DIR", None)
    env.pop("CODEX_HOME", None)
    return subprocess.run(bgmon_cmd(*args), cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120, input=stdin)


def once(root, home, *extra):
    return run(["--once", "--no-claude", "--no-codex", "--no-git", *extra], root, home)


@pytest.fixture(scope="module")
def failed_runs(tmp_path_factory):
    """Three `bgmon run` tasks that fail, are restarted three times each, and give up; named so
    that text order and natural order differ (`task 10` vs `task 2`)."""
    root = tmp_path_factory.mktemp("voice")
    home = root / "home"
    home.mkdir()
    root = root / "ws"
    root.mkdir()
    for name, code in (("task 1", REFUSED), ("task 10", "import sys; print('boom timeout'); "
                                                         "sys.exit(3)"), ("task 2", REFUSED)):
        p = run(["run", "--name", name, "--quiet", "--", "python3", "-c", code], root, home)
        assert p.returncode != 0, p.stderr
    return root, home


def test_once_text_and_json_list_the_same_tasks_in_natural_order(failed_runs):
    root, home = failed_runs
    text, doc = once(root, home), once(root, home, "--json")
    tasks = orjson.loads(doc.stdout)["tasks"]
    assert [t["name"] for t in tasks] == ["task 1", "task 2", "task 10"]
    lines = [line for line in text.stdout.splitlines() if "#bg_" in line]
    for line, t in zip(lines, tasks, strict=True):
        # The id is shown as `propose` takes it, and the badge is the JSON's.
        assert f"{t['name']} #{t['id']} " in line and f"✗ {t['health']}" in line, line


def test_report_counts_failures_by_pattern_as_once_shows_them(failed_runs):
    root, home = failed_runs
    tasks = orjson.loads(once(root, home, "--json").stdout)["tasks"]
    shown = {}
    for t in tasks:
        assert t["health"] == "failed"
        pattern = re.search(r"\((\w+)\); gave up", t["reasons"][0]["detail"]).group(1)
        shown[pattern] = shown.get(pattern, 0) + 1
    rep = orjson.loads(run(["report", "--json"], root, home).stdout)
    assert rep["failures_by_pattern"] == shown == {"connection_refused": 2, "timeout": 1}
    text = run(["report"], root, home).stdout
    assert re.search(r"connection_refused\s+2", text) and re.search(r"timeout\s+1", text)
    # Nine restarts started the command again; none made a task healthy: none succeeded.
    assert rep["restarts"] == {"started": 9, "recovered": 0, "failed_again": 9, "unconfirmed": 0}
    assert rep["actions"]["ok"] == 0
    assert "Actions: 0/9 succeeded" in text and "9 started; 0 healthy again, 9 failed again" in text
    # Still-failing tasks by name and id, never the long key.
    assert "Still failing: task 1 #" in text and "worktree:" not in text


def test_history_takes_a_name_like_every_command_and_shows_names(failed_runs):
    root, home = failed_runs
    t = next(t for t in orjson.loads(once(root, home, "--json").stdout)["tasks"]
             if t["name"] == "task 10")
    by = {ref: run(["history", ref], root, home) for ref in ("task 10", t["id"], t["key"])}
    outs = {p.stdout for p in by.values()}
    assert len(outs) == 1, by  # name, id and key give the same records
    lines = outs.pop().splitlines()
    assert lines and all(f"  task 10 #{t['id']}  " in line for line in lines), lines
    assert not any("worktree:" in line for line in lines)
    assert "health - → failed [timeout]" in lines[-1]  # `bgmon run` journaled how it ended
    as_json = orjson.loads(run(["history", "--json", "task 10"], root, home).stdout)
    assert {r["name"] for r in as_json} == {"task 10"} and len(as_json) == len(lines)


def test_a_mark_shows_identically_in_once_text_and_json(failed_runs):
    root, home = failed_runs
    tasks = orjson.loads(once(root, home, "--json").stdout)["tasks"]
    t = next(t for t in tasks if t["name"] == "task 2")
    journal = Journal(root / ".agents" / "logs" / "background_monitoring.jsonl")
    note = "needs a person: connection refused"
    journal.append({"kind": "mark", "task": t["key"], "task_id": t["id"], "note": note})
    try:
        doc = {x["name"]: x for x in orjson.loads(once(root, home, "--json").stdout)["tasks"]}
        assert doc["task 2"]["note"] == note and doc["task 1"]["note"] is None
        line = next(x for x in once(root, home).stdout.splitlines() if "task 2 #" in x)
        assert f"✎ {note}" in line
    finally:
        journal.append({"kind": "mark", "task": t["key"], "task_id": t["id"], "note": ""})


def test_propose_takes_the_name_and_its_hint_matches_once(failed_runs):
    root, home = failed_runs
    p = run(["propose", "task 2", "--rules", "--json"], root, home)
    assert p.returncode == 0, p.stderr
    once_id = next(t["id"] for t in orjson.loads(once(root, home, "--json").stdout)["tasks"]
                   if t["name"] == "task 2")
    assert orjson.loads(p.stdout)["task_id"] == once_id
    miss = run(["propose", "no such task", "--rules"], root, home)
    assert miss.returncode == 1 and len(miss.stderr.strip().splitlines()) == 1
    assert "name, id or key as `bgmon --once` shows" in miss.stderr


def test_a_name_two_tasks_share_is_one_line_and_exit_2(tmp_path, isolated_home, ws):
    ws.task("a", id="bg_1", name="same", status="failed")
    ws.task("b", id="bg_2", name="same", status="failed")
    for cmd in (["propose", "same", "--rules"], ["history", "same"]):
        p = run([*cmd, "--no-git"], ws.root, isolated_home)
        assert p.returncode == 2, (cmd, p.stdout, p.stderr)
        assert p.stderr.strip().splitlines() == [
            "bgmon: 2 tasks are named 'same': use an id (bg_1, bg_2)"], p.stderr


def test_reject_messages_say_what_happened(tmp_path, isolated_home, ws):
    ws.task("t", id="bg_t", name="t", status="failed", error="exit code 1")
    p = run(["propose", "t", "--rules", "--json", "--no-git"], ws.root, isolated_home)
    pid = orjson.loads(p.stdout)["id"]
    first = run(["reject", pid, "--reason", "not now"], ws.root, isolated_home)
    assert first.returncode == 0 and first.stdout.strip() == f"rejected {pid}: not now"
    again = run(["reject", pid], ws.root, isolated_home)
    assert again.stdout.strip() == f"{pid} is already rejected; nothing changed"
    assert "not rejected" not in again.stdout


def test_user_errors_are_one_line_and_exit_2(tmp_path, isolated_home, ws):
    ws.task("t", id="bg_t", name="t", status="failed")
    latin1 = tmp_path / "latin1.toml"
    latin1.write_bytes(b'[monitor]\nsince = "1h"  # caf\xe9\n')
    missing = tmp_path / "missing-patterns.toml"
    badre = tmp_path / "bad.toml"
    badre.write_text('[[pattern]]\nname = "x"\nregex = "("\n')
    cases = {
        "not UTF-8": (["--once", "--config", str(latin1)], "not UTF-8"),
    }
    for label, path in (("missing patterns", missing), ("bad patterns", badre)):
        cfg = tmp_path / f"config-{label.replace(' ', '-')}.toml"
        cfg.write_text(f'[recovery]\npatterns = "{path}"\n')
        for cmd in (["propose", "t", "--rules", "--no-git"], ["--once", "--no-git"]):
            cases[f"{label}: {cmd[0]}"] = ([*cmd, "--config", str(cfg)], "[recovery] patterns")
    for label, (args, needle) in cases.items():
        p = run(args, ws.root, isolated_home)
        assert p.returncode == 2, (label, p.stdout, p.stderr)
        assert len(p.stderr.strip().splitlines()) == 1 and needle in p.stderr, (label, p.stderr)
        assert "Traceback" not in p.stderr


FLAKY = ("import os, socket, time\n"
         "if os.path.exists('up'):\n    print('serving', flush=True); time.sleep(60)\n"
         "else:\n    socket.create_connection(('127.0.0.1', 9))\n")


def test_an_approved_restart_runs_supervised_and_the_old_failure_is_gone(tmp_path, isolated_home):
    """The restart of a `bgmon run` task starts `bgmon run` again: same task and id, status
    running at once, output in its event log; approve says what the backoff waits for."""
    root = tmp_path / "ws"
    root.mkdir()
    p = run(["run", "--name", "svc", "--restart", "no", "--quiet", "--", "python3", "-c", FLAKY],
            root, isolated_home)
    assert p.returncode == 1, p.stderr
    before = orjson.loads(once(root, isolated_home, "--json").stdout)["tasks"][0]
    assert before["health"] == "failed"
    (root / "up").write_text("")  # the service it needs is up now
    proposal = orjson.loads(run(["propose", "svc", "--rules", "--json"], root,
                                isolated_home).stdout)
    restart = proposal["actions"][0]
    assert restart["kind"] == "restart" and restart["supervised"] is True
    status_path = root / ".worktrees" / "svc" / "status.json"
    try:
        done = run(["approve", proposal["id"], "--yes"], root, isolated_home)
        assert done.returncode == 0, done.stdout + done.stderr
        lines = done.stdout.splitlines()
        if restart["delay"]:
            assert lines[0] == f"waiting {restart['delay']:g}s before the restart (backoff)…"
        assert "the restart started the task again" in done.stdout
        assert f"output: {root / '.worktrees' / 'svc' / 'logs' / 'events.jsonl'}" in done.stdout
        after = orjson.loads(once(root, isolated_home, "--json").stdout)["tasks"][0]
        assert (after["id"], after["key"]) == (before["id"], before["key"])
        assert after["status"] == "running" and after["health"] == "healthy", after
        assert "failed" not in once(root, isolated_home).stdout
        rep = orjson.loads(run(["report", "--json"], root, isolated_home).stdout)
        assert rep["restarts"]["started"] == 1 and rep["actions"]["ok"] == 0  # not yet healthy
    finally:
        status = orjson.loads(status_path.read_bytes())
        if status.get("supervisorPid"):
            with contextlib.suppress(ProcessLookupError):
                os.kill(status["supervisorPid"], signal.SIGTERM)


def test_without_credentials_the_rules_answer_without_loading_the_sdk(isolated_home, ws):
    """No ANTHROPIC_* variable and no SDK config: the rules answer at once; the SDK (a second
    of imports, the spin of the TUI's first `r`) is never loaded."""
    ws.task("t", id="bg_t", name="t", status="failed", error="exit code 1")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC", "BGMON"))}
    env.update(HOME=str(isolated_home), XDG_CONFIG_HOME=str(isolated_home / ".config"))
    python, *rest = bgmon_cmd("propose", "t", "--json", "--no-git")
    p = subprocess.run([python, "-X", "importtime", *rest], cwd=ws.root, env=env,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr[-2000:]
    proposal = orjson.loads(p.stdout)
    assert proposal["source"] == "rules" and proposal["degraded_reason"] == "no API key"
    imported = [line for line in p.stderr.splitlines() if "| anthropic" in line]
    assert not imported, imported[:3]
