"""`bgmon run`'s output side: split the child's bytes into lines, recognise progress and failure
patterns, and append event lines (bgmon's native format) to the task's log.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson

from bgmon.recovery.patterns import Catalogue, Pattern
from bgmon.recovery.redact import redact_obj
from bgmon.supervise.status import iso_ms

TEXT_CAP = 4096  # bytes of one output line kept in the log; the terminal still gets all of it
_SEP = re.compile(rb"[\r\n]")

# `12/40` standing alone (not a date like 11/21/2024 or a path like a/1/2), and `37%`.
DEFAULT_PROGRESS = (
    r"(?<![\w/.])(?P<done>\d+) ?/ ?(?P<total>\d+)(?![\w/]|\.\w)",
    r"(?<![\w.])(?P<percent>\d{1,3}(?:\.\d+)?) ?%",
)


@dataclass(frozen=True, slots=True)
class Segment:
    text: str
    dropped: int = 0  # bytes cut from a line longer than the cap
    transient: bool = False  # text a bare `\r` overwrote (a progress bar): never logged as a line


class LineBuffer:
    """Bytes in any chunking → the same lines. `\n` and `\r\n` end a line; a bare `\r` means the
    terminal overwrites the line (progress bars), so what came before it is a transient segment."""

    def __init__(self, cap: int = TEXT_CAP) -> None:
        self.cap = cap
        self._buf = bytearray()
        self._dropped = 0
        self._cr = False  # the last chunk ended with `\r`: is it `\r\n` or an overwrite?

    def feed(self, data: bytes) -> list[Segment]:
        out: list[Segment] = []
        i = 0
        if self._cr and data:
            self._cr = False
            if data.startswith(b"\n"):
                out.append(self._take(False))
                i = 1
            else:
                out.append(self._take(True))
        while i < len(data):
            m = _SEP.search(data, i)
            if m is None:
                self._add(data[i:])
                break
            j = m.start()
            self._add(data[i:j])
            i = j + 1
            if data[j] == 0x0A:
                out.append(self._take(False))
            elif i == len(data):
                self._cr = True
            elif data[i] == 0x0A:
                out.append(self._take(False))
                i += 1
            else:
                out.append(self._take(True))
        return [s for s in out if s.text.strip()]

    def flush(self) -> list[Segment]:
        """The unterminated last line at end of output (a last bare `\r` ends it too)."""
        self._cr = False
        seg = self._take(False)
        return [seg] if seg.text.strip() else []

    def _add(self, data: bytes) -> None:
        room = self.cap - len(self._buf)
        self._buf += data[: max(0, room)]
        self._dropped += max(0, len(data) - max(0, room))

    def _take(self, transient: bool) -> Segment:
        text = self._buf.decode("utf-8", errors="replace")
        if self._dropped:
            text += "…"
        seg = Segment(text.rstrip("\r\n"), self._dropped, transient)
        self._buf = bytearray()
        self._dropped = 0
        return seg


def compile_progress(regexes: Sequence[str]) -> list[re.Pattern[str]]:
    """Each regex needs named groups done+total or percent. Raises ValueError saying what's wrong."""
    out = []
    for text in regexes:
        try:
            rx = re.compile(text)
        except re.error as exc:
            raise ValueError(f"bad progress regex {text!r}: {exc}") from None
        groups = set(rx.groupindex)
        if not ({"done", "total"} <= groups or "percent" in groups):
            raise ValueError(
                f"progress regex {text!r} needs named groups (?P<done>…) and (?P<total>…), "
                "or (?P<percent>…)"
            )
        out.append(rx)
    return out


def find_progress(text: str, regexes: Sequence[re.Pattern[str]]) -> tuple[int, int] | None:
    for rx in regexes:
        for m in rx.finditer(text):
            found = _progress(m)
            if found is not None:
                return found
    return None


def _progress(m: re.Match[str]) -> tuple[int, int] | None:
    groups = m.groupdict()
    try:
        if groups.get("percent") is not None:
            pct = float(groups["percent"])
            return (round(pct), 100) if 0 <= pct <= 100 else None
        done, total = int(groups["done"]), int(groups["total"])
    except (TypeError, ValueError):
        return None
    return (done, total) if 0 <= done <= total and total > 0 else None


def classification(p: Pattern) -> dict[str, object]:
    return {"type": p.type, "severity": p.severity, "retryable": p.retryable, "strategy": p.strategy}


def line_event(
    seg: Segment, stream: str, catalogue: Catalogue, progress: Sequence[re.Pattern[str]]
) -> tuple[dict, Pattern | None, tuple[int, int] | None]:
    """One output line → (event fields, matched failure pattern, progress). A failure pattern
    wins over progress: the line becomes an `error` event; else `progress` or `message`."""
    fields: dict = {"stream": stream, "text": seg.text}
    if seg.dropped:
        fields["truncated"] = seg.dropped
    pattern = catalogue.match_text(seg.text)
    if pattern is not None:
        return {"type": "error", **fields, "pattern": pattern.name,
                "class": classification(pattern)}, pattern, None
    found = find_progress(seg.text, progress)
    if found is not None:
        return {"type": "progress", **fields, "done": found[0], "total": found[1]}, None, found
    return {"type": "message", **fields}, None, None


LOG_CAP = 64 << 20  # bytes: the event log is rotated to `events.jsonl.1` beyond this


class EventLog:
    """Append-only JSONL: one os.write() per line on an O_APPEND descriptor, so a reader never
    sees two lines interleaved and a torn tail is at most the last line. Every string in a line
    is redacted (`bgmon.recovery.redact`). Past `max_bytes` the file is renamed to `.1` (the one
    before it is dropped) and a new one started: a chatty command's log stays bounded at twice
    the cap, and the monitor's reader follows the rename like any rotation."""

    def __init__(self, path: Path, max_bytes: int = LOG_CAP) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._fd = self._open()
        self._size = os.fstat(self._fd).st_size

    def _open(self) -> int:
        # The command's output: for the user only (0600), like everything else bgmon writes.
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)

    def write(self, type_: str, **fields: object) -> None:
        # The command's output and argv may hold secrets (an env dump, a key in an argument):
        # what is logged is redacted, as everything bgmon writes; the terminal gets it as is.
        data = orjson.dumps({"ts": iso_ms(time.time()), "type": type_, **redact_obj(fields)},
                            option=orjson.OPT_APPEND_NEWLINE)
        with self._lock:
            if self._fd < 0:
                return
            if self._size + len(data) > self.max_bytes and self._size:
                self._rotate()
            view = memoryview(data)
            while view:  # regular files take it all at once; the loop is only a safety net
                view = view[os.write(self._fd, view):]
            self._size += len(data)

    def _rotate(self) -> None:
        os.replace(self.path, self.path.with_name(self.path.name + ".1"))
        os.close(self._fd)
        self._fd = self._open()
        self._size = 0

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


BACKLOG = 4 << 20  # bytes of output waiting to be logged; beyond this, output is not logged
# … and once the command has exited: a command that writes a burst and exits at once must still
# have it logged (100 KB of it lost under load, seen in CI), but the exit waits for it: after
# 200,000 short lines, bgmon run took 0.57 s with 256 KiB left to log and 1.37 s with 1 MiB
# (bench/run.py --quick; 0.69 s with the 64 KiB before).
EOF_BACKLOG = 256 << 10
PIPE_SIZE = 1 << 20
SWITCH_INTERVAL = 0.0005  # seconds
_GAP = None  # in the queue: output was left out of the log here


def pump(
    fd: int,
    echo: Callable[[bytes], None] | None,
    on_segment: Callable[[Segment], None],
    on_data: Callable[[], None],
    on_gap: Callable[[int], None] | None = None,
) -> None:
    """Read a pipe until EOF: echo raw bytes at once (prompts without a newline show up), and
    hand each line to `on_segment`. Runs in its own thread, one per stream.

    Reading never waits for logging: lines are split, matched and logged by a second thread,
    so the command runs as fast as it would alone (a pipe that is not drained blocks its writer).
    When the command outruns the logging by more than BACKLOG bytes, the oldest waiting output
    is echoed but not logged, and `on_gap(bytes)` says how much was left out."""
    queue: deque[bytes | None] = deque()
    cond = threading.Condition()
    state = {"queued": 0, "eof": False, "dropped": 0}

    def log_lines() -> None:
        buf = LineBuffer()
        while True:
            with cond:
                while not queue and not state["eof"]:
                    cond.wait()
                if not queue:
                    break
                data = queue.popleft()
                dropped = 0
                if data is _GAP:
                    dropped, state["dropped"] = state["dropped"], 0
                else:
                    state["queued"] -= len(data)
            if data is _GAP:
                buf.flush()  # the line before the gap is incomplete: not a line of its own
                if on_gap is not None:
                    on_gap(dropped)
                continue
            for seg in buf.feed(data):
                on_segment(seg)
        for seg in buf.flush():
            on_segment(seg)

    def trim(room: int) -> None:  # with `cond` held: leave at most `room` bytes waiting
        while queue and state["queued"] > max(room, 0):
            old = queue[0]
            if old is _GAP:
                queue.popleft()
                continue
            excess = state["queued"] - max(room, 0)
            if len(old) <= excess:
                queue.popleft()
                cut = len(old)
            else:  # keep the chunk's tail, from its first whole line
                kept = old[excess:]
                nl = kept.find(b"\n")
                kept = kept[nl + 1:] if nl >= 0 else b""
                cut = len(old) - len(kept)
                queue[0] = kept
            state["queued"] -= cut
            state["dropped"] += cut
        if state["dropped"] and (not queue or queue[0] is not _GAP):
            queue.appendleft(_GAP)

    worker = threading.Thread(target=log_lines, name="bgmon-run-log", daemon=True)
    worker.start()
    # The logging thread holds the GIL for up to a switch interval at a time: make that short
    # (bgmon run is its own process) and the pipe large (1 MiB on Linux, else 64 KiB), so the
    # command can write meanwhile without waiting for us.
    sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL))
    with contextlib.suppress(OSError, AttributeError):
        fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), PIPE_SIZE)
    try:
        while True:
            try:
                data = os.read(fd, PIPE_SIZE)
            except OSError:
                break
            if not data:
                break
            on_data()
            if echo is not None:
                echo(data)
            with cond:
                # Behind by more than BACKLOG: leave the oldest waiting output out of the log,
                # keep the newest (the end of a failing command's output says why it failed).
                trim(BACKLOG - len(data))
                queue.append(data)
                state["queued"] += len(data)
                cond.notify()
    finally:
        with cond:
            # The command is done: what is still waiting must be logged in moments (the
            # supervisor judges the exit from it), so only its last EOF_BACKLOG bytes are.
            trim(EOF_BACKLOG)
            state["eof"] = True
            cond.notify()
        worker.join()
