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

import psutil

from bgmon.clip import flat
from bgmon.jsondepth import bounded
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

# Programs that run a command line (a shell, or a shell on another host or as another user).
_SHELLS = frozenset({
    "sh", "bash", "rbash", "zsh", "dash", "ksh", "mksh", "pdksh", "yash", "ash", "fish", "csh",
    "tcsh", "busybox", "toybox", "pwsh", "powershell", "nu", "xonsh", "elvish", "rc", "es",
    "su", "sudo", "doas", "runuser", "ssh", "rsh", "script", "screen", "tmux", "watch", "eval",
    "awk", "gawk", "mawk", "nawk",  # an inline program that may call system()
})
# Programs that run their arguments as another program: the words after them are checked too.
_WRAPPERS = frozenset({
    "env", "timeout", "nice", "nohup", "setsid", "stdbuf", "time", "ionice", "chrt", "taskset",
    "unbuffer", "flock", "xargs", "strace", "ltrace", "firejail", "chroot", "systemd-run",
    "caffeinate", "nsenter", "unshare", "prlimit", "sg", "numactl", "cgexec", "exec", "command",
    "find", "parallel", "gdb", "valgrind", "catchsegv", "faketime", "torsocks", "proxychains",
})
# Interpreters that take a program inline (`python -c`, `perl -e`, `node --eval`).
_INTERPRETERS = frozenset({
    "python", "pypy", "perl", "ruby", "node", "nodejs", "deno", "bun", "php", "lua", "luajit",
    "rscript", "r", "julia", "osascript", "tclsh", "wish", "expect", "jshell", "groovy",
})
_INLINE_FLAGS = frozenset({"--eval", "--command", "--exec", "--print", "--execute", "-r"})


def program_name(word: str) -> str:
    """`/usr/bin/python3.11` → `python`: the basename, lower case, version suffix dropped."""
    return os.path.basename(word).lower().rstrip("0123456789.-") or os.path.basename(word)


def _inline_code(argv: tuple[str, ...]) -> bool:
    """An interpreter given its program on the command line (-c, -e, -Bc, --eval …)."""
    for word in argv[1:]:
        if word == "--":
            return False
        if word in _INLINE_FLAGS or word.startswith(("--eval=", "--command=")):
            return True
        if word.startswith("-") and not word.startswith("--") and ("c" in word or "e" in word):
            return True
        if not word.startswith("-"):
            return False  # a script file: the interpreter reads it, not an inline program
    return False


def shell_problem(argv: tuple[str, ...], *, inline: bool) -> str | None:
    """Why `argv` would run a command line instead of one program, or None. `inline`: also
    refuse an interpreter given its program on the command line (a model must not write code
    for bgmon to run; a task's own recorded command may be `python -c …`)."""
    def problem(i: int) -> str | None:
        word = argv[i]
        name = program_name(word)
        if name in _SHELLS:
            return f"starts a shell ({os.path.basename(word)}); only a direct program is allowed"
        if inline and name in _INTERPRETERS and _inline_code(argv[i:]):
            return (f"gives {os.path.basename(word)} a program as code on the command line; "
                    "only a direct program is allowed")
        return None

    first = problem(0)
    if first is not None or program_name(argv[0]) not in _WRAPPERS:
        return first
    # A wrapper runs one of its later words as a program (`timeout 5 sh -c …`): check them all.
    for i in range(1, len(argv)):
        found = problem(i)
        if found is not None:
            return found
    return None


class InvalidAction(ValueError):
    """Why an action dict was refused; the message is shown to the person."""


def protected_pid(pid: int) -> str | None:
    """Why `pid` may never be a recovery target, or None: the kernel and init (≤ 1), bgmon
    itself and every process above it (its shell, terminal, tmux, the TUI's parent …)."""
    if pid <= 1:
        return f"pid {pid} is not a task's process (0 and 1 are the kernel and init)"
    if pid == os.getpid():
        return f"pid {pid} is bgmon itself"
    try:
        above = {p.pid for p in psutil.Process().parents()}
    except psutil.Error:
        above = {os.getppid()}
    if pid in above:
        return f"pid {pid} is a parent of bgmon (the shell or terminal it runs in)"
    return None


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
    why = protected_pid(value)
    if why is not None:
        raise InvalidAction(f"{why}; refused")
    if snapshot is not None:
        if snapshot.pid is None:
            raise InvalidAction(f"pid {value} is not this task's: the task has no known process")
        if value != snapshot.pid:
            raise InvalidAction(f"pid {value} is not this task's process (pid {snapshot.pid})")
    return value


def _argv_list(value: object, what: str, inline: bool = True) -> tuple[str, ...]:
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
    problem = shell_problem(argv, inline=inline)
    if problem is not None:
        raise InvalidAction(f"{what} {problem}")
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


def _inside(path: str, base: str) -> bool:
    real, root = os.path.realpath(path), os.path.realpath(base)
    return real == root or real.startswith(root.rstrip(os.sep) + os.sep)


def _path_like(word: str) -> bool:
    return word.startswith(("/", "~")) or word == ".." or word.startswith("../") or "/.." in word


def _confine_args(argv: tuple[str, ...], cwd: str, base: str) -> None:
    """Every argument that names a path (`/x`, `~/x`, `../x`, `--out=/x`, a symlink) must stay
    in the task's directory: a model must not point a program at files elsewhere. The program
    itself may be absolute (`/usr/bin/make`); `/dev/null` is always fine."""
    for word in argv[1:]:
        candidates = [word]
        if word.startswith("-") and "=" in word:
            candidates = [word.split("=", 1)[1]]
        for cand in candidates:
            if cand == "/dev/null" or not cand:
                continue
            full = os.path.join(cwd, os.path.expanduser(cand))
            symlink = not _path_like(cand) and os.path.islink(full)
            if (_path_like(cand) or symlink) and not _inside(full, base):
                raise InvalidAction(
                    f"argument {word!r} points outside the task's directory {base}; "
                    "run works only on the task's own files"
                )


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
            # The same check the journal's reader applies: what is proposed can be approved.
            _argv_list(list(argv), f"the recorded command {list(argv)!r}", inline=False)
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
            argv = _argv_list(raw.get("argv"), "argv", inline=False)
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
        cwd = _run_cwd(raw, snapshot)
        base = task_cwd(snapshot) if snapshot is not None else None
        if base is not None:
            _confine_args(argv, cwd, base)
        return Run(
            argv=argv,
            cwd=cwd,
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
        return (), ({"raw": bounded(raws), "reason": "actions must be a list"},)
    actions: list[Action] = []
    refused: list[dict[str, Any]] = []
    for raw in raws:
        if len(actions) >= MAX_ACTIONS:
            refused.append({"raw": bounded(raw), "reason": f"more than {MAX_ACTIONS} actions"})
            continue
        try:
            actions.append(validate_action(raw, snapshot))
        except InvalidAction as exc:
            # Kept for the journal and the panel: bounded, so writing it never fails.
            refused.append({"raw": bounded(raw), "reason": str(exc)})
    return tuple(actions), tuple(refused)
