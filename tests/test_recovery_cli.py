"""`bgmon propose | approve | reject | history | report` with hand-built snapshots."""

from __future__ import annotations

import argparse
import io
import json

import pytest
from test_recovery_support import SLEEPER, cleanup, gone, snap, spawn

from bgmon.config import Config
from bgmon.model import Badge
from bgmon.recovery.cli import add_parsers, run_command
from bgmon.recovery.journal import Journal
from bgmon.recovery.service import RecoveryService


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bgmon")
    add_parsers(p.add_subparsers(dest="command"))
    return p.parse_args(argv)


class TTY(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_AUTH_TOKEN", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    proc = spawn(SLEEPER)
    task = snap(key="wt:build", id="build", pid=proc.pid, cwd=str(tmp_path),
                reasons=(("stuck.loop", "Bash(make) 6 times in a row"),))
    tasks = {"build": task, "wt:build": task}

    def run(*argv: str, stdin: io.StringIO | None = None) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        code = run_command(parse(list(argv)), tasks.get, out=out, err=err,
                           stdin=stdin or io.StringIO())
        return code, out.getvalue(), err.getvalue()

    yield run, proc, tmp_path
    cleanup(proc.pid)
    proc.wait(5)


def test_propose_json_shape(env):
    run, proc, root = env
    code, out, _ = run("propose", "build", "--json")
    assert code == 0
    data = json.loads(out)
    assert list(data) == ["id", "task", "task_id", "source", "model", "degraded_reason",
                          "diagnosis", "confidence", "actions", "refused", "created"]
    assert data["source"] == "rules" and data["degraded_reason"] == "no API key"
    assert data["actions"] == [{"kind": "kill", "pid": proc.pid, "grace": 5.0, "children": 0,
                                "effect": f"send SIGTERM to pid {proc.pid} (no children), "
                                          "SIGKILL after 5s"}]
    assert (root / ".agents/logs/background_monitoring.jsonl").exists()
    # Asking again while it is pending gives the same proposal.
    assert json.loads(run("propose", "wt:build", "--json")[1])["id"] == data["id"]
    assert json.loads(run("propose", "build", "--json", "--fresh")[1])["id"] != data["id"]


def test_propose_text_and_unknown_task(env):
    run, proc, _ = env
    code, out, _ = run("propose", "build", "--rules")
    assert code == 0
    assert "from:       rules (rules requested)" in out and "1. send SIGTERM" in out
    assert "bgmon approve p_" in out
    code, _, err = run("propose", "nope")
    assert code == 1 and "no task matches 'nope'" in err


def test_approve_needs_yes_without_a_terminal(env):
    run, proc, _ = env
    pid = json.loads(run("propose", "build", "--json")[1])["id"]
    code, _, err = run("approve", pid)
    assert code == 2 and "--yes" in err
    assert not gone(proc.pid)


def test_approve_asks_and_can_be_declined(env):
    run, proc, _ = env
    pid = json.loads(run("propose", "build", "--json")[1])["id"]
    code, out, _ = run("approve", pid, stdin=TTY("n\n"))
    assert code == 0 and "nothing done" in out
    assert f"1. send SIGTERM to pid {proc.pid} (no children), SIGKILL after 5s" in out
    assert not gone(proc.pid)
    code, out, _ = run("approve", pid, stdin=TTY("y\n"))
    assert code == 0 and "[ok] kill" in out
    assert gone(proc.pid)


def test_approve_yes_then_again_is_a_noop(env):
    run, proc, _ = env
    pid = json.loads(run("propose", "build", "--json")[1])["id"]
    code, out, _ = run("approve", pid, "--yes")
    assert code == 0 and gone(proc.pid)
    code, out, _ = run("approve", pid, "--yes")
    assert code == 0 and "already approved and executed; nothing done again" in out
    code, out, _ = run("history", "build", "--json")
    kinds = [r["kind"] for r in json.loads(out)]
    assert kinds == ["proposal", "decision", "result"]


def test_approve_failure_exit_code(env):
    run, proc, _ = env
    pid = json.loads(run("propose", "build", "--json")[1])["id"]
    cleanup(proc.pid)
    proc.wait(5)
    code, out, _ = run("approve", pid, "--yes")
    assert code == 1 and "kill failed: pid" in out and "not running" in out
    code, _, err = run("approve", "p_doesnotexist", "--yes")
    assert code == 1 and "no proposal p_doesnotexist" in err


def test_reject_history_report(env):
    run, proc, _ = env
    pid = json.loads(run("propose", "build", "--json")[1])["id"]
    code, out, _ = run("reject", pid, "--reason", "looping on purpose")
    assert code == 0 and "rejected" in out
    code, out, _ = run("approve", pid, "--yes")
    assert code == 1 and "rejected" in out
    code, out, _ = run("history")
    assert code == 0
    lines = out.splitlines()
    assert "proposal" in lines[0] and "rules (no API key)" in lines[0]
    assert "rejected" in lines[1] and "looping on purpose" in lines[1]
    code, out, _ = run("report")
    assert "Proposals: 1 (rules 1); approved 0, rejected 1" in out
    code, out, _ = run("report", "--json")
    assert json.loads(out)["rejected"] == 1
    assert not gone(proc.pid)


def test_with_a_config_target(tmp_path, monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    config = Config(roots=(str(tmp_path),), journal="j/recovery.jsonl")
    service = RecoveryService(Journal(config.journal_path()), use_claude=False)
    service.record_transition(snap(badge=Badge.STUCK), Badge.HEALTHY)
    out = io.StringIO()
    assert run_command(parse(["history"]), config, out=out) == 0
    assert "health healthy → stuck [stalled]: no sign of life for 12m" in out.getvalue()
