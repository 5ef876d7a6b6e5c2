"""`bgmon propose | approve | reject | history | report` with hand-built snapshots."""

from __future__ import annotations

import argparse
import io
import json
import os

import pytest
from test_recovery_support import SLEEPER, cleanup, gone, snap, spawn

from bgmon.config import Config
from bgmon.model import Badge
from bgmon.recovery.cli import add_parsers, format_record, run_command
from bgmon.recovery.journal import Journal
from bgmon.recovery.proposal import Kill, Proposal
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
                          "diagnosis", "confidence", "actions", "refused", "created",
                          "effect", "state"]
    # The live effect and the state: what a remote bgmon's approval prompt shows.
    (effect,) = data["effect"]
    assert effect.startswith(f"1. send SIGTERM to pid {proc.pid} (no children), SIGKILL after 5s")
    assert data["state"] == "pending"
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


# --- pid 1 in a stored proposal; a journal that is not one ---------------------------------------


def _cli(tmp_path, *argv: str, tasks: dict | None = None, stdin=None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = run_command(parse([*argv, "--root", str(tmp_path)]),
                       (tasks or {}).get, out=out, err=err, stdin=stdin or io.StringIO())
    return code, out.getvalue(), err.getvalue()


def test_approving_a_stored_proposal_for_pid_1_says_why_it_cannot_run(tmp_path, monkeypatch):
    def never(pid, *a, **kw):  # nothing may even look at init, let alone signal it
        raise AssertionError(f"psutil.Process({pid}) called")

    monkeypatch.setattr("bgmon.recovery.actions.psutil.Process", never)
    # As an older bgmon recorded it for a status.json saying "pid": 1 (see the review notes).
    p = Proposal(id="p_0d7235df", task="wt:t", task_id="t", source="rules", model=None,
                 degraded_reason="no API key", diagnosis="t is stuck", confidence=0.6,
                 actions=(Kill(1, children=9),))
    Journal.for_root(tmp_path).record_proposal(p)
    task = snap(key="wt:t", id="t", pid=None, path=str(tmp_path))
    tasks = {"t": task, "wt:t": task}
    code, out, err = _cli(tmp_path, "approve", p.id, stdin=TTY("n\n"), tasks=tasks)
    assert code == 0 and "refused when run: pid 1 is not a task's process" in out
    code, out, err = _cli(tmp_path, "approve", p.id, "--yes", tasks=tasks)
    assert code == 1, (out, err)
    assert "no proposal" not in out + err
    assert "kill failed: pid 1 is not a task's process (0 and 1 are the kernel and init)" in out


MALFORMED = b"""[1]
5
"x"
null
{"kind":"proposal","proposal":5}
{"kind":"proposal","task":"t","proposal":{"id":"p_1","task":"t","source":"rules","created":"x","actions":5}}
{"kind":"proposal","task":"t","proposal":{"id":"p_3","task":"t","source":"rules","created":"x"},"patterns":5}
{"kind":"health","task":5,"from":[],"to":{}}
{"kind":"health","task":"t","to":"failed","ts":"2024-01-01T00:00:00Z","patterns":5}
{"kind":"health","task":"t","to":"failed","reasons":"x"}
{"kind":"decision","proposal":"p_1","decision":"approved","ts":5}
{"kind":"decision","task":"t","proposal":["p_1"],"decision":"approved"}
{"kind":"result","proposal":"p_1","ok":"yes","results":5}
{"kind":"mark","task":"t","note":5}
{"kind":"health","task":"t","to":"healthy","ts":"bad"}
{"v":1,"ts":null,"kind":"proposal","task":"t","proposal":{"id":"p_2","task":"t","source":"rules","created":"2024","actions":[{"kind":"mark","note":"x"}],"confidence":"high"}}
{"kind":"result","proposal":"p_2","ok":true,"results":[1,"x",{"kind":5}]}
"""


def test_malformed_journal_records_are_skipped_and_counted(tmp_path):
    path = tmp_path / ".agents" / "logs" / "background_monitoring.jsonl"
    path.parent.mkdir(parents=True)
    path.write_bytes(MALFORMED)
    code, out, err = _cli(tmp_path, "history")
    assert code == 0, err
    assert "13 unreadable or malformed line(s)" in err and "Traceback" not in err
    assert len(out.splitlines()) == 4  # the decision, a health record, p_2 and its result
    assert "proposal p_2 from rules: [mark]" in out
    code, out, err = _cli(tmp_path, "history", "--json")
    assert code == 0 and len(json.loads(out)) == 4
    code, out, err = _cli(tmp_path, "report")
    assert code == 0 and "13 unreadable or malformed line(s) skipped" in out
    code, out, err = _cli(tmp_path, "report", "--json")
    assert code == 0 and json.loads(out)["bad_lines"] == 13
    # A proposal whose record is damaged is not found, with the usual message.
    code, out, err = _cli(tmp_path, "approve", "p_1", "--yes")
    assert code == 1 and "no proposal p_1" in err


def test_format_record_never_crashes_on_odd_fields():
    for rec in ({"kind": "proposal", "proposal": 5}, {"kind": "health", "patterns": 5,
                "reasons": [5]}, {"kind": "result", "results": 5},
                {"kind": "proposal", "proposal": {"actions": 5}}, 5, None,
                {"kind": "auto", "outcome": "skipped", "reason": "why"}):
        assert isinstance(format_record(rec), str)


@pytest.mark.parametrize("make", ["directory", "fifo", "loop"])
def test_a_journal_that_cannot_be_read_is_exit_2_with_one_line(tmp_path, make):
    path = tmp_path / ".agents" / "logs" / "background_monitoring.jsonl"
    path.parent.mkdir(parents=True)
    if make == "directory":
        path.mkdir()
    elif make == "fifo":
        os.mkfifo(path)  # opening it for reading must not hang
    else:
        path.symlink_to(path)  # ELOOP
    for argv in (["history"], ["history", "--json"], ["report"], ["report", "--json"],
                 ["approve", "p_1", "--yes"], ["reject", "p_1"]):
        code, out, err = _cli(tmp_path, *argv)
        assert code == 2, (argv, out, err)
        assert err.count("\n") == 1 and err.startswith("bgmon: cannot read the journal ")
        assert str(path) in err and out == ""
