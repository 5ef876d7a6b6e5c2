"""Whole-file writes: a reader sees the old file or the new one, never half of one."""

from __future__ import annotations

import os
from pathlib import Path


def write_atomic(path: Path, blob: bytes, tmp: Path | None = None) -> None:
    """Write `blob` to a temporary file beside `path`, fsync it, then rename it over `path`.

    The temporary name must not match what a reader globs for (node_exporter reads `*.prom`;
    bgmon reads `status.json`), so by default it is `.NAME.PID.tmp`."""
    tmp = tmp or path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        try:
            os.write(fd, blob)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
