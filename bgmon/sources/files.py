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
    """An fd open for reading and its fstat; OSError (NotRegularFile) unless a regular file."""
    fd = os.open(path, _FLAGS)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotRegularFile(path)
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
