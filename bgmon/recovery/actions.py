"""Executing approved actions against live state.

A proposal can be minutes old when it is approved: the process may have exited, been restarted,
or its pid reused. So every argument is checked again right before it takes effect: the live
task still has that pid, the pid is not init's or the kernel's (≤ 1), the process is alive,
started neither after the proposal was made nor after the pid was recorded (`startedAt`, else
the last write of its status.json), belongs to the user who owns the task's status.json (the
current user for a task without one), and the directory exists. Nothing here runs a shell.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import orjson
import psutil

from bgmon import procs
from bgmon.clip import clip
from bgmon.model import TaskSnapshot
from bgmon.recovery.proposal import (
    RUN_LOG,
    Action,
    Kill,
    Mark,
    Proposal,
    Restart,
    Run,
    Signal,
    now_iso,
)
from bgmon.recovery.redact import child_env, has_marker, redact
from bgmon.recovery.validate import protected_pid
from bgmon.recovery.validate import status_file as task_status_file
from bgmon.timefmt import iso, parse_time

TAIL = 2000  # characters of output kept in a result
PID_TOLERANCE = 2.0  # seconds: process start times and the proposal clock may differ a little
KILL_WAIT = 3.0  # seconds to wait for SIGKILL to take effect


@dataclass(frozen=True, slots=True)
class ActionResult:
    kind: str
    ok: bool
    effect: str  # the action's description, as approved
    exit_code: int | None = None
    output_tail: str | None = None
    new_pid: int | None = None
    error: str | None = None
    detail: str | None = None  # what happened, in words
    skipped: bool = False  # not attempted because an earlier action failed

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "ok": self.ok, "effect": self.effect}
        for name in ("exit_code", "output_tail", "new_pid", "error", "detail"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.skipped:
            out["skipped"] = True
        return out


class ActionError(RuntimeError):
    """An action that cannot or did not take effect; the message is shown to the person."""


class TaskBusy(RuntimeError):
    pass


@contextlib.contextmanager
def task_lock(lock_dir: Path, task: str) -> Iterator[None]:
    """At most one action running per task, across threads and processes (flock on a file).

    Non-blocking: a second approval while one runs is refused at once rather than queued.
    """
    lock_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    name = hashlib.blake2b(task.encode(), digest_size=8).hexdigest() + ".lock"
    fd = os.open(lock_dir / name, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise TaskBusy(f"an action is already running for task {task}") from None
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _tail(text: str | bytes | None) -> str:
    if text is None:
        return ""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    text = text[-TAIL:]
    return redact(text)


def _refuse_low_pid(pid: int) -> None:
    """Init (1), the kernel (0), negative pids (process groups, every process), bgmon itself and
    its ancestors are never a task's process, whatever a status.json or a stored proposal says."""
    why = protected_pid(pid)
    if why is not None:
        raise ActionError(f"{why}; refused")


def _check_owner(pid: int, live: TaskSnapshot | None) -> None:
    """The live task must still name `pid` as its process."""
    _refuse_low_pid(pid)
    if live is None:
        raise ActionError("the task is not found any more")
    if live.pid != pid:
        now = f"pid {live.pid}" if live.pid is not None else "no process"
        raise ActionError(
            f"the task now has {now}, not pid {pid} (restarted or replaced since the proposal); "
            "request a new proposal"
        )


def pid_recorded(live: TaskSnapshot | None) -> tuple[float, str] | None:
    """(when, what says so): a time by which the task's pid had been recorded, so its process
    must have started by then. `startedAt` in its status.json (written with the pid: by bgmon's
    restart, by `bgmon run`), else the status file's last write (the pid was in the file by
    then). Never `timestamp`: that is when the task was created, and a queued task, or one an
    orchestrator restarted, starts its process long after."""
    if live is None:
        return None
    started = parse_time(live.fields.get("startedAt"))
    if started is not None:
        return started, "the task's run started"
    sfile = task_status_file(live)
    if sfile is not None:
        try:
            return os.stat(sfile).st_mtime, f"{sfile} recorded it"
        except OSError:
            pass
    return None


def task_owner(live: TaskSnapshot | None) -> tuple[int, str]:
    """(uid, what it is) of the user a task's process must belong to: the owner of the task's
    status.json (whoever can write the pid there), else the current user."""
    sfile = task_status_file(live) if live is not None else None
    if sfile is not None:
        try:
            return os.stat(sfile).st_uid, f"the owner of {sfile}"
        except OSError:
            pass
    return os.getuid(), "the current user"


def _check_uid(proc: psutil.Process, live: TaskSnapshot | None) -> None:
    """Refuse a process of another user: a status.json can name any pid, and a monitor run by
    root (or a user tricked by another's status.json) must not signal what is not the task's."""
    try:
        uid = proc.uids().real
    except psutil.NoSuchProcess:
        return  # gone: nothing will be signalled
    except psutil.AccessDenied:
        raise ActionError(f"no permission to inspect pid {proc.pid}") from None
    owner, what = task_owner(live)
    if uid != owner:
        raise ActionError(
            f"pid {proc.pid} belongs to uid {uid}, not to uid {owner} ({what}); refused"
        )
    if uid != os.getuid() and os.geteuid() != 0:
        raise ActionError(f"pid {proc.pid} belongs to uid {uid}, not to you; refused")


def _find(pid: int, since: float, live: TaskSnapshot | None = None) -> psutil.Process | None:
    """The process `pid`, None if it has exited; refused if it is not the task's: the pid was
    reused (the process started after the proposal was made or after the task started) or it
    belongs to another user (see `_check_uid`)."""
    _refuse_low_pid(pid)
    try:
        proc = psutil.Process(pid)
        if procs.running(pid) is False:  # exited (a zombie has too)
            return None
        started = proc.create_time()
    except psutil.NoSuchProcess:
        return None
    except psutil.AccessDenied:
        raise ActionError(f"no permission to inspect pid {pid}") from None
    if since and started > since + PID_TOLERANCE:
        raise ActionError(
            f"pid {pid} now belongs to a process started after the proposal (pid reused); refused"
        )
    recorded = pid_recorded(live)
    if recorded is not None and started > recorded[0] + PID_TOLERANCE:
        raise ActionError(
            f"pid {pid} belongs to a process started at {iso(started)}, after {recorded[1]} "
            f"at {iso(recorded[0])}: the pid was reused by another program; refused"
        )
    _check_uid(proc, live)
    return proc


def _live_process(pid: int, live: TaskSnapshot | None, since: float) -> psutil.Process:
    """The process `pid` if it is still the task's: same pid in the live snapshot, alive,
    started before the proposal and the task's run, and of the task's user."""
    _check_owner(pid, live)
    proc = _find(pid, since, live)
    if proc is None:
        raise ActionError(f"pid {pid} is not running any more")
    return proc


def stop_tree(proc: psutil.Process, grace: float) -> str:
    """SIGTERM the process and all its descendants, SIGKILL what is left after `grace` s."""
    try:
        signalled, killed, left = procs.stop_tree(proc, grace, KILL_WAIT)
    except psutil.NoSuchProcess:
        return f"pid {proc.pid} had already exited"
    if left:
        raise ActionError(f"still running after SIGKILL: {', '.join(map(str, left))}")
    text = f"stopped pid {proc.pid} and {signalled - 1} descendant(s)"
    if killed:
        text += f"; SIGKILL needed for {', '.join(map(str, killed))}"
    return text


def _spawn(argv: list[str], cwd: str, stdout: Any, stderr: Any) -> subprocess.Popen:
    """An approved action's program, started in its own session (so stopping its group reaches
    all it started, and it outlives bgmon's terminal), with no stdin, no inherited descriptors
    and bgmon's secrets out of its environment; never through a shell."""
    try:
        return subprocess.Popen(argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=stdout,
                                stderr=stderr, start_new_session=True, close_fds=True,
                                env=child_env())
    except FileNotFoundError:
        raise ActionError(f"program not found: {argv[0]}") from None


def write_pid(status_file: str, pid: int, started: float | None = None) -> bool:
    """Write the new pid into the task's status.json `pid` field, and when it started into
    `startedAt` (else the new process would look like a reused pid: it started after the task),
    atomically (temp file + rename); the one write bgmon makes into an agent's files. False if
    it has no `pid` field."""
    path = Path(status_file)
    try:
        data = orjson.loads(path.read_bytes())  # a ValueError, never a RecursionError, if deep
    except (OSError, ValueError):
        return False
    if not isinstance(data, dict) or "pid" not in data:
        return False
    data["pid"] = pid
    data["startedAt"] = now_iso(started)
    try:
        blob = orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE)
    except orjson.JSONEncodeError:  # nested deeper than orjson writes: leave the file as it is
        return False
    fd, tmp = tempfile.mkstemp(prefix=".status.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())
        with contextlib.suppress(OSError):
            os.chmod(tmp, path.stat().st_mode & 0o777)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return True


def supervised_argv(a: Restart) -> list[str]:
    """`bgmon run` for a task it started before, with the settings its status.json recorded
    (same directory, so the same task key and id), quiet: the output goes to its event log."""
    assert a.status_file is not None
    try:
        recorded = orjson.loads(Path(a.status_file).read_bytes())
    except (OSError, ValueError):
        recorded = {}
    recorded = recorded if isinstance(recorded, dict) else {}
    argv = [sys.executable, "-m", "bgmon", "run", "--dir", os.path.dirname(a.status_file),
            "--quiet"]
    if recorded.get("restartPolicy") in ("no", "on-failure", "always"):
        argv += ["--restart", recorded["restartPolicy"]]
    for key, flag in (("stall", "--stall"), ("heartbeat", "--heartbeat")):
        value = recorded.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
            argv += [flag, f"{value:g}s"]
    if recorded.get("autoRecover") is True:
        # Only a task bgmon run opted in keeps its opt-in: approving one restart of a task whose
        # status.json merely says autoRecover (a cloned file) must not opt it in.
        from bgmon.recovery.auto import opt_in_record

        if opt_in_record(a.status_file) is not None:
            argv.append("--auto-recover")
    return [*argv, "--", *a.argv]


def wait_supervised(status_file: str, supervisor: int, timeout: float = 5.0) -> bool:
    """Wait until the new `bgmon run` has taken over the status file (so `--once` right after
    the approval shows the task running, not the old failure)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            data = orjson.loads(Path(status_file).read_bytes())
        except (OSError, ValueError):
            data = None
        if isinstance(data, dict) and data.get("supervisorPid") == supervisor:
            return True
        time.sleep(0.05)
    return False


def describe_process(pid: int) -> str:
    """`pid 4242 is python3 (python3 -m pytest -x), user me, started 2026-12-03 07:20:01`:
    which process an approval would act on, so a person sees more than a number."""
    try:
        proc = psutil.Process(pid)
        with proc.oneshot():
            name, cmdline = proc.name(), proc.cmdline()
            user, started = proc.username(), proc.create_time()
    except psutil.NoSuchProcess:
        return f"pid {pid} is not running now"
    except psutil.Error:
        return f"pid {pid} cannot be inspected (no permission)"
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started))
    line = clip(shlex.join(cmdline), 300) if cmdline else "no command line"
    return f"pid {pid} is {name} ({line}), user {user}, started {when}"


def live_effect(action: Action) -> str:
    """The action's effect against the live process tree (children counted now) and which
    process that is, for the confirmation prompt; the stored description when the process
    cannot be inspected."""
    pid = getattr(action, "pid", None)
    if isinstance(pid, int):
        why = protected_pid(pid)
        if why is not None:
            return action.describe() + f" (refused when run: {why})"
    if pid is None:
        return action.describe()
    text = action.describe()
    if isinstance(action, Kill | Restart):
        try:
            children = len(psutil.Process(pid).children(recursive=True))
        except psutil.Error:
            return action.describe() + f" (pid {pid} is not running now)"
        text = replace(action, children=children).describe()
    return f"{text}; {describe_process(pid)}"


class Executor:
    """Runs one approved action. `output_dir`: where a restarted command's output goes (bgmon's
    own directory, never the agent's); None sends it to /dev/null."""

    def __init__(
        self,
        output_dir: Path | None = None,
        sleep: Callable[[float], None] = time.sleep,
        announce: Callable[[str], None] | None = None,
    ) -> None:
        self.output_dir = output_dir
        self._sleep = sleep
        # Told what a long step waits for (the CLI prints it; the TUI shows it while working).
        self.announce: Callable[[str], None] = announce or (lambda text: None)

    def execute(self, action: Action, proposal: Proposal, live: TaskSnapshot | None) -> ActionResult:
        effect = action.describe()
        try:
            if isinstance(action, Kill):
                return self._kill(action, proposal, live, effect)
            if isinstance(action, Restart):
                return self._restart(action, proposal, live, effect)
            if isinstance(action, Signal):
                return self._signal(action, proposal, live, effect)
            if isinstance(action, Run):
                return self._run(action, effect)
            if isinstance(action, Mark):
                return ActionResult("mark", True, effect, detail=f"marked {action.note!r}")
            raise ActionError(f"unknown action {action!r}")
        except ActionError as exc:
            return ActionResult(action.kind, False, effect, error=redact(str(exc)))
        except OSError as exc:
            return ActionResult(action.kind, False, effect, error=redact(f"{exc.strerror or exc}"))

    def _kill(self, a: Kill, p: Proposal, live: TaskSnapshot | None, effect: str) -> ActionResult:
        proc = _live_process(a.pid, live, p.created_ts)
        return ActionResult("kill", True, effect, detail=stop_tree(proc, a.grace))

    def _signal(self, a: Signal, p: Proposal, live: TaskSnapshot | None, effect: str) -> ActionResult:
        proc = _live_process(a.pid, live, p.created_ts)
        try:
            proc.send_signal(signal.Signals[a.signal])
        except psutil.NoSuchProcess:
            raise ActionError(f"pid {a.pid} exited before the signal was sent") from None
        except psutil.AccessDenied:
            raise ActionError(f"no permission to signal pid {a.pid}") from None
        return ActionResult("signal", True, effect, detail=f"sent {a.signal} to pid {a.pid}")

    def _restart(
        self, a: Restart, p: Proposal, live: TaskSnapshot | None, effect: str
    ) -> ActionResult:
        if any(has_marker(arg) for arg in a.argv):
            raise ActionError("the stored command contains redacted text; request a new proposal")
        if not os.path.isdir(a.cwd):
            raise ActionError(f"directory {a.cwd} does not exist")
        steps = []
        if a.pid is not None:
            _check_owner(a.pid, live)
            proc = _find(a.pid, p.created_ts, live)
            # Exited since the proposal: nothing to stop, the start still makes sense.
            steps.append(stop_tree(proc, a.grace) if proc else f"pid {a.pid} had already exited")
        elif (live is not None and live.pid is not None and live.pid > 1
              and (live.proc is None or live.proc.alive)):
            raise ActionError(
                f"the task has a running process now (pid {live.pid}); request a new proposal"
            )
        if a.delay:
            # Said first: a backoff of 30 s must not look like a hang.
            self.announce(f"waiting {a.delay:g}s before the restart (backoff)…")
            self._sleep(a.delay)
            steps.append(f"waited {a.delay:g}s")
        started = time.time()
        if a.supervised and a.status_file:
            new_pid, _ = self._start(a, supervised_argv(a))  # its own messages only: --quiet
            task_dir = os.path.dirname(a.status_file)
            steps.append(f"started bgmon run (pid {new_pid}) for the command")
            if wait_supervised(a.status_file, new_pid):
                steps.append(f"it is running and keeps {a.status_file} current")
            else:
                steps.append(f"it has not written {a.status_file} yet")
            steps.append(f"output: {os.path.join(task_dir, RUN_LOG)}")
        else:
            new_pid, output = self._start(a, list(a.argv))
            steps.append(f"started pid {new_pid}")
            if a.status_file:
                if write_pid(a.status_file, new_pid, started):
                    steps.append(f"wrote pid {new_pid} and status running to {a.status_file}")
                else:
                    steps.append(f"{a.status_file} has no pid field; left unchanged")
            steps.append(f"output: {output or '/dev/null'}")
        return ActionResult("restart", True, effect, new_pid=new_pid, detail="; ".join(steps))

    def _start(self, a: Restart, argv: list[str]) -> tuple[int, str | None]:
        """Start `argv` detached → (pid, the file its output goes to: in bgmon's own folder,
        never the agent's; None when it goes to /dev/null)."""
        out: Any = subprocess.DEVNULL
        log = None
        output = None
        if self.output_dir is not None:
            # The output may hold anything the task prints: for the user only.
            self.output_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.chmod(self.output_dir, 0o700)
            stamp = time.strftime("%Y%m%d-%H%M%S")
            base = os.path.basename(a.argv[0]) or "task"
            path = self.output_dir / f"{base}-{stamp}-{os.getpid()}.log"
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            log = os.fdopen(fd, "ab")
            out, output = log, str(path)
        try:
            # detached: its own session survives bgmon and its terminal
            child = _spawn(argv, a.cwd, out, subprocess.STDOUT if log is not None else out)
        finally:
            if log is not None:
                log.close()
        # Reap it when it exits while bgmon still runs, so it does not linger as a zombie.
        threading.Thread(target=child.wait, name=f"reap-{child.pid}", daemon=True).start()
        return child.pid, output

    def _run(self, a: Run, effect: str) -> ActionResult:
        if not os.path.isdir(a.cwd):
            raise ActionError(f"directory {a.cwd} does not exist")
        # its own session and group, so a timeout kills all it started
        child = _spawn(list(a.argv), a.cwd, subprocess.PIPE, subprocess.STDOUT)
        try:
            out, _ = child.communicate(timeout=a.timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)
            try:
                out, _ = child.communicate(timeout=KILL_WAIT)
            except subprocess.TimeoutExpired:  # something escaped the group and holds the pipe
                child.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    child.wait(KILL_WAIT)
                out = b""
            return ActionResult(
                "run", False, effect, exit_code=child.returncode, output_tail=_tail(out),
                error=f"timed out after {a.timeout:g}s; killed",
            )
        code = child.returncode
        return ActionResult(
            "run", code == 0, effect, exit_code=code, output_tail=_tail(out),
            error=None if code == 0 else f"exited with code {code}",
            detail=f"{a.argv[0]} exited with code {code}",
        )
