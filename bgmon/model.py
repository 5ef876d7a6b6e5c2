"""The small vocabulary every layer shares: events, health, reasons, task snapshots.

Adapters turn log lines into `Event`s; the engine folds events into task state; `health.assess`
turns state into a `Health`; views render `TaskSnapshot`s. Nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, overload

from bgmon.clip import clip_optional


class Badge(StrEnum):
    HEALTHY = "healthy"
    STRUGGLING = "struggling"
    STUCK = "stuck"
    FAILED = "failed"
    COMPLETED = "completed"
    UNKNOWN = "unknown"

    @property
    def severity(self) -> int:
        """Higher is worse; used for roll-ups and for sorting."""
        return _SEVERITY[self]

    @property
    def glyph(self) -> str:
        return _GLYPH[self]

    @property
    def is_fault(self) -> bool:
        return self in FAULTS


_SEVERITY = {
    Badge.COMPLETED: 0,
    Badge.HEALTHY: 1,
    Badge.UNKNOWN: 2,
    Badge.STRUGGLING: 3,
    Badge.STUCK: 4,
    Badge.FAILED: 5,
}
_GLYPH = {
    Badge.HEALTHY: "✓",
    Badge.STRUGGLING: "⚠",
    Badge.STUCK: "⏸",
    Badge.FAILED: "✗",
    Badge.COMPLETED: "●",
    Badge.UNKNOWN: "?",
}
FAULTS = frozenset({Badge.STRUGGLING, Badge.STUCK, Badge.FAILED})


class EventKind(StrEnum):
    """What a log line can tell us, whatever tool wrote it."""

    TOOL_CALL = "tool_call"
    TOOL_RESULT = "tool_result"
    PROGRESS = "progress"  # done/total
    STEP = "step"  # current step text
    ERROR = "error"  # an error outside a tool result (classified by `text`)
    MESSAGE = "message"  # assistant or program output text
    HEARTBEAT = "heartbeat"
    TURN_START = "turn_start"  # a person (or the harness) asked for work
    TURN_END = "turn_end"  # the agent finished its turn
    TURN_ABORTED = "turn_aborted"  # the turn was interrupted or cancelled
    API_ERROR = "api_error"  # the turn ended on a model API error
    BG_START = "bg_start"  # a background command started (call_id names it)
    BG_END = "bg_end"  # a background command finished
    META = "meta"  # session facts: cwd, session id
    TASK_ITEM = "task_item"  # one item of an agent's task board: call_id = item id,
    #                          input = pending|in_progress|completed|deleted, text = its title


@dataclass(slots=True, unsafe_hash=True)
class Event:
    """One fact from a log line. Text fields are bounded by the adapters (see `clip`).

    Treat it as immutable. It is not `frozen` only because a frozen dataclass's __init__ costs
    3x more, and millions of these are made when a long transcript is read (bench/ingest.py).
    """

    kind: EventKind
    ts: float | None = None  # epoch seconds
    tool: str | None = None
    call_id: str | None = None
    input: str | None = None  # canonical form of a tool call's input (for loop detection)
    ok: bool | None = None
    error: str | None = None
    done: int | None = None
    total: int | None = None
    text: str | None = None
    cwd: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.kind.value}
        for name in ("ts", "tool", "call_id", "input", "ok", "error", "done", "total", "text", "cwd"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out


@dataclass(frozen=True, slots=True)
class Reason:
    """One piece of evidence behind a badge: which rule fired and what was observed."""

    rule: str
    detail: str

    def to_json(self) -> dict[str, str]:
        return {"rule": self.rule, "detail": self.detail}


@dataclass(frozen=True, slots=True)
class Health:
    badge: Badge
    reasons: tuple[Reason, ...] = ()

    @property
    def summary(self) -> str:
        return self.reasons[0].detail if self.reasons else ""


@dataclass(frozen=True, slots=True)
class Progress:
    done: int
    total: int

    def __str__(self) -> str:
        return f"{self.done}/{self.total}"


@dataclass(frozen=True, slots=True)
class ProcFacts:
    """What psutil told us about a task's process (tree) at one look."""

    pid: int
    alive: bool  # running and not a zombie
    zombie: bool = False
    cpu_seconds: float = 0.0  # user+system of the whole tree
    cpu_active: bool = False  # the tree used CPU since the previous look
    rss: int = 0  # bytes, whole tree
    children: tuple[int, ...] = ()
    name: str = ""
    access_denied: bool = False
    started: float | None = None  # create time (epoch s): tells a reused pid from the task's


@dataclass(frozen=True, slots=True)
class Acknowledged:
    """A person acknowledged the task's badge (`bgmon ack`): until the badge changes it no
    longer counts for the exit status, notifications or `bgmon wait`, and every view says so."""

    badge: str
    note: str | None = None
    at: float | None = None  # epoch seconds


@dataclass(frozen=True, slots=True)
class TaskSnapshot:
    """Everything a view needs about one task at one moment. Views render only this."""

    key: str
    id: str
    name: str
    source: str  # worktree | claude | codex | ...
    group: str
    parent: str | None  # key of the parent task
    status: str
    health: Health
    progress: Progress | None
    step: str | None
    last_activity: float | None  # epoch seconds of the last sign of life
    pid: int | None
    path: str  # the task's directory or transcript file
    own_health: Health | None = None  # before roll-up, when it differs
    files: tuple[str, ...] = ()  # status.json and logs
    fields: dict[str, Any] = field(default_factory=dict)  # raw status.json fields
    recent: tuple[Event, ...] = ()  # last events, oldest first
    proc: ProcFacts | None = None
    note: str | None = None  # bgmon's own mark (recovery `mark`)
    warnings: tuple[str, ...] = ()  # per-task reading problems
    cwd: str | None = None  # the working directory the task runs in
    command: tuple[str, ...] | None = None  # argv recorded to restart it
    host: str | None = None  # the remote host it runs on (`--remote NAME=…`); None: this machine
    ack: Acknowledged | None = None  # set only while the acknowledged badge is the badge shown

    @property
    def needs_attention(self) -> bool:
        """A fault nobody has acknowledged: what the exit status and notifications count."""
        return self.health.badge.is_fault and self.ack is None


@overload
def clip(text: str, limit: int = 400) -> str: ...
@overload
def clip(text: None, limit: int = 400) -> None: ...
@overload
def clip(text: str | None, limit: int = 400) -> str | None: ...


def clip(text: str | None, limit: int = 400) -> str | None:
    """Bound a text for events and views, marking the cut (bgmon.clip decides how)."""
    return clip_optional(text, limit)
