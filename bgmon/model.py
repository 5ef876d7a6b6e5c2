"""The small vocabulary every layer shares: events, health, reasons, task snapshots.

Adapters turn log lines into `Event`s; the engine folds events into task state; `health.assess`
turns state into a `Health`; views render `TaskSnapshot`s. Nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, overload

import msgspec

from bgmon.clip import clip_optional
from bgmon.timefmt import ago, iso


class Badge(StrEnum):
    HEALTHY = "healthy"
    STRUGGLING = "struggling"
    STUCK = "stuck"
    FAILED = "failed"
    COMPLETED = "completed"
    UNKNOWN = "unknown"
    WAITING = "waiting"  # blocked on a person: a permission prompt, a question, an interrupt

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

    @property
    def needs_person(self) -> bool:
        """A fault, or waiting for a person's answer: what the faults-only view shows."""
        return self in ATTENTION


# Waiting sorts right after the faults: it needs a person, but nothing is broken.
_SEVERITY = {
    Badge.COMPLETED: 0,
    Badge.HEALTHY: 1,
    Badge.UNKNOWN: 2,
    Badge.WAITING: 3,
    Badge.STRUGGLING: 4,
    Badge.STUCK: 5,
    Badge.FAILED: 6,
}
_GLYPH = {
    Badge.HEALTHY: "✓",
    Badge.STRUGGLING: "⚠",
    Badge.STUCK: "⏸",
    Badge.FAILED: "✗",
    Badge.COMPLETED: "●",
    Badge.UNKNOWN: "?",
    Badge.WAITING: "⚑",
}
# `--once` exits 1 when a task has one of these (unless --fail-on says otherwise).
FAULTS = frozenset({Badge.STRUGGLING, Badge.STUCK, Badge.FAILED})
ATTENTION = FAULTS | {Badge.WAITING}


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
    META = "meta"  # session facts: cwd, session id (text); for a sub-agent's session its kind
    #                (tool) and its parent's session id when it names one (call_id)
    TASK_ITEM = "task_item"  # one item of an agent's task board: call_id = item id,
    #                          input = pending|in_progress|completed|deleted, text = its title
    WAITING = "waiting"  # blocked on a person (text: why: a permission prompt, a question)
    RESUMED = "resumed"  # running again after WAITING


# A TOOL_RESULT's text when the process behind the call exited: "exited N" (formats/codex.py).
EXITED = "exited "


class Event(msgspec.Struct, frozen=True, gc=False):
    """One fact from a log line. Text fields are bounded by the adapters (see `clip`).

    A msgspec Struct: frozen (hashable) yet cheaper to make than a slots dataclass (a third of
    the time positionally, a fifth with keywords), and untracked by the garbage collector (it
    holds only strings, numbers and an enum, so it can never be part of a cycle). Millions are
    made when a long transcript is read (bench/ingest.py) and thousands stay in task windows.
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
    source: str | None = None  # "bgmon" when bgmon run wrote it about the command: life, not progress
    pattern: str | None = None  # the failure pattern an ERROR was classified as

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.kind.value}
        for name in ("ts", "tool", "call_id", "input", "ok", "error", "done", "total", "text", "cwd",
                     "source", "pattern"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out


# Evidence keys holding a moment (epoch seconds): shown as ISO 8601 in JSON, as an age in views.
MOMENTS = frozenset({"since", "last_progress", "last_life", "expired_at", "asked_at", "last_error",
                     "failed_at", "ended_at"})


@dataclass(frozen=True, slots=True)
class Reason:
    """One piece of evidence behind a badge: which rule fired and what was observed.

    `detail` is the sentence as judged. `evidence` holds the facts behind it (moments in epoch
    seconds, counts, thresholds in seconds), and `template` the sentence with `{KEY}` where an
    age since the moment `evidence[KEY]` goes: views format it when they draw, so an age in a
    reason never goes stale (`bgmon.views.evidence.reason_text`)."""

    rule: str
    detail: str
    evidence: dict[str, Any] = field(default_factory=dict, hash=False)
    template: str | None = None

    @classmethod
    def judged(cls, rule: str, template: str, now: float, **evidence: Any) -> Reason:
        """A reason whose `template` names moments of `evidence` as `{KEY}` (ages at `now`).
        Text from outside (a tool's input, an error line) must be passed through `quote`."""
        reason = cls(rule, "", evidence, template)
        return cls(rule, reason.at(now), evidence, template)

    def at(self, now: float) -> str:
        """The sentence with every age counted up to `now` (views call this when they draw)."""
        if not self.template:
            return self.detail
        ages = {
            key: ago(now - value) for key, value in self.evidence.items()
            if key in MOMENTS and isinstance(value, int | float)
        }
        try:
            return self.template.format_map(ages)
        except (KeyError, ValueError, IndexError):
            return self.detail or self.template

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"rule": self.rule, "detail": self.detail}
        for key, value in self.evidence.items():
            if key in ("rule", "detail"):
                continue
            out[key] = _iso(value) if key in MOMENTS and isinstance(value, int | float) else value
        return out


def _iso(ts: float) -> str | None:
    return iso(ts)


def quote(text: str) -> str:
    """Outside text made safe to put into a `Reason` template."""
    return text.replace("{", "{{").replace("}", "}}")


@dataclass(frozen=True, slots=True)
class Health:
    badge: Badge
    reasons: tuple[Reason, ...] = ()

    @property
    def summary(self) -> str:
        return self.reasons[0].detail if self.reasons else ""

    def summary_at(self, now: float) -> str:
        """The first reason as of `now` (what one-line views show after the badge)."""
        return self.reasons[0].at(now) if self.reasons else ""


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
    stopped: bool = False  # stopped by a signal (SIGSTOP, ctrl-Z) or a tracer: makes no progress
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
    # epoch seconds of the task's last own work (output, CPU, a progress or step change), as
    # health.last_progress judges it: a heartbeat is life, not progress
    last_progress: float | None = None

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
