"""Times in, times out: every timestamp format bgmon reads, and every duration it prints."""

from __future__ import annotations

import re
from datetime import UTC, datetime

# Epoch values above this are milliseconds (1e11 s is the year 5138).
_MS_THRESHOLD = 1e11
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_time(value: object) -> float | None:
    """ISO 8601 string, epoch seconds or epoch milliseconds → epoch seconds; None if unreadable."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        try:
            v = float(value)
        except OverflowError:
            return None
        if not 0 < v < _MS_THRESHOLD * 1000:  # NaN, infinities, non-positive, absurd
            return None
        return v / 1000.0 if v > _MS_THRESHOLD else v
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        try:
            return parse_time(float(text))
        except ValueError:
            pass
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            dt = datetime.fromisoformat(text)
        except ValueError:
            return None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        ts = dt.timestamp()
        return ts if ts > 0 else None
    return None


def parse_duration(text: str) -> float:
    """'90', '90s', '5m', '24h', '2d', '250ms' → seconds. Raises ValueError with a clear message."""
    m = _DURATION.match(str(text))
    if not m:
        raise ValueError(f"not a duration: {text!r} (use a number with s, m, h or d, e.g. 10m)")
    return float(m.group(1)) * _UNITS[m.group(2)]


def format_duration(seconds: float) -> str:
    """Seconds as the config file writes them: 86400 → '24h', 600 → '10m', 0.3 → '300ms';
    the largest unit that keeps the number whole (parse_duration reads it back exactly)."""
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("m", 60.0), ("s", 1.0), ("ms", 0.001)):
        count = seconds / size
        if count >= 1 and abs(count - round(count)) < 1e-9:
            # '24h' rather than '1d': a day reads better in hours up to 2 days
            if unit == "d" and count < 2:
                continue
            return f"{round(count)}{unit}"
    return f"{seconds:g}s"


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def ago(seconds: float | None) -> str:
    """A short human age: 5s, 3m, 2h, 4d."""
    if seconds is None:
        return "never"
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m" if s < 36000 else f"{s // 3600}h"
    return f"{s // 86400}d"


def clock(ts: float | None) -> str:
    """Local wall-clock HH:MM for line prefixes."""
    if ts is None:
        return "--:--"
    return datetime.fromtimestamp(ts).strftime("%H:%M")
