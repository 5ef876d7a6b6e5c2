"""Finished worktree tasks age out of the default view (--once text and JSON, exit status,
--follow's first picture, the TUI) after `age_out`; --all shows them."""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import replace

from bgmon.model import Badge, Health, TaskSnapshot
from bgmon.views.order import aged_out
from tests.conftest import bgmon_cmd, terminate

SOURCES = ("--no-git", "--no-claude", "--no-codex")
DAY = 86400.0


def old_task(ws, name: str, status: str, days: float = 3, **fields):
    then = time.time() - days * DAY
    d = ws.task(name, name=name, status=status, updatedAt=then, **fields)
    os.utime(d / "status.json", (then, then))  # the status write is a sign of life too
    return d


def once(ws, home, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")}
    return subprocess.run(bgmon_cmd("--once", *extra, *SOURCES, str(ws.root)), capture_output=True,
                          text=True, env=env, timeout=60)


def test_old_finished_tasks_leave_the_default_view_and_the_exit_status(ws, isolated_home):
    old_task(ws, "shipped", "completed")
    old_task(ws, "crashed", "failed", error="old news")
    old_task(ws, "hung", "running")  # not finished: it stays, however old (stuck)
    ws.task("fresh", name="fresh", status="failed", error="today")
    out = once(ws, isolated_home)
    assert "shipped" not in out.stdout and "crashed" not in out.stdout
    assert "hung" in out.stdout and "fresh" in out.stdout
    assert "2 finished task(s) with no sign of life within age_out left out" in out.stdout
    assert out.returncode == 1  # fresh (and hung) still count
    everything = once(ws, isolated_home, "--all")
    assert "shipped" in everything.stdout and "crashed" in everything.stdout
    doc = json.loads(once(ws, isolated_home, "--json").stdout)
    assert {t["name"] for t in doc["tasks"]} == {"hung", "fresh"}


def test_only_old_news_exits_zero_and_age_out_is_configurable(ws, isolated_home, tmp_path):
    old_task(ws, "crashed", "failed", days=0.5, error="this morning")
    assert once(ws, isolated_home).returncode == 1  # 12 h < the default 24 h
    cfg = tmp_path / "c.toml"
    cfg.write_text('[monitor]\nage_out = "6h"\n')
    out = once(ws, isolated_home, "--config", str(cfg))
    assert out.returncode == 0 and "No background tasks found" not in out.stdout
    assert "1 finished task(s)" in out.stdout
    assert once(ws, isolated_home, "--config", str(cfg), "--all").returncode == 1


def snap(status: str, badge: Badge, last: float | None, source: str = "worktree") -> TaskSnapshot:
    return TaskSnapshot(key="k", id="k", name="k", source=source, group="g", parent=None,
                        status=status, health=Health(badge), progress=None, step=None,
                        last_activity=last, pid=None, path="/k")


def test_aged_out_rule():
    now = 10 * DAY
    old = now - 2 * DAY
    assert aged_out(snap("completed", Badge.COMPLETED, old), now, DAY)
    assert aged_out(snap("running", Badge.FAILED, old), now, DAY)  # its process died long ago
    assert not aged_out(snap("running", Badge.STUCK, old), now, DAY)
    assert not aged_out(snap("completed", Badge.COMPLETED, now - 60), now, DAY)
    assert not aged_out(snap("completed", Badge.COMPLETED, old), now, 0)  # --all
    assert not aged_out(snap("completed", Badge.COMPLETED, None), now, DAY)
    assert not aged_out(replace(snap("x", Badge.COMPLETED, old), source="claude"), now, DAY)


def test_follow_text_starts_with_the_default_view(ws, isolated_home):
    from tests.test_watch import TextLines

    old_task(ws, "shipped", "completed")
    ws.task("fresh", name="fresh")
    env = {**os.environ, "HOME": str(isolated_home), "XDG_CONFIG_HOME": str(isolated_home / ".config")}
    proc = subprocess.Popen(bgmon_cmd("--follow", *SOURCES, str(ws.root)), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)
    lines = TextLines(proc)
    try:
        assert lines.next() == str(ws.root)
        assert "fresh" in lines.next()
    finally:
        assert terminate(proc) == 0
    assert "shipped" not in proc.stdout.read().decode()
