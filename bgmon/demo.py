"""`bgmon demo`: simulated background tasks, as real processes, then the TUI on them.

A workspace (a temporary directory, or `--dir`, which is kept) gets one task per entry of TASKS
under `.worktrees/NAME/`, each run by `bgmon/demo_agent.py` in its own session (process group).
They write `status.json` and event logs exactly as real agents do, so the monitor reads them
through the ordinary worktree source and judges them with the ordinary rules:

  fix-login        steady progress                      healthy
  migrate-db       tool calls failing in a row          struggling   (child of ship-release)
  write-changelog  finishes                             completed    (child of ship-release)
  ship-release     a parent waiting on its children    struggling   (rolled up from migrate-db)
  upgrade-deps     quiet while a child process works    healthy, busy (silent past stuck_after)
  refactor-api     the same call again and again        stuck        (loop)
  build-assets     killed while `status` says running   failed       (process exited)

The monitor runs with a short `stuck_after` (DEMO_STUCK_AFTER / speed) so that the busy task
is seen silent for longer than that within seconds, yet healthy because its process tree uses CPU.

Whatever way the demo ends (normal exit, exception, Ctrl-C, SIGTERM, SIGHUP) every process it
started is stopped (process groups, then any leftover agent found by its command line, such as
one that recovery restarted) and the temporary workspace is removed. Should the demo itself be
killed with SIGKILL, its agents notice within a second and stop by themselves.

Programmatic use (tests, screenshots): `with start_demo(dir, speed) as demo: collect(demo.config())`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import psutil

from bgmon.cli import EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, exit_for_signal, print_once
from bgmon.config import Config, ConfigError, load_config
from bgmon.demo_agent import LOG_NAME, MARKER, iso_ms, pid_alive, read_owner, write_json_atomic
from bgmon.parser import Parser

AGENT_SCRIPT = Path(__file__).resolve().with_name("demo_agent.py")
DEMO_STUCK_AFTER = 20.0  # seconds at speed 1: the monitor's stuck_after in the demo
ONCE_WAIT = 26.0  # seconds at speed 1 that --once lets the agents run before looking
ONCE_SPEED = 4.0  # --once's default speed (a look after ~6.5 s)
MAX_SPEED = 20.0
STOP_GRACE = 3.0  # seconds between SIGTERM and SIGKILL


@dataclass(frozen=True, slots=True)
class DemoTask:
    name: str
    id: str
    role: str  # see bgmon/demo_agent.py
    parent: str | None = None  # id of the parent task
    badge: str = "healthy"  # what bgmon should show once the demo has run a little
    rule: str | None = None  # … and the first reason's rule id


TASKS: tuple[DemoTask, ...] = (
    DemoTask("ship-release", "bg_5e1ea5", "coordinator", badge="struggling", rule="rollup"),
    DemoTask("migrate-db", "bg_77e1d0", "failing", parent="bg_5e1ea5", badge="struggling"),
    DemoTask("write-changelog", "bg_c4a2f1", "complete", parent="bg_5e1ea5", badge="completed",
             rule="status.completed"),
    DemoTask("fix-login", "bg_3f2a9c", "steady"),
    DemoTask("upgrade-deps", "bg_9b04e7", "busy", rule="busy"),
    DemoTask("refactor-api", "bg_1d6f38", "loop", badge="stuck", rule="stuck.loop"),
    DemoTask("build-assets", "bg_e8305b", "crash", badge="failed", rule="process.exited"),
)


def demo_stuck_after(speed: float) -> float:
    return max(1.0, DEMO_STUCK_AFTER / speed)


def agent_command(role: str, task_dir: Path, speed: float) -> list[str]:
    """The argv that (re)starts one simulated agent: recorded as the task's `command`."""
    return [sys.executable, str(AGENT_SCRIPT), role, str(task_dir), "--speed", f"{speed:g}"]


class DemoHandle:
    """A running demo workspace. `stop()` (idempotent; also on `with` exit) ends it."""

    def __init__(self, root: Path, speed: float, keep: bool) -> None:
        self.root = root
        self.speed = speed
        self.keep = keep
        self.procs: dict[str, subprocess.Popen] = {}  # task name → its agent
        self._stopped = False
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._reaper = threading.Thread(target=self._reap, name="bgmon-demo-reaper", daemon=True)

    # -- facts -------------------------------------------------------------------------------

    @property
    def stuck_after(self) -> float:
        return demo_stuck_after(self.speed)

    @property
    def tasks(self) -> tuple[DemoTask, ...]:
        return TASKS

    def task_dir(self, name: str) -> Path:
        return self.root / ".worktrees" / name

    @property
    def pids(self) -> dict[str, int]:
        return {name: p.pid for name, p in self.procs.items()}

    def config(self, base: Config | None = None) -> Config:
        """A monitor configuration for this workspace alone, with the demo's short stuck_after
        (and process looks frequent enough for it: a busy tree is seen well within it)."""
        base = base or Config()
        return replace(
            base,
            roots=(str(self.root),),
            sources=("worktrees",),
            git=False,
            proc_interval=min(base.proc_interval, self.stuck_after / 4),
            thresholds=replace(base.thresholds, stuck_after=self.stuck_after),
        )

    # -- life --------------------------------------------------------------------------------

    def _start(self) -> None:
        (self.root / ".worktrees").mkdir(parents=True, exist_ok=True)
        (self.root / MARKER).write_text(f"{os.getpid()}\n", "utf-8")
        now = iso_ms(time.time())
        for task in TASKS:
            d = self.task_dir(task.name)
            if d.exists():  # a previous demo in the same --dir: start afresh
                shutil.rmtree(d)
            (d / "logs").mkdir(parents=True)
            argv = agent_command(task.role, d, self.speed)
            fields: dict = {
                "id": task.id, "name": task.name, "status": "created", "timestamp": now,
                "updatedAt": now, "log": LOG_NAME, "cwd": str(d), "command": argv,
            }
            if task.parent:
                fields["parent"] = task.parent
            write_json_atomic(str(d / "status.json"), fields)
        for task in TASKS:
            d = self.task_dir(task.name)
            with open(d / "logs" / "stderr.txt", "ab") as err:
                self.procs[task.name] = subprocess.Popen(
                    agent_command(task.role, d, self.speed),
                    cwd=d,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=err,
                    start_new_session=True,  # its own process group: stopped as a whole
                    close_fds=True,
                )
        self._reaper.start()

    def _reap(self) -> None:
        """Collect agents that exit (the crashing one) so they never linger as zombies."""
        while not self._done.wait(0.2):
            for proc in list(self.procs.values()):
                proc.poll()

    def strays(self) -> list[psutil.Process]:
        """Agent processes working in this workspace that this handle did not start (or their
        children): a restarted agent, the busy agent's child."""
        own = {p.pid for p in self.procs.values()} | {os.getpid()}
        root = str(self.root)
        out = []
        for proc in psutil.process_iter(["cmdline"]):
            if proc.pid in own:
                continue
            cmd = proc.info.get("cmdline") or []
            is_agent = any(a.endswith("demo_agent.py") or a == "bgmon.demo_agent" for a in cmd)
            if is_agent and any(a == root or a.startswith(root + os.sep) for a in cmd):
                out.append(proc)
        return out

    def stop(self, grace: float = STOP_GRACE) -> None:
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        self._done.set()
        with contextlib.suppress(OSError):
            (self.root / MARKER).unlink()  # agents (even restarted ones) now stop by themselves
        live = [p for p in self.procs.values() if p.poll() is None]
        for proc in live:
            _killpg(proc.pid, signal.SIGTERM)
        strays = self.strays()
        for stray in strays:
            with contextlib.suppress(psutil.Error):
                stray.terminate()
        deadline = time.monotonic() + grace
        for proc in live:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        _, alive = psutil.wait_procs(strays, timeout=max(0.0, deadline - time.monotonic()))
        # Whatever is left now (or was started meanwhile) gets no more grace.
        alive = list({p.pid: p for p in (*alive, *self.strays())}.values())
        for stray in alive:
            with contextlib.suppress(psutil.Error):
                stray.kill()
        psutil.wait_procs(alive, timeout=2.0)
        for proc in self.procs.values():
            proc.poll()
        if not self.keep:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> DemoHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _killpg(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


class DemoError(Exception):
    """The demo cannot start; the message says why."""


def start_demo(dir: str | os.PathLike | None = None, speed: float = 1.0) -> DemoHandle:
    """Create the workspace (a new temporary directory unless `dir` is given; `dir` is kept)
    and start every simulated agent. The caller must `stop()` the handle (or use `with`)."""
    if not 0 < speed <= MAX_SPEED:
        raise ValueError(f"speed must be above 0 and at most {MAX_SPEED:g}, not {speed:g}")
    if dir is None:
        root, keep = Path(tempfile.mkdtemp(prefix="bgmon-demo-")).resolve(), False
    else:
        root, keep = Path(dir).expanduser().resolve(), True
        owner = read_owner(str(root))
        if owner is not None and owner != os.getpid() and pid_alive(owner):
            raise DemoError(f"another bgmon demo (pid {owner}) runs in {root}; stop it first "
                            f"(or remove {root / MARKER} if that pid is not a demo)")
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DemoError(f"cannot create {root}: {exc.strerror or exc}") from None
    handle = DemoHandle(root, speed, keep)
    try:
        handle._start()
    except BaseException:
        handle.stop()
        raise
    return handle


# -- the command ---------------------------------------------------------------------------------


class _Terminated(Exception):
    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _speed(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value <= MAX_SPEED:
        raise argparse.ArgumentTypeError(f"must be above 0 and at most {MAX_SPEED:g}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="bgmon demo",
        description="Start simulated background tasks (real processes writing status.json and "
        "event logs: one healthy, one struggling, one busy in a child process, one stuck in a "
        "loop, one whose process dies, one completed, and a parent with children), then open "
        "the monitor on them. Everything it started is stopped on exit.",
    )
    p.add_argument("--dir", type=Path, help="create the workspace here and keep it afterwards "
                   "(default: a temporary directory, removed on exit)")
    p.add_argument("--once", action="store_true", help="let the tasks run a few seconds, print "
                   "them as `bgmon --once` does, and exit (status 1: the demo has faults)")
    p.add_argument("--json", action="store_true", help="with --once: JSON output")
    p.add_argument("--no-tui", action="store_true", help="no screen: keep the tasks running and "
                   "print each badge change until interrupted")
    p.add_argument("--speed", type=_speed, help=f"run the simulation X times faster (default 1; "
                   f"{ONCE_SPEED:g} with --once); the demo's stuck-after is {DEMO_STUCK_AFTER:g}s / X")
    return p


def _has_terminal() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty()


def _load_tui() -> Callable[[Config], int]:
    from bgmon.views.tui.app import run_tui

    return run_tui


def _base_config() -> Config:
    """The person's own config file (model, reading limits…), defaults if it is unusable."""
    try:
        config, _ = load_config(None)
    except ConfigError as exc:
        print(f"bgmon demo: ignoring the config file: {exc}", file=sys.stderr)
        config = Config()
    return config


def _sleep(seconds: float) -> None:
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        time.sleep(min(0.2, left))


def _once(handle: DemoHandle, config: Config, as_json: bool) -> int:
    wait = ONCE_WAIT / handle.speed
    print(f"bgmon demo: {len(TASKS)} simulated tasks in {handle.root} (speed {handle.speed:g}, "
          f"stuck after {handle.stuck_after:g}s); looking in {wait:.1f}s", file=sys.stderr, flush=True)
    _sleep(wait)
    code = print_once(config, as_json)  # the same picture `bgmon --once` prints
    sys.stdout.flush()
    return code


def _follow_text(handle: DemoHandle, config: Config) -> int:
    """No screen: say where the tasks are, then print each task as it appears or changes badge."""
    from bgmon.engine import Monitor
    from bgmon.views.terminal import console as terminal_console
    from bgmon.views.text import task_line

    console = terminal_console(sys.stdout, highlight=False, soft_wrap=True, emoji=False)
    try:
        console.print(f"bgmon demo: {len(TASKS)} simulated tasks running in {handle.root}")
        console.print("watch them from another terminal with:  bgmon --no-claude --no-codex "
                      f"--stuck-after {handle.stuck_after:g}s {handle.root}")
        console.print("Ctrl-C stops them" + ("." if handle.keep else " and removes the workspace."))
        sys.stdout.flush()
        monitor = Monitor(config)
        while True:
            monitor.sweep()
            monitor.look_procs()
            for change in monitor.evaluate():
                if change.kind in ("added", "health") and change.snapshot is not None:
                    console.print(task_line(change.snapshot))
            sys.stdout.flush()
            _sleep(1.0)
    except KeyboardInterrupt:
        return EXIT_OK


def _run(args: argparse.Namespace, speed: float, tui: bool) -> int:
    base = _base_config()
    handle = start_demo(args.dir, speed)
    try:
        config = handle.config(base)
        if args.once:
            return _once(handle, config, args.json)
        if tui:
            try:
                run_tui = _load_tui()
            except ImportError as exc:
                print(f"bgmon demo: the TUI is not available ({exc}); following the tasks as text",
                      file=sys.stderr)
            else:
                return run_tui(config)
        return _follow_text(handle, config)
    finally:
        _shield()  # a second Ctrl-C or SIGTERM must not cut the clean-up short
        handle.stop()
        if handle.keep:
            print(f"bgmon demo: stopped the simulated tasks; workspace kept in {handle.root}",
                  file=sys.stderr)


_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def _shield() -> None:
    if threading.current_thread() is threading.main_thread():
        for sig in (*_SIGNALS, signal.SIGINT):
            signal.signal(sig, signal.SIG_IGN)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.json and not args.once:
        parser.error("--json goes with --once")
    if args.once and args.no_tui:
        parser.error("--once and --no-tui do not go together")
    if args.dir is not None and args.dir.exists() and not args.dir.is_dir():
        parser.error(f"--dir {args.dir} is not a directory")
    speed = args.speed or (ONCE_SPEED if args.once else 1.0)
    tui = not (args.once or args.no_tui)
    if tui and not _has_terminal():
        print("bgmon demo: no terminal; printing the tasks once instead (see --no-tui)",
              file=sys.stderr)
        args.once, tui = True, False
        speed = args.speed or ONCE_SPEED

    def on_signal(signum: int, _frame: object) -> None:
        raise _Terminated(signum)

    previous: dict[int, Any] = {}  # signal → its handler before the demo (restored after)
    if threading.current_thread() is threading.main_thread():
        previous[signal.SIGINT] = signal.getsignal(signal.SIGINT)
        for sig in _SIGNALS:
            previous[sig] = signal.signal(sig, on_signal)
    try:
        return _run(args, speed, tui)
    except DemoError as exc:
        print(f"bgmon demo: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except _Terminated as exc:
        return exit_for_signal(exc.signum)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
