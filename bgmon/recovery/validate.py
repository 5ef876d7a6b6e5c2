"""The trust boundary: untrusted action dicts (a model's output) → actions, or a refusal.

Checked here: the kind is one of the closed set; arguments have the right types and ranges;
an argv is a list of words, never a shell string or a shell; pids are the task's own; a `run`
stays inside the task's directory; `restart` runs only the task's recorded command. Live state
(is the pid still alive and the task's) is checked again by the executor at approval time.
"""

from __future__ import annotations

import os
import signal as _signal
from pathlib import Path
from typing import Any

from bgmon.clip import flat
from bgmon.model import TaskSnapshot
from bgmon.recovery.proposal import (
    DEFAULT_GRACE,
    DEFAULT_RUN_TIMEOUT,
    KINDS,
    MAX_ACTIONS,
    MAX_DELAY,
    MAX_GRACE,
    MAX_NOTE,
    MAX_RUN_TIMEOUT,
    Action,
    Kill,
    Mark,
    Restart,
    Run,
    Signal,
)
from bgmon.recovery.redact import has_marker

# Programs that would turn an argv back into a shell command line.
_SHELLS = frozenset({"sh", "bash", "zsh", "dash", "ksh", "mksh", "fish", "csh", "tcsh", "busybox"})


class InvalidAction(ValueError):
    """Why an action dict was refused; the message is shown to the person."""


# --- validation of untrusted action dicts -----------------------------------------------------

_ALLOWED = {
    "kill": {"pid", "grace", "children"},
    "restart": {"pid", "grace", "delay", "argv", "cwd", "status_file", "children",
                "supervised"},
    "signal": {"pid", "signal"},
    "run": {"argv", "command", "cwd", "timeout"},  # "command": a common alias for argv
    "mark": {"note"},
}
_IGNORED = {"kind", "why", "effect", "args"}


def _number(raw: dict, name: str, default: float, low: float, high: float) -> float:
    value = raw.get(name, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        raise InvalidAction(f"{name} must be a number of seconds, not {value!r}")
    if not low <= value <= high:
        raise InvalidAction(f"{name} must be between {low:g} and {high:g} seconds, not {value:g}")
    return float(value)


def _pid(raw: dict, snapshot: TaskSnapshot | None, *, required: bool = True) -> int | None:
    value = raw.get("pid")
    if value is None and snapshot is not None:
        value = snapshot.pid
    if value is None:
        if required:
            raise InvalidAction("no pid: the task has no known process")
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidAction(f"pid must be a process id, not {value!r}")
    if value <= 1 and snapshot is None:
        # Reloading bgmon's own journal: keep the proposal (so approving it says why it cannot
        # run, not that it is missing); the executor refuses pid ≤ 1 whatever the record says.
        return value
    if value <= 1:
        raise InvalidAction(f"pid must be a process id, not {value!r} (init or the kernel)")
    if snapshot is not None:
        if snapshot.pid is None:
            raise InvalidAction(f"pid {value} is not this task's: the task has no known process")
        if value != snapshot.pid:
            raise InvalidAction(f"pid {value} is not this task's process (pid {snapshot.pid})")
    return value


def _argv_list(value: object, what: str) -> tuple[str, ...]:
    if isinstance(value, str):
        raise InvalidAction(
            f"{what} is a shell string ({value!r}), not an argv list; bgmon never runs a shell"
        )
    if not isinstance(value, list | tuple) or not value:
        raise InvalidAction(f"{what} must be a non-empty list of strings")
    if not all(isinstance(a, str) for a in value):
        raise InvalidAction(f"{what} must contain only strings")
    argv = tuple(value)
    if any("\0" in a for a in argv) or not argv[0]:
        raise InvalidAction(f"{what} has an empty program or a NUL byte")
    if len(argv) == 1 and any(c.isspace() for c in argv[0]):
        raise InvalidAction(
            f"{what} {list(argv)!r} is one string with spaces, a shell command line; "
            "give the program and each argument as separate words"
        )
    program = os.path.basename(argv[0])
    if program in _SHELLS or (program == "env" and any(os.path.basename(a) in _SHELLS for a in argv)):
        raise InvalidAction(f"{what} starts a shell ({program}); only a direct program is allowed")
    return argv


def task_cwd(snapshot: TaskSnapshot) -> str | None:
    """Where the task runs: its recorded cwd, else its directory (or a transcript's directory)."""
    if snapshot.cwd:
        return snapshot.cwd
    if snapshot.path:
        p = Path(snapshot.path)
        return str(p if p.is_dir() or not p.suffix else p.parent)
    return None


def status_file(snapshot: TaskSnapshot) -> str | None:
    """The task's status.json, if it has one (the restart writes the new pid there)."""
    for f in snapshot.files:
        if os.path.basename(f) == "status.json":
            return f
    if snapshot.path and os.path.isdir(snapshot.path):
        candidate = os.path.join(snapshot.path, "status.json")
        if os.path.isfile(candidate):
            return candidate
    return None


def supervised(snapshot: TaskSnapshot) -> bool:
    """Whether `bgmon run` started the task (its status.json names a supervisor), so a restart
    starts it under `bgmon run` again."""
    return "supervisorPid" in snapshot.fields and status_file(snapshot) is not None


def _run_cwd(raw: dict, snapshot: TaskSnapshot | None) -> str:
    base = task_cwd(snapshot) if snapshot is not None else None
    value = raw.get("cwd")
    if value is None:
        if base is None:
            raise InvalidAction("no working directory: the task has none recorded")
        return base
    if not isinstance(value, str) or not value:
        raise InvalidAction(f"cwd must be a directory path, not {value!r}")
    if base is None:
        if not os.path.isabs(value):
            raise InvalidAction(f"cwd {value!r} must be an absolute path")
        return os.path.normpath(value)
    cwd = os.path.normpath(os.path.join(base, value))
    # Only the task's directory or below: a model must not pick where things run.
    if cwd != os.path.normpath(base) and not cwd.startswith(os.path.normpath(base) + os.sep):
        raise InvalidAction(f"cwd {value} is outside the task's directory {base}")
    return cwd


def _alive(snapshot: TaskSnapshot | None) -> bool:
    """Whether the snapshot says the task's process runs (unknown counts as running). A pid
    ≤ 1 (init, the kernel) is never a task's: no process."""
    if snapshot is None or snapshot.pid is None or snapshot.pid <= 1:
        return False
    return snapshot.proc is None or snapshot.proc.alive


def _children(snapshot: TaskSnapshot | None, pid: int | None) -> int | None:
    if snapshot is None or snapshot.proc is None or pid != snapshot.proc.pid:
        return None
    return len(snapshot.proc.children)


def validate_action(raw: object, snapshot: TaskSnapshot | None = None) -> Action:
    """An untrusted action dict → an Action, checked against the task when `snapshot` is given.

    Without a snapshot (reloading bgmon's own journal) only the shape is checked; live state is
    checked again by the executor anyway.
    """
    if not isinstance(raw, dict):
        raise InvalidAction(f"an action must be an object, not {type(raw).__name__}")
    kind = raw.get("kind")
    if kind not in KINDS:
        raise InvalidAction(f"unknown action kind {kind!r} (allowed: {', '.join(KINDS)})")
    if isinstance(raw.get("args"), dict):  # accept {"kind": …, "args": {…}} as well as flat
        raw = {**raw["args"], **{k: v for k, v in raw.items() if k != "args"}}
    extra = set(raw) - _ALLOWED[kind] - _IGNORED
    if extra:
        raise InvalidAction(f"unexpected argument(s) for {kind}: {', '.join(sorted(extra))}")

    if kind == "kill":
        pid = _pid(raw, snapshot)
        assert pid is not None
        if snapshot is not None and not _alive(snapshot):
            raise InvalidAction(f"pid {pid} is not running any more; nothing to kill")
        children = raw.get("children") if snapshot is None else _children(snapshot, pid)
        return Kill(
            pid=pid,
            grace=_number(raw, "grace", DEFAULT_GRACE, 0, MAX_GRACE),
            children=children if isinstance(children, int) else None,
        )

    if kind == "restart":
        if snapshot is not None:
            if not snapshot.command:
                raise InvalidAction("the task has no recorded command, so it cannot be restarted")
            argv = tuple(snapshot.command)
            given = raw.get("argv")
            if given is not None and (not isinstance(given, list | tuple) or tuple(given) != argv):
                raise InvalidAction(
                    f"restart only runs the task's recorded command {list(argv)!r}, not {given!r}; "
                    "use `run` for another command"
                )
            if any("\0" in a for a in argv) or not argv[0]:
                raise InvalidAction(
                    f"the recorded command {list(argv)!r} has an empty program or a NUL byte"
                )
            if any(has_marker(a) for a in argv):
                raise InvalidAction(
                    "the recorded command had a secret in it, stored as [REDACTED…]: it cannot be "
                    "restarted as recorded; start it again by hand (or with `bgmon run`)"
                )
            cwd = task_cwd(snapshot)
            if cwd is None:
                raise InvalidAction("the task has no working directory to restart in")
            if not os.path.isabs(cwd):
                # Relative to what? Not to wherever bgmon happens to run.
                raise InvalidAction(f"the task's working directory {cwd!r} is not an absolute path")
            pid = _pid(raw, snapshot, required=False) if _alive(snapshot) else None
            sfile = status_file(snapshot)
            children = _children(snapshot, pid)
            under_run = supervised(snapshot)
        else:
            argv = _argv_list(raw.get("argv"), "argv")
            cwd = raw.get("cwd")
            if not isinstance(cwd, str) or not os.path.isabs(cwd):
                raise InvalidAction(f"cwd must be an absolute path, not {cwd!r}")
            pid = _pid(raw, None, required=False)
            sfile = raw.get("status_file") if isinstance(raw.get("status_file"), str) else None
            children = raw.get("children") if isinstance(raw.get("children"), int) else None
            under_run = raw.get("supervised") is True and sfile is not None
        return Restart(
            argv=argv,
            cwd=cwd,
            pid=pid,
            grace=_number(raw, "grace", DEFAULT_GRACE, 0, MAX_GRACE),
            delay=_number(raw, "delay", 0.0, 0, MAX_DELAY),
            status_file=sfile,
            children=children,
            supervised=under_run,
        )

    if kind == "signal":
        pid = _pid(raw, snapshot)
        assert pid is not None
        name = raw.get("signal")
        if not isinstance(name, str) or not name.strip():
            raise InvalidAction(f"signal must be a signal name such as SIGUSR1, not {name!r}")
        canon = name.strip().upper()
        if not canon.startswith("SIG"):
            canon = "SIG" + canon
        if canon not in _signal.Signals.__members__:
            raise InvalidAction(f"unknown signal {name!r}")
        if snapshot is not None and not _alive(snapshot):
            raise InvalidAction(f"pid {pid} is not running any more")
        return Signal(pid=pid, signal=canon)

    if kind == "run":
        argv = _argv_list(raw.get("argv", raw.get("command")), "argv")
        return Run(
            argv=argv,
            cwd=_run_cwd(raw, snapshot),
            timeout=_number(raw, "timeout", DEFAULT_RUN_TIMEOUT, 1, MAX_RUN_TIMEOUT),
        )

    note = raw.get("note")
    if not isinstance(note, str) or not note.strip():
        raise InvalidAction("mark needs a non-empty note")
    note = flat(note, MAX_NOTE)
    return Mark(note=note)


def validate_actions(
    raws: object, snapshot: TaskSnapshot | None = None
) -> tuple[tuple[Action, ...], tuple[dict[str, Any], ...]]:
    """Validate a list of untrusted action dicts: (accepted actions, refused [{raw, reason}])."""
    if not isinstance(raws, list):
        return (), ({"raw": raws, "reason": "actions must be a list"},)
    actions: list[Action] = []
    refused: list[dict[str, Any]] = []
    for raw in raws:
        if len(actions) >= MAX_ACTIONS:
            refused.append({"raw": raw, "reason": f"more than {MAX_ACTIONS} actions"})
            continue
        try:
            actions.append(validate_action(raw, snapshot))
        except InvalidAction as exc:
            refused.append({"raw": raw, "reason": str(exc)})
    return tuple(actions), tuple(refused)
