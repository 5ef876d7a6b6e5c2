"""Directory watches through Linux inotify, one directory at a time.

Why not a library: the live engine must (1) arm a watch *before* it reads a directory's files, so
nothing written in between is missed; (2) add and drop single directories as tasks come and go,
not re-create thousands of watches; (3) know exactly which directories could not be watched (the
per-user watch limit) so that only those are polled; (4) survive having no inotify at all (the
per-user instance limit, or another OS). The mask is narrow: writes, creations, deletions and
renames; reads (ours included) and opens raise no events.

Events are only a hint: they name paths to re-read through the readers `--once` uses.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import struct
import sys
import threading

from bgmon.sources.watch_files import FilesWatch, WatchUnavailable

IN_MODIFY = 0x2
IN_ATTRIB = 0x4
IN_MOVED_FROM = 0x40
IN_MOVED_TO = 0x80
IN_CREATE = 0x100
IN_DELETE = 0x200
IN_DELETE_SELF = 0x400
IN_MOVE_SELF = 0x800
IN_Q_OVERFLOW = 0x4000
IN_IGNORED = 0x8000
IN_ONLYDIR = 0x01000000
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC

MASK = (IN_MODIFY | IN_ATTRIB | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE
        | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR)
_HEADER = struct.Struct("iIII")  # wd, mask, cookie, len (then len bytes of NUL-padded name)
_READ_SIZE = 256 << 10
# At most this share of the per-user watch limit is used: editors, build tools and other
# monitors of the same user need watches too. Directories beyond it are polled.
BUDGET_SHARE = 0.75
WATCHES_LIMIT = "/proc/sys/fs/inotify/max_user_watches"
INSTANCES_LIMIT = "/proc/sys/fs/inotify/max_user_instances"

_libc = None


def _lib():
    global _libc
    if _libc is None:
        name = ctypes.util.find_library("c")
        lib = ctypes.CDLL(name, use_errno=True)
        if not hasattr(lib, "inotify_init1"):
            raise OSError(errno.ENOSYS, "inotify is not available on this system")
        lib.inotify_add_watch.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32)
        lib.inotify_rm_watch.argtypes = (ctypes.c_int, ctypes.c_int)
        _libc = lib
    return _libc


def _error(what: str) -> OSError:
    code = ctypes.get_errno()
    return OSError(code, f"{what}: {os.strerror(code)}")


def read_limit(path: str) -> int | None:
    try:
        with open(path) as fh:
            return int(fh.read().strip())
    except (OSError, ValueError):
        return None


def watch_budget() -> int:
    """How many directories this process may watch: a share of the system's per-user limit."""
    limit = read_limit(WATCHES_LIMIT)
    return max(16, int(limit * BUDGET_SHARE)) if limit else 8192


class Inotify:
    """One inotify instance (non-blocking). OSError from the constructor when none can be had:
    EMFILE means the per-user instance limit (fs.inotify.max_user_instances) is reached."""

    def __init__(self) -> None:
        lib = _lib()
        fd = lib.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            raise _error("inotify_init1")
        self.fd = fd
        self._lib = lib

    def fileno(self) -> int:
        return self.fd

    def add(self, path: str) -> int:
        wd = self._lib.inotify_add_watch(self.fd, os.fsencode(path), MASK)
        if wd < 0:
            raise _error(path)
        return wd

    def remove(self, wd: int) -> None:
        self._lib.inotify_rm_watch(self.fd, wd)  # fails only when the watch is gone already

    def read(self) -> bytes:
        try:
            return os.read(self.fd, _READ_SIZE)
        except BlockingIOError:
            return b""

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def instances_problem(exc: OSError) -> str:
    """One line for a person: why there is no watch, and what would fix it."""
    if exc.errno == errno.EMFILE:
        limit = read_limit(INSTANCES_LIMIT)
        known = f" ({limit})" if limit is not None else ""
        return (f"cannot watch files: the per-user inotify instance limit{known} is reached "
                "(raise fs.inotify.max_user_instances)")
    if isinstance(exc, WatchUnavailable):
        return f"cannot watch files: {exc.strerror or exc}"
    if exc.errno == errno.ENOSYS:
        return "cannot watch files: inotify is not available on this system"
    return f"cannot watch files: inotify: {exc.strerror or exc}"


def open_watch() -> DirWatch | FilesWatch:
    """This system's directory watch: inotify on Linux, watchfiles elsewhere (FSEvents, kqueue).
    `BGMON_WATCH=inotify|watchfiles` picks one (tests run the watchfiles one on Linux).
    OSError when none can be had (then the engine sweeps)."""
    backend = os.environ.get("BGMON_WATCH") or ("inotify" if sys.platform.startswith("linux")
                                                 else "watchfiles")
    if backend == "watchfiles":
        return FilesWatch()
    return DirWatch(Inotify())


class DirWatch:
    """The set of watched directories. `sync(wanted)` adds and drops watches to match;
    directories that could not be watched are in `unwatched` (with `limited` counting those
    beyond the budget or the system's limit). `take()` returns the paths named by the events
    read since the last call, and whether the kernel's queue overflowed (events were lost).

    `sync` runs in the engine's worker thread and `drain` in the event loop: a lock guards the
    watch-descriptor map."""

    def __init__(self, inotify: Inotify, budget: int | None = None) -> None:
        self.inotify = inotify
        self.budget = watch_budget() if budget is None else budget
        self._wd: dict[int, str] = {}
        self._dirs: dict[str, int] = {}
        self.unwatched: set[str] = set()
        self.limited = 0  # directories left out by the watch limit (not missing ones)
        self._lock = threading.Lock()
        self._paths: set[str] = set()
        self._overflow = False

    def __len__(self) -> int:
        return len(self._dirs)

    def fileno(self) -> int:
        """Readable when events wait (the event loop's reader)."""
        return self.inotify.fileno()

    def sync(self, wanted: set[str]) -> set[str]:
        """Watch exactly `wanted` (as far as possible); returns the directories newly watched."""
        with self._lock:
            for path in [p for p in self._dirs if p not in wanted]:
                wd = self._dirs.pop(path)
                self._wd.pop(wd, None)
                self.inotify.remove(wd)
            added: set[str] = set()
            unwatched: set[str] = set()
            limited = 0
            # Parents before children: a root or .worktrees folder tells of new tasks.
            for path in sorted((p for p in wanted if p not in self._dirs), key=lambda p: (p.count(os.sep), p)):
                if len(self._dirs) >= self.budget:
                    unwatched.add(path)
                    limited += 1
                    continue
                try:
                    wd = self.inotify.add(path)
                except OSError as exc:
                    if exc.errno == errno.ENOSPC:  # the system's per-user watch limit
                        limited += 1
                        unwatched.add(path)
                    elif exc.errno not in (errno.ENOENT, errno.ENOTDIR):
                        unwatched.add(path)  # permission denied and the like: poll it
                    continue
                self._dirs[path] = wd
                self._wd[wd] = path
                added.add(path)
            self.unwatched, self.limited = unwatched, limited
            return added

    def drain(self) -> bool:
        """Read what the kernel has queued (event loop side). True when something was read."""
        got = False
        while data := self.inotify.read():
            got = True
            with self._lock:
                self._parse(data)
        return got

    def take(self) -> tuple[set[str], bool]:
        with self._lock:
            paths, overflow = self._paths, self._overflow
            self._paths, self._overflow = set(), False
        return paths, overflow

    def _parse(self, data: bytes) -> None:
        pos, end, size = 0, len(data), _HEADER.size
        while pos + size <= end:
            wd, mask, _, length = _HEADER.unpack_from(data, pos)
            name = data[pos + size: pos + size + length].rstrip(b"\0")
            pos += size + length
            if mask & IN_Q_OVERFLOW:
                self._overflow = True
                continue
            base = self._wd.get(wd)
            if base is None:
                continue
            if mask & IN_IGNORED:  # the directory is gone (or unmounted): its watch with it
                del self._wd[wd]
                if self._dirs.get(base) == wd:
                    del self._dirs[base]
                self._paths.add(base)
                continue
            self._paths.add(os.path.join(base, os.fsdecode(name)) if name else base)

    def close(self) -> None:
        with self._lock:
            self.inotify.close()
            self._wd.clear()
            self._dirs.clear()
