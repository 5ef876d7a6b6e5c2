"""Acknowledging from the TUI (`c`) and seeing a shell's `bgmon ack` in the running TUI."""

from __future__ import annotations

import os
import subprocess
import sys

from tuikit import SIZE, badge_of, config_for, row_text, wait_for, write_task

from bgmon.model import Badge
from bgmon.recovery.journal import Journal
from bgmon.views.tui.app import BgmonApp


def acked(app, name: str) -> bool:
    """The row says so: `acknowledged`, or `ack` where the row is narrow."""
    words = row_text(app, name).split()
    return "acknowledged" in words or "ack" in words


def toasts(app) -> list[str]:
    return [n.message for n in app._notifications]


async def test_c_acknowledges_the_selected_fault(home):
    write_task(home, "broken", status="failed", error="linker failed")
    write_task(home, "steady")
    config = config_for(home)
    app = BgmonApp(config)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: badge_of(app, "broken") is Badge.FAILED, what="failed")
        assert app.selected is not None and app.sync.snaps[app.selected].name == "broken"
        assert not acked(app, "broken")
        await pilot.press("c")
        await wait_for(pilot, lambda: acked(app, "broken"), what="the mark")
        assert any("broken: failed, acknowledged until its badge changes" in t for t in toasts(app))
        assert "ack" in app.query_one("#detail").plain()
        acks = Journal(config.journal_path()).acks()
        (ack,) = acks.values()
        assert ack.badge == "failed"
        # A healthy task has nothing to acknowledge.
        await pilot.press("j")
        await pilot.pause(0.2)
        assert app.sync.snaps[app.selected].name == "steady"
        await pilot.press("c")
        await pilot.pause(0.2)
        assert any("Select a struggling, stuck or failed task" in t for t in toasts(app))
        assert len(Journal(config.journal_path()).acks()) == 1


async def test_an_ack_from_the_shell_shows_in_the_running_tui(home):
    write_task(home, "stalled", status="failed", error="no progress")
    app = BgmonApp(config_for(home))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: badge_of(app, "stalled") is Badge.FAILED, what="failed")
        env = {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")}
        done = subprocess.run([sys.executable, "-m", "bgmon", "ack", "stalled", "--note", "mine",
                               "--root", str(home), "--no-git", "--no-claude", "--no-codex"],
                              capture_output=True, text=True, env=env, timeout=60)
        assert done.returncode == 0, done.stderr
        await wait_for(pilot, lambda: acked(app, "stalled"), what="the mark")
        assert "acknowledged: mine" in app.query_one("#detail").plain()
