"""The TUI's side of the printable boundary: a line filter every widget's lines pass through."""

from __future__ import annotations

from rich.segment import Segment
from textual.color import Color
from textual.filter import LineFilter

from bgmon.views.terminal import printable_segments


class PrintableLines(LineFilter):
    """Control characters in a rendered line made visible (bgmon.printable).

    They were laid out as zero cells wide and each becomes a one-cell mark, so a line that
    had any is cut back to its width (hostile lines only lose cells at their right end)."""

    def apply(self, segments: list[Segment], background: Color) -> list[Segment]:
        if all(seg.control or seg.text.isprintable() for seg in segments):
            return segments
        width = Segment.get_line_length(segments)
        return Segment.adjust_line_length(printable_segments(segments), width)
