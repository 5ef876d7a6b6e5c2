"""Small text helpers shared by the tree rows and the detail panel."""

from __future__ import annotations

import os

from rich.table import Table
from rich.text import Text

from bgmon.clip import one_line
from bgmon.timefmt import ago

__all__ = ["one_line", "short_path", "age", "heading", "field_grid"]


def short_path(path: str | None) -> str:
    """`/home/me/src/x` → `~/src/x` (HOME is read each time, so tests can set it)."""
    if not path:
        return ""
    home = os.path.expanduser("~").rstrip(os.sep)
    if home and home != os.sep and (path == home or path.startswith(home + os.sep)):
        return "~" + path[len(home) :]
    return path


def age(now: float, ts: float | None) -> str:
    """Time since `ts` as `5s`/`3m`/`2h05m`, or `–` when unknown."""
    return "–" if ts is None else ago(now - ts)


def heading(title: str) -> Text:
    """A section title in the detail and recovery panels."""
    return Text(f"\n{title}", style="bold underline")


def field_grid(rows: list[tuple[str, str | Text]]) -> Table:
    """`name  value` rows: names dim and unwrapped, values folded to the panel's width."""
    grid = Table.grid(padding=(0, 1))
    grid.add_column(style="dim", no_wrap=True)
    grid.add_column(overflow="fold")
    for name, value in rows:
        grid.add_row(name, value)
    return grid
