"""Rich consoles that write to a terminal: every segment passes `printable` before Rich styles it.

The hook sits below every renderable (Text, Table, Group …), so no view has to remember to
clean a field: whatever a view prints through `console()` reaches the terminal inert.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TextIO

from rich.console import Console, ConsoleOptions, ConsoleRenderable, RenderHook, RenderResult
from rich.segment import Segment

from bgmon.printable import printable


def printable_segments(segments: Iterable[Segment]) -> list[Segment]:
    """The same segments, their text made printable (Rich's own control segments untouched)."""
    out = []
    for seg in segments:
        if seg.control or seg.text.isprintable():
            out.append(seg)
        else:
            out.append(Segment(printable(seg.text), seg.style))
    return out


class _Printable:
    def __init__(self, inner: ConsoleRenderable) -> None:
        self.inner = inner

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield from printable_segments(console.render(self.inner, options))


class _PrintableHook(RenderHook):
    def process_renderables(self, renderables: list[ConsoleRenderable]) -> list[ConsoleRenderable]:
        return [_Printable(r) for r in renderables]


class _Console(Console):
    def on_broken_pipe(self) -> None:
        # Rich exits 1 here, which `--once` means as "a task is at fault": let the command say
        # what a reader that left early means (bgmon.cli.main).
        raise BrokenPipeError


def console(file: TextIO, **options: Any) -> Console:
    """A Console on `file` that never writes a control character from the text it prints.
    Console markup is off unless asked for: the text is other people's, never markup."""
    options.setdefault("markup", False)
    con = _Console(file=file, **options)
    con.push_render_hook(_PrintableHook())
    return con
