"""Proposal shape, action validation and rule-based proposals from hand-built snapshots."""

from __future__ import annotations

import pytest
from test_recovery_support import err, snap

from bgmon.model import Badge, Event, EventKind
from bgmon.recovery import rules
from bgmon.recovery.patterns import load_catalogue
from bgmon.recovery.proposal import Kill, Mark, Proposal, Restart, Run, Signal
from bgmon.recovery.validate import InvalidAction, validate_action

CAT = load_catalogue()
CMD = ("python", "train.py", "--epochs", "3")


def alive_task(tmp_path, **kw):
    kw.setdefault("pid", 4242)
    kw.setdefault("alive", True)
    kw.setdefault("children", (4243, 4244, 4245))
    kw.setdefault("cwd", str(tmp_path))
    return snap(**kw)


# --- actions and proposals -------------------------------------------------------------------


def test_descriptions_are_exact():
    assert Kill(4242, 5, children=3).describe() == (
        "send SIGTERM to pid 4242 and its 3 children, SIGKILL after 5s")
    assert Kill(4242, 2.5, children=1).describe() == (
        "send SIGTERM to pid 4242 and its 1 child, SIGKILL after 2.5s")
    assert Run(("pytest", "-x"), "/path", 300).describe() == (
        "run ['pytest', '-x'] in /path (timeout 300s)")
    assert Signal(4242, "SIGUSR1").describe() == "send SIGUSR1 to pid 4242 (not to its children)"
    assert Restart(("a", "b"), "/w", pid=7, grace=5, delay=10, children=0,
                   status_file="/w/status.json").describe() == (
        "stop pid 7 (no children) (SIGTERM, SIGKILL after 5s), wait 10s, then start ['a', 'b'] "
        "in /w, detached; write the new pid and status running to /w/status.json")
    assert Restart(("a",), "/w").describe() == "start ['a'] in /w, detached"
    assert "no agent file is touched" in Mark("handled").describe()


def test_to_json_shape_and_round_trip():
    p = Proposal(
        id="p_12345678", task="wt:demo", task_id="demo", source="rules", model=None,
        degraded_reason="no API key", diagnosis="d", confidence=0.6,
        actions=(Kill(4242, 5, 3), Restart(CMD, "/w", 4242), Signal(4242, "SIGHUP"),
                 Run(("make",), "/w", 60), Mark("handled")),
        refused=({"raw": {"kind": "nope"}, "reason": "unknown action kind 'nope'"},),
        patterns=("stalled",),
    )
    data = p.to_json()
    assert list(data) == ["id", "task", "task_id", "source", "model", "degraded_reason",
                          "diagnosis", "confidence", "actions", "refused", "created"]
    assert data["actions"][0] == {"kind": "kill", "pid": 4242, "grace": 5, "children": 3,
                                  "effect": "send SIGTERM to pid 4242 and its 3 children, "
                                            "SIGKILL after 5s"}
    assert data["actions"][3]["argv"] == ["make"] and data["actions"][3]["timeout"] == 60
    back = Proposal.from_json(data, p.patterns)
    assert back.actions == p.actions and back.to_json() == data


@pytest.mark.parametrize("raw, reason", [
    ({"kind": "exec", "argv": ["ls"]}, "unknown action kind"),
    ("kill", "must be an object"),
    ({"kind": "run", "argv": "make test"}, "shell string"),
    ({"kind": "run", "argv": ["make test"]}, "shell command line"),
    ({"kind": "run", "argv": ["/bin/bash", "-c", "x"]}, "starts a shell"),
    ({"kind": "run", "argv": ["env", "FOO=1", "sh", "-c", "x"]}, "starts a shell"),
    ({"kind": "run", "argv": []}, "non-empty list"),
    ({"kind": "run", "argv": ["ls", 3]}, "only strings"),
    ({"kind": "run", "argv": ["ls"], "cwd": "../.."}, "outside the task's directory"),
    ({"kind": "run", "argv": ["ls"], "timeout": 0}, "between"),
    ({"kind": "run", "argv": ["ls"], "shell": True}, "unexpected argument"),
    ({"kind": "kill", "pid": 9999}, "not this task's process"),
    ({"kind": "kill", "pid": True}, "process id"),
    ({"kind": "kill", "grace": -1}, "between"),
    ({"kind": "signal", "signal": "SIGNOPE"}, "unknown signal"),
    ({"kind": "signal", "signal": 9}, "signal name"),
    ({"kind": "restart", "argv": ["other"]}, "recorded command"),
    ({"kind": "mark", "note": "  "}, "non-empty note"),
])
def test_untrusted_actions_are_refused(tmp_path, raw, reason):
    with pytest.raises(InvalidAction, match=reason):
        validate_action(raw, alive_task(tmp_path, command=CMD))


def test_valid_untrusted_actions(tmp_path):
    s = alive_task(tmp_path, command=CMD)
    (tmp_path / "sub").mkdir()
    assert validate_action({"kind": "kill"}, s) == Kill(4242, 5.0, children=3)
    assert validate_action({"kind": "signal", "signal": "hup"}, s) == Signal(4242, "SIGHUP")
    run = validate_action({"kind": "run", "argv": ["pytest", "-x"], "cwd": "sub", "timeout": 30}, s)
    assert run == Run(("pytest", "-x"), str(tmp_path / "sub"), 30.0)
    restart = validate_action({"kind": "restart", "grace": 2}, s)
    assert restart.argv == CMD and restart.pid == 4242 and restart.cwd == str(tmp_path)
    assert validate_action({"kind": "mark", "note": "on it\nnow"}, s) == Mark("on it now")


def test_task_without_pid_or_command(tmp_path):
    s = snap(cwd=str(tmp_path))
    with pytest.raises(InvalidAction, match="no known process"):
        validate_action({"kind": "kill"}, s)
    with pytest.raises(InvalidAction, match="no recorded command"):
        validate_action({"kind": "restart"}, s)
    dead = alive_task(tmp_path, alive=False)
    with pytest.raises(InvalidAction, match="not running"):
        validate_action({"kind": "kill"}, dead)


# --- rules -------------------------------------------------------------------------------------


def test_connection_refused_restarts_with_backoff(tmp_path):
    s = alive_task(tmp_path, badge=Badge.FAILED, command=CMD,
                   reasons=(("status.failed", "status says failed"),),
                   recent=(err("psycopg2.OperationalError: connection refused (db:5432)"),))
    p = rules.propose(s, CAT, degraded_reason="no API key")
    assert p.source == "rules" and p.degraded_reason == "no API key"
    assert p.patterns[0] == "connection_refused"
    (restart,) = p.actions
    assert isinstance(restart, Restart) and restart.argv == CMD and restart.delay == 5
    assert "connection refused" in p.diagnosis and "waits 5s" in p.diagnosis
    later = rules.propose(s, CAT, restarts=2)
    assert later.actions[0].delay == 20  # backoff grows


def test_without_command_no_restart_is_possible(tmp_path):
    s = alive_task(tmp_path, recent=(err("ECONNREFUSED 127.0.0.1:6379"),))
    p = rules.propose(s, CAT)
    assert not any(isinstance(a, Restart) for a in p.actions)
    assert "no command is recorded" in p.diagnosis
    assert isinstance(p.actions[-1], Mark)


def test_disk_full_never_restarts(tmp_path):
    s = alive_task(tmp_path, badge=Badge.FAILED, command=CMD,
                   reasons=(("process.exited", "pid 4242 exited"),),
                   recent=(err("OSError: [Errno 28] No space left on device"),))
    p = rules.propose(s, CAT)
    assert p.patterns[0] == "disk_full"
    assert not any(isinstance(a, Restart) for a in p.actions)
    assert "free space first" in p.diagnosis and "free of" in p.diagnosis
    assert "No restart is proposed" in p.diagnosis


def test_auth_failure_vetoes_the_restart_of_a_dead_process(tmp_path):
    s = alive_task(tmp_path, badge=Badge.FAILED, command=CMD, alive=False,
                   reasons=(("process.exited", "gone"),),
                   recent=(Event(EventKind.TOOL_RESULT, ok=False, error="HTTP 401 Unauthorized"),))
    p = rules.propose(s, CAT)
    assert "auth_failed" in p.patterns and "process_died" in p.patterns
    assert [a.kind for a in p.actions] == ["mark"]


def test_loop_is_killed_not_restarted(tmp_path):
    s = alive_task(tmp_path, command=CMD, reasons=(("stuck.loop", "Bash(ls) 6 times in a row"),))
    p = rules.propose(s, CAT)
    assert [a.kind for a in p.actions] == ["kill"]
    assert p.actions[0].describe() == "send SIGTERM to pid 4242 and its 3 children, SIGKILL after 5s"


def test_stalled_task_is_restarted(tmp_path):
    s = alive_task(tmp_path, command=CMD)
    p = rules.propose(s, CAT)
    assert p.patterns == ("stalled",)
    (restart,) = p.actions
    assert restart.pid == 4242 and restart.delay == 0


def test_stalled_task_without_command_is_killed(tmp_path):
    p = rules.propose(alive_task(tmp_path), CAT)
    assert [a.kind for a in p.actions] == ["kill", "mark"]


def test_oom_restarts_once_only(tmp_path):
    s = alive_task(tmp_path, badge=Badge.FAILED, command=CMD, alive=False,
                   reasons=(("process.exited", "killed by signal 9"),))
    assert [a.kind for a in rules.propose(s, CAT).actions] == ["restart"]
    again = rules.propose(s, CAT, restarts=1)
    assert [a.kind for a in again.actions] == ["mark"]
    assert "already restarted" in again.diagnosis


def test_repeated_test_failures_are_marked(tmp_path):
    s = alive_task(tmp_path, badge=Badge.STRUGGLING, command=CMD,
                   reasons=(("struggling.streak", "3 failed tool results in a row"),),
                   recent=(Event(EventKind.TOOL_RESULT, ok=False, text="=== 4 failed, 10 passed ==="),))
    p = rules.propose(s, CAT)
    assert p.patterns[0] == "test_failures"
    assert [a.kind for a in p.actions] == ["mark"]


def test_rate_limit_waits(tmp_path):
    s = alive_task(tmp_path, badge=Badge.STRUGGLING, command=CMD,
                   reasons=(("turn.api_error", "API error: 429 Too Many Requests"),))
    p = rules.propose(s, CAT)
    assert p.patterns[0] == "rate_limited" and [a.kind for a in p.actions] == ["mark"]
    assert p.actions[0].note.startswith("waiting")


def test_healthy_task_needs_nothing(tmp_path):
    s = alive_task(tmp_path, badge=Badge.HEALTHY, reasons=(), recent=(err("connection refused"),))
    p = rules.propose(s, CAT)
    assert p.actions == () and "Nothing to recover" in p.diagnosis


def test_unknown_failure_gets_one_restart(tmp_path):
    s = alive_task(tmp_path, badge=Badge.FAILED, command=CMD, alive=False,
                   reasons=(("status.failed", "status says failed"),))
    p = rules.propose(s, CAT)
    assert p.patterns == () and [a.kind for a in p.actions] == ["restart"]
    assert p.confidence < 0.5


def test_rule_diagnosis_quotes_no_secrets(tmp_path):
    s = alive_task(tmp_path, badge=Badge.FAILED, reasons=(("status.failed", "token=abcd1234efgh"),),
                   recent=(err("connection refused: postgres://app:s3cretpw@db:5432/app"),))
    p = rules.propose(s, CAT)
    assert "s3cretpw" not in p.diagnosis and "abcd1234efgh" not in p.diagnosis
    assert "connection refused" in p.diagnosis


# --- pid 1, and the rules' own actions through validation --------------------------------------


def test_pid_1_is_no_pid_for_the_rules(tmp_path):
    loop = (("stuck.loop", "the same call repeated 6 times in a row"),)
    for pid in (1, 0):
        task = alive_task(tmp_path, pid=pid, reasons=loop)
        p = rules.propose(task, CAT)
        assert not any(getattr(a, "pid", None) is not None for a in p.actions), p.actions
        assert [a.kind for a in p.actions] == ["mark"] and not p.refused
        stuck = alive_task(tmp_path, pid=pid, command=CMD)  # stuck.silent, a command recorded
        p = rules.propose(stuck, CAT)
        assert [(a.kind, a.pid) for a in p.actions] == [("restart", None)], p.actions
    # A model (or a damaged file) naming pid 1 against a live task is refused outright.
    with pytest.raises(InvalidAction, match="init or the kernel"):
        validate_action({"kind": "kill", "pid": 1}, alive_task(tmp_path))


def test_a_stored_proposal_for_pid_1_still_loads(tmp_path):
    # Reloading bgmon's own journal keeps it, so `approve` can say why it cannot run.
    p = Proposal(id="p_00000001", task="t", task_id="t", source="rules", model=None,
                 degraded_reason=None, diagnosis="d", confidence=0.5, actions=(Kill(1),))
    assert Proposal.from_json(p.to_json()).actions == (Kill(1),)


def test_the_rules_actions_pass_the_same_validation(tmp_path):
    # What a status.json made the rules say is checked like a model's output.
    bad = [
        (alive_task(tmp_path, command=("", "x")), "empty program or a NUL byte"),
        (alive_task(tmp_path, command=("python", "a\0b")), "empty program or a NUL byte"),
        (alive_task(tmp_path, command=CMD, cwd="relative/dir"), "not an absolute path"),
        # `bgmon run` stores a secret in its argv redacted: that command cannot run as stored.
        (alive_task(tmp_path, command=("curl", "-H", "x-api-key: [REDACTED]")), "had a secret"),
        (alive_task(tmp_path, command=("tool", "[REDACTED:anthropic]")), "had a secret"),
    ]
    for task, reason in bad:
        p = rules.propose(task, CAT)
        assert not any(a.kind == "restart" for a in p.actions), p.actions
        assert len(p.refused) == 1 and reason in p.refused[0]["reason"]
        assert p.refused[0]["raw"]["kind"] == "restart"
        assert "Refused by validation" in p.diagnosis
    good = rules.propose(alive_task(tmp_path, command=CMD), CAT)
    assert [a.kind for a in good.actions] == ["restart"] and not good.refused
