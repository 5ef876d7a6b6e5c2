"""Incremental JSONL reading: each byte of a log is read once, whatever the log does.

A `TailReader` remembers (device, inode, offset, partial last line) and a fingerprint: the
first bytes of the file. Appends are read from the offset; a partial last line waits for its
newline; a new inode, a size below the offset, or other first bytes mean rotation, truncation or
a rewrite, and the file is read again from its start. (The fingerprint catches what the size
cannot: `copytruncate` then a refill past the old offset before the next look, or a rewrite to
the same size; it is read only when the file changed.) Lines above the cap are
skipped (and counted) without being held in memory; undecodable lines are counted, never fatal.

At start-up `prime()` scans backwards from the end in blocks and decodes only the last lines,
so the cost of showing a task does not grow with the size of its log.

Lines are decoded by the format's own decoder when it has one (`LineFormat.decode`: a record of
the fields its adapter reads, the rest skipped undecoded); a line that decoder refuses, and every
line of other formats, is decoded in full into a dict.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from bgmon.sources.files import open_regular, read_regular

_BLOCK = 64 << 10
_SEARCH_BLOCK = 1 << 20  # the backward search's reads: few calls, one substring test each
_FINGERPRINT = 64  # bytes from the file's start that identify it along with dev/inode
_NOT_JSON = object()  # a line no decoder could read (JSON's null is a value, not this)


@dataclass(slots=True)  # one per log, with its reader (10,000 tasks at once: no instance dicts)
class ReadStats:
    """Counted problems; the engine turns non-zero counts into visible warnings."""

    lines: int = 0
    too_long: int = 0
    bad_utf8: int = 0  # repaired with U+FFFD and still used
    bad_json: int = 0
    not_object: int = 0
    resets: int = 0  # truncations and rotations seen
    missing: bool = False
    error: str | None = None  # the last OS error, e.g. permission denied

    def problems(self) -> list[str]:
        out = []
        if self.too_long:
            out.append(f"{self.too_long} over-long line(s) skipped")
        if self.bad_utf8:
            out.append(f"{self.bad_utf8} line(s) with invalid UTF-8 repaired")
        if self.bad_json:
            out.append(f"{self.bad_json} line(s) that are not JSON skipped")
        if self.not_object:
            out.append(f"{self.not_object} JSON line(s) that are not objects skipped")
        if self.error:
            out.append(self.error)
        return out


@dataclass(slots=True)
class TailReader:
    path: str
    line_cap: int = 1 << 20
    read_chunk: int = 4 << 20
    dev: int | None = None
    ino: int | None = None
    offset: int = 0
    size: int = 0
    mtime: float | None = None  # of the file at the last read: the time of its last append
    stats: ReadStats = field(default_factory=ReadStats)
    head_bytes: bytes = b""  # the file's first bytes (up to _FINGERPRINT) when last read
    window_start: int = 0  # where the lines `prime()` returned begin (the search goes back from it)
    # The format's decoder: bytes → a record, raising ValueError for a line it cannot take
    # (see the module's doc). None: every line is decoded in full.
    decode: Callable[[bytes], object] | None = None
    _partial: bytearray = field(default_factory=bytearray)
    _discarding: bool = False  # inside an over-long line: drop bytes until its newline

    # -- public ---------------------------------------------------------------------------

    def prime(self, max_bytes: int, max_lines: int) -> list[Any]:
        """Position at the end of the file and return the decoded last lines (at most
        `max_lines`, looking back at most `max_bytes`). A partial last line stays pending."""
        try:
            fd, st = open_regular(self.path)
        except OSError as exc:
            self._note_missing(exc)
            return []
        try:
            self._adopt(st)
            self._note_head(fd, st.st_size)
            end = st.st_size
            start, data = self._scan_back(fd, end, max_bytes, max_lines)
        except OSError as exc:
            self.stats.error = f"cannot read {self.path}: {exc.strerror or exc}"
            self.offset = self.window_start = self.size  # nothing to re-read; read() retries here
            return []
        finally:
            os.close(fd)
        last_nl = data.rfind(b"\n")
        if last_nl < 0:
            # No complete line in the window: wait at its start for the line to finish,
            # unless the window did not reach the file's start (then it is an over-long line).
            self.offset = start if start == 0 else end
            self._discarding = start != 0
            self.window_start = self.offset
            return []
        complete = data[: last_nl + 1]
        self.offset = start + last_nl + 1
        # The first line of the window is cut unless the window starts at the file's start.
        if start > 0:
            first_nl = complete.find(b"\n")
            complete = complete[first_nl + 1 :]
        lines = complete.split(b"\n")[:-1][-max_lines:]
        self.window_start = self.offset - sum(len(line) + 1 for line in lines)
        return list(self._decode_all(lines))

    def search_back(self, end: int, max_bytes: int, marks: tuple[bytes, ...],
                    found: Callable[[Any], bool]) -> int:
        """Offer `found` the complete lines before byte `end` (a line start) that contain one of
        `marks`, decoded, newest first, until it returns True; reading blocks backwards, at most
        `max_bytes`. Each block is tested for the marks as a whole first, so lines without
        them are never split out or decoded: the cost is one read and a substring test per MB.
        Returns the bytes read."""
        try:
            fd, _ = open_regular(self.path)
        except OSError:
            return 0
        pos = end
        try:
            floor = max(0, end - max_bytes)
            carry = b""  # the start of the later block, up to its first newline: a line's end
            while pos > floor:
                size = min(_SEARCH_BLOCK, pos - floor)
                pos -= size
                buf = os.pread(fd, size, pos) + carry
                if pos > 0:
                    # The bytes before the first newline belong to a line that starts earlier.
                    nl = buf.find(b"\n")
                    if nl < 0:
                        carry = buf if len(buf) <= self.line_cap else b""
                        continue
                    carry, buf = buf[: nl + 1], buf[nl + 1 :]
                if not any(mark in buf for mark in marks):
                    continue
                for line in reversed(buf.split(b"\n")):
                    if len(line) > self.line_cap or not any(mark in line for mark in marks):
                        continue
                    for obj in self._decode_all([line], count=False):
                        if found(obj):
                            return end - pos
        except OSError:
            pass
        finally:
            os.close(fd)
        return end - pos

    def head(self, max_bytes: int = 64 << 10) -> Any | None:
        """The first line of the file decoded (e.g. Codex session_meta), without moving."""
        try:
            data = read_regular(self.path, max_bytes)
        except OSError:
            return None
        nl = data.find(b"\n")
        if nl < 0:
            return None
        return next(iter(self._decode_all([data[:nl]], count=False)), None)

    def read(self) -> list[Any]:
        """New complete lines since the last call, decoded. Cheap when nothing changed."""
        return list(self.read_iter())

    def read_iter(self) -> Iterator[Any]:
        """Like `read()`, but each line is decoded only as it is iterated. The file is read and
        split into lines at once (the reader's state is settled on return); iterate to the end.

        A caller that folds each object before taking the next keeps no batch of decoded lines
        alive: a list of a 4 MB chunk's objects costs more in garbage collection than decoding
        them did (see bench/ingest.py)."""
        data = self._read_new()
        return self._decode_all(self._split(data)) if data else iter(())

    def _read_new(self) -> bytes:
        """The bytes appended since the last read (at most `read_chunk`), after checks for
        rotation and truncation. The checks and the read use one open file: a log renamed in
        between cannot make us read the new file from the old one's offset."""
        try:
            quick = os.stat(self.path)
        except OSError as exc:
            self._note_missing(exc)
            return b""
        if (
            not self.stats.missing and self.ino == quick.st_ino and self.dev == quick.st_dev
            and quick.st_size == self.offset and quick.st_mtime == self.mtime
        ):
            return b""  # the common case on a sweep: nothing new, no open
        try:
            fd, st = open_regular(self.path)
        except OSError as exc:
            self._note_missing(exc)
            return b""
        try:
            # A file that was gone and is back is a new file, even if the inode number is reused.
            returned = self.stats.missing
            self.stats.missing = False
            replaced = self.ino is not None and (st.st_ino != self.ino or st.st_dev != self.dev)
            if replaced or returned or st.st_size < self.offset or not self._same_head(fd):
                self._reset()
            self._adopt(st)
            self._note_head(fd, st.st_size)
            if st.st_size == self.offset:
                return b""
            data = os.pread(fd, min(self.read_chunk, st.st_size - self.offset), self.offset)
        except OSError as exc:
            self.stats.error = f"cannot read {self.path}: {exc.strerror or exc}"
            return b""
        finally:
            os.close(fd)
        self.stats.error = None
        self.offset += len(data)
        return data

    @property
    def behind(self) -> bool:
        """True when the file has more bytes than one `read()` took (call again)."""
        return self.offset < self.size

    # -- internals ------------------------------------------------------------------------

    def _adopt(self, st: os.stat_result) -> None:
        self.dev, self.ino, self.size, self.mtime = st.st_dev, st.st_ino, st.st_size, st.st_mtime

    def _note_head(self, fd: int, size: int) -> None:
        if len(self.head_bytes) < _FINGERPRINT and size > len(self.head_bytes):
            self.head_bytes = os.pread(fd, min(_FINGERPRINT, size), 0)

    def _same_head(self, fd: int) -> bool:
        """Whether the file still starts with the bytes it started with when last read."""
        if not self.head_bytes:
            return True
        return os.pread(fd, len(self.head_bytes), 0) == self.head_bytes

    def _reset(self) -> None:
        self.offset = 0
        self.head_bytes = b""
        self._partial.clear()
        self._discarding = False
        self.stats.resets += 1

    def _note_missing(self, exc: OSError) -> None:
        if isinstance(exc, FileNotFoundError):
            self.stats.missing = True
        else:
            self.stats.error = f"cannot read {self.path}: {exc.strerror or exc}"

    def _scan_back(self, fd: int, end: int, max_bytes: int, max_lines: int) -> tuple[int, bytes]:
        """Read blocks backwards from `end` until enough newlines or bytes are seen."""
        chunks: list[bytes] = []
        pos = end
        newlines = 0
        floor = max(0, end - max_bytes)
        while pos > floor and newlines <= max_lines:
            size = min(_BLOCK, pos - floor)
            pos -= size
            block = os.pread(fd, size, pos)
            chunks.append(block)
            newlines += block.count(b"\n")
        chunks.reverse()
        return pos, b"".join(chunks)

    def _split(self, data: bytes) -> list[bytes]:
        """Complete lines from `data`, joined with any pending partial line; the rest waits.
        Over-long lines are dropped and counted; a pending line never grows beyond the cap,
        so memory stays bounded by `read_chunk` and the cap. (Empty strings may stand for
        dropped lines: decoding skips blank lines.)"""
        lines = data.split(b"\n")
        rest = lines.pop()
        if lines:
            if self._discarding:  # the end of an over-long line: drop it
                self._discarding = False
                lines[0] = b""
            elif self._partial:
                self._partial += lines[0]
                lines[0] = bytes(self._partial)
                self._partial.clear()
            cap = self.line_cap
            if max(map(len, lines)) > cap:
                kept = [line for line in lines if len(line) <= cap]
                self.stats.too_long += len(lines) - len(kept)
                lines = kept
        if not rest or self._discarding:
            return lines
        if len(self._partial) + len(rest) > self.line_cap:
            self.stats.too_long += 1
            self._partial.clear()
            self._discarding = True
        else:
            self._partial += rest
        return lines

    def _decode_all(self, lines: list[bytes] | Iterator[bytes], count: bool = True) -> Iterator[Any]:
        """Decoded objects (dicts, or the format decoder's records); the rest is counted."""
        stats = self.stats
        # A format's decoder returns only its records (it refuses anything else); a full decode
        # returns any JSON value, and only objects are lines.
        any_value = self.decode is None
        decode = self.decode or orjson.loads
        for line in lines:
            try:
                obj = decode(line)
            except (ValueError, RecursionError):  # orjson's and msgspec's errors are ValueErrors
                if not line.strip():
                    continue  # blank lines are not lines
                obj = self._decode_in_full(line, count)
                if count:
                    stats.lines += 1
                if obj is _NOT_JSON:
                    continue
            else:
                if count:
                    stats.lines += 1
                if not any_value:
                    yield obj
                    continue
            if type(obj) is dict:
                yield obj
            elif count:
                stats.not_object += 1

    def _decode_in_full(self, line: bytes, count: bool) -> object:
        """A line the decoder refused, decoded in full (a format's decoder refuses shapes it does
        not know), invalid UTF-8 repaired; `_NOT_JSON` (counted) when it is not JSON."""
        if self.decode is not None:
            try:
                return orjson.loads(line)
            except orjson.JSONDecodeError:
                pass
        return self._repair(line, count)

    def _repair(self, line: bytes, count: bool) -> object:
        """Invalid UTF-8 inside an otherwise good line: keep the line, replace the bytes."""
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            try:
                obj = orjson.loads(line.decode("utf-8", "replace"))
            except orjson.JSONDecodeError:
                pass
            else:
                if count:
                    self.stats.bad_utf8 += 1
                return obj
        else:
            del text
        if count:
            self.stats.bad_json += 1
        return _NOT_JSON
