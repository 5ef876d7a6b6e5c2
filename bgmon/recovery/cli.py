"""`bgmon propose | approve | reject | history | report`: recovery from a shell.

`run_command(args, target)` takes either the effective `Config` (the live tasks are then found
with one engine look, only when a command needs them) or a `find_task(ref)` function.
`propose @HOST/TASK`, `approve @HOST/ID` and `reject @HOST/ID` run on that remote host through
`RemoteRecovery`, the TUI's own, with the same prompt and output as a local proposal.
Exit codes: 0 ok, 1 action failed / proposal or task not found / cannot approve, 2 usage.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import Any, TextIO

import orjson

from bgmon.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE, add_remote_option
from bgmon.clip import clip, flat
from bgmon.model import TaskSnapshot
from bgmon.printable import contained, json_printable, printable_stream, single_line
from bgmon.recovery.journal import PENDING, Journal, JournalUnreadable
from bgmon.recovery.proposal import Proposal
from bgmon.recovery.service import NOT_FOUND, Outcome, RecoveryService
from bgmon.remote.recovery import RemoteFailed, RemoteRecovery
from bgmon.resolve import AmbiguousTask, resolve_task, task_label
from bgmon.views.jsonout import split_remote_key

FindTask = Callable[[str], "TaskSnapshot | None"]
COMMANDS = ("propose", "approve", "reject", "history", "report")
# These take `@HOST/REF` and then run on that host (bgmon.remote.recovery), as the TUI does.
ROUTED = {"propose": "task", "approve": "proposal_id", "reject": "proposal_id"}
Service = RecoveryService | RemoteRecovery


class UnknownHost(ValueError):
    """`@HOST/…` names no remote host of the config or the flags."""


def add_parsers(
    subparsers: Any, add_common: Callable[[argparse.ArgumentParser], None] | None = None
) -> None:
    """Add the five recovery subcommands; `add_common` adds the caller's shared options."""

    def common(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument(
            "--root", dest="roots", action="append", metavar="DIR",
            help="a watched root (repeatable; default: .); the journal lives under the first",
        )
        p.add_argument("--journal", metavar="PATH", help="journal file (default: "
                       "ROOT/.agents/logs/background_monitoring.jsonl)")
        if add_common is not None:
            add_common(p)
        return p

    p = common(subparsers.add_parser(
        "propose", help="ask for a recovery proposal (Claude, or the built-in rules)",
        description="Diagnose a task and propose recovery actions. Uses Claude when the "
        "anthropic SDK finds credentials (ANTHROPIC_API_KEY), else the built-in rules. "
        "Nothing runs until you approve.",
    ))
    p.add_argument("task", metavar="TASK", help="task name, id or key, as `bgmon --once` shows "
                   "it; @HOST/TASK: a task of the remote host HOST, proposed there")
    p.add_argument("--json", action="store_true", help="print the proposal as one JSON object")
    p.add_argument("--model", metavar="M", help="Claude model (default: $BGMON_MODEL, config, "
                   "or the newest Opus the installed SDK knows)")
    p.add_argument("--fresh", action="store_true",
                   help="make a new proposal even if one is pending for the task")
    p.add_argument("--rules", action="store_true", help="use the built-in rules only (no API call)")
    add_remote_option(p)

    p = common(subparsers.add_parser(
        "approve", help="run a proposal's actions",
        description="Show a proposal's exact effect, ask for confirmation, then run it.",
    ))
    p.add_argument("proposal_id", metavar="PROPOSAL_ID",
                   help="a proposal's id; @HOST/ID: a proposal made on the remote host HOST")
    p.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    p.add_argument("--dry-run", action="store_true",
                   help="show the proposal's exact effect now and its state; run nothing")
    p.add_argument("--json", action="store_true", help="print the outcome as JSON")
    add_remote_option(p)

    p = common(subparsers.add_parser("reject", help="reject a proposal"))
    p.add_argument("proposal_id", metavar="PROPOSAL_ID",
                   help="a proposal's id; @HOST/ID: a proposal made on the remote host HOST")
    p.add_argument("--reason", metavar="TEXT", help="why (kept in the journal)")
    p.add_argument("--json", action="store_true", help="print the outcome as JSON")
    add_remote_option(p)

    p = common(subparsers.add_parser(
        "history", help="past health changes, proposals, decisions and results"
    ))
    p.add_argument("task", metavar="TASK", nargs="?", help="only this task (name, id or key)")
    p.add_argument("--json", action="store_true", help="print the records as a JSON array")

    p = common(subparsers.add_parser("report", help="a summary of the recovery journal"))
    p.add_argument("--json", action="store_true", help="print the summary as JSON")


# --- wiring -----------------------------------------------------------------------------------


class LiveTasks:
    """The live tasks, looked at once and only when a command needs them: `find(ref)` is the
    one task resolution (bgmon.resolve) every command uses; `names` labels journal lines."""

    def __init__(self, config: Any = None, find: FindTask | None = None) -> None:
        self._config = config
        self._find = find
        self._snaps: list[TaskSnapshot] | None = None

    def snapshots(self) -> list[TaskSnapshot]:
        if self._snaps is None:
            if self._config is None:
                self._snaps = []
            else:
                from bgmon.cli import look_once

                self._snaps = look_once(self._config).snapshots()
        return self._snaps

    def find(self, ref: str) -> TaskSnapshot | None:
        """Raises AmbiguousTask when `ref` is a name several tasks share."""
        if self._find is not None:
            return self._find(ref)
        return resolve_task(ref, self.snapshots())

    def names(self) -> dict[str, str]:
        """Task key and id → `name #id`, for the tasks that are still there."""
        out: dict[str, str] = {}
        for s in self.snapshots():
            out[s.key] = out[s.id] = task_label(s.name, s.id)
        return out


def _service_from(args: argparse.Namespace, target: Any) -> tuple[RecoveryService, LiveTasks]:
    model = getattr(args, "model", None)
    journal_arg = getattr(args, "journal", None)
    if callable(target):
        roots = getattr(args, "roots", None) or ["."]
        journal = Journal.for_root(roots[0], journal_arg)
        service = RecoveryService(journal, model=model or os.environ.get("BGMON_MODEL") or None)
        return service, LiveTasks(find=target)
    config = target  # bgmon.config.Config
    service = RecoveryService.from_config(config, journal_path=journal_arg)
    if model:
        service.model = model
    return service, LiveTasks(config)


def _remote(args: argparse.Namespace, target: Any) -> RemoteRecovery | None:
    """`@HOST/REF` in a routed command: the host's recovery, with REF left in `args` for the
    host to resolve; None for this machine's tasks and proposals."""
    field = ROUTED.get(args.command)
    if field is None:
        return None
    where = split_remote_key(getattr(args, field))
    if where is None:
        return None
    host, ref = where
    remotes = () if callable(target) else target.remotes
    spec = next((s for s in remotes if s.name == host), None)
    if spec is None:
        raise UnknownHost(f"no remote host named {host!r}: add --remote {host}=ssh://user@host"
                          "[/root] (or cmd:…), or a [[remote]] table to the config")
    setattr(args, field, ref)
    return RemoteRecovery(spec)


def run_command(
    args: argparse.Namespace,
    target: Any,
    *,
    service: Service | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
    stdin: TextIO | None = None,
) -> int:
    """Run one recovery subcommand. `target`: a Config or a `find_task(ref)` function."""
    # Proposals, records and outcomes carry task and model text: shown inert (bgmon.printable).
    out = printable_stream(out or sys.stdout)
    err = printable_stream(err or sys.stderr)
    stdin = stdin or sys.stdin
    command = getattr(args, "command", None)
    if command not in COMMANDS:
        print(f"bgmon: unknown recovery command {command!r}", file=err)
        return EXIT_USAGE
    try:
        remote = _remote(args, target)
    except UnknownHost as exc:
        print(f"bgmon: {exc}", file=err)
        return EXIT_USAGE
    try:
        if remote is not None:  # nothing of this machine's is needed: the host does it all
            return _dispatch(command, args, service or remote, LiveTasks(), out, err, stdin)
        made, tasks = _service_from(args, target)
        return _dispatch(command, args, service or made, tasks, out, err, stdin)
    except (JournalUnreadable, AmbiguousTask) as exc:
        print(f"bgmon: {exc}", file=err)
        return EXIT_USAGE
    except RemoteFailed as exc:  # the host could not be asked, or said no (its own words)
        print(f"bgmon: {exc}", file=err)
        return EXIT_FAILED
    except BrokenPipeError:
        raise  # `bgmon history | head`: the reader left, which is not the journal's fault
    except OSError as exc:  # the journal or bgmon's lock directory cannot be written
        where = f" {exc.filename}" if exc.filename else ""
        print(f"bgmon: cannot use{where}: {exc.strerror or exc}", file=err)
        return EXIT_USAGE


def _dispatch(
    command: str,
    args: argparse.Namespace,
    service: Service,
    tasks: LiveTasks,
    out: TextIO,
    err: TextIO,
    stdin: TextIO,
) -> int:
    if command == "propose":
        return _propose(args, service, tasks.find, out, err)
    if command == "approve":
        return _approve(args, service, tasks.find, out, err, stdin)
    if command == "reject":
        outcome = service.reject(args.proposal_id, args.reason, by="cli")
        return _print_outcome(outcome, args.json, out, err)
    assert isinstance(service, RecoveryService)  # only the three above go to a remote host
    if command == "history":
        return _history(args, service, tasks, out, err)
    report = service.report()
    if args.json:
        _write_json(out, report, indent=True)
    else:
        out.write(format_report(report, tasks.names()))
    return EXIT_OK


def _history(
    args: argparse.Namespace, service: RecoveryService, tasks: LiveTasks, out: TextIO, err: TextIO
) -> int:
    """The journal's records, oldest first; TASK is resolved like every other command's (a key,
    id or name), and a task no longer running is still found by its key, id or directory name."""
    names = tasks.names()
    if not args.task:
        records = service.history()
    elif (live := tasks.find(args.task)) is not None:
        records = service.history({live.key, live.id})
    else:  # gone: by key or id, or by a name it had (the store narrows it down, this decides)
        wanted = {args.task}
        also = {ref for ref, label in names.items() if label.split(" #", 1)[0] == args.task}
        records = [r for r in service.history(wanted | also, name=args.task)
                   if wanted & {r.get("task"), r.get("task_id")} or record_name(r, names) == args.task]
    skipped = service.journal.skipped()
    if skipped:
        print(f"bgmon: {skipped} unreadable or malformed line(s) in {service.journal.path} "
              "skipped", file=err)
    if args.json:
        shown = [{**r, "name": record_name(r, names)} for r in records]
        _write_json(out, shown, indent=True)
    elif not records:
        where = f" for {args.task}" if args.task else ""
        print(f"no records{where} in {service.journal.path}", file=out)
    else:
        for r in records:
            print(format_record(r, names), file=out)
    return EXIT_OK


def record_name(r: dict[str, Any], names: dict[str, str] | None = None) -> str | None:
    """A journal record's task name: its own `name` field, else the live task's, else the
    task directory's name (worktree and `bgmon run` keys end in it); None when unknown."""
    if isinstance(r.get("name"), str):
        return r["name"]
    return key_name(_str(r.get("task")), _str(r.get("task_id")), names)


def key_name(key: str | None, task_id: str | None, names: dict[str, str] | None) -> str | None:
    for ref in (key, task_id):
        if names and ref is not None and ref in names:
            return names[ref].split(" #", 1)[0]
    where = split_remote_key(key) if key is not None else None
    if where is not None:  # a remote host's task: its key there says the same
        key = where[1]
    if key is not None and key.startswith("worktree:"):
        return os.path.basename(key.removeprefix("worktree:").rstrip("/")) or None
    return None


def _propose(
    args: argparse.Namespace, service: Service, find: FindTask, out: TextIO, err: TextIO
) -> int:
    if isinstance(service, RemoteRecovery):  # the host resolves the task and proposes
        proposal = service.propose(args.task, fresh=args.fresh, rules=args.rules, model=args.model)
    else:
        snapshot = find(args.task)
        if snapshot is None:
            print(f"bgmon: no task matches {args.task!r} (use a name, id or key as `bgmon --once` "
                  "shows)", file=err)
            return EXIT_FAILED
        proposal = service.request_proposal(
            snapshot, model=args.model, fresh=args.fresh, use_claude=False if args.rules else None
        )
    assert proposal is not None  # no cancel event given
    if args.json:
        _write_json(out, with_effect(service, proposal))
    else:
        out.write(format_proposal(proposal))
    return EXIT_OK


def with_effect(service: Service, proposal: Proposal) -> dict[str, Any]:
    """A proposal as JSON with its live effect and state: what a remote bgmon's approval
    screen shows (bgmon.remote.recovery) is what this host would do."""
    return {**proposal.to_json(), "effect": service.preview(proposal),
            "state": service.state(proposal.id)}


def approval_lines(service: Service, proposal: Proposal) -> list[str]:
    """What approving does, exactly, as the prompt shows it (for a remote host's proposal: the
    command run here, then the host's own words for each action's effect there)."""
    lines = service.preview(proposal) or ["(no actions: only the decision is recorded)"]
    return [f"Approve {proposal_ref(proposal)} for task {proposal_task(proposal)} "
            f"({proposal.origin})?"] + [f"  {single_line(line)}" for line in lines]


def _approve(
    args: argparse.Namespace,
    service: Service,
    find: FindTask,
    out: TextIO,
    err: TextIO,
    stdin: TextIO,
) -> int:
    proposal = service.get(args.proposal_id)  # a remote host's: with its effect there now
    if proposal is None:  # (a remote host says so itself: RemoteFailed)
        assert isinstance(service, RecoveryService)
        print(f"bgmon: no proposal {args.proposal_id} in {service.journal.path}", file=err)
        return EXIT_FAILED
    state = service.state(proposal.id)
    if args.dry_run:
        if args.json:
            _write_json(out, with_effect(service, proposal))
        else:
            print("\n".join(approval_lines(service, proposal)), file=out)
            print(f"dry run: nothing done (the proposal is {state or 'unknown'})", file=out)
        return EXIT_OK
    if state == PENDING and not args.yes:
        if not stdin.isatty():
            print("bgmon: stdin is not a terminal, so bgmon cannot ask for confirmation; "
                  "re-run with --yes to approve", file=err)
            return EXIT_USAGE
        print("\n".join(approval_lines(service, proposal)), file=out)
        out.write("Run this? [y/N] ")
        out.flush()
        answer = stdin.readline().strip().lower()
        if answer not in ("y", "yes"):
            print("not approved; nothing done", file=out)
            return EXIT_OK
    if not args.json and isinstance(service, RecoveryService):
        # Say what a long step waits for (a restart's backoff) as it starts; a remote host's
        # own output says it there.
        service.executor.announce = lambda text: print(text, file=out, flush=True)
    outcome = service.approve(proposal.id, find, by="cli")
    return _print_outcome(outcome, args.json, out, err)


def _print_outcome(outcome: Outcome, as_json: bool, out: TextIO, err: TextIO) -> int:
    if as_json:
        _write_json(out, outcome.to_json())
    elif outcome.status == NOT_FOUND:
        print(f"bgmon: {outcome.message}", file=err)
    else:
        print(outcome.message, file=out)
        for r in outcome.results:
            mark = "skipped" if r.skipped else ("ok" if r.ok else "FAILED")
            what = r.detail or r.error or ""
            if r.new_pid is not None and "pid" not in what:
                what += f" (new pid {r.new_pid})"
            if r.exit_code is not None and "code" not in what:
                what += f" (exit code {r.exit_code})"
            print(single_line(f"  [{mark}] {r.kind}: {what}".rstrip()), file=out)
            if r.error and r.detail and r.error not in r.detail:
                print(f"      error: {single_line(r.error)}", file=out)
            if r.output_tail:
                for line in r.output_tail.rstrip("\n").splitlines()[-20:]:
                    print(f"      | {line}", file=out)
    return EXIT_OK if outcome.ok else EXIT_FAILED


def _write_json(out: TextIO, obj: Any, indent: bool = False) -> None:
    data = orjson.dumps(obj, option=orjson.OPT_INDENT_2 if indent else 0)
    out.write(json_printable(data).decode() + "\n")


# --- text formats -----------------------------------------------------------------------------


def proposal_ref(p: Proposal) -> str:
    """How to name the proposal in `bgmon approve | reject`: its id, or `@HOST/ID` for one
    made on a remote host."""
    where = split_remote_key(p.task)
    return f"@{where[0]}/{p.id}" if where is not None else p.id


def proposal_task(p: Proposal) -> str:
    """The proposal's task as `name #id` (the key is long and says the same)."""
    return task_label(key_name(p.task, p.task_id, None), p.task_id)


def format_proposal(p: Proposal) -> str:
    lines = [
        f"Proposal {p.id} for task {proposal_task(p)}",
        f"  from:       {p.origin}",
        f"  confidence: {p.confidence:.2f}",
    ]
    # The diagnosis is a paragraph (it may keep its lines), each one fenced so none of them can
    # pass for a line bgmon wrote.
    lines += contained(p.diagnosis, "              │ ", first="  diagnosis:  ")
    if p.actions:
        lines.append("  actions (run in order when approved):")
        lines += [f"    {line}" for line in p.describe()]
    else:
        lines.append("  actions: none")
    if p.refused:
        lines.append("  refused (will not run):")
        for r in p.refused:
            raw = orjson.dumps(r.get("raw"), default=str).decode()
            raw = clip(raw, 300)
            lines.append(f"    - {raw}: {single_line(str(r.get('reason')))}")
    ref = proposal_ref(p)
    lines.append(f"  approve: bgmon approve {ref}    reject: bgmon reject {ref} --reason TEXT")
    return "\n".join(lines) + "\n"


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def format_record(r: dict[str, Any], names: dict[str, str] | None = None) -> str:
    """One journal record as a line, the task shown as `name #id` (never the long key); any
    field of the wrong type is shown as missing, never a crash (the reader already skips
    malformed records of the known kinds). One line whatever the record holds: a newline in
    a name, reason or detail is shown as ⏎."""
    return single_line(_record_line(r, names))


def _record_line(r: dict[str, Any], names: dict[str, str] | None) -> str:
    r = _dict(r)
    kind = r.get("kind")
    task_id = r.get("task_id") if isinstance(r.get("task_id"), str) else None
    who = task_label(record_name(r, names), task_id or _str(r.get("task")))
    head = f"{r.get('ts', '?')}  {who}  "
    if kind == "health":
        pats = _list(r.get("patterns"))
        why = f" [{', '.join(map(str, pats))}]" if pats else ""
        reasons = _list(r.get("reasons"))
        detail = _dict(reasons[0]).get("detail") if reasons else ""
        return f"{head}health {r.get('from') or '-'} → {r.get('to')}{why}" + (
            f": {detail}" if detail else "")
    if kind == "proposal":
        p = _dict(r.get("proposal"))
        origin = str(p.get("source", "?"))
        if p.get("source") == "claude":
            origin += f" {p.get('model')}"
        elif p.get("degraded_reason"):
            origin += f" ({p.get('degraded_reason')})"
        acts = ", ".join(str(a.get("kind")) for a in _list(p.get("actions")) if isinstance(a, dict))
        diag = flat(str(p.get("diagnosis", "")), 160)
        return f"{head}proposal {p.get('id')} from {origin}: [{acts or 'no actions'}] {diag}"
    if kind == "decision":
        reason = f": {r['reason']}" if r.get("reason") else ""
        by = f" ({r['by']})" if r.get("by") else ""
        # `bgmon run`'s automatic restarts have no proposal: name the action instead.
        ref = r.get("proposal") or r.get("action") or "-"
        return f"{head}{r.get('decision')} {ref}{by}{reason}"
    if kind == "result":
        parts = []
        for a in _list(r.get("results")):
            if not isinstance(a, dict):
                continue
            status = "skipped" if a.get("skipped") else ("ok" if a.get("ok") else "failed")
            if status == "ok" and a.get("kind") == "restart":
                status = "started"  # whether it helped shows in the task's next badge
            extra = a.get("detail") or a.get("error") or ""
            parts.append(f"{a.get('kind')} {status}" + (f" ({extra})" if extra else ""))
        verdict = ("ok" if r.get("ok") else "FAILED") if not parts or not all(
            p.startswith("restart started") for p in parts) else "started"
        ref = r.get("proposal") or r.get("action") or "-"
        by = f" ({r['by']})" if r.get("by") else ""
        return f"{head}result {ref}{by} {verdict}: " + ("; ".join(parts) or "no actions")
    if kind == "mark":
        note = r.get("note")
        return f"{head}mark {note!r}" if note else f"{head}mark cleared"
    if kind == "auto":
        reason = f": {r['reason']}" if r.get("reason") else ""
        return f"{head}auto-recover {r.get('outcome') or '?'}{reason}"
    return f"{head}{kind}"


def format_report(rep: dict[str, Any], names: dict[str, str] | None = None) -> str:
    lines = [f"Recovery journal {rep['journal']}: {rep['records']} records"]
    if rep.get("bad_lines"):
        lines.append(f"  {rep['bad_lines']} unreadable or malformed line(s) skipped")
    failures = rep.get("failures_by_pattern") or {}
    lines.append("Failures by pattern:" if failures else "Failures by pattern: none recorded")
    lines += [f"  {name:<24} {count}" for name, count in failures.items()]
    props = rep.get("proposals", {})
    by_source = ", ".join(f"{k} {v}" for k, v in props.items() if k != "total")
    lines.append(
        f"Proposals: {props.get('total', 0)}" + (f" ({by_source})" if by_source else "")
        + f"; approved {rep['approved']}, rejected {rep['rejected']}, superseded {rep['superseded']}"
    )
    if rep.get("automatic"):
        lines.append(f"Automatic decisions (auto-recover, bgmon run): {rep['automatic']}")
    acts = rep.get("actions", {})
    rate = rep.get("action_success_rate")
    lines.append(
        f"Actions: {acts.get('ok', 0)}/{acts.get('total', 0)} succeeded"
        + (f" ({rate:.0%})" if rate is not None else "")
    )
    rs = rep.get("restarts") or {}
    if rs.get("started"):
        # A restart that started is not yet a success: say what became of the task.
        lines.append(
            f"  restarts: {rs['started']} started; {rs.get('recovered', 0)} healthy again, "
            f"{rs.get('failed_again', 0)} failed again, {rs.get('unconfirmed', 0)} not yet "
            "seen healthy"
        )
    median = rep.get("median_recovery_seconds")
    if median is None:
        lines.append("Time from failure to recovery: no recoveries recorded")
    else:
        lines.append(
            f"Time from failure to recovery: median {_dur(median)} over {rep['recoveries']}"
        )
    if rep.get("still_failing"):
        failing = [(names or {}).get(k) or key_name(k, None, None) or k
                   for k in rep["still_failing"]]
        lines.append(f"Still failing: {single_line(', '.join(failing))}")
    return "\n".join(lines) + "\n"


def _dur(seconds: float) -> str:
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"

