"""The approval prompt: it repeats exactly what `y` will do, then `y` runs it, `n`/esc go back."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from bgmon.recovery.proposal import Proposal


def confirm_text(proposal: Proposal, task: str, lines: list[str]) -> Group:
    head = Text.assemble(("Approve ", "bold"), (proposal.id, "bold cyan"), (" for ", "bold"),
                         (task, "bold"), ("?", "bold"))
    parts: list[RenderableType] = [head, Text(f"from {proposal.origin}", style="dim"), Text("")]
    if lines:
        parts.append(Text("This runs now, in order:", style="bold"))
        # A grid, so a long effect wraps under its own text, not under the number.
        steps = Table.grid(padding=(0, 1))
        steps.add_column(no_wrap=True)
        steps.add_column(overflow="fold")
        for line in lines:
            number, _, effect = line.partition(" ")
            steps.add_row(f"  {number}", Text(effect, style="bold yellow" if "DESTRUCTIVE" in line
                                                else ""))
        parts.append(steps)
    else:
        parts.append(Text("No actions: only the decision is recorded.", style="bold"))
    parts += [Text(""), Text.assemble(("y", "bold green"), " run it    ", ("n", "bold"), " / ",
                                      ("esc", "bold"), " go back")]
    return Group(*parts)


class ConfirmScreen(ModalScreen[bool]):
    """Returns True for `y`, False for `n` or esc."""

    BINDINGS = [
        Binding("y", "answer(True)", "Run it"),
        Binding("n", "answer(False)", "Go back"),
        Binding("escape", "answer(False)", "Go back", show=False),
    ]

    def __init__(self, proposal: Proposal, task: str, lines: list[str]) -> None:
        super().__init__()
        self.proposal = proposal
        self.lines = lines
        self.text = confirm_text(proposal, task, lines)

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="confirm"):
            yield Static(self.text, id="confirm-body")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)
