"""Directory watches through watchfiles, where inotify is not (macOS, the BSDs).

watchfiles (the Rust `notify` crate: FSEvents, kqueue, …) watches a fixed set of paths, so when
the set of directories changes it is started again over the new set: cheap for the few folders
a person's tasks live in, and still far better than sweeping alone. Same interface as
`bgmon.sources.watch.DirWatch`: `sync(wanted)`, `fileno()` becomes readable when paths changed,
`drain()`, `take()`, `unwatched`, `limited`, `close()`. Non-recursive, no filter: every change in
a watched directory names a path, which (as with inotify) is only a hint to re-read it.

A restart re-arms every directory, and a change made while it happens could be missed, so every
directory of a restart counts as newly armed: the engine then reads everything once more.
"""

from __future__ import annotations

import errno
import os
import sys
import threading

DEBOUNCE_MS = 20  # watchfiles groups changes this long (its default, 1.6 s, is far too slow)
STEP_MS = 10
STOP_CHECK_MS = 200  # how often an idle watcher looks whether it was stopped


class WatchUnavailable(OSError):
    """watchfiles cannot be used here (not installed, or it failed to start)."""


def _watchfiles():
    try:
        import watchfiles
    except ImportError:
        raise WatchUnavailable(errno.ENOSYS, "watchfiles is not installed") from None
    return watchfiles


class FilesWatch:
    budget = sys.maxsize  # no per-user watch limit to share

    def __init__(self) -> None:
        self._watchfiles = _watchfiles()
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._read_fd, False)
        os.set_blocking(self._write_fd, False)
        self._lock = threading.Lock()
        self._dirs: frozenset[str] = frozenset()
        self._stop: threading.Event | None = None
        self._paths: set[str] = set()
        self._overflow = False
        self.unwatched: set[str] = set()
        self.limited = 0
        self.problem: str | None = None  # why the last start failed (its folders are polled)

    def __len__(self) -> int:
        return len(self._dirs)

    def fileno(self) -> int:
        return self._read_fd

    def sync(self, wanted: set[str]) -> set[str]:
        """Watch exactly the existing directories of `wanted`; returns those (re)armed."""
        dirs = frozenset(p for p in wanted if os.path.isdir(p))
        with self._lock:
            if dirs == self._dirs and not self.unwatched:
                return set()
            self._halt()
            self._dirs = dirs
            self.unwatched = set()
            if not dirs:
                return set()
            stop = threading.Event()
            self._stop = stop
        started = threading.Event()
        thread = threading.Thread(target=self._run, args=(sorted(dirs), stop, started),
                                  name="bgmon-watchfiles", daemon=True)
        thread.start()
        started.wait(5)
        return set(dirs)

    def _run(self, dirs: list[str], stop: threading.Event, started: threading.Event) -> None:
        try:
            changes = self._watchfiles.watch(
                *dirs, watch_filter=None, debounce=DEBOUNCE_MS, step=STEP_MS, stop_event=stop,
                rust_timeout=STOP_CHECK_MS, recursive=False, raise_interrupt=False)
            started.set()
            for batch in changes:
                with self._lock:
                    if stop.is_set():
                        return
                    self._paths.update(path for _, path in batch)
                self._signal()
        except Exception as exc:  # a folder gone in between, or the OS refused: poll them all
            with self._lock:
                if not stop.is_set():
                    self.unwatched = set(dirs)
                    self.problem = f"file watch failed: {exc}"
                    self._overflow = True  # whatever happened meanwhile is unknown: sweep
            self._signal()
        finally:
            started.set()

    def _signal(self) -> None:
        try:
            os.write(self._write_fd, b"!")
        except BlockingIOError:
            pass  # the pipe is full: the event loop has a wake-up waiting anyway

    def _halt(self) -> None:
        if self._stop is not None:
            self._stop.set()  # the thread ends within STOP_CHECK_MS; its late changes are dropped
            self._stop = None

    def drain(self) -> bool:
        """Empty the wake-up pipe (event loop side). True when something was read."""
        got = False
        while True:
            try:
                data = os.read(self._read_fd, 4096)
            except BlockingIOError:
                return got
            if not data:
                return got
            got = True

    def take(self) -> tuple[set[str], bool]:
        with self._lock:
            paths, overflow = self._paths, self._overflow
            self._paths, self._overflow = set(), False
        return paths, overflow

    def close(self) -> None:
        with self._lock:
            self._halt()
            self._dirs = frozenset()
        for fd in (self._read_fd, self._write_fd):
            if fd >= 0:
                os.close(fd)
        self._read_fd = self._write_fd = -1
