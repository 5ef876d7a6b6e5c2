"""The `waiting` badge end to end: any source's `waiting`/`resumed` lines, every view, the
sort order, and `--once`'s exit status with and without `--fail-on`."""

from __future__ import annotations

import io
import subprocess
import time

import orjson

from bgmon.engine import Monitor
from bgmon.formats import native
from bgmon.model import Badge, EventKind
from bgmon.views import jsonout, text
from bgmon.views.order import arrange, has_badge
from tests.conftest import bgmon_cmd


def test_native_lines_say_waiting_and_resumed():
    (ev,) = native.parse({"ts": 1795269726, "type": "waiting", "text": "approve: git push"})
    assert ev.kind is EventKind.WAITING and ev.text == "approve: git push"
    (ev,) = native.parse({"ts": 1795269727, "type": "resumed"})
    assert ev.kind is EventKind.RESUMED


def _monitor(ws) -> Monitor:
    m = Monitor(ws.config())
    m.sweep()
    m.evaluate()
    return m


def test_a_waiting_line_makes_the_task_waiting_until_resumed(ws):
    now = time.time()
    ws.task("deploy", id="deploy", name="deploy", timestamp=now - 5)
    ws.log("deploy", {"ts": now - 2, "type": "waiting", "text": "approve: git push --force"})
    ws.task("broken", id="broken", name="broken", status="failed")
    ws.task("fine", id="fine", name="fine", timestamp=now)
    m = _monitor(ws)
    snaps = {s.name: s for s in m.snapshots()}
    assert snaps["deploy"].health.badge is Badge.WAITING
    # Sorted right after the faults, before healthy tasks.
    (_, rows), = arrange(m.snapshots())
    assert [s.name for _, s in rows] == ["broken", "deploy", "fine"]
    # Every view shows glyph and word; JSON keeps `detail` and adds the facts.
    out = io.StringIO()
    text.render([s for _, s in rows], [], [], out, now)
    assert "⚑ waiting: blocked on a person: approve: git push --force" in out.getvalue()
    doc = orjson.loads(jsonout.document([snaps["deploy"]], now, []))
    (task,) = doc["tasks"]
    assert doc["version"] == 1 and task["health"] == "waiting"
    assert task["reasons"][0]["rule"] == "waiting.person"
    assert task["reasons"][0]["reason"] == "approve: git push --force"
    assert task["reasons"][0]["asked_at"].endswith("Z")
    assert not has_badge([snaps["deploy"]]) and has_badge([snaps["deploy"]], frozenset({Badge.WAITING}))
    ws.log("deploy", {"ts": now - 1, "type": "resumed"})
    m.on_paths([str(ws.root / ".worktrees" / "deploy" / "logs" / "events.jsonl")])
    m.evaluate()
    assert {s.name: s for s in m.snapshots()}["deploy"].health.badge is Badge.HEALTHY


def test_fail_on_chooses_the_badges_that_fail_once(ws, isolated_home):
    now = time.time()
    ws.task("deploy", timestamp=now)
    ws.log("deploy", {"ts": now, "type": "waiting", "text": "a question"})

    def once(*extra):
        return subprocess.run(bgmon_cmd("--once", "--no-git", "--no-claude", "--no-codex", *extra),
                              cwd=ws.root, capture_output=True, text=True, timeout=60)
    assert once().returncode == 0
    assert once("--fail-on", "waiting,failed").returncode == 1
    assert once("--fail-on", "failed").returncode == 0
    bad = once("--fail-on", "wating")
    assert bad.returncode == 2 and "unknown badge wating" in bad.stderr and "Traceback" not in bad.stderr
    alone = subprocess.run(bgmon_cmd("--fail-on", "waiting", "--no-git"), cwd=ws.root,
                           capture_output=True, text=True, timeout=60)
    assert alone.returncode == 2 and "--fail-on goes with --once" in alone.stderr
