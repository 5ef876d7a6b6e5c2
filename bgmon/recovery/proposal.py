"""Proposals and the closed set of recovery actions.

An action is data with exact arguments, so a person can read precisely what approving it does
(`describe()`), and so the executor never interprets free text. Anything a model returns goes
through `validate.validate_action`, which either builds one of the five action types or says
why not.
"""

from __future__ import annotations

import os
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

from bgmon.model import TaskSnapshot
from bgmon.printable import single_line
from bgmon.timefmt import parse_time

RUN_LOG = "logs/events.jsonl"  # where `bgmon run` writes a task's output, under its directory
KINDS = ("kill", "restart", "signal", "run", "mark")
SOURCES = ("claude", "rules")

DEFAULT_GRACE = 5.0
MAX_GRACE = 120.0
MAX_DELAY = 600.0
DEFAULT_RUN_TIMEOUT = 300.0
MAX_RUN_TIMEOUT = 3600.0
MAX_NOTE = 200
MAX_ACTIONS = 5

# Programs whose effect is destructive enough that the description says so in front.
_DESTRUCTIVE = frozenset({
    "rm", "rmdir", "unlink", "dd", "mkfs", "shred", "truncate", "wipefs", "fdisk", "parted",
    "shutdown", "reboot", "halt", "poweroff", "kill", "pkill", "killall", "srm",
})
# git subcommands (with the options that make them so) that throw work away.
_GIT_DESTRUCTIVE = {
    "clean": (), "reset": ("--hard", "--merge", "--keep"), "checkout": ("--", ".", "-f", "--force"),
    "restore": (), "push": ("--force", "-f", "--force-with-lease", "--delete", "-d"),
    "branch": ("-D", "--delete", "-d"), "stash": ("drop", "clear"), "rm": (),
    "filter-branch": (), "gc": ("--prune=now",), "reflog": ("expire", "delete"),
}


def destructive(argv: tuple[str, ...]) -> bool:
    """Whether running `argv` deletes or overwrites work: rm and kin, `find … -delete`,
    `git clean`/`reset --hard`/`push --force`…, `rsync --delete`."""
    name = os.path.basename(argv[0]).rstrip("0123456789.") if argv else ""
    if name in _DESTRUCTIVE or name.startswith("mkfs"):
        return True
    rest = argv[1:]
    if name == "find":
        return any(w in ("-delete", "-exec", "-execdir", "-ok", "-okdir") for w in rest)
    if name == "rsync":
        return any(w.startswith("--delete") or w == "--remove-source-files" for w in rest)
    if name == "git":
        sub = next((w for w in rest if not w.startswith("-")), None)
        if sub in _GIT_DESTRUCTIVE:
            flags = _GIT_DESTRUCTIVE[sub]
            return not flags or any(w in flags or w.startswith("--force") for w in rest)
    return False


def _secs(value: float) -> str:
    return f"{value:g}s"


def _tree(pid: int, children: int | None) -> str:
    if children is None:
        return f"pid {pid} and its children"
    if children == 0:
        return f"pid {pid} (no children)"
    return f"pid {pid} and its {children} child{'ren' if children != 1 else ''}"


def _argv(argv: tuple[str, ...]) -> str:
    return repr(list(argv))  # repr escapes a newline or tab in a word: the effect stays one line


@dataclass(frozen=True, slots=True)
class Kill:
    """SIGTERM to the task's process tree, SIGKILL to what is left after `grace` seconds."""

    pid: int
    grace: float = DEFAULT_GRACE
    children: int | None = None  # seen when proposed; execution walks the live tree again
    kind: ClassVar[str] = "kill"

    def args(self) -> dict[str, Any]:
        return {"pid": self.pid, "grace": self.grace}

    def describe(self) -> str:
        return f"send SIGTERM to {_tree(self.pid, self.children)}, SIGKILL after {_secs(self.grace)}"


@dataclass(frozen=True, slots=True)
class Restart:
    """Stop the tree (if any), then start the task's recorded command again, detached."""

    argv: tuple[str, ...]
    cwd: str
    pid: int | None = None  # None: the old process is already gone, only start
    grace: float = DEFAULT_GRACE
    delay: float = 0.0  # backoff before starting (wait_restart)
    status_file: str | None = None  # where the new pid is written back
    children: int | None = None
    # The task was started by `bgmon run`: start it under `bgmon run` again, so it stays
    # supervised (heartbeats, restarts, its status.json and event log kept current).
    supervised: bool = False
    kind: ClassVar[str] = "restart"

    def args(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "grace": self.grace,
            "delay": self.delay,
            "argv": list(self.argv),
            "cwd": self.cwd,
            "status_file": self.status_file,
            "supervised": self.supervised,
        }

    def describe(self) -> str:
        parts = []
        if self.pid is not None:
            parts.append(
                f"stop {_tree(self.pid, self.children)} (SIGTERM, SIGKILL after {_secs(self.grace)})"
            )
        if self.delay:
            parts.append(f"wait {_secs(self.delay)}")
        if self.supervised and self.status_file:
            task_dir = os.path.dirname(self.status_file)
            start = (f"start {_argv(self.argv)} in {single_line(self.cwd)} under `bgmon run --dir {single_line(task_dir)}`, "
                     "detached")
        else:
            start = f"start {_argv(self.argv)} in {single_line(self.cwd)}, detached"
        parts.append(("then " if parts else "") + start)
        text = ", ".join(parts)
        if self.supervised and self.status_file:
            log = os.path.join(os.path.dirname(self.status_file), RUN_LOG)
            text += (f"; bgmon run keeps {single_line(self.status_file)} current and writes the "
                     f"output to {single_line(log)}")
        elif self.status_file:
            text += f"; write the new pid and status running to {single_line(self.status_file)}"
        return text


@dataclass(frozen=True, slots=True)
class Signal:
    """One named signal to the task's pid only."""

    pid: int
    signal: str  # canonical name, e.g. "SIGUSR1"
    kind: ClassVar[str] = "signal"

    def args(self) -> dict[str, Any]:
        return {"pid": self.pid, "signal": self.signal}

    def describe(self) -> str:
        return f"send {self.signal} to pid {self.pid} (not to its children)"


@dataclass(frozen=True, slots=True)
class Run:
    """One program, as an argv list, in the task's directory, with a timeout; never a shell."""

    argv: tuple[str, ...]
    cwd: str
    timeout: float = DEFAULT_RUN_TIMEOUT
    kind: ClassVar[str] = "run"

    def args(self) -> dict[str, Any]:
        return {"argv": list(self.argv), "cwd": self.cwd, "timeout": self.timeout}

    def describe(self) -> str:
        text = f"run {_argv(self.argv)} in {single_line(self.cwd)} (timeout {_secs(self.timeout)})"
        if destructive(self.argv):
            text = "DESTRUCTIVE: " + text
        return text


@dataclass(frozen=True, slots=True)
class Mark:
    """bgmon's own note on the task, kept in the journal; no agent file is touched."""

    note: str
    kind: ClassVar[str] = "mark"

    def args(self) -> dict[str, Any]:
        return {"note": self.note}

    def describe(self) -> str:
        return f"mark the task {self.note!r} (bgmon's own note; no agent file is touched)"


Action = Kill | Restart | Signal | Run | Mark


def action_to_json(action: Action) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": action.kind, **action.args()}
    if isinstance(action, Kill | Restart) and action.children is not None:
        out["children"] = action.children
    out["effect"] = action.describe()
    return out


# --- the proposal ---------------------------------------------------------------------------


def new_id() -> str:
    return "p_" + secrets.token_hex(4)


def now_iso(ts: float | None = None) -> str:
    """UTC ISO time with milliseconds (the executor compares process start times against it)."""
    from datetime import UTC, datetime

    dt = datetime.fromtimestamp(time.time() if ts is None else ts, UTC)
    return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Proposal:
    id: str
    task: str  # the task's key
    task_id: str
    source: str  # "claude" | "rules"
    model: str | None
    degraded_reason: str | None  # why rules: "no API key", "API error: …", "breaker open", …
    diagnosis: str
    confidence: float
    actions: tuple[Action, ...] = ()
    refused: tuple[dict[str, Any], ...] = ()
    created: str = field(default_factory=now_iso)
    patterns: tuple[str, ...] = ()  # matched failure patterns (journal and report)
    basis: dict[str, Any] = field(default_factory=dict)  # pid/badge/status it was made for

    @property
    def created_ts(self) -> float:
        return parse_time(self.created) or 0.0

    def to_json(self) -> dict[str, Any]:
        """The `bgmon propose --json` object."""
        return {
            "id": self.id,
            "task": self.task,
            "task_id": self.task_id,
            "source": self.source,
            "model": self.model,
            "degraded_reason": self.degraded_reason,
            "diagnosis": self.diagnosis,
            "confidence": round(self.confidence, 3),
            "actions": [action_to_json(a) for a in self.actions],
            "refused": [dict(r) for r in self.refused],
            "created": self.created,
        }

    def describe(self) -> list[str]:
        """Each action's exact effect, numbered as shown to the person who approves."""
        return [f"{i}. {a.describe()}" for i, a in enumerate(self.actions, 1)]

    @property
    def origin(self) -> str:
        """'claude <model>' or 'rules (why)', as the panel header shows it."""
        if self.source == "claude":
            return f"claude {self.model}"
        return f"rules ({self.degraded_reason})" if self.degraded_reason else "rules"

    @classmethod
    def from_json(
        cls, data: dict[str, Any], patterns: tuple[str, ...] = (), basis: dict | None = None
    ) -> Proposal:
        """Rebuild a proposal bgmon stored itself (the journal); raises ValueError if damaged."""
        from bgmon.recovery.validate import InvalidAction, validate_action

        try:
            actions = tuple(validate_action(a) for a in data.get("actions", []))
            return cls(
                id=str(data["id"]),
                task=str(data["task"]),
                task_id=str(data.get("task_id") or data["task"]),
                source=str(data["source"]),
                model=data.get("model"),
                degraded_reason=data.get("degraded_reason"),
                diagnosis=str(data.get("diagnosis", "")),
                confidence=float(data.get("confidence", 0.0)),
                actions=actions,
                refused=tuple(r for r in data.get("refused", []) if isinstance(r, dict)),
                created=str(data["created"]),
                patterns=tuple(patterns),
                basis=dict(basis or {}),
            )
        except (KeyError, TypeError, InvalidAction) as exc:
            raise ValueError(f"damaged proposal record: {exc}") from None


def basis_of(snapshot: TaskSnapshot) -> dict[str, Any]:
    """What a proposal was made for; a change means the pending proposal is out of date."""
    return {
        "pid": snapshot.pid,
        "badge": snapshot.health.badge.value,
        "status": snapshot.status,
        "rules": sorted({r.rule for r in snapshot.health.reasons}),
    }
