"""A bound on how deep bgmon walks or writes JSON that others wrote.

A status file, a log line or a model's answer can nest arrays 1,000 levels deep: Python's
recursion (redaction, validation) stops near 1,000, `json` raises RecursionError, orjson refuses
to write beyond 254. So whatever walks untrusted JSON stops at `MAX_DEPTH` and puts a marker
there, and bgmon's own reads and writes of such files use orjson, whose errors are ValueErrors.
"""

from __future__ import annotations

from typing import Any

MAX_DEPTH = 64
TOO_DEEP = f"[nested deeper than {MAX_DEPTH} levels]"


def bounded(value: Any, limit: int = MAX_DEPTH) -> Any:
    """`value` with every container deeper than `limit` replaced by the TOO_DEEP marker (the
    same object when it is not that deep)."""
    if not isinstance(value, dict | list | tuple):
        return value
    if limit <= 0:
        return TOO_DEEP
    if isinstance(value, dict):
        return {k: bounded(v, limit - 1) for k, v in value.items()}
    return [bounded(v, limit - 1) for v in value]
