"""Incremental JSONL reading: each byte of a log is read once, whatever the log does.

A `TailReader` remembers (device, inode, offset, partial last line). Appends are read from the
offset; a partial last line waits for its newline; a new inode or a size below the offset means
rotation or truncation, and the file is read again from its start. Lines above the cap are
skipped (and counted) without being held in memory; undecodable lines are counted, never fatal.

At start-up `prime()` scans backwards from the end in blocks and decodes only the last lines,
so the cost of showing a task does not grow with the size of its log.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field

import orjson

_BLOCK = 64 << 10


@dataclass
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


@dataclass
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
    _partial: bytearray = field(default_factory=bytearray)
    _discarding: bool = False  # inside an over-long line: drop bytes until its newline

    # -- public ---------------------------------------------------------------------------

    def prime(self, max_bytes: int, max_lines: int) -> list[dict]:
        """Position at the end of the file and return the decoded last lines (at most
        `max_lines`, looking back at most `max_bytes`). A partial last line stays pending."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError as exc:
            self._note_missing(exc)
            return []
        try:
            st = os.fstat(fd)
            self._adopt(st)
            end = st.st_size
            start, data = self._scan_back(fd, end, max_bytes, max_lines)
        except OSError as exc:
            self.stats.error = f"cannot read {self.path}: {exc.strerror or exc}"
            self.offset = self.size  # nothing to re-read; read() retries from here
            return []
        finally:
            os.close(fd)
        last_nl = data.rfind(b"\n")
        if last_nl < 0:
            # No complete line in the window: wait at its start for the line to finish,
            # unless the window did not reach the file's start (then it is an over-long line).
            self.offset = start if start == 0 else end
            self._discarding = start != 0
            return []
        complete = data[: last_nl + 1]
        self.offset = start + last_nl + 1
        # The first line of the window is cut unless the window starts at the file's start.
        if start > 0:
            first_nl = complete.find(b"\n")
            complete = complete[first_nl + 1 :]
        lines = complete.split(b"\n")[:-1]
        return list(self._decode_all(lines[-max_lines:]))

    def head(self, max_bytes: int = 64 << 10) -> dict | None:
        """The first line of the file decoded (e.g. Codex session_meta), without moving."""
        try:
            with open(self.path, "rb") as fh:
                data = fh.read(max_bytes)
        except OSError:
            return None
        nl = data.find(b"\n")
        if nl < 0:
            return None
        return next(iter(self._decode_all([data[:nl]], count=False)), None)

    def read(self) -> list[dict]:
        """New complete lines since the last call, decoded. Cheap when nothing changed."""
        try:
            st = os.stat(self.path)
        except OSError as exc:
            self._note_missing(exc)
            return []
        # A file that was gone and is back is a new file, even if the inode number is reused.
        returned = self.stats.missing
        self.stats.missing = False
        replaced = self.ino is not None and (st.st_ino != self.ino or st.st_dev != self.dev)
        if replaced or returned or st.st_size < self.offset:
            self._reset()
        self._adopt(st)
        if st.st_size == self.offset:
            return []
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.offset)
                data = fh.read(self.read_chunk)
        except OSError as exc:
            self.stats.error = f"cannot read {self.path}: {exc.strerror or exc}"
            return []
        self.stats.error = None
        self.offset += len(data)
        return list(self._decode_all(self._split(data)))

    @property
    def behind(self) -> bool:
        """True when the file has more bytes than one `read()` took (call again)."""
        return self.offset < self.size

    # -- internals ------------------------------------------------------------------------

    def _adopt(self, st: os.stat_result) -> None:
        self.dev, self.ino, self.size, self.mtime = st.st_dev, st.st_ino, st.st_size, st.st_mtime

    def _reset(self) -> None:
        self.offset = 0
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

    def _split(self, data: bytes) -> Iterator[bytes]:
        """Complete lines from `data`, joined with any pending partial line; over-long lines
        are dropped as they stream by, so memory stays bounded by the cap."""
        start = 0
        while True:
            nl = data.find(b"\n", start)
            if nl < 0:
                break
            piece = data[start:nl]
            start = nl + 1
            if self._discarding:
                self._discarding = False
                continue
            if self._partial:
                self._partial += piece
                piece = bytes(self._partial)
                self._partial.clear()
            if len(piece) > self.line_cap:
                self.stats.too_long += 1
                continue
            yield piece
        rest = data[start:]
        if not rest or self._discarding:
            return
        if len(self._partial) + len(rest) > self.line_cap:
            self.stats.too_long += 1
            self._partial.clear()
            self._discarding = True
        else:
            self._partial += rest

    def _decode_all(self, lines: list[bytes] | Iterator[bytes], count: bool = True) -> Iterator[dict]:
        stats = self.stats
        for line in lines:
            if not line.strip():
                continue
            if count:
                stats.lines += 1
            try:
                obj = orjson.loads(line)
            except orjson.JSONDecodeError:
                obj = self._repair(line, count)
                if obj is None:
                    continue
            if isinstance(obj, dict):
                yield obj
            elif count:
                stats.not_object += 1

    def _repair(self, line: bytes, count: bool) -> object | None:
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
        return None
