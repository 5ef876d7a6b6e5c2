"""The detail panel: everything bgmon knows about the selected task, evidence first."""

from __future__ import annotations

import io

from rich.console import Console, Group, RenderableType
from rich.text import Text
from textual.containers import VerticalScroll
from textual.widgets import Static

from bgmon.model import Event, EventKind, ProcFacts, TaskSnapshot
from bgmon.printable import single_line
from bgmon.views.text import STYLES, ack_words
from bgmon.views.tui.fmt import age, field_grid, heading, one_line, short_path
from bgmon.views.tui.tree import BY_SEVERITY, GroupRow

EVENT_TEXT = 90  # an event's text is cut to this many characters


def _mb(n: int) -> str:
    return f"{n / (1 << 20):.1f} MB"


def proc_text(p: ProcFacts) -> list[tuple[str, str | Text]]:
    if p.access_denied:
        alive = Text("running (access denied: no details)", style="yellow")
    elif p.alive:
        alive = Text("alive", style="green")
    else:
        alive = Text("gone (zombie)" if p.zombie else "gone", style="bold red")
    rows: list[tuple[str, str | Text]] = [("pid", f"{p.pid} {p.name}".strip()), ("process", alive)]
    if p.alive and not p.access_denied:
        busy = "using CPU now" if p.cpu_active else "idle"
        rows.append(("cpu", f"{p.cpu_seconds:.1f}s total, {busy}"))
        rows.append(("memory", _mb(p.rss)))
        kids = ", ".join(str(c) for c in p.children[:6]) + (" …" if len(p.children) > 6 else "")
        rows.append(("children", f"{len(p.children)}" + (f" ({kids})" if kids else "")))
    return rows


def event_line(ev: Event, now: float) -> Text:
    """One line per event; a failure may wrap (it is the evidence), the rest are cut."""
    failed = ev.ok is False or ev.kind in (EventKind.ERROR, EventKind.API_ERROR, EventKind.TURN_ABORTED)
    line = Text(no_wrap=not failed, overflow="ellipsis")
    line.append(f"{age(now, ev.ts):>5} ", style="dim")
    tool = ev.tool or ""
    kind = ev.kind
    if kind is EventKind.TOOL_CALL:
        line.append(f"→ {tool} ", style="bold")
        line.append(one_line(ev.input, EVENT_TEXT), style="dim")
    elif kind is EventKind.TOOL_RESULT:
        if ev.ok is False:
            line.append(f"✗ {tool} ", style="bold red")
            line.append(one_line(ev.error or ev.text or "failed", EVENT_TEXT), style="red")
        else:
            line.append(f"← {tool} ", style="green")
            line.append(one_line(ev.text or ("ok" if ev.ok else "…"), EVENT_TEXT), style="dim")
    elif kind in (EventKind.ERROR, EventKind.API_ERROR, EventKind.TURN_ABORTED):
        line.append(f"✗ {kind.value} ", style="bold red")
        line.append(one_line(ev.error or ev.text, EVENT_TEXT), style="red")
    elif kind is EventKind.PROGRESS:
        line.append(f"progress {ev.done}/{ev.total}", style="cyan")
    else:
        line.append(f"{kind.value} ", style="bold")
        line.append(one_line(ev.text or tool, EVENT_TEXT))
    return line


def render_task(s: TaskSnapshot, now: float, recovery: RenderableType | None = None) -> RenderableType:
    """The task's detail; `recovery`: the result of its last approved proposal, if any."""
    badge = s.health.badge
    title = Text(f"{badge.glyph} {badge.value}  ", style=STYLES[badge])
    title.append(single_line(s.name), style="bold")
    parts: list[RenderableType] = [title]
    rows: list[tuple[str, str | Text]] = [
        ("status", s.status),
        ("id", single_line(s.id)),
        ("source", s.source),
        ("last life", f"{age(now, s.last_activity)} ago" if s.last_activity else "never seen"),
    ]
    if s.progress:
        rows.append(("progress", str(s.progress)))
    if s.step:
        rows.append(("step", one_line(s.step, 300)))
    if s.note:
        rows.append(("note", Text(single_line(s.note), style="bold yellow")))
    if s.ack is not None:
        when = f"{age(now, s.ack.at)} ago" if s.ack.at else ""
        rows.append(("ack", Text(f"{ack_words(s, 200)} {when}".rstrip(), style="dim")))
    parts.append(field_grid(rows))
    parts.append(heading("Why"))
    if not s.health.reasons:
        parts.append(Text("no rule fired", style="dim"))
    for r in s.health.reasons:
        parts.append(Text.assemble((f"{r.rule}  ", STYLES[badge]), single_line(r.at(now))))
    if s.own_health is not None:
        own = s.own_health.badge
        parts.append(Text.assemble(
            ("own badge before roll-up: ", "dim"), (f"{own.glyph} {own.value}", STYLES[own]),
            (f" — {s.own_health.summary_at(now)}" if s.own_health.summary else "", "dim"),
        ))
    if s.proc is not None or s.pid is not None:
        parts.append(heading("Process"))
        parts.append(field_grid(proc_text(s.proc)) if s.proc else Text(f"pid {s.pid}: not looked at yet", style="dim"))
    if recovery is not None:
        parts.append(heading("Last recovery"))
        parts.append(recovery)
    parts.append(heading(f"Recent events ({len(s.recent)}, newest first)"))
    if not s.recent:
        parts.append(Text("none read yet", style="dim"))
    parts += [event_line(ev, now) for ev in reversed(s.recent)]
    parts.append(heading("Files"))
    files = s.files or (s.path,)
    parts += [Text(single_line(short_path(f)), style="dim") for f in files]
    if s.cwd and s.cwd != s.path:
        parts.append(Text(f"cwd {single_line(short_path(s.cwd))}", style="dim"))
    if s.warnings:
        parts.append(heading("Warnings"))
        parts += [Text(f"⚠ {single_line(w)}", style="yellow") for w in s.warnings]
    return Group(*parts)


def render_group(g: GroupRow, warnings: list[str]) -> RenderableType:
    parts: list[RenderableType] = [Text(single_line(short_path(g.name)), style="bold")]
    total = sum(g.counts.values())
    parts.append(Text(f"{total} task{'s' if total != 1 else ''}", style="dim"))
    for badge in BY_SEVERITY:
        if g.counts.get(badge):
            parts.append(Text(f"  {badge.glyph} {g.counts[badge]} {badge.value}", style=STYLES[badge]))
    if warnings:
        parts.append(heading(f"Warnings while reading ({len(warnings)})"))
        parts += [Text(f"⚠ {w}", style="yellow") for w in warnings[:50]]
    parts.append(Text("\nSelect a task to see why it has its badge.", style="dim"))
    return Group(*parts)


class DetailPanel(VerticalScroll):
    """A scrolling panel that shows one renderable; `show()` swaps it."""

    def compose(self):
        yield Static(id="detail-body")

    current: RenderableType = ""

    def show(self, renderable: RenderableType) -> None:
        self.current = renderable
        # The app's once-a-second tick can land while the app shuts down, after this panel's
        # children are gone (seen once in the suite): nothing to paint then.
        for body in self.query("#detail-body").results(Static):
            body.update(renderable)

    def plain(self, width: int = 80) -> str:
        """What the panel shows, as plain text (for tests and debugging)."""
        console = Console(width=width, record=True, file=io.StringIO(), color_system=None)
        console.print(self.current)
        return console.export_text()
