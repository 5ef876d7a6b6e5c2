"""`bgmon run`'s status.json: always whole (atomic replace), refreshed by a heartbeat thread."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import orjson

from bgmon.atomic import write_atomic
from bgmon.procs import running
from bgmon.recovery.redact import redact_obj

# Progress may change many times a second; status.json follows at most this often (the event
# log has every change, the heartbeat and the final write catch up).
LAZY_INTERVAL = 1.0


class StatusFile:
    """The task's status.json. Every write is a temporary file in the same directory, fsync'd,
    then os.replace'd, so a reader sees the old or the new document, never half of one. What is
    written is redacted (`bgmon.recovery.redact`): no secret from the argv or the output."""

    def __init__(self, path: Path, fields: dict, heartbeat: float,
                 clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.heartbeat = heartbeat
        self.data = dict(fields)
        self._clock = clock
        self._lock = threading.Lock()
        self._last_write = 0.0
        self._dirty = False
        self._tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")

    def update(self, **fields: object) -> None:
        with self._lock:
            self.data.update(fields)
            self._write()

    def update_lazy(self, **fields: object) -> None:
        """Record now, write when LAZY_INTERVAL has passed since the last write (else later)."""
        with self._lock:
            self.data.update(fields)
            if self._clock() - self._last_write >= LAZY_INTERVAL:
                self._write()
            else:
                self._dirty = True

    def flush(self) -> None:
        with self._lock:
            if self._dirty:
                self._write()

    def get(self, key: str) -> object:
        with self._lock:
            return self.data.get(key)

    def _write(self) -> None:
        now = self._clock()
        self.data["updatedAt"] = iso_ms(now)
        self.data["readyUntil"] = iso_ms(now + 2 * self.heartbeat)
        # Redacted as it is written (the argv in `command`, an output line quoted in `error`);
        # `data` keeps the real values.
        blob = orjson.dumps(redact_obj(self.data),
                            option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE)
        write_atomic(self.path, blob, self._tmp)
        self._last_write = now
        self._dirty = False


def iso_ms(ts: float) -> str:
    """ISO 8601 UTC with milliseconds (timefmt.iso rounds to seconds; event order wants finer)."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def fsync_dir(path: Path) -> None:
    """Make the last rename durable (it is atomic without this; this survives a power cut)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class Heartbeat(threading.Thread):
    """Every `interval` s: refresh updatedAt/readyUntil and call `beat` (writes a heartbeat
    event). It proves the supervisor, not the child, is alive: the child's liveness is its pid."""

    def __init__(self, interval: float, beat: Callable[[], None]) -> None:
        super().__init__(name="bgmon-heartbeat", daemon=True)
        self.interval = interval
        self._beat = beat
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            try:
                self._beat()
            except OSError:
                # A full disk must not kill supervision; the next beat tries again.
                pass

    def stop(self) -> None:
        self._stop_event.set()


def task_paths(directory: Path) -> tuple[Path, Path]:
    """(status.json, events.jsonl) of a task directory."""
    return directory / "status.json", directory / "logs" / "events.jsonl"


def pid_alive(pid: object) -> bool:
    """A running process (a zombie is not one); one that cannot be looked at counts as running."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    return running(pid) is not False
    return True
