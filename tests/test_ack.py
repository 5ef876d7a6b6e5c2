"""`bgmon ack` across the CLI, --once text and JSON, the live engine (an acknowledgement is
spent when the badge changes), notifications and `bgmon wait`."""

from __future__ import annotations

import json
import os
import subprocess

from bgmon.model import Acknowledged, Badge, Health, Reason, TaskSnapshot
from bgmon.wait import outcome
from tests.conftest import bgmon_cmd, wait_for
from tests.test_follow import Lines

SOURCES = ("--no-git", "--no-claude", "--no-codex")


def run(home, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")}
    return subprocess.run(bgmon_cmd(*args), capture_output=True, text=True, env=env, timeout=60)


def once(ws, home, *extra: str) -> subprocess.CompletedProcess:
    return run(home, "--once", *extra, *SOURCES, str(ws.root))


def ack(ws, home, *args: str) -> subprocess.CompletedProcess:
    return run(home, "ack", *args, "--root", str(ws.root), *SOURCES)


def test_an_acknowledged_fault_stops_counting_and_shows_everywhere(ws, isolated_home):
    ws.task("broken", name="broken", status="failed", error="linker failed")
    ws.task("fine", name="fine")
    assert once(ws, isolated_home).returncode == 1
    done = ack(ws, isolated_home, "broken", "--note", "on it \x1b[2J")
    assert done.returncode == 0, done.stderr
    assert "broken: failed, acknowledged" in done.stdout
    text = once(ws, isolated_home)
    assert text.returncode == 0  # the only fault is seen: nothing else needs attention
    assert "broken | ✗ failed: " in text.stdout and "(acknowledged: on it" in text.stdout
    assert "1 of them acknowledged" in text.stdout and "\x1b[2J" not in text.stdout
    doc = json.loads(once(ws, isolated_home, "--json").stdout)
    by_name = {t["name"]: t for t in doc["tasks"]}
    assert by_name["broken"]["acknowledged"]["badge"] == "failed"
    assert by_name["broken"]["acknowledged"]["note"].startswith("on it")
    assert by_name["fine"]["acknowledged"] is None
    # Taken back: it counts again.
    assert ack(ws, isolated_home, "broken", "--clear").returncode == 0
    assert once(ws, isolated_home).returncode == 1


def test_an_acknowledgement_holds_for_its_badge_only(ws, isolated_home):
    ws.task("worker", name="worker")
    ws.fail("worker", 3)  # struggling
    assert ack(ws, isolated_home, "worker").returncode == 0
    assert once(ws, isolated_home).returncode == 0
    ws.task("worker", name="worker", status="failed", error="gave up")  # a new fault
    out = once(ws, isolated_home)
    assert out.returncode == 1 and "acknowledged" not in out.stdout


def test_the_live_engine_spends_an_acknowledgement_when_the_badge_changes(ws, isolated_home):
    ws.task("flaky", name="flaky", status="failed", error="exit 1")
    assert ack(ws, isolated_home, "flaky").returncode == 0
    env = {**os.environ, "HOME": str(isolated_home), "XDG_CONFIG_HOME": str(isolated_home / ".config")}
    proc = subprocess.Popen(bgmon_cmd("--follow", "--json", *SOURCES, str(ws.root)),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    lines = Lines(proc)
    try:
        snap = lines.until(lambda o: o.get("event") == "snapshot")
        assert snap["task"]["acknowledged"]["badge"] == "failed"
        ws.task("flaky", name="flaky", status="running")  # it changed: back at work …
        assert lines.until(lambda o: o.get("to") == "healthy") is not None
        wait_for(lambda: "acknowledged" not in once(ws, isolated_home).stdout, what="ack spent")
    finally:
        proc.terminate()
        proc.wait(20)
    ws.task("flaky", name="flaky", status="failed", error="exit 1")  # … and failed again
    assert once(ws, isolated_home).returncode == 1


def test_ack_usage_errors(ws, isolated_home):
    ws.task("fine", name="fine")
    for args, message in ((["fine"], "fine is healthy: there is no fault to acknowledge"),
                          (["nobody"], "no task matches 'nobody'"),
                          (["fine", "--clear"], "fine is not acknowledged")):
        p = ack(ws, isolated_home, *args)
        assert p.returncode == 2 and message in p.stderr and "Traceback" not in p.stderr


def snap(badge: Badge, ack: Acknowledged | None = None) -> TaskSnapshot:
    return TaskSnapshot(key="k", id="k", name="k", source="worktree", group="g", parent=None,
                        status="x", health=Health(badge, (Reason("r", "why"),)), progress=None,
                        step=None, last_activity=None, pid=None, path="/k", ack=ack)


def test_wait_and_the_exit_status_skip_acknowledged_faults():
    seen = snap(Badge.FAILED, Acknowledged("failed", "known"))
    assert outcome("completed", [seen], ["k"]) is None  # keeps waiting, no fault
    assert outcome("completed", [snap(Badge.FAILED)], ["k"]).reached is False
    assert outcome("fault", [seen], ["k"]) is None
    assert not seen.needs_attention and snap(Badge.STUCK).needs_attention


def test_the_json_contract_carries_the_acknowledgement_both_ways():
    from bgmon.views.jsonout import task_from_json, task_json

    obj = task_json(snap(Badge.FAILED, Acknowledged("failed", "known", 1796280000.0)))
    assert obj["acknowledged"] == {"badge": "failed", "note": "known", "at": "2026-12-03T06:40:00Z"}
    back = task_from_json(obj, "box")
    assert back is not None and back.ack == Acknowledged("failed", "known", 1796280000.0)
