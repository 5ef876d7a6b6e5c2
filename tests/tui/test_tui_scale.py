"""Updates in place, coalesced messages from the engine thread, engine errors, 1,000 tasks."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import replace

from tuikit import SIZE, badge_of, config_for, wait_for, write_task

from bgmon.engine import Change, Monitor
from bgmon.model import Badge, Health, Reason
from bgmon.views.tui.app import ORDER_CHECK, BgmonApp
from bgmon.views.tui.messages import TasksChanged
from bgmon.views.tui.sample import NOW, sample_monitor


def sample_app(base) -> BgmonApp:
    monitor = sample_monitor(base)
    return BgmonApp(monitor.config, monitor=monitor, live=False, clock=lambda: NOW)


async def test_updates_change_nodes_in_place_and_resort_once(home):
    app = sample_app(home)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        rebuilds = app.sync.rebuilds
        snap = app.monitor.find("api-refactor")
        node = app.sync.nodes[snap.key]
        app.receive([Change("updated", snap.key, replace(snap, step="wiring the router"))], None)
        assert app.sync.rebuilds == rebuilds and app.sync.nodes[snap.key] is node
        assert node.data.step == "wiring the router"
        # A badge change repaints the row now and re-sorts a moment later: the row moves to
        # its place, nothing else is rebuilt.
        failed = Health(Badge.FAILED, (Reason("status.failed", "status is failed"),))
        app.receive([Change("health", snap.key, replace(snap, health=failed), snap.health)], None)
        assert app.sync.nodes[snap.key] is node and node.data.health.badge is Badge.FAILED
        shop = app.sync.groups[str(home / "work" / "shop")]
        assert [n.data.name for n in shop.children][:2] != ["api-refactor", "docs-site"]
        await pilot.pause(ORDER_CHECK + 0.3)
        assert app.sync.rebuilds == rebuilds and app.sync.tree_order() == app.sync.wanted_order()
        assert [n.data.name for n in shop.children][:2] == ["api-refactor", "docs-site"]
        assert app.sync.nodes[snap.key] is not node  # moved: taken out and put back
        # A new task is inserted without a rebuild; a removed one is taken out.
        new = replace(snap, key="worktree:new", id="zz-new", name="zz-new", health=Health(Badge.HEALTHY))
        rebuilds = app.sync.rebuilds
        app.receive([Change("added", new.key, new)], None)
        assert "worktree:new" in app.sync.nodes and app.sync.rebuilds == rebuilds
        app.receive([Change("removed", new.key)], None)
        assert "worktree:new" not in app.sync.nodes and app.sync.rebuilds == rebuilds


async def test_a_re_sort_moves_only_the_rows_out_of_place_and_keeps_the_cursor(home):
    """Batches of badge changes among many rows: each re-sort moves the changed rows to their
    places (no rebuild), the order is the sort's, and the selected task keeps the cursor even
    when its own row moved."""
    import random

    for i in range(60):
        write_task(home, f"task-{i:02d}")
    config = config_for(home)
    monitor = Monitor(config)
    monitor.sweep()
    monitor.evaluate()
    app = BgmonApp(config, monitor=monitor, live=False)
    rng = random.Random(4)
    badges = [Badge.HEALTHY, Badge.STRUGGLING, Badge.STUCK, Badge.FAILED, Badge.WAITING]
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        rebuilds = app.sync.rebuilds
        for _ in range(8):
            picked = rng.sample(sorted(app.sync.snaps), 7)
            selected = picked[0]
            app.task_tree.move_cursor(app.sync.nodes[selected])
            await pilot.pause()
            assert app.selected == selected
            changes = []
            for key in picked:
                snap = app.sync.snaps[key]
                health = Health(rng.choice(badges), (Reason("test", "picked"),))
                changes.append(Change("health", key, replace(snap, health=health), snap.health))
            app.receive(changes, None)
            app.check_order()
            await pilot.pause()
            assert app.sync.tree_order() == app.sync.wanted_order()
            assert app.selected == selected and app.task_tree.cursor_node is app.sync.nodes[selected]
        assert app.sync.rebuilds == rebuilds


async def test_engine_thread_bursts_coalesce_and_the_last_word_wins(home):
    app = sample_app(home)
    seen = []

    def hook(message):
        if isinstance(message, TasksChanged):
            seen.append(message)

    async with app.run_test(size=SIZE, message_hook=hook) as pilot:
        await pilot.pause()
        snap = app.monitor.find("crawler")

        def burst():
            for i in range(200):
                app.emit([Change("updated", snap.key, replace(snap, step=f"page {i}"))])

        thread = threading.Thread(target=burst)
        thread.start()
        thread.join()
        await wait_for(pilot, lambda: app.sync.snaps[snap.key].step == "page 199", what="last update")
        assert app.sync.nodes[snap.key].data.step == "page 199"
        # 200 posts from the engine thread, far fewer deliveries: can_replace merged them.
        assert 1 <= len(seen) < 50


async def test_a_failing_engine_is_reported_and_restarted(home):
    write_task(home, "survivor")

    class Flaky(Monitor):
        fails = 1

        def sweep(self):
            if Flaky.fails:
                Flaky.fails -= 1
                raise RuntimeError("disk on fire")
            super().sweep()

    config = config_for(home)
    app = BgmonApp(config, monitor=Flaky(config))
    notes = []
    app.notify = lambda message, **kw: notes.append((message, kw.get("severity")))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: notes, what="a notification")
        message, severity = notes[0]
        assert severity == "error" and "RuntimeError: disk on fire" in message and "Restarting" in message
        assert app.is_running
        await wait_for(pilot, lambda: badge_of(app, "survivor") is Badge.HEALTHY, what="engine restarted")


async def test_a_thousand_tasks_keys_filters_and_bursts(home):
    """1,000 tasks: moving, filtering and a burst of updates behave as with a few (how fast is
    bench/tui.py's business, not a test's)."""
    now = time.time()
    for i in range(1000):
        d = home / ".worktrees" / f"task-{i:04d}"
        d.mkdir(parents=True)
        status = "failed" if i % 97 == 0 else "running"
        (d / "status.json").write_text(json.dumps({"status": status, "step": f"step {i}",
                                                   "updatedAt": now, "progress": f"{i % 7}/7"}))
    config = config_for(home)
    monitor = Monitor(config)
    monitor.sweep()
    monitor.evaluate()
    app = BgmonApp(config, monitor=monitor, live=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert len(app.sync.nodes) == 1000
        line = app.task_tree.cursor_line
        await pilot.press(*(["down"] * 20))
        assert app.task_tree.cursor_line == line + 20
        await pilot.press("f")
        assert len(app.sync.nodes) == 11
        await pilot.press("f", "s")
        assert len(app.sync.nodes) == 1000
        rebuilds = app.sync.rebuilds
        snaps = list(app.sync.snaps.values())[:300]
        app.receive([Change("updated", s.key, replace(s, step="moved on")) for s in snaps], None)
        await pilot.pause()
        assert app.sync.rebuilds == rebuilds  # updated in place
        assert all(app.sync.nodes[s.key].data.step == "moved on" for s in snaps)
