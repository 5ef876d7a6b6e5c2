"""`bgmon --once` as plain lines: colour on a terminal, none with NO_COLOR or when piped.

The badge word is always printed beside its glyph, so nothing depends on colour.
"""

from __future__ import annotations

from typing import TextIO

from rich.console import Console
from rich.text import Text

from bgmon.model import Badge, TaskSnapshot
from bgmon.timefmt import clock
from bgmon.views.order import arrange, counts

STYLES = {
    Badge.HEALTHY: "green",
    Badge.STRUGGLING: "yellow",
    Badge.STUCK: "magenta",
    Badge.FAILED: "bold red",
    Badge.COMPLETED: "blue",
    Badge.UNKNOWN: "dim",
}


def badge_text(s: TaskSnapshot) -> Text:
    badge = s.health.badge
    text = Text(f"{badge.glyph} {badge.value}", style=STYLES[badge])
    if badge is not Badge.HEALTHY and s.health.summary:
        text.append(f": {s.health.summary}")
    return text


def task_line(s: TaskSnapshot, depth: int = 0) -> Text:
    line = Text("  " * depth)
    line.append(f"[{clock(s.last_activity)}] ", style="dim")
    line.append(s.name, style="bold")
    if s.id != s.name:
        line.append(f" ({s.id})")
    details = []
    if s.progress:
        details.append(f"{s.progress} steps")
    if s.step:
        details.append(s.step if len(s.step) <= 60 else s.step[:59] + "…")
    if s.note:
        details.append(f"note: {s.note}")
    line.append(": " + ", ".join(details) if details else "")
    line.append(" | ")
    line.append_text(badge_text(s))
    return line


def render(
    snaps: list[TaskSnapshot],
    warnings: list[str],
    looked: list[str],
    out: TextIO,
) -> None:
    # markup=False: task names, paths and warnings are other people's text, never Rich markup.
    console = Console(file=out, highlight=False, soft_wrap=True, emoji=False, markup=False)
    if not snaps:
        console.print("No background tasks found. Looked in:")
        for where in looked:
            console.print(f"  {where}")
        console.print("Try `bgmon demo` to see bgmon at work on simulated tasks.")
    for group, rows in arrange(snaps):
        console.print(Text(group, style="bold underline"))
        for depth, s in rows:
            console.print(task_line(s, depth + 1))
    if snaps:
        c = counts(snaps)
        parts = [f"{n} {b.value}" for b, n in c.items() if n]
        console.print(Text(f"{len(snaps)} task(s): " + ", ".join(parts), style="dim"))
    if warnings:
        console.print(Text(f"⚠ {len(warnings)} warning(s) while reading:", style="yellow"))
        for w in warnings[:10]:
            console.print(f"  {w}")
        if len(warnings) > 10:
            console.print(f"  … and {len(warnings) - 10} more (see --json)")
