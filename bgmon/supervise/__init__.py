"""`bgmon run`: supervise any command as a monitored background task (see docs/run.md).

The lead's CLI calls `add_parser(subparsers)` and, for the `run` subcommand, `main(args)`.
The loop itself lives in run.py; policy, output, processes and status in their own modules.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import sys
import time
from pathlib import Path

import orjson

from bgmon.cli import EXIT_USAGE
from bgmon.recovery.patterns import CatalogueError, load_catalogue
from bgmon.recovery.proposal import RUN_LOG
from bgmon.supervise.journal import RestartJournal
from bgmon.supervise.output import DEFAULT_PROGRESS, EventLog, compile_progress
from bgmon.supervise.policy import MODES, RestartPolicy
from bgmon.supervise.proc import cannot_start
from bgmon.supervise.run import RunConfig, Supervisor
from bgmon.supervise.status import StatusFile, iso_ms, pid_alive, task_paths
from bgmon.timefmt import parse_duration

LOG_REL = RUN_LOG  # one place: a restart's description names it too
# For `python script.py` the script says more about the task than the interpreter does.
_INTERPRETER = re.compile(r"^(python[\d.]*|pypy[\d.]*|node|deno|bun|bash|sh|zsh|ruby|perl)$")


class UsageError(Exception):
    """A bad flag value or setup problem: one line to stderr, exit status 2."""


def _duration(text: str) -> float:
    try:
        value = parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than zero: {text!r}")
    return value


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add the `run` subcommand. Every dest starts with run_ so nothing clashes with the
    top-level options in the shared namespace."""
    p = subparsers.add_parser(
        "run",
        help="run a command as a monitored background task",
        description="Run CMD as a background task bgmon monitors: status.json and an event log "
        "in ./.worktrees/NAME/, output passed through, failures classified, restarts with "
        "backoff. Exit status: the command's (128+N if killed by signal N), 124 after a stall, "
        "1 when it cannot start, 2 for usage errors.",
    )
    p.add_argument("--name", dest="run_name", metavar="NAME", help="task name (default: command name + hex)")
    p.add_argument("--dir", dest="run_dir", type=Path, metavar="DIR",
                   help="task directory (default: ./.worktrees/NAME)")
    p.add_argument("--restart", dest="run_restart", choices=MODES, default="on-failure",
                   help="restart policy (default: on-failure)")
    p.add_argument("--stall", dest="run_stall", type=_duration, default=None, metavar="DURATION",
                   help="no output and no CPU use for this long → stopped as timed out "
                   "(default: off)")
    p.add_argument("--heartbeat", dest="run_heartbeat", type=_duration, default=30.0,
                   metavar="DURATION", help="status.json refresh interval (default: 30s)")
    p.add_argument("--patterns", dest="run_patterns", metavar="FILE",
                   help="extra failure patterns (TOML [[pattern]] tables)")
    p.add_argument("--auto-recover", dest="run_auto_recover", action="store_true",
                   help="let bgmon's rule-based recovery act on this task without asking")
    p.add_argument("--quiet", "-q", dest="run_quiet", action="store_true",
                   help="do not pass the command's output through to the terminal")
    p.add_argument("--progress-regex", dest="run_progress", action="append", default=None,
                   metavar="REGEX", help="progress regex with groups (?P<done>)(?P<total>) or "
                   "(?P<percent>); repeatable; replaces the built-in 12/40 and 37%% recognisers")
    p.add_argument("--no-progress", dest="run_no_progress", action="store_true",
                   help="do not recognise progress in output")
    p.add_argument("--kill-grace", dest="run_kill_grace", type=_duration, default=5.0,
                   metavar="DURATION", help="SIGTERM → SIGKILL grace when stopping (default: 5s)")
    p.add_argument("run_argv", nargs=argparse.REMAINDER, metavar="-- CMD ARG...",
                   help="the command to run")


def main(args: argparse.Namespace) -> int:
    try:
        supervisor = _setup(args)
    except UsageError as exc:
        print(f"bgmon run: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return supervisor.supervise()


def _setup(args: argparse.Namespace) -> Supervisor:
    argv = list(args.run_argv or [])
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        raise UsageError("no command given (usage: bgmon run [OPTIONS] -- CMD ARG...)")
    why = cannot_start(argv)
    if why is not None:
        raise UsageError(why)
    try:
        catalogue = load_catalogue(args.run_patterns)
        regexes = [] if args.run_no_progress else compile_progress(
            args.run_progress or DEFAULT_PROGRESS)
    except (CatalogueError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    hexid = secrets.token_hex(3)
    name, directory = _place(args, argv, hexid)
    status_path, log_path = task_paths(directory)
    _refuse_busy(status_path)
    # The same directory is the same task: keep its id (a restart approved in bgmon starts
    # `bgmon run --dir` again, and `name #id` must still find it).
    hexid = _previous_hexid(status_path) or hexid
    status = StatusFile(status_path, _initial(args, argv, name, hexid), args.run_heartbeat)
    status.update()
    if args.run_auto_recover:
        _grant_auto_recover(status_path, argv)
    log = EventLog(log_path)
    cfg = RunConfig(argv=argv, cwd=os.getcwd(), stall=args.run_stall, quiet=args.run_quiet,
                    kill_grace=args.run_kill_grace, progress=regexes)
    if not args.run_quiet:
        print(f"bgmon run: task {name} #bg_{hexid} in {directory}", file=sys.stderr, flush=True)
    journal = RestartJournal.for_task(directory, cfg.cwd, f"bg_{hexid}", argv)
    return Supervisor(cfg, status, log, catalogue, RestartPolicy(args.run_restart), journal)


def _grant_auto_recover(status_path: Path, argv: list[str]) -> None:
    """The monitor's automatic recovery trusts this record, kept outside the repository, never
    `autoRecover` in a status.json alone (a clone could carry that). The argv as the status
    file has it (redacted)."""
    from bgmon.recovery.auto import grant_auto_recover
    from bgmon.recovery.redact import redact_obj

    try:
        grant_auto_recover(status_path, redact_obj(argv), os.getcwd())
    except OSError as exc:
        print(f"bgmon run: cannot record the auto-recover opt-in ({exc.strerror or exc}); "
              "the monitor will not recover this task automatically", file=sys.stderr)


def _place(args: argparse.Namespace, argv: list[str], hexid: str) -> tuple[str, Path]:
    """(task name, task directory), the directory created."""
    name = args.run_name
    if name is not None and (not name.strip() or "/" in name or "\0" in name
                             or name in (".", "..")):
        raise UsageError(f"--name must be a single path component, not {name!r}")
    if args.run_dir is not None:
        directory = args.run_dir
        name = name or directory.resolve().name
    else:
        name = name or default_name(argv, hexid)
        directory = Path(".worktrees") / name
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create task directory {directory}: {exc.strerror or exc}") from None
    return name, directory


def default_name(argv: list[str], hexid: str) -> str:
    base = os.path.basename(argv[0])
    if _INTERPRETER.match(base) and len(argv) > 1 and not argv[1].startswith("-"):
        base = Path(argv[1]).stem
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", base).strip("-.") or "task"
    return f"{base[:40]}-{hexid}"


def _refuse_busy(status_path: Path) -> None:
    """Two supervisors writing one status.json would make both lie."""
    try:
        old = orjson.loads(status_path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return
    if not isinstance(old, dict):
        return
    pid = old.get("supervisorPid")
    if old.get("status") in ("created", "running") and pid != os.getpid() and pid_alive(pid):
        raise UsageError(f"{status_path.parent} is already supervised by bgmon run (pid {pid}); "
                         "use another --name or --dir")


def _previous_hexid(status_path: Path) -> str | None:
    try:
        old = orjson.loads(status_path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    old_id = old.get("id") if isinstance(old, dict) else None
    if isinstance(old_id, str) and re.fullmatch(r"bg_[0-9a-f]{6}", old_id):
        return old_id[3:]
    return None


def _initial(args: argparse.Namespace, argv: list[str], name: str, hexid: str) -> dict:
    now = iso_ms(time.time())
    return {
        "id": f"bg_{hexid}", "name": name, "command": argv, "cwd": os.getcwd(),
        "pid": None, "supervisorPid": os.getpid(), "status": "created",
        "timestamp": now, "updatedAt": now, "readyUntil": now, "restarts": 0,
        "exitCode": None, "signal": None, "pattern": None, "error": None,
        "log": LOG_REL, "progress": None, "step": None,
        "restartPolicy": args.run_restart, "autoRecover": bool(args.run_auto_recover),
        "stall": args.run_stall, "heartbeat": args.run_heartbeat,
    }
