"""`bgmon replay LOG...`: the health rules run over recorded logs on the logs' own clock.

Each log is read whole, in order; after every line with a time, and at every moment in a
silence where the clock alone could change the verdict (`health.next_check`), the task is
judged as the monitor would have judged it then. What comes out is the timeline of badge
changes: the tool to tune thresholds, and to turn any real log into a regression test.

What a log cannot say is left out, not guessed: there is no process to look at (no CPU, no
pid), so only what the lines record counts. A log is judged as a transcript (from its turns)
when its format is an agent's, and as a running task when it is bgmon's own event lines.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field

import orjson

from bgmon.activity import Activity
from bgmon.config import Thresholds
from bgmon.formats import parser_for, sniff
from bgmon.health import Observation, assess, next_check
from bgmon.model import Event, Health
from bgmon.timefmt import iso

LINE_CAP = 1 << 20


@dataclass(frozen=True, slots=True)
class Change:
    """The badge changed at `at` (the log's clock), after `line` lines."""

    at: float
    line: int
    health: Health

    def to_json(self) -> dict:
        return {"at": iso(self.at), "line": self.line, "health": self.health.badge.value,
                "reasons": [r.to_json() for r in self.health.reasons]}


@dataclass
class Replay:
    path: str
    fmt: str = "native"
    lines: int = 0
    skipped: int = 0  # not JSON objects, too long, or of a type the format does not know
    changes: list[Change] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"log": self.path, "format": self.fmt, "lines": self.lines, "skipped": self.skipped,
                "timeline": [c.to_json() for c in self.changes]}


def _objects(path: str, replay: Replay) -> Iterator[dict]:
    with open(path, "rb") as fh:
        for raw in fh:
            replay.lines += 1
            if len(raw) > LINE_CAP:
                replay.skipped += 1
                continue
            try:
                obj = orjson.loads(raw)
            except orjson.JSONDecodeError:
                replay.skipped += 1
                continue
            if isinstance(obj, dict):
                yield obj
            else:
                replay.skipped += 1


def _observe(act: Activity, transcript: bool, start: float | None) -> Observation:
    if transcript:
        return Observation(source="replay", status=None, activity=act.summary())
    # bgmon's own lines: a running task, created at its first line, alive while it logs.
    return Observation(source="replay", status="running", created_at=start,
                       updated_at=act.last_event_at, activity=act.summary())


def replay(path: str, th: Thresholds) -> Replay:
    """The timeline of one log. Raises OSError when it cannot be read."""
    result = Replay(path=path)
    act = Activity()
    parse = None
    transcript = False
    start: float | None = None
    last: Health | None = None
    clock: float | None = None

    def judge(at: float, line: int) -> None:
        nonlocal last
        health = assess(_observe(act, transcript, start), at, th)
        if last is None or health.badge != last.badge:
            result.changes.append(Change(at, line, health))
        last = health

    def wait_until(until: float) -> None:
        """The silence up to `until`: judge at each moment the clock alone could matter."""
        nonlocal clock
        while clock is not None and clock < until:
            due = next_check(_observe(act, transcript, start), clock, th, refresh=until - clock)
            clock = min(max(due, clock + 1e-3), until)
            if clock < until:  # the moment of the next line is judged once it is applied
                judge(clock, result.lines - 1)

    for obj in _objects(path, result):
        if parse is None:
            result.fmt = sniff(obj)
            parse = parser_for(result.fmt)
            transcript = result.fmt != "native"
        events: list[Event] | None = parse(obj)
        if events is None:
            result.skipped += 1
            continue
        times = [ev.ts for ev in events if ev.ts is not None]
        if times:
            wait_until(min(times))
        act.extend(events)
        if times:
            start = start if start is not None else min(times)
            clock = max(times) if clock is None else max(clock, max(times))
            judge(clock, result.lines)
    return result


def render_text(replays: list[Replay]) -> str:
    out = []
    for r in replays:
        out.append(f"{r.path} ({r.fmt}, {r.lines} lines" + (f", {r.skipped} skipped" if r.skipped else "") + ")")
        if not r.changes:
            out.append("  no timed events: nothing to judge")
        for c in r.changes:
            badge = c.health.badge
            why = c.health.reasons[0] if c.health.reasons else None
            rule = f"{why.rule}: {why.detail}" if why else ""
            out.append(f"  {iso(c.at)}  line {c.line:>6}  {badge.glyph} {badge.value:<10} {rule}")
    return "\n".join(out) + "\n"


def main(paths: list[str], th: Thresholds, as_json: bool) -> tuple[str, list[str]]:
    """(output, errors): one Replay per readable log; an unreadable one is an error line."""
    replays, errors = [], []
    for path in paths:
        if not os.path.isfile(path):
            errors.append(f"{path}: not a file")
            continue
        try:
            replays.append(replay(path, th))
        except OSError as exc:
            errors.append(f"{path}: {exc.strerror or exc}")
    if as_json:
        doc = {"version": 1, "logs": [r.to_json() for r in replays]}
        return orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n", errors
    return render_text(replays), errors
