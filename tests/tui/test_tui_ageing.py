"""The TUI leaves finished tasks older than age_out out of the tree and the header."""

from __future__ import annotations

import os
import time
from dataclasses import replace

from tuikit import SIZE, config_for, wait_for, write_task

from bgmon.views.tui.app import BgmonApp


def old(home, name: str, status: str):
    then = time.time() - 3 * 86400
    d = write_task(home, name, status=status, updatedAt=then)
    os.utime(d / "status.json", (then, then))


async def test_aged_tasks_are_left_out_unless_all(home):
    old(home, "shipped", "completed")
    old(home, "crashed", "failed")
    write_task(home, "fresh")
    app = BgmonApp(config_for(home))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: len(app.sync.snaps) == 3, what="3 tasks read")
        await wait_for(pilot, lambda: [n.data.name for n in app.sync.nodes.values()] == ["fresh"],
                       what="only the fresh task shown")
        assert "1 task" in app.sub_title and "failed" not in app.sub_title
        assert "1 of 3 shown" in app.query_one("#status").render().plain
    app = BgmonApp(replace(config_for(home), age_out=0.0))  # --all
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: len(app.sync.nodes) == 3, what="all three shown")
