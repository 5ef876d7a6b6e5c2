"""The real app on real files and processes, with the live engine running."""

from __future__ import annotations

import shutil
import subprocess

from tuikit import SIZE, append_log, badge_of, config_for, failing, row_text, wait_for, write_task

from bgmon.model import Badge
from bgmon.views.tui.app import BgmonApp


def fixture_workspace(root):
    write_task(root, "steady", progress={"done": 2, "total": 5}, step="writing the parser",
               events=[{"type": "tool_call", "tool": "Edit", "call_id": "c1", "input": {"file": "p.py"}},
                       {"type": "tool_result", "call_id": "c1", "ok": True}])
    write_task(root, "broken", status="failed", exitCode=2, error="cargo: linker failed")
    write_task(root, "shipped", status="completed", progress="5/5")
    write_task(root, "flailing", events=failing(3, error="ENOENT: no such file package.json"))


async def test_tree_shows_fixture_tasks_with_their_badges(home):
    fixture_workspace(home)
    app = BgmonApp(config_for(home))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: len(app.sync.nodes) == 4, what="4 tasks")
        assert badge_of(app, "steady") is Badge.HEALTHY
        assert badge_of(app, "broken") is Badge.FAILED
        assert badge_of(app, "shipped") is Badge.COMPLETED
        assert badge_of(app, "flailing") is Badge.STRUGGLING
        row = row_text(app, "steady")
        assert "✓ healthy" in row and "steady" in row and "2/5" in row and "writing the" in row
        assert "✗ failed" in row_text(app, "broken")
        assert "⚠ struggling" in row_text(app, "flailing")
        assert "● completed" in row_text(app, "shipped")
        assert "4 tasks" in app.sub_title and "1 ✗ failed" in app.sub_title
        # Severity order: worst first.
        names = [n.data.name for n in app.sync.groups[str(home)].children]
        assert names == ["broken", "flailing", "steady", "shipped"]


async def test_failing_results_turn_a_running_task_struggling(home):
    task = write_task(home, "worker", events=[{"type": "step", "text": "compiling"}])
    app = BgmonApp(config_for(home))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: badge_of(app, "worker") is Badge.HEALTHY, what="healthy first")
        append_log(task, *failing(3, error="pytest: 12 failed"))
        await wait_for(pilot, lambda: badge_of(app, "worker") is Badge.STRUGGLING, what="struggling")
        # The detail panel (the task is selected: it is the only one) shows the evidence.
        await pilot.pause(0.1)
        text = app.query_one("#detail").plain()
        assert "struggling.streak" in text and "3 failed tool calls in a row" in text
        assert "pytest: 12 failed" in text


async def test_a_task_whose_process_is_killed_turns_failed(home):
    proc = subprocess.Popen([shutil.which("sleep") or "sleep", "60"])
    try:
        write_task(home, "sleeper", pid=proc.pid, step="sleeping")
        app = BgmonApp(config_for(home, proc_interval=0.5))
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: badge_of(app, "sleeper") is Badge.HEALTHY, what="healthy")
            assert f"pid       {proc.pid}" in app.query_one("#detail").plain() or str(proc.pid) in app.query_one("#detail").plain()
            proc.kill()
            proc.wait()
            await wait_for(pilot, lambda: badge_of(app, "sleeper") is Badge.FAILED, what="failed")
            text = app.query_one("#detail").plain()
            assert "process.exited" in text and f"process {proc.pid} exited" in text
            assert "gone" in text
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def test_tasks_appear_and_go_away_by_themselves(home):
    write_task(home, "first")
    app = BgmonApp(config_for(home))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: badge_of(app, "first") is not None, what="first")
        write_task(home, "second", status="failed", error="boom")
        await wait_for(pilot, lambda: badge_of(app, "second") is Badge.FAILED, what="second appears")
        shutil.rmtree(home / ".worktrees" / "first")
        await wait_for(pilot, lambda: badge_of(app, "first") is None, what="first goes away")
        assert [n.data.name for n in app.sync.nodes.values()] == ["second"]
        # The selection moved off the task that went away; the panel shows what is there.
        assert app.task_tree.cursor_node is not None
        second = next(k for k, snap in app.sync.snaps.items() if snap.name == "second")
        assert app.selected in {second, f"group:{home}"}
        assert "worktrees/first" not in app.query_one("#detail").plain()


async def test_empty_state_says_where_it_looked_and_keeps_watching(home):
    app = BgmonApp(config_for(home))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.loaded, what="first look")
        await pilot.pause(0.1)
        empty = app.query_one("#empty")
        assert empty.display and not app.query_one("#main").display
        shown = str(empty.render())
        assert "No background tasks found" in shown
        assert "~/.worktrees/*/status.json" in shown
        assert "bgmon demo" in shown
        write_task(home, "late")
        await wait_for(pilot, lambda: badge_of(app, "late") is not None, what="late task")
        await pilot.pause(0.1)
        assert not app.query_one("#empty").display and app.query_one("#main").display


async def test_without_inotify_the_app_says_so_and_keeps_following(home, monkeypatch):
    """inotify instances exhausted: the engine falls back to sweeping (no "engine stopped"),
    the reading warnings say so, and changes still arrive."""
    import errno

    import bgmon.sources.watch

    def exhausted():
        raise OSError(errno.EMFILE, "inotify_init1: Too many open files")

    monkeypatch.delenv("BGMON_WATCH", raising=False)  # the system's own watch: inotify here
    monkeypatch.setattr(bgmon.sources.watch, "Inotify", exhausted)
    task = write_task(home, "worker", events=[{"type": "step", "text": "compiling"}])
    app = BgmonApp(config_for(home, sweep_interval=0.3))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: badge_of(app, "worker") is Badge.HEALTHY, what="healthy first")
        warning = next((w for w in app.read_warnings if "inotify" in w), None)
        assert warning is not None and "checking every 0.3 s" in warning, app.read_warnings
        append_log(task, *failing(3, error="pytest: 12 failed"))
        await wait_for(pilot, lambda: badge_of(app, "worker") is Badge.STRUGGLING, what="struggling")
        assert "reading warning" in str(app.query_one("#status").render())


async def test_a_task_blocked_on_a_person_shows_waiting_after_the_faults(home):
    write_task(home, "broken", status="failed", exitCode=2)
    write_task(home, "steady", events=[{"type": "step", "text": "compiling"}])
    asker = write_task(home, "asker", events=[{"type": "waiting", "text": "approve: git push"}])
    app = BgmonApp(config_for(home))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: badge_of(app, "asker") is Badge.WAITING, what="waiting")
        assert "⚑ waiting" in row_text(app, "asker")
        names = [n.data.name for n in app.sync.groups[str(home)].children]
        assert names == ["broken", "asker", "steady"]
        assert "1 ⚑ waiting" in app.sub_title
        append_log(asker, {"type": "resumed"})
        await wait_for(pilot, lambda: badge_of(app, "asker") is Badge.HEALTHY, what="running again")
