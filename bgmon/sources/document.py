"""Whole-document reading: a session file rewritten as it grows, a session in a database.

Like `status.json`, such a document can be caught mid-write (or a database locked for a moment):
we retry briefly, then keep the last good events and mark them stale, with a warning. Nothing is
re-read while its signature (by default the file's inode, size and mtime) is unchanged.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

from bgmon.agents.base import DocFormat, DocumentUnreadable
from bgmon.model import Event


def file_signature(path: str) -> tuple[float, ...]:
    """(mtime, inode, size, mtime_ns) of a file; OSError when it cannot be stat'ed."""
    st = os.stat(path)
    return (st.st_mtime, st.st_ino, st.st_size, st.st_mtime_ns)


@dataclass
class DocumentReader:
    path: str
    fmt: DocFormat
    retries: int = 1
    retry_delay: float = 0.02
    events: list[Event] | None = None  # the last good value
    stale: bool = False  # it changed but could not be read; `events` are older
    error: str | None = None
    mtime: float | None = None  # when it last changed (the signature's first element)
    _sig: object = field(default=None, repr=False)

    def read(self) -> bool:
        """Re-read if the document changed. Returns True when `events`/`stale` changed."""
        signature = self.fmt.signature or file_signature
        error = "unreadable"
        for attempt in range(self.retries + 1):
            try:
                sig = signature(self.path)
            except OSError as exc:
                return self._fail(f"cannot stat {self.path}: {exc.strerror or exc}")
            except DocumentUnreadable as exc:
                return self._fail(str(exc))
            if sig == self._sig and not self.stale:
                return False
            try:
                events = self.fmt.load(self.path)
            except DocumentUnreadable as exc:
                error = str(exc)
                if attempt < self.retries:
                    time.sleep(self.retry_delay)
                continue
            self._sig = sig
            if isinstance(sig, tuple) and sig and isinstance(sig[0], int | float):
                self.mtime = float(sig[0])
            changed = events != self.events or self.stale
            self.events, self.stale, self.error = events, False, None
            return changed
        self._sig = sig
        return self._fail(error)

    def _fail(self, error: str) -> bool:
        was = (self.stale, self.error)
        self.error, self.stale = error, True
        return was != (self.stale, self.error)
