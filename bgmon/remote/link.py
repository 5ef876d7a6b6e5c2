"""One remote host: its `--follow --json` stream read into this bgmon's changes.

Health is judged where the files are: the host's own bgmon runs the engine and this side only
reads its verdicts (wire protocol: docs/formats.md). A link runs in its own thread and reports
`Change`s for the host's tasks (keys `@NAME/KEY`), or, while the stream is down, for one row
`@NAME` that shows the host as unknown with the reason, until the stream is back (reconnecting
with backoff). Junk from the other side is counted as a warning, never an error here.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable

import orjson

from bgmon.engine import Change
from bgmon.model import Badge, Health, Reason, TaskSnapshot
from bgmon.remote.spec import RemoteSpec
from bgmon.views.jsonout import VERSION, remote_key, task_from_json

LINE_CAP = 1 << 20  # a longer line from the host is skipped and counted
BACKOFF_FIRST, BACKOFF_MAX = 1.0, 60.0
STEADY = 30.0  # a stream up this long resets the backoff


def host_key(name: str) -> str:
    return f"@{name}"


class RemoteLink:
    def __init__(
        self,
        spec: RemoteSpec,
        emit: Callable[[list[Change]], None],
        *,
        once: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.spec = spec
        self.emit = emit
        self.once = once  # one look (--once): stop after `synced`, never reconnect
        self.clock = clock
        self.tasks: dict[str, TaskSnapshot] = {}
        self.warnings: list[str] = []
        self.hello: dict = {}
        self.connected = False
        self.synced = threading.Event()  # the first full picture arrived (or, --once, failed)
        self.reconnects = 0
        self.reason: str | None = None  # why the stream is down, while it is
        self.skipped = 0  # lines from the host that were not usable
        self._row: TaskSnapshot | None = None
        self._stop = threading.Event()
        self._proc: subprocess.Popen | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    # -- life ------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"bgmon-remote-{self.spec.name}",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._kill()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def cut(self) -> None:
        """End the current stream (as a dropped connection would); the link reconnects."""
        self._kill()

    def _kill(self) -> None:
        with self._lock:
            proc = self._proc
        if proc is not None and proc.poll() is None:
            try:
                proc.send_signal(signal.SIGTERM)
            except OSError:
                pass

    def _run(self) -> None:
        try:
            self._loop()
        except Exception as exc:  # a bug here must not take the monitor down: say it, stop
            self._lost(f"bgmon's link to this host failed: {type(exc).__name__}: {exc}", 0.0)
            self.synced.set()

    def _loop(self) -> None:
        delay = BACKOFF_FIRST
        self._show_host("connecting", f"connecting to {self.spec.url}")
        while not self._stop.is_set():
            started = time.monotonic()
            reason = self._session()
            if self.once:
                if not self.synced.is_set():
                    self.fail(reason)
                return  # one look: its tasks stay for the caller to read
            if self._stop.is_set():
                break
            if time.monotonic() - started >= STEADY:
                delay = BACKOFF_FIRST
            self._lost(reason, delay)
            if self._stop.wait(delay * random.uniform(0.8, 1.2)):
                break
            delay = min(delay * 2, BACKOFF_MAX)
            self.reconnects += 1
        # Stopped (bgmon is quitting): the host's tasks were not removed, so say nothing.

    # -- one connection ----------------------------------------------------------------------

    def _session(self) -> str:
        """Run the stream command until it ends; → why it ended (one line)."""
        try:
            self.spec.prepare()
        except OSError as exc:
            return f"cannot prepare the connection: {exc.strerror or exc}"
        # stderr to a file, not a pipe: ssh's shared master connection may keep a pipe open.
        with tempfile.TemporaryFile() as err:
            try:
                proc = subprocess.Popen(self.spec.stream_argv(), stdin=subprocess.DEVNULL,
                                        stdout=subprocess.PIPE, stderr=err,
                                        start_new_session=True)
            except OSError as exc:
                return f"cannot run {self.spec.stream_argv()[0]}: {exc.strerror or exc}"
            with self._lock:
                self._proc = proc
            seen: set[str] = set()
            try:
                self._read(proc, seen)
            finally:
                if proc.poll() is None:
                    proc.terminate()
                try:
                    code = proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    code = proc.wait()
                with self._lock:
                    self._proc = None
                self.connected = False
            if self._stop.is_set():
                return "stopped"
            return _ended(code, _last_line(err), self.once and self.synced.is_set())

    def _read(self, proc: subprocess.Popen, seen: set[str]) -> None:
        assert proc.stdout is not None
        while True:
            line = proc.stdout.readline(LINE_CAP + 1)
            if not line:
                return
            if not line.endswith(b"\n"):
                if len(line) > LINE_CAP:
                    self.skipped += 1
                    while (more := proc.stdout.readline(LINE_CAP + 1)) and not more.endswith(b"\n"):
                        pass
                continue
            try:
                obj = orjson.loads(line)
            except orjson.JSONDecodeError:
                self.skipped += 1
                continue
            if not isinstance(obj, dict):
                self.skipped += 1
                continue
            if self._line(obj, seen) and self.once:
                return

    def _line(self, obj: dict, seen: set[str]) -> bool:
        """Apply one line of the stream; → True once the first full picture is complete."""
        event = obj.get("event")
        if event == "hello":
            self.hello = obj
            version = obj.get("version")
            if isinstance(version, int) and version > VERSION:
                self._set_warnings([f"speaks protocol version {version}; this bgmon knows "
                                    f"{VERSION} and reads what it understands"])
            return False
        if event in ("snapshot", "added", "updated", "health"):
            snap = task_from_json(obj.get("task"), self.spec.name)
            if snap is None:
                self.skipped += 1
                return False
            seen.add(snap.key)
            self._upsert(snap)
            return False
        if event == "removed":
            key = obj.get("key")
            if isinstance(key, str):
                self._remove(remote_key(self.spec.name, key))
            return False
        if event == "warnings":
            self._warnings(obj.get("warnings"))
            return False
        if event == "synced":
            self._warnings(obj.get("warnings"))
            for key in [k for k in self.tasks if k not in seen]:  # gone while we were away
                self._remove(key)
            self.connected, self.reason = True, None
            self._hide_host()
            self.synced.set()
            return True
        return False  # an event from a newer bgmon: skipped, as the protocol says

    # -- changes ------------------------------------------------------------------------------

    def _upsert(self, snap: TaskSnapshot) -> None:
        old = self.tasks.get(snap.key)
        self.tasks[snap.key] = snap
        if old is None:
            self.emit([Change("added", snap.key, snap)])
        elif old.health.badge != snap.health.badge:
            self.emit([Change("health", snap.key, snap, old.health)])
        elif old != snap:
            self.emit([Change("updated", snap.key, snap, old.health)])

    def _remove(self, key: str) -> None:
        if self.tasks.pop(key, None) is not None:
            self.emit([Change("removed", key)])

    def _warnings(self, value: object) -> None:
        if isinstance(value, list):
            self._set_warnings([w for w in value if isinstance(w, str)])

    def _set_warnings(self, said: list[str]) -> None:
        """The host's own reading warnings, labelled with its name; a change is reported (an
        empty batch of changes) so every view shows the new list at once."""
        labelled = [f"{self.spec.name}: {w}" for w in said]
        if labelled != self.warnings:
            self.warnings = labelled
            self.emit([])

    def all_warnings(self) -> list[str]:
        """What to show about this host besides its tasks: its warnings, why the link is down
        (while it is), and lines from it that could not be used; each labelled with its name."""
        out = list(self.warnings)
        if self.reason is not None:
            out.append(f"{self.spec.name}: not connected: {self.reason}")
        if self.skipped:
            out.append(f"{self.spec.name}: {self.skipped} unusable line(s) from the host skipped")
        return out

    def _drop_tasks(self) -> None:
        keys = list(self.tasks)
        self.tasks.clear()
        if keys:
            self.emit([Change("removed", k) for k in keys])

    def fail(self, reason: str) -> None:
        """One look (--once) got no full picture: the host shows as unknown with why."""
        self._lost(reason, 0.0)
        self.synced.set()

    def _lost(self, reason: str, delay: float) -> None:
        self.reason = reason
        self._drop_tasks()
        again = "" if self.once else f"; reconnecting in {delay:.0f}s"
        self._show_host("unreachable", f"{reason}{again}")

    def _show_host(self, status: str, detail: str) -> None:
        """The host's own row: unknown, with the reason (there is nothing else to show)."""
        name = self.spec.name
        rule = "remote.connecting" if status == "connecting" else "remote.lost"
        row = TaskSnapshot(
            key=host_key(name), id=name, name=name, source="remote", group=f"{name}:",
            parent=None, status=status, health=Health(Badge.UNKNOWN, (Reason(rule, detail),)),
            progress=None, step=None, last_activity=None, pid=None, path=self.spec.url,
            host=name,
        )
        old, self._row = self._row, row
        if old is None:
            self.emit([Change("added", row.key, row)])
        elif old != row:
            self.emit([Change("updated", row.key, row, old.health)])

    def _hide_host(self) -> None:
        if self._row is not None:
            self._row = None
            self.emit([Change("removed", host_key(self.spec.name))])

    def all_tasks(self) -> list[TaskSnapshot]:
        rows = list(self.tasks.values())
        return rows + [self._row] if self._row is not None else rows


def _last_line(err) -> str:
    try:
        err.seek(max(0, err.seek(0, os.SEEK_END) - 4096))
        text = err.read().decode("utf-8", "replace")
    except OSError:
        return ""
    lines = [x.strip() for x in text.splitlines() if x.strip()]
    return lines[-1][:300] if lines else ""


def _ended(code: int, stderr: str, done: bool) -> str:
    if done:
        return "done"
    how = f"exited with signal {-code}" if code < 0 else f"exited with status {code}"
    return f"the stream {how}" + (f": {stderr}" if stderr else "")
