"""The app's fixed texts: header summary, status line, empty screen."""

from __future__ import annotations

from rich.text import Text

from bgmon.agents import REGISTRY
from bgmon.config import Config
from bgmon.model import Badge
from bgmon.timefmt import ago
from bgmon.views.text import STYLES
from bgmon.views.tui.fmt import short_path
from bgmon.views.tui.sync import TreeSync
from bgmon.views.tui.tree import BY_SEVERITY


def summary(c: dict[Badge, int], total: int) -> str:
    """Header sub-title: `7 tasks · 1 ✗ failed · 2 ⚠ struggling · …`."""
    parts = [f"{total} task{'s' if total != 1 else ''}"]
    parts += [f"{c[b]} {b.glyph} {b.value}" for b in BY_SEVERITY if c.get(b)]
    return " · ".join(parts)


def status_text(sync: TreeSync, warnings: int) -> Text:
    line = Text()
    line.append("sort ", style="dim")
    line.append(sync.sort, style="bold")
    shown, total = len(sync.nodes), len(sync.snaps)
    if sync.faults_only:
        line.append("  faults only", style="bold yellow")
    if sync.text.strip():
        line.append("  filter ", style="dim")
        line.append(f"“{sync.text.strip()}”", style="bold")
    if shown != total:
        line.append(f"  {shown} of {total} shown", style="dim")
    if warnings:
        line.append(f"  ⚠ {warnings} reading warning{'s' if warnings != 1 else ''} (select a group)",
                    style=STYLES[Badge.STRUGGLING])
    return line


def empty_text(loaded: bool, looked: list[str], config: Config, warnings: list[str]) -> Text:
    if not loaded:
        return Text("Looking for background tasks…", style="dim")
    text = Text()
    text.append("No background tasks found yet.\n\n", style="bold")
    text.append("Looked in:\n")
    for where in looked:
        text.append(f"  {short_path(where)}\n", style="cyan")
    if any(config.enabled(a.name) for a in REGISTRY if a.home):
        text.append(f"  (transcripts active within the last {ago(config.since)}; --since widens it)\n",
                    style="dim")
    for w in warnings[:5]:
        text.append(f"⚠ {w}\n", style="yellow")
    text.append("\nTry ")
    text.append("bgmon demo", style="bold")
    text.append(" to watch bgmon at work on simulated agents (it opens this screen on them).\n")
    text.append("Still watching: tasks appear here as soon as they start.", style="dim")
    return text
