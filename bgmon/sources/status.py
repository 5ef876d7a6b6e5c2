"""Tolerant `status.json` reading: a torn write never turns a task failed.

Writers that do not replace the file atomically can be caught mid-write. We retry briefly; if
the file still does not parse, the last good value is kept and marked stale, with a warning.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from bgmon.jsondepth import bounded
from bgmon.sources.files import read_regular

_MAX_BYTES = 1 << 20  # a status file is small; anything bigger is not one


@dataclass(slots=True)  # one per task, 10,000 at once
class StatusReader:
    path: str
    extract: Callable[[object], dict | None] | None = None  # a file that lists many tasks
    retries: int = 2
    retry_delay: float = 0.02
    fields: dict[str, Any] | None = None  # the last good value
    stale: bool = False  # the file changed but could not be read; `fields` are older
    error: str | None = None
    mtime: float | None = None
    _sig: tuple[int, int, int] | None = field(default=None, repr=False)

    def read(self) -> bool:
        """Re-read if the file changed. Returns True when `fields`/`stale` changed."""
        try:
            st = os.stat(self.path)
        except OSError as exc:
            return self._fail(f"cannot stat {self.path}: {exc.strerror or exc}")
        sig = (st.st_ino, st.st_size, st.st_mtime_ns)
        if sig == self._sig and not self.stale:
            return False
        if not stat.S_ISREG(st.st_mode):
            # A FIFO would block the reader; a directory never parses: no retries either way.
            self._sig = sig
            return self._fail(f"{self.path} is not a regular file")
        for attempt in range(self.retries + 1):
            parsed, error = self._load()
            if parsed is not None:
                self._sig = sig
                self.mtime = st.st_mtime
                changed = parsed != self.fields or self.stale
                self.fields, self.stale, self.error = parsed, False, None
                return changed
            if attempt < self.retries:
                time.sleep(self.retry_delay)
                try:
                    st = os.stat(self.path)
                except OSError:
                    break
                sig = (st.st_ino, st.st_size, st.st_mtime_ns)
        self._sig = sig
        return self._fail(error or "unreadable")

    def _load(self) -> tuple[dict[str, Any] | None, str | None]:
        try:
            data = read_regular(self.path, _MAX_BYTES + 1)
        except OSError as exc:
            return None, f"cannot read {self.path}: {exc.strerror or exc}"
        if len(data) > _MAX_BYTES:
            return None, f"{self.path} is larger than 1 MiB; not a status file"
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            try:
                obj = orjson.loads(data.decode("utf-8", "replace"))
            except orjson.JSONDecodeError:
                return None, f"{self.path} is not valid JSON (half-written?)"
        if self.extract is not None:
            obj = self.extract(obj)
            if obj is None:
                return None, f"{self.path} no longer lists this task"
        if not isinstance(obj, dict):
            return None, f"{self.path} holds JSON that is not an object"
        return bounded(obj), None  # everything downstream walks it: redaction, views, the API

    def _fail(self, error: str) -> bool:
        was = (self.stale, self.error)
        self.error = error
        self.stale = True
        return was != (self.stale, self.error)
