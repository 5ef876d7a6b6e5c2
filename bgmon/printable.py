"""What may reach a terminal: untrusted text with its control characters made visible.

Every text a task or a model wrote (names, steps, errors, log lines, diagnoses, argv, paths)
is other people's text. Raw, an ESC/OSC/CSI sequence in it writes the clipboard (OSC 52),
retitles the window or clears the screen the moment bgmon shows it; a bidi override reorders
what a person reads before approving. So each kind of output passes through this one rule as
its last step before the terminal, whatever built the text:

- Rich consoles (`--once` text, demo): `bgmon.views.terminal.console()`, a render hook on the
  segments Rich is about to write;
- the TUI: a line filter every widget's lines pass through (`BgmonApp.get_line_filters`);
- plain line outputs (propose, approve, reject, history, report): `PrintableStream`;
- JSON: escaped by construction; `json_printable` escapes the few characters orjson leaves raw.

Data is never changed on its way in: the JSON outputs and the journal keep the exact text.
"""

from __future__ import annotations

import re
from typing import Any, TextIO

# Unicode controls that move or reorder text without being C0/C1: the Arabic letter mark,
# LRM/RLM, line and paragraph separators, bidi embeddings/overrides and isolates.
_FORMAT = (0x061C, 0x200E, 0x200F, 0x2028, 0x2029, *range(0x202A, 0x202F), *range(0x2066, 0x206A))

_TABLE: dict[int, int] = {c: 0x2400 + c for c in range(0x20) if c not in (0x09, 0x0A)}  # ␛ ␇ ␀ …
_TABLE[0x7F] = 0x2421  # ␡
_TABLE.update({c: 0xFFFD for c in range(0x80, 0xA0)})  # C1 (0x9b is a one-byte CSI)
_TABLE.update({c: 0xFFFD for c in _FORMAT})


def printable(text: str) -> str:
    """`text` with every control character but newline and tab replaced by a visible one
    (ESC → ␛, BEL → ␇, C1 and bidi controls → �). Same length, so offsets keep their meaning."""
    return text if text.isprintable() else text.translate(_TABLE)


# A field that is one line by nature (a task's name, id, group, step, an error summary, a path,
# an argv word) must never start a new output line: its line breaks and tabs are shown too.
# Every Unicode line break (str.splitlines) is covered: LF, CR, VT, FF, FS/GS/RS, NEL, LS, PS.
_LINE_TABLE = {**_TABLE, 0x0A: 0x23CE, 0x09: 0x2409}  # ⏎ ␉ (CR → ␍, VT → ␋ … as above)
_LINE_TABLE[0x85] = 0x23CE  # NEL
_LINE_TABLE.update({0x2028: 0x23CE, 0x2029: 0x23CE})


def single_line(text: str) -> str:
    """`text` as one line: `printable`, and newline/tab shown as ⏎/␉ (CR as ␍), so task data
    can never forge an output line of its own. Same length, so clipping keeps its meaning."""
    return text if text.isprintable() else text.translate(_LINE_TABLE)


def contained(text: str, prefix: str, first: str | None = None) -> list[str]:
    """A multi-line body (a diagnosis, a log excerpt) as lines that each start with `prefix`
    (say `"  │ "`; the first line with `first` when given), tabs shown as ␉: it keeps its
    shape, yet no line of it can pass for one bgmon wrote."""
    lines = [prefix + single_line(line) for line in text.splitlines() or [""]]
    if first is not None:
        lines[0] = first + lines[0][len(prefix):]
    return lines


# orjson escapes C0 but writes DEL, C1 and the Unicode format controls as raw UTF-8. In a JSON
# document those bytes can only stand inside strings, where `\\uXXXX` means the same text.
_JSON_RAW = re.compile(b"|".join(re.escape(chr(c).encode()) for c in (0x7F, *range(0x80, 0xA0), *_FORMAT)))


def json_printable(data: bytes) -> bytes:
    """A JSON document (orjson's bytes) with the same data and no raw control character."""
    if not _JSON_RAW.search(data):
        return data
    return _JSON_RAW.sub(lambda m: b"\\u%04x" % ord(m.group().decode()), data)


class PrintableStream:
    """A text stream that writes `printable(text)` to the stream it wraps."""

    def __init__(self, raw: TextIO) -> None:
        self.raw = raw

    def write(self, text: str) -> int:
        return self.raw.write(printable(text))

    def __getattr__(self, name: str) -> Any:  # flush, isatty, encoding, fileno …
        return getattr(self.raw, name)


def printable_stream(stream: TextIO) -> TextIO:
    """`stream` wrapped once (wrapping an already wrapped stream is a no-op)."""
    return stream if isinstance(stream, PrintableStream) else PrintableStream(stream)  # type: ignore[return-value]
