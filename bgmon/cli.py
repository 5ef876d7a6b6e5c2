"""Command line: the TUI by default; --once, --follow, demo, run, and the recovery commands.

Exit codes live here and nowhere else:
  0  nothing is struggling, stuck or failed (or the command succeeded)
  1  something is struggling, stuck or failed and not acknowledged (--once; --fail-on
     chooses the badges); an action or command failed
  2  usage or configuration error (the message says what to fix)
  124  `bgmon run`: the command was stopped because it stalled (like timeout(1));
       `bgmon wait`: --timeout passed first
  `bgmon wait`: 0 the tasks reached the state, 1 a fault instead (bgmon/wait.py has the table)
  128+N  stopped by signal N (130: Ctrl-C)
`bgmon run` otherwise exits with its command's own status.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from bgmon import __version__
from bgmon.agents import REGISTRY
from bgmon.config import Config, ConfigError, load_config, validate
from bgmon.exitcodes import (  # noqa: F401  (the commands import them from here)
    EXIT_FAILED,
    EXIT_FAULTS,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_TIMEOUT,
    EXIT_USAGE,
)
from bgmon.parser import Parser
from bgmon.printable import printable
from bgmon.timefmt import parse_duration


def exit_for_signal(signum: int) -> int:
    """The status a shell reports for a process stopped by signal `signum`."""
    return 128 + signum


SUBCOMMANDS = ("demo", "run", "watch", "wait", "ack", "propose", "approve", "reject", "history",
               "report", "hooks", "replay")
SERVE = "serve"  # the live engine without a screen (the monitor's own options)

EPILOG = """\
commands:
  bgmon serve --metrics HOST:PORT the live engine without a screen, for Prometheus
  bgmon demo [--dir DIR] [--once] simulated agents, then the TUI on them (--once: as text)
  bgmon run [OPTIONS] -- CMD ...  supervise a command as a monitored background task
  bgmon watch [ROOT ...]          no screen: send notifications on badge changes ([notify])
  bgmon wait TASK... --until S    block until the tasks are completed|healthy|settled|fault|waiting
  bgmon ack TASK [--note TEXT]    a fault is seen: it stops counting until its badge changes
  bgmon propose TASK [--json]     ask for a recovery proposal (Claude, or built-in rules)
  bgmon approve PROPOSAL_ID       run an approved proposal's actions
  bgmon reject PROPOSAL_ID        reject a proposal (--reason TEXT)
  bgmon history [TASK]            past health changes, proposals, decisions, results
  bgmon report                    summary of the journal
  bgmon hooks install|uninstall AGENT  let claude or codex report its state by hooks (--dry-run)
  bgmon replay LOG... [--json]    the health rules over recorded logs, on their own clock
  (each takes --help)

exit status (--once):
  0  nothing is struggling, stuck or failed (waiting is not a fault)
  1  at least one task is struggling, stuck or failed (or has a --fail-on badge), and not
     acknowledged (bgmon ack)
  2  usage or configuration error
exit status (wait): 0 reached, 1 a fault instead, 2 usage, 124 --timeout passed
"""


class UsageError(Exception):
    pass


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _badges(text: str) -> frozenset:
    from bgmon.model import Badge

    names = [n.strip().lower() for n in text.split(",") if n.strip()]
    known = {b.value for b in Badge}
    bad = [n for n in names if n not in known]
    if bad or not names:
        raise argparse.ArgumentTypeError(
            f"unknown badge {', '.join(bad) or repr(text)} (choose from {', '.join(sorted(known))})")
    return frozenset(Badge(n) for n in names)


def add_monitor_options(p: argparse.ArgumentParser) -> None:
    """Options that choose what to watch; shared by the monitor and the recovery commands."""
    g = p.add_argument_group("what to watch")
    g.add_argument("--since", type=_duration, help="transcripts active within this window (default 24h)")
    for agent in REGISTRY:  # --no-NAME and --NAME-dir for every agent bgmon knows
        g.add_argument(f"--no-{agent.name}", action="store_true", dest=f"no_agent_{agent.name}",
                       help=f"skip {agent.label}")
    g.add_argument("--no-git", action="store_true", help="do not ask git for worktrees")
    for agent in REGISTRY:
        if agent.home is not None:
            g.add_argument(f"--{agent.name}-dir", dest=f"agent_dir_{agent.name}", metavar="DIR",
                           help=f"{agent.label}: home folder (default {agent.home_help})")
    g.add_argument("--stuck-after", type=_duration, help="no sign of life for this long → stuck (default 10m)")
    g.add_argument("--config", type=Path, help="TOML config (default $XDG_CONFIG_HOME/bgmon/config.toml)")


def add_remote_option(p: argparse.ArgumentParser, what: str = "a remote host") -> None:
    """`--remote NAME=URL`, merged with the config's [[remote]] tables by resolve_config."""
    p.add_argument(
        "--remote", action="append", metavar="NAME=URL",
        help=f"{what}: NAME=ssh://user@host[:port][/root] (its bgmon runs there, through ssh) "
        "or NAME=cmd:ARGV… (any command printing `bgmon --follow --json`); repeatable",
    )


def _words(text: str) -> tuple[str, ...]:
    return tuple(w.strip() for w in text.split(",") if w.strip())


def add_notify_options(p: argparse.ArgumentParser) -> None:
    """Where and when badge changes are announced ([notify] in the config; flags win)."""
    from bgmon.config import NOTIFY_TERMINAL, WEBHOOK_FORMATS

    g = p.add_argument_group("notifications (README: Get told)")
    g.add_argument("--notify-on", type=_words, metavar="BADGES",
                   help="badges whose arrival notifies, comma-separated "
                   "(default failed,stuck,struggling,waiting)")
    g.add_argument("--notify-hold", type=_duration, metavar="D",
                   help="a new badge must hold this long first (default 30s)")
    g.add_argument("--notify-interval", type=_duration, metavar="D",
                   help="at most one notification per this long (default 60s)")
    g.add_argument("--notify-command", metavar="CMD",
                   help="run this argv (split like a shell would, never run by one) with BGMON_* "
                   "variables")
    g.add_argument("--notify-desktop", action="store_true",
                   help="desktop notifications (notify-send, terminal-notifier or osascript)")
    g.add_argument("--notify-terminal", choices=NOTIFY_TERMINAL,
                   help="in the TUI: ring the bell or send an OSC 9 / OSC 777 notification")
    g.add_argument("--notify-webhook", metavar="URL", help="POST a JSON body to this URL")
    g.add_argument("--notify-format", choices=WEBHOOK_FORMATS,
                   help="the webhook's body: ntfy, slack or json (default ntfy)")


def _notify_changes(args: argparse.Namespace, notify):
    changes: dict = {}
    for flag, name in (("notify_on", "on"), ("notify_hold", "hold"),
                       ("notify_interval", "min_interval"), ("notify_terminal", "terminal"),
                       ("notify_webhook", "webhook"), ("notify_format", "webhook_format")):
        value = getattr(args, flag, None)
        if value is not None:
            changes[name] = value
    command = getattr(args, "notify_command", None)
    if command is not None:
        try:
            changes["command"] = tuple(shlex.split(command))
        except ValueError as exc:
            raise UsageError(f"--notify-command: {exc}") from None
    if getattr(args, "notify_desktop", False):
        changes["desktop"] = True
    return replace(notify, **changes)


def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="bgmon",
        description="Monitor background agents and long-running commands: find them, judge "
        "their health, say why, and offer recovery.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("roots", nargs="*", metavar="ROOT", help="directories to watch (default: .)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--once", action="store_true", help="print every task once and exit")
    mode.add_argument("--follow", action="store_true",
                      help="print every change until interrupted: a --once line each (JSON lines "
                      "with --json)")
    p.add_argument("--json", action="store_true", help="with --once or --follow: JSON output")
    p.add_argument(
        "--fail-on", type=_badges, metavar="BADGE,...",
        help="with --once: exit 1 when a task has one of these badges "
        "(default: struggling,stuck,failed; e.g. add waiting)",
    )
    p.add_argument("--print-config", action="store_true", help="print the effective configuration")
    p.add_argument("--all", action="store_true",
                   help="also show finished worktree tasks older than age_out (default 24h)")
    p.add_argument(
        "--auto-recover", action="store_true",
        help="let rule-based recovery act without asking on tasks that opted in "
        "(bgmon run --auto-recover); never a model's proposal",
    )
    p.add_argument("--version", action="version", version=f"bgmon {__version__}")
    add_remote_option(p, "also show a remote host's tasks")
    g = p.add_argument_group("metrics (docs/metrics.md)")
    g.add_argument("--metrics", metavar="HOST:PORT",
                   help="serve Prometheus metrics at http://HOST:PORT/metrics (TUI, --follow, serve)")
    g.add_argument("--textfile", metavar="PATH", type=Path,
                   help="with --once: write the metrics to PATH atomically (node_exporter's "
                   "textfile collector), instead of printing")
    add_monitor_options(p)
    add_notify_options(p)
    return p


def resolve_config(args: argparse.Namespace) -> tuple[Config, list[str]]:
    """Defaults ← TOML file ← flags. The one place where settings are merged."""
    config, warnings = load_config(args.config, explicit=args.config is not None)
    changes: dict = {}
    roots = getattr(args, "roots", None)
    if roots:
        changes["roots"] = tuple(roots)
    if args.since is not None:
        changes["since"] = args.since
    if getattr(args, "no_git", False):
        changes["git"] = False
    for agent in REGISTRY:
        if getattr(args, f"no_agent_{agent.name}", False):
            config = config.switched(agent.name, False)
        if getattr(args, f"agent_dir_{agent.name}", None):
            config = config.with_home(agent.name, getattr(args, f"agent_dir_{agent.name}"))
    if os.environ.get("BGMON_MODEL"):
        changes["model"] = os.environ["BGMON_MODEL"]
    if getattr(args, "model", None):
        changes["model"] = args.model
    if getattr(args, "auto_recover", False):
        changes["auto_recover"] = True
    if getattr(args, "all", False):
        changes["age_out"] = 0.0
    if args.stuck_after is not None:
        changes["thresholds"] = replace(config.thresholds, stuck_after=args.stuck_after)
    changes["notify"] = _notify_changes(args, config.notify)
    if getattr(args, "remote", None):
        from bgmon.config import merge_remotes
        from bgmon.remote.spec import RemoteError, parse_remote

        try:
            changes["remotes"] = merge_remotes(config.remotes, [parse_remote(r) for r in args.remote])
        except RemoteError as exc:
            raise UsageError(str(exc)) from None
    config = validate(replace(config, **changes))
    if config.patterns:
        # Checked here, once for every command: `--once` and the TUI say so as `propose` does,
        # instead of a proposal failing later with a traceback.
        from bgmon.recovery.patterns import CatalogueError, load_catalogue

        try:
            load_catalogue(config.patterns)
        except CatalogueError as exc:
            raise ConfigError(f"[recovery] patterns: {exc}") from None
    return config, warnings


def look_once(config: Config):
    """One full look at every task, with bgmon's marks and people's acknowledgements from the
    recovery journal applied, as the live views have them (so every view shows the same)."""
    from bgmon.engine import collect
    from bgmon.recovery.journal import Journal

    monitor = collect(config)
    try:
        journal = Journal(config.journal_path())
        notes, acks = journal.marks(), journal.acknowledged()
    except OSError as exc:  # JournalUnreadable too: the tasks still show, with a warning
        monitor.found.warnings.append(f"marks and acknowledgements not shown: {exc}")
        notes, acks = {}, {}
    if notes or acks:
        monitor.set_notes(notes)
        monitor.set_acks(acks)
        monitor.evaluate()
    return monitor


def print_once(config: Config, as_json: bool, textfile: Path | None = None,
               fail_on: frozenset | None = None) -> int:
    """`--once`: every task as text or one JSON document; the exit status says if any is at fault."""
    from bgmon.views import jsonout, text
    from bgmon.views.order import arrange, current, has_badge

    fleet = None
    if config.remotes:  # every host looks at once, while this one does
        from bgmon.remote.fleet import Fleet, noop

        fleet = Fleet(config.remotes, noop, once=True)
        fleet.start()
    monitor = look_once(config)
    snaps, warnings = monitor.snapshots(), monitor.warnings()
    by_host = {"": warnings}  # "": this machine
    if fleet is not None:
        remote_snaps, remote_warnings = fleet.look()
        snaps, warnings = snaps + remote_snaps, warnings + remote_warnings
        by_host.update(fleet.warnings_by_host())
    shown = current(snaps, monitor.clock(), config.age_out)
    ordered = [s for _, rows in arrange(shown) for _, s in rows]
    if textfile is not None:
        _write_textfile(textfile, config, ordered, by_host)
        if not as_json:
            return EXIT_FAULTS if has_badge(ordered, fail_on) else EXIT_OK
    if as_json:
        sys.stdout.buffer.write(jsonout.document(ordered, monitor.clock(), warnings))
        sys.stdout.flush()
    else:
        text.render(ordered, warnings, monitor.found.looked, sys.stdout, monitor.clock(),
                    aged=len(snaps) - len(shown))
    return EXIT_FAULTS if has_badge(ordered, fail_on) else EXIT_OK


def _write_textfile(path: Path, config: Config, snaps: list,
                    warnings: dict[str, list[str]]) -> None:
    """`warnings`: per host ("" for this machine), as the live metrics count them."""
    from bgmon.board import Board
    from bgmon.views.metrics import BoardCollector, write_textfile

    board = Board(live=False)
    board.load(snaps, warnings.get("", []))
    for host, said in warnings.items():
        if host:
            board.set_warnings(said, host=host)
    try:
        write_textfile(path, BoardCollector(board, journal=config.journal_path()))
    except OSError as exc:
        raise UsageError(f"cannot write --textfile {path}: {exc.strerror or exc}") from None


def _metrics(address: str, config: Config):
    """The metrics endpoint, started before the engine so a busy port fails at once (exit 2).
    → (board, server)."""
    from bgmon.board import Board
    from bgmon.views.metrics import BoardCollector, serve

    board = Board()
    try:
        server = serve(address, BoardCollector(board, journal=config.journal_path()))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    except OSError as exc:
        raise UsageError(f"cannot serve metrics on {address}: {exc.strerror or exc}") from None
    print(f"bgmon: metrics at http://{address}/metrics", file=sys.stderr)
    return board, server


def _check_roots(config: Config) -> None:
    for root in config.roots:
        if not os.path.isdir(os.path.expanduser(root)):
            raise UsageError(f"ROOT {root} is not a directory")


def _settings(p: argparse.ArgumentParser, argv: list[str]) -> tuple[argparse.Namespace, Config]:
    """A subcommand's arguments and its effective config (warnings said, roots checked)."""
    args = p.parse_args(argv)
    config, warnings = resolve_config(args)
    for w in warnings:
        print(f"bgmon: {w}", file=sys.stderr)
    _check_roots(config)
    return args, config


TASK_HELP = "task key, id or name, as --once shows it"


def _add_roots(p: argparse.ArgumentParser, more: str = "") -> None:
    """A subcommand's `--root DIR` (repeatable) and the monitor's options: what it looks at."""
    p.add_argument("--root", dest="roots", action="append", metavar="DIR",
                   help=f"a watched root (repeatable; default: .){more}")
    add_monitor_options(p)


def _watch_main(argv: list[str]) -> int:
    p = Parser(prog="bgmon watch", description="Watch without a screen and send a notification "
                "when a task's badge changes (sinks: [notify] in the config, or the flags). Each "
                "notification is also printed on stdout.")
    p.add_argument("roots", nargs="*", metavar="ROOT", help="directories to watch (default: .)")
    add_monitor_options(p)
    add_notify_options(p)
    _, config = _settings(p, argv)
    from bgmon.live import watch
    from bgmon.notify.notifier import notifier_for
    from bgmon.notify.sinks import LogSink

    if not config.notify.sinks():
        print("bgmon: no notification sink is on ([notify] command, desktop or webhook, or "
              "--notify-…): notifications go to stdout only", file=sys.stderr)
    notifier = notifier_for(config, extra=[LogSink(sys.stdout)])
    assert notifier is not None
    return watch(config, notifier)


def _check_modes(args: argparse.Namespace, serving: bool) -> None:
    if args.json and not (args.once or args.follow):
        raise UsageError("--json goes with --once or --follow")
    if args.fail_on and not args.once:
        raise UsageError("--fail-on goes with --once")
    if args.textfile is not None and not args.once:
        raise UsageError("--textfile goes with --once (for cron); a live engine serves --metrics")
    if args.metrics and args.once:
        raise UsageError("--metrics serves a live engine; with --once, write --textfile PATH")
    if serving and (args.once or args.follow):
        raise UsageError("bgmon serve runs the live engine; it takes neither --once nor --follow")
    if serving and not args.metrics:
        raise UsageError("bgmon serve needs --metrics HOST:PORT (e.g. 127.0.0.1:9488)")


def _wait_main(argv: list[str]) -> int:
    from bgmon.views.text import task_line
    from bgmon.wait import TARGETS, wait

    p = Parser(prog="bgmon wait", description="Block until every TASK reaches a state, on the "
                "live engine. Exit 0 when they do, 1 when a fault comes instead (a task failed "
                "or stuck; with --until fault: every task completed without one), 124 when "
                "--timeout passes first, 2 for a usage error.")
    p.add_argument("tasks", nargs="+", metavar="TASK", help=TASK_HELP)
    p.add_argument("--until", required=True, choices=TARGETS, help="the state to wait for")
    p.add_argument("--timeout", type=_duration, metavar="D", help="give up after D (exit 124)")
    _add_roots(p)
    args, config = _settings(p, argv)
    result = wait(config, args.tasks, args.until, args.timeout)
    if result.problems:
        raise UsageError("; ".join(result.problems))
    for s in result.snaps:
        print(task_line(s).plain)
    if result.outcome is None:
        left = f"timed out after {args.timeout:g}s" if result.timed_out else "interrupted"
        print(f"bgmon wait: {left} before {args.until}", file=sys.stderr)
        return EXIT_TIMEOUT if result.timed_out else EXIT_INTERRUPTED
    print(f"bgmon wait: {result.outcome.why}", file=sys.stderr)
    return EXIT_OK if result.outcome.reached else EXIT_FAULTS


def _ack_main(argv: list[str]) -> int:
    from bgmon.recovery.service import RecoveryService
    from bgmon.resolve import AmbiguousTask, resolve_task, task_label

    p = Parser(prog="bgmon ack", description="Acknowledge a task's fault: until its badge "
                "changes it no longer counts for the exit status of --once, for notifications or "
                "for bgmon wait, and every view shows it as acknowledged.")
    p.add_argument("task", metavar="TASK", help=TASK_HELP)
    p.add_argument("--note", metavar="TEXT", help="why, or who is on it (shown beside the badge)")
    p.add_argument("--clear", action="store_true", help="take the acknowledgement back")
    _add_roots(p, "; the store lives under the first")
    args, config = _settings(p, argv)
    monitor = look_once(config)
    try:
        snap = resolve_task(args.task, monitor.snapshots())
    except AmbiguousTask as exc:
        raise UsageError(str(exc)) from None
    if snap is None:
        raise UsageError(f"no task matches {args.task!r} (a key, id or name as --once shows)")
    label, badge = task_label(snap.name, snap.id), snap.health.badge
    try:
        service = RecoveryService.from_config(config)
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot record the acknowledgement: {exc}") from None
    try:
        if args.clear:
            if snap.key not in monitor.acks:
                raise UsageError(f"{label} is not acknowledged")
            service.clear_ack(snap.key, snap.id)
            print(f"{label}: acknowledgement taken back; its {badge.value} badge counts again")
            return EXIT_OK
        if not badge.is_fault:
            raise UsageError(f"{label} is {badge.value}: there is no fault to acknowledge")
        service.acknowledge(snap, args.note)
    except OSError as exc:
        raise UsageError(f"cannot record the acknowledgement: {exc}") from None
    finally:
        service.close()
    print(f"{label}: {badge.value}, acknowledged; it no longer counts until its badge changes")
    return EXIT_OK


def _monitor_main(argv: list[str], serving: bool = False) -> int:
    args = build_parser().parse_args(argv)
    _check_modes(args, serving)
    config, warnings = resolve_config(args)
    for w in warnings:
        print(printable(f"bgmon: {w}"), file=sys.stderr)
    if args.print_config:
        sys.stdout.write(config.to_toml())
        return EXIT_OK
    _check_roots(config)
    if args.once:
        return print_once(config, args.json, args.textfile, args.fail_on)
    from bgmon.notify.notifier import notifier_for

    board, server = _metrics(args.metrics, config) if args.metrics else (None, None)
    try:
        if serving:
            from bgmon.live import serve

            assert board is not None  # _check_modes: serving needs --metrics

            return serve(config, board, notifier_for(config))
        if args.follow:
            from bgmon.live import follow

            return follow(config, board, args.json, notifier_for(config))
        from bgmon.views.tui.app import run_tui

        return run_tui(config, board)
    finally:
        if server is not None:
            server.shutdown()


def _replay_main(argv: list[str]) -> int:
    from bgmon import replay

    p = Parser(prog="bgmon replay", description="Run the health rules over recorded logs "
                "(Claude, Codex, bgmon's own lines) on the logs' own clock and print the "
                "timeline of badge changes. Thresholds come from the config, as for the monitor.")
    p.add_argument("logs", nargs="+", metavar="LOG")
    p.add_argument("--json", action="store_true", help="one JSON document")
    p.add_argument("--stuck-after", type=_duration, help="override [health] stuck_after")
    p.add_argument("--config", type=Path, help="TOML config (default $XDG_CONFIG_HOME/bgmon/config.toml)")
    args = p.parse_args(argv)
    config, _ = load_config(args.config, explicit=args.config is not None)
    th = config.thresholds
    if args.stuck_after is not None:
        th = replace(th, stuck_after=args.stuck_after)
    out, errors = replay.main(args.logs, th, args.json)
    if out.strip() or not errors:  # not an empty line before the message that none was read
        sys.stdout.write(out)
    for e in errors:
        print(f"bgmon replay: {e}", file=sys.stderr)
    return EXIT_USAGE if errors else EXIT_OK


def _parse_as_subcommand(name: str, argv: list[str], add_parsers: Callable[[Any], None]
                         ) -> argparse.Namespace:
    """`bgmon NAME ARGV…` parsed by the subcommand parser(s) another module adds to ours (so its
    usage lines and errors read `bgmon NAME`, and errors exit 2 in one line)."""
    p = Parser(prog="bgmon")
    commands = p.add_subparsers(dest="command")
    add_parsers(commands)
    args, extra = p.parse_known_args([name, *argv])
    if extra:  # argparse says so as the top parser, `bgmon`: say it as the command's
        commands.choices[name].error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def _subcommand_main(name: str, argv: list[str]) -> int:
    if name == "replay":
        return _replay_main(argv)
    if name == "hooks":
        from bgmon.hooks.install import main as hooks_main

        return hooks_main(argv)
    if name == "demo":
        from bgmon.demo import main as demo_main

        return demo_main(argv)
    if name == "run":
        from bgmon import supervise

        return supervise.main(_parse_as_subcommand(name, argv, supervise.add_parser))
    if name == "watch":
        return _watch_main(argv)
    if name == "wait":
        return _wait_main(argv)
    if name == "ack":
        return _ack_main(argv)
    from bgmon.recovery import cli as recovery_cli

    args = _parse_as_subcommand(
        name, argv, lambda sub: recovery_cli.add_parsers(sub, add_monitor_options))
    config, _ = resolve_config(args)
    return recovery_cli.run_command(args, config)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] in SUBCOMMANDS:
            return _subcommand_main(argv[0], argv[1:])
        if argv and argv[0] == SERVE:
            return _monitor_main(argv[1:], serving=True)
        return _monitor_main(argv)
    except (UsageError, ConfigError) as exc:
        print(printable(f"bgmon: {exc}"), file=sys.stderr)  # names paths from config and flags
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # `bgmon --once | head`: the reader left; that is not an error. What is still buffered
        # goes to /dev/null, so the flush at exit has nowhere to fail (as Python's docs do it).
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError, AttributeError):
            pass
        return EXIT_OK
