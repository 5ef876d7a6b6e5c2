"""What the recovery panel (and the detail's "Last recovery" section) shows, as rich text.

Everything here comes from the journal or a model, so it is built from `Text` objects only:
no console markup is ever parsed out of a diagnosis, an argv or a command's output.
"""

from __future__ import annotations

import orjson
from rich.console import Group, RenderableType
from rich.text import Text

from bgmon.printable import contained, single_line
from bgmon.recovery.actions import ActionResult
from bgmon.recovery.proposal import Proposal
from bgmon.recovery.service import Outcome
from bgmon.views.tui.fmt import field_grid, heading, one_line

OUTPUT_LINES = 8  # lines of a command's output tail shown
STATE_STYLES = {
    "pending": "bold yellow", "approved": "bold cyan", "executed": "bold green",
    "failed": "bold red", "rejected": "dim", "superseded": "dim",
}


def state_text(state: str | None) -> Text:
    return Text(state or "unknown", style=STATE_STYLES.get(state or "", "dim"))


def _raw(value: object) -> str:
    text = value if isinstance(value, str) else orjson.dumps(value, default=str).decode()
    return one_line(text, 200)


def proposal_text(task: str, p: Proposal, lines: list[str], state: str | None) -> list[RenderableType]:
    """The proposal: where it came from, the diagnosis, each action's exact effect, refusals."""
    parts: list[RenderableType] = [Text.assemble(("Recovery · ", "bold"), (single_line(task), "bold"))]
    parts.append(field_grid([
        ("proposal", Text.assemble((p.id, "cyan"), "  ", state_text(state))),
        ("from", p.origin),
        ("confidence", f"{p.confidence:.2f}"),
    ]))
    parts.append(heading("Diagnosis"))
    parts += [Text(line) for line in contained(p.diagnosis, "│ ")]  # a paragraph, fenced
    if lines:
        parts.append(heading("Actions (in order, when approved)"))
        for line in lines:
            parts.append(Text(line, style="bold yellow" if "DESTRUCTIVE" in line else ""))
    else:
        parts.append(heading("Actions"))
        parts.append(Text("none: approving only records the decision", style="dim"))
    if p.refused:
        parts.append(heading(f"Refused ({len(p.refused)}, never run)"))
        for item in p.refused:
            reason = str(item.get("reason", "refused"))
            parts.append(Text.assemble(("✗ refused ", "bold red"), (single_line(reason), "red")))
            if item.get("raw") is not None:
                parts.append(Text(f"  {_raw(item['raw'])}", style="dim"))
    return parts


def result_lines(r: ActionResult) -> list[Text]:
    if r.skipped:
        mark, style = "– skipped", "dim"
    elif r.ok:
        mark, style = "✓ ok", "bold green"
    else:
        mark, style = "✗ failed", "bold red"
    line = Text.assemble((mark, style), f" {r.kind}: ", single_line(r.detail or r.error or r.effect))
    out = [line]
    if r.error and r.detail and r.error not in r.detail:
        out.append(Text(f"  error: {single_line(r.error)}", style="red"))
    facts = []
    if r.exit_code is not None:
        facts.append(f"exit code {r.exit_code}")
    if r.new_pid is not None:
        facts.append(f"new pid {r.new_pid}")
    if facts:
        out.append(Text("  " + " · ".join(facts), style="cyan"))
    if r.output_tail:
        tail = r.output_tail.rstrip("\n").splitlines()[-OUTPUT_LINES:]
        out += [Text(f"  │ {one_line(t, 200)}", style="dim") for t in tail]
    return out


def outcome_text(o: Outcome) -> list[RenderableType]:
    style = "bold green" if o.status == "executed" else ("bold red" if not o.ok else "bold")
    parts: list[RenderableType] = [Text.assemble(("Result: ", "bold"), (o.message, style))]
    for r in o.results:
        parts += result_lines(r)
    return parts


def last_recovery(p: Proposal, o: Outcome) -> Group:
    """The detail panel's section: which proposal, what it did."""
    status = (o.status, STATE_STYLES.get(o.status, "bold"))
    head = Text.assemble((p.id, "cyan"), f" from {p.origin}: ", status)
    return Group(head, *outcome_text(o))
