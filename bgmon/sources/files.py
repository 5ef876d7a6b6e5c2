"""Opening files that may not be what they claim: a FIFO, a device or a directory where a log or
status file should be. A blocking open of a FIFO waits for a writer for ever, so every reader
opens non-blocking and insists on a regular file."""

from __future__ import annotations

import errno
import os
import stat

_FLAGS = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)


class NotRegularFile(OSError):
    def __init__(self, path: str) -> None:
        super().__init__(errno.EINVAL, "not a regular file", path)


def open_regular(path: str) -> tuple[int, os.stat_result]:
    """An fd open for reading and its fstat; OSError (NotRegularFile) unless a regular file.

    The type is checked with stat before the open (opening a device can have effects: a tape
    rewinds, a watchdog arms) and again on the open descriptor, which must be the same file."""
    before = os.stat(path)
    if not stat.S_ISREG(before.st_mode):
        raise NotRegularFile(path)
    fd = os.open(path, _FLAGS)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or (st.st_dev, st.st_ino) != (before.st_dev, before.st_ino):
            raise NotRegularFile(path)  # replaced between the two looks
    except BaseException:
        os.close(fd)
        raise
    return fd, st


def read_regular(path: str, limit: int) -> bytes:
    """Up to `limit` bytes from the start of a regular file."""
    fd, _ = open_regular(path)
    try:
        return os.pread(fd, limit, 0)
    finally:
        os.close(fd)
