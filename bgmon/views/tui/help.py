"""The `?` screen: every key, the badges and what they mean."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from bgmon.model import Badge
from bgmon.views.text import STYLES

KEYS = (
    ("↑ ↓  j k", "move between tasks"),
    ("enter  space", "expand or collapse a group or a task with sub-tasks"),
    ("/", "filter by text (name, id, step, group); esc clears it"),
    ("f", "needs you: struggling, stuck, failed, waiting (parents kept for context)"),
    ("s", "cycle the sort: badge severity → last activity → name"),
    ("r", "recovery: diagnose the selected task, propose a fix (side panel)"),
    ("a", "approve: a prompt repeats the exact effect; y runs it, n/esc go back"),
    ("x", "reject the proposal, with an optional one-line reason"),
    ("c", "acknowledge the selected fault: it stops counting until its badge changes"),
    ("esc", "close the recovery panel (cancels a request), or clear the filter"),
    ("?", "this help"),
    ("ctrl+p", "command palette (every action above is there too)"),
    ("q", "quit"),
)
MEANINGS = {
    Badge.HEALTHY: "running and showing signs of life",
    Badge.STRUGGLING: "tool calls or errors keep failing (a streak, half the recent ones)",
    Badge.STUCK: "alive but no progress (output, CPU) for too long, stopped, or looping",
    Badge.FAILED: "said it failed, or its process is gone without a final status",
    Badge.COMPLETED: "finished (or the agent's turn ended)",
    Badge.UNKNOWN: "not enough evidence to judge",
    Badge.WAITING: "blocked on a person: a permission prompt, a question, an interrupt",
}


def help_table() -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold cyan", no_wrap=True)
    table.add_column()
    table.add_row(Text("Keys", style="bold underline"), "")
    for key, what in KEYS:
        table.add_row(key, what)
    table.add_row("", "")
    table.add_row(Text("Badges", style="bold underline"), "")
    for badge, meaning in MEANINGS.items():
        table.add_row(Text(f"{badge.glyph} {badge.value}", style=STYLES[badge]), meaning)
    table.add_row("", "")
    table.add_row("", Text("A parent shows the worst badge of its sub-tasks (\"from child\").", style="dim"))
    return table


class HelpScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape", "dismiss", "Close"),
        Binding("question_mark", "dismiss", "Close", show=False),
        Binding("q", "dismiss", "Close", show=False),
    ]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help"):
            yield Static(help_table())
