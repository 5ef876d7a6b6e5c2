"""Helpers for the TUI tests: real worktree tasks (status.json + native JSONL logs), waiting."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

from bgmon.config import Config
from bgmon.model import Badge
from bgmon.timefmt import iso
from bgmon.views.tui.app import BgmonApp

SIZE = (120, 40)


def write_task(root: Path, name: str, status: str = "running", events: list[dict] = (), **fields) -> Path:
    d = root / ".worktrees" / name
    (d / "logs").mkdir(parents=True, exist_ok=True)
    now = time.time()
    data = {"version": 1, "id": name, "name": name, "status": status, "updatedAt": iso(now), **fields}
    (d / "status.json").write_text(json.dumps(data))
    append_log(d, *events)
    return d


def append_log(task_dir: Path, *events: dict) -> None:
    with open(task_dir / "logs" / "agent.jsonl", "a") as fh:
        for ev in events:
            fh.write(json.dumps({"ts": iso(time.time()), **ev}) + "\n")


def failing(n: int, tool: str = "Bash", error: str = "exit status 1: tests failed") -> list[dict]:
    return [{"type": "tool_result", "tool": tool, "ok": False, "error": error} for _ in range(n)]


def config_for(root: Path, **kw) -> Config:
    return Config(roots=(str(root),), sources=("worktrees", "omo"), git=False, match_agents=False, **kw)


def badge_of(app: BgmonApp, name: str) -> Badge | None:
    for key, node in app.sync.nodes.items():
        if node.data is not None and node.data.name == name:
            return app.sync.snaps[key].health.badge
    return None


def row_text(app: BgmonApp, name: str) -> str:
    """The rendered label of a task's row, as plain text."""
    from rich.style import Style

    for node in app.sync.nodes.values():
        if node.data.name == name:
            return app.task_tree.render_label(node, Style(), Style()).plain
    raise AssertionError(f"no row for {name}")


async def wait_for(pilot, cond: Callable[[], bool], timeout: float = 15.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or cond}")
        await pilot.pause(0.2)
    await pilot.pause()  # let the layout and repaint catch up
