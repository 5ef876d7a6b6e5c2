"""`bgmon --once` as plain lines: colour on a terminal, none with NO_COLOR or when piped.

The badge word is always printed beside its glyph, so nothing depends on colour.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from typing import TextIO

from rich.console import Console
from rich.text import Text

from bgmon.clip import one_line
from bgmon.engine import Change
from bgmon.model import Badge, TaskSnapshot
from bgmon.printable import single_line
from bgmon.resolve import task_label
from bgmon.timefmt import ago, clock
from bgmon.views.order import arrange, counts
from bgmon.views.terminal import console as terminal_console

MARK = "✎"  # bgmon's own mark on a task (recovery `mark`), in every view

COLOUR_STYLES = {
    Badge.HEALTHY: "green",
    Badge.STRUGGLING: "yellow",
    Badge.STUCK: "magenta",
    Badge.FAILED: "bold red",
    Badge.COMPLETED: "blue",
    Badge.UNKNOWN: "dim",
    Badge.WAITING: "bold cyan",
}
# Without colour (NO_COLOR), weight and reverse video carry the severity: the worst badges
# stand out most, and none is dimmed (a terminal turns colours into greys of poor contrast).
MONO_STYLES = {
    Badge.HEALTHY: "",
    Badge.STRUGGLING: "bold",
    Badge.WAITING: "bold underline",  # needs a person, though not a fault
    Badge.STUCK: "bold reverse",
    Badge.FAILED: "bold reverse",
    Badge.COMPLETED: "",
    Badge.UNKNOWN: "italic",
}


def no_colour() -> bool:
    """https://no-color.org: any non-empty NO_COLOR turns colour off."""
    return bool(os.environ.get("NO_COLOR"))


class _BadgeStyles(Mapping[Badge, str]):
    """Badge → Rich style, chosen when asked (so NO_COLOR set after import still counts)."""

    def __getitem__(self, badge: Badge) -> str:
        if no_colour():
            return MONO_STYLES.get(badge, "")  # a badge added later: plain, never dim
        return COLOUR_STYLES[badge]

    def __iter__(self) -> Iterator[Badge]:
        return iter(COLOUR_STYLES)

    def __len__(self) -> int:
        return len(COLOUR_STYLES)


STYLES: Mapping[Badge, str] = _BadgeStyles()


def badge_text(s: TaskSnapshot, now: float | None = None) -> Text:
    badge = s.health.badge
    text = Text(f"{badge.glyph} {badge.value}", style=STYLES[badge])
    summary = s.health.summary if now is None else s.health.summary_at(now)
    if badge is not Badge.HEALTHY and summary:
        text.append(f": {single_line(summary)}")
    return text


def last_life(s: TaskSnapshot, now: float | None) -> str:
    """`06:40, 4m ago`: when the task last showed a sign of life (not when this was printed);
    without `now` (lines printed as changes happen) only the clock time."""
    if s.last_activity is None:
        return "no activity seen"
    if now is None:
        return clock(s.last_activity)
    return f"{clock(s.last_activity)}, {ago(now - s.last_activity)} ago"


def ack_words(s: TaskSnapshot, limit: int = 60) -> str:
    """`acknowledged: looking into it` for a task a person acknowledged, else ''."""
    if s.ack is None:
        return ""
    return "acknowledged" + (f": {one_line(s.ack.note, limit)}" if s.ack.note else "")


def task_line(s: TaskSnapshot, depth: int = 0, now: float | None = None) -> Text:
    line = Text("  " * depth)
    line.append(f"[{last_life(s, now)}] ", style="dim")
    # `name #id` as in the TUI and `bgmon history`: either can be given to `bgmon propose`.
    # Task data on a line of its own: a newline in it would forge a line (shown as ⏎ instead).
    line.append(single_line(s.name), style="bold")
    if s.id != s.name:
        line.append(f" #{single_line(s.id)}")
    details = []
    if s.progress:
        details.append(f"{s.progress} steps")
    if s.note:  # bgmon's own mark, with the TUI's glyph
        details.append(f"{MARK} {single_line(s.note)}")
    if s.step:
        details.append(one_line(s.step, 60))
    line.append(": " + ", ".join(details) if details else "")
    line.append(" | ")
    line.append_text(badge_text(s, now))
    if s.ack is not None:
        line.append(f" ({ack_words(s)})", style="dim")
    return line


def _console(out: TextIO, force_terminal: bool | None = None) -> Console:
    # Task names, paths and warnings are other people's text: never markup, never raw controls.
    return terminal_console(out, highlight=False, soft_wrap=True, emoji=False,
                            force_terminal=force_terminal)


def render(
    snaps: list[TaskSnapshot],
    warnings: list[str],
    looked: list[str],
    out: TextIO,
    now: float,
    force_terminal: bool | None = None,
    aged: int = 0,
) -> None:
    """`aged`: how many finished tasks the default view left out (said last)."""
    console = _console(out, force_terminal)
    if not snaps and not aged:
        console.print("No background tasks found. Looked in:")
        for where in looked:
            console.print(f"  {single_line(where)}")
        console.print("Try `bgmon demo` to see bgmon at work on simulated tasks.")
    for group, rows in arrange(snaps):
        console.print(Text(single_line(group), style="bold underline"))
        for depth, s in rows:
            console.print(task_line(s, depth + 1, now))
    if snaps:
        c = counts(snaps)
        parts = [f"{n} {b.value}" for b, n in c.items() if n]
        if seen := sum(1 for s in snaps if s.ack is not None):
            parts.append(f"{seen} of them acknowledged")
        console.print(Text(f"{len(snaps)} task(s): " + ", ".join(parts), style="dim"))
    if aged:
        console.print(Text(f"{aged} finished task(s) with no sign of life within age_out left "
                           "out (--all shows them)", style="dim"))
    if warnings:
        console.print(Text(f"⚠ {len(warnings)} warning(s) while reading:", style="yellow"))
        for w in warnings[:10]:
            console.print(f"  {single_line(w)}")
        if len(warnings) > 10:
            console.print(f"  … and {len(warnings) - 10} more (see --json)")


class ChangePrinter:
    """`bgmon --follow` as text, for a tmux pane or a log file: the tasks as they are, then one
    `--once` line per change, under its group's heading whenever the group differs from the
    line before. A change that does not alter a task's line (a new event in its log, say)
    prints nothing."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.console = _console(out)
        self._shown: dict[str, str] = {}  # task key → its line as last printed
        self._names: dict[str, str] = {}  # task key → "name (id)", for its removal line
        self._group: str | None = None
        self._warned: set[str] = set()  # the warnings as last said

    def print_warnings(self, warnings: list[str], now: float) -> None:
        """Each warning that was not in the list last said (this machine's reading warnings
        and each remote host's, labelled with it): one `⚠` line, once while it lasts."""
        for w in warnings:
            if w not in self._warned:
                self.console.print(Text(f"⚠ [{clock(now)}] {single_line(w)}", style="yellow"))
        self._warned = set(warnings)
        self.out.flush()

    def print_changes(self, changes: list[Change], now: float) -> None:
        snaps = [c.snapshot for c in changes if c.kind != "removed" and c.snapshot is not None]
        for group, rows in arrange(snaps):
            for depth, s in rows:
                line = task_line(s, depth + 1)
                if self._shown.get(s.key) == line.plain:
                    continue
                self._heading(group)
                self._shown[s.key] = line.plain
                self._names[s.key] = task_label(s.name, s.id)
                self.console.print(line)
        for c in changes:
            if c.kind == "removed" and c.key in self._shown:
                del self._shown[c.key]
                line = Text(f"  [{clock(now)}] ", style="dim")
                line.append(self._names.pop(c.key, c.key), style="bold")
                self.console.print(line.append(": no longer found"))
        self.out.flush()

    def _heading(self, group: str) -> None:
        if group != self._group:
            self._group = group
            self.console.print(Text(single_line(group), style="bold underline"))
