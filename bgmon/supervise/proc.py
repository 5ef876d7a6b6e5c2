"""`bgmon run`'s process side: start the command in its own process group, watch the CPU use of
its tree (for stall detection), stop the whole group."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from typing import BinaryIO

import psutil

from bgmon.procs import running, tree_cpu


def spawn(argv: Sequence[str], cwd: str) -> subprocess.Popen[bytes]:
    """Start argv with piped stdout/stderr in a new session (so its process group is its own and
    a terminal's Ctrl-C reaches it only through us). Raises OSError when it cannot start."""
    return subprocess.Popen(
        list(argv),
        cwd=cwd,
        stdin=_stdin(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def _stdin() -> int | None:
    """Piped input is passed on (`cat rows | bgmon run -- importer`). A terminal is not: the
    command has no controlling terminal, so it would not be stopped by job control and would
    steal the shell's keystrokes when `bgmon run` is in the background."""
    try:
        if sys.stdin is None or sys.stdin.closed or os.isatty(sys.stdin.fileno()):
            return subprocess.DEVNULL
    except (OSError, ValueError):
        return subprocess.DEVNULL
    return None


def start_error(argv: Sequence[str], exc: OSError) -> str:
    """One line saying why argv could not start (no traceback: it is the user's command)."""
    what = exc.strerror or str(exc)
    if isinstance(exc, FileNotFoundError):
        what = "command not found" if os.sep not in argv[0] else "no such file"
    elif isinstance(exc, PermissionError):
        what = "permission denied (is it executable?)"
    return f"cannot start {argv[0]!r}: {what}"


def cannot_start(argv: Sequence[str]) -> str | None:
    """Why argv cannot start at all, in `start_error`'s words, found before a task is made for it
    (a mistyped command is the person's to fix, not a failed task); None when it may start."""
    program = argv[0]
    if os.sep not in program:
        return None if shutil.which(program) else start_error(argv, FileNotFoundError())
    if not os.path.exists(program):
        return start_error(argv, FileNotFoundError())
    if os.path.isdir(program) or not os.access(program, os.X_OK):
        return start_error(argv, PermissionError())
    return None


def signal_group(pgid: int, sig: int) -> bool:
    """Send sig to the process group; False when the group no longer exists."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # a member changed user; it exists, we cannot touch it
    return True


def group_alive(pgid: int) -> bool:
    """Members of the group that are not zombies (an orphaned zombie may never be reaped in a
    container whose pid 1 does not reap, and it holds nothing)."""
    for p in psutil.process_iter():
        try:
            if os.getpgid(p.pid) == pgid and running(p.pid) is not False:
                return True
        except (OSError, psutil.Error):
            continue
    return False


def stop_group(proc: subprocess.Popen, grace: float, sig: int = signal.SIGTERM) -> int:
    """Stop the command and everything in its group: sig, then SIGKILL after `grace` s.
    Returns the leader's exit status."""
    signal_group(proc.pid, sig)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        signal_group(proc.pid, signal.SIGKILL)
        proc.wait()
    reap_group(proc.pid, grace)
    return proc.returncode


def reap_group(pgid: int, grace: float) -> None:
    """After the leader exited: stop what it left behind in its group (the task is the group;
    a leftover holding a port or a pipe would break the restart)."""
    if not signal_group(pgid, signal.SIGTERM):
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not group_alive(pgid):
            return
        time.sleep(0.05)
    signal_group(pgid, signal.SIGKILL)


def signame(sig: int | None) -> str:
    if sig is None:
        return "signal None"
    try:
        return signal.Signals(sig).name
    except (ValueError, TypeError):
        return f"signal {sig}"


def describe_exit(code: int) -> str:
    if code < 0:
        return f"killed by signal {-code} ({signame(-code)})"
    return f"exit code {code}"  # this wording is what the catalogue's `exit code 137` matches


def exit_fields(code: int) -> dict[str, object]:
    """status.json's exitCode/signal: a process killed by a signal has no exit code."""
    if code < 0:
        return {"exitCode": None, "signal": signame(-code)}
    return {"exitCode": code, "signal": None}


def exit_status(code: int) -> int:
    """Popen's returncode as a shell reports it: 128+N for signal N."""
    return 128 - code if code < 0 else code


class TreeCpu:
    """CPU seconds used by a process and its descendants (bgmon.procs reads the tree)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._last: float | None = None

    def changed(self) -> bool:
        """The tree used CPU since the previous call (False on the first call)."""
        total = self.total()
        grew = self._last is not None and total > self._last + 1e-9
        self._last = total
        return grew

    def total(self) -> float:
        # Reaped descendants' time is in their parents' children times: a finished grandchild's
        # time is not lost. A vanished root keeps its last total.
        total = tree_cpu(self.pid)
        return (self._last or 0.0) if total is None else total


class Echo:
    """Pass-through of the child's bytes to our own stdout/stderr. A closed terminal or a reader
    that went away (EPIPE) turns it off instead of stopping supervision."""

    def __init__(self, stream: BinaryIO | None) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def __call__(self, data: bytes) -> None:
        with self._lock:
            if self._stream is None:
                return
            try:
                self._stream.write(data)
                self._stream.flush()
            except (OSError, ValueError):
                self._stream = None

    @staticmethod
    def of(name: str) -> Echo:
        # No such stream, or one without bytes (replaced by a test or an embedding program).
        return Echo(getattr(getattr(sys, name, None), "buffer", None))
