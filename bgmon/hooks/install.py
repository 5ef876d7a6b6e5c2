"""`bgmon hooks install|uninstall AGENT`: wire an agent's own lifecycle hooks to bgmon's recorder.

Claude Code (`settings.json`) and Codex 0.114+ (`hooks.json`) share one shape, `hooks` → event →
matcher groups: bgmon merges in one group per event whose command ends in MARKER, so it finds
exactly its own again. Older Codex (`codex-notify`): a top-level `notify` in `config.toml` (Codex
runs it after every turn), on lines ending in MARKER. Installing twice changes nothing;
uninstalling removes exactly those entries (and restores the file byte for byte when nothing
else changed since); before any change the previous file is kept as FILE.bgmon-backup;
--dry-run prints the change as a diff and writes nothing.
"""

from __future__ import annotations

import difflib
import json
import os
import shlex
import sys
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

MARKER = "# bgmon-hook"
RECORDER = Path(__file__).with_name("record.py")
BACKUP = ".bgmon-backup"

# Claude Code hook events → the matcher for tool events (None: no matcher).
CLAUDE_EVENTS: dict[str, str | None] = {
    "UserPromptSubmit": None,
    "PreToolUse": "*",
    "PostToolUse": "*",
    "Notification": None,
    "Stop": None,
    "StopFailure": None,
    "SubagentStop": None,
    "SessionEnd": None,
}
# Codex's hook events (hooks.json, 0.114+; the input on stdin is shaped like Claude Code's).
# No matcher: a group without one matches every tool (Codex's matchers are regexes). A version
# that does not know an event ignores it, so StopFailure is safe to list for older ones.
CODEX_EVENTS: dict[str, str | None] = {
    "UserPromptSubmit": None,
    "PreToolUse": None,
    "PermissionRequest": None,
    "PostToolUse": None,
    "Stop": None,
    "StopFailure": None,
}


class HookError(Exception):
    """Something a person must fix first (the file is left as it was)."""


def command(agent: str) -> list[str]:
    """The recorder's argv: the running interpreter, isolated (-I) and without site (-S): it
    needs nothing but the standard library, and starts fastest so."""
    return [sys.executable, "-I", "-S", str(RECORDER), agent]


# -- Claude Code's settings.json, Codex's hooks.json ------------------------------------------


def _ours(group: object) -> bool:
    hooks = group.get("hooks") if isinstance(group, dict) else None
    return isinstance(hooks, list) and bool(hooks) and all(isinstance(h, dict) and str(h.get("command", "")).endswith(MARKER)
                               for h in hooks)


def _group(agent: str, matcher: str | None) -> dict:
    entry = {"type": "command", "command": f"{shlex.join(command(agent))} {MARKER}", "timeout": 5}
    return {"matcher": matcher, "hooks": [entry]} if matcher is not None else {"hooks": [entry]}


def _load_json(path: Path, text: str) -> dict:
    if not text.strip():
        return {}
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise HookError(f"{path} is not valid JSON ({exc.msg}, line {exc.lineno}); not changed") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("hooks", {}), dict):
        raise HookError(f"{path} does not hold an object with a `hooks` table; not changed")
    return obj


def _dump(obj: dict, like: str) -> str:
    # Claude Code writes its settings as JSON.stringify(…, null, 2): the same here, so that a
    # file it wrote differs only by bgmon's entries (people write hooks.json so too).
    text = json.dumps(obj, indent=2, ensure_ascii=False)
    return text + "\n" if like.endswith("\n") or not like else text


def hooks_installed(agent: str, events: dict[str, str | None], text: str, path: Path) -> str:
    obj = _load_json(path, text)
    hooks = obj.setdefault("hooks", {})
    for event, matcher in events.items():
        groups = hooks.get(event)
        if not isinstance(groups, list):
            if groups is not None:
                raise HookError(f"{path}: hooks.{event} is not a list; not changed")
            groups = hooks[event] = []
        want = _group(agent, matcher)
        if want in groups:
            continue
        groups[:] = [g for g in groups if not _ours(g)] + [want]
    new = _dump(obj, text)
    return text if json.loads(new) == _load_json(path, text) else new


def hooks_removed(text: str, path: Path) -> str:
    obj = _load_json(path, text)
    hooks = obj.get("hooks")
    if not isinstance(hooks, dict):
        return text
    changed = False
    for event in list(hooks):
        groups = hooks[event]
        if isinstance(groups, list) and any(_ours(g) for g in groups):
            hooks[event] = [g for g in groups if not _ours(g)]
            changed = True
            if not hooks[event]:
                del hooks[event]
    if not changed:
        return text
    if not hooks:
        del obj["hooks"]
    return _dump(obj, text)


# -- Codex before hooks: notify in config.toml -------------------------------------------------


def notify_installed(text: str, path: Path) -> str:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise HookError(f"{path} is not valid TOML ({exc}); not changed") from None
    line = f"notify = {json.dumps(command('codex'))}  {MARKER}\n"
    if line in text:
        return text
    rest = notify_removed(text, path)
    if "notify" in tomllib.loads(rest):
        raise HookError(f"{path} already sets notify = {data['notify']!r}; bgmon will not replace it "
                        "(Codex runs one notify program): remove it, then install again")
    head = f"{MARKER}: Codex runs this after every turn (bgmon hooks uninstall codex-notify removes it)\n"
    return head + line + rest


def notify_removed(text: str, path: Path) -> str:
    kept = [ln for ln in text.splitlines(keepends=True) if not ln.rstrip("\n").rstrip().endswith(MARKER)
            and not ln.startswith(f"{MARKER}:")]
    return "".join(kept)


# -- applying a change ---------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Plan:
    """What `bgmon hooks install NAME` changes: which agent's file, and how."""

    agent: str  # whose home the file is in (and the recorder's argument)
    file: str  # in the agent's home
    add: Callable[[str, Path], str]
    remove: Callable[[str, Path], str]
    structured: bool  # JSON: "nothing else changed" compares the parsed objects
    note: str = ""  # what the person must still do, said after installing


PLANS = {
    "claude": Plan("claude", "settings.json", lambda t, p: hooks_installed("claude", CLAUDE_EVENTS, t, p),
                   hooks_removed, True),
    "codex": Plan("codex", "hooks.json", lambda t, p: hooks_installed("codex", CODEX_EVENTS, t, p),
                  hooks_removed, True,
                  "Codex runs a new hook only once you trust it: review bgmon's with /hooks in Codex. "
                  "Where hooks are still behind a feature flag: `codex features enable codex_hooks`; "
                  "Codex before 0.114 has no hooks: use `bgmon hooks install codex-notify`."),
    "codex-notify": Plan("codex", "config.toml", notify_installed, notify_removed, False),
}


def target(name: str, home: Path) -> Path:
    return home / PLANS[name].file


def change(name: str, path: Path, install: bool, dry_run: bool, out) -> bool:
    """Install or remove bgmon's hooks in `path`; print what changed (a diff when dry-running).
    Returns True when the file changed (or would)."""
    try:
        old = path.read_text("utf-8")
    except FileNotFoundError:
        old = ""
    except (OSError, UnicodeDecodeError) as exc:
        raise HookError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    plan = PLANS[name]
    new = plan.add(old, path) if install else plan.remove(old, path)
    backup = path.with_name(path.name + BACKUP)
    if not install and new != old and backup.exists():
        # Nothing but bgmon's entries changed since the backup: put the exact bytes back.
        try:
            saved = backup.read_text("utf-8")
            if saved == new or (plan.structured and _load_json(path, saved) == _load_json(path, new)):
                new = saved
        except (OSError, UnicodeDecodeError, HookError):
            pass
    if new == old:
        print(f"{path}: bgmon's {name} hooks are {'already' if install else 'not'} installed; nothing to change",
              file=out)
        return False
    if dry_run:
        out.writelines(difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True),
                                            str(path), f"{path} (with bgmon's hooks)" if install else
                                            f"{path} (without bgmon's hooks)"))
        return True
    _write(path, old, new, backup)
    verb = "installed in" if install else "removed from"
    print(f"bgmon's {name} hooks {verb} {path} (previous file kept as {backup.name})", file=out)
    if install and plan.note:
        print(plan.note, file=out)
    return True


def _write(path: Path, old: str, new: str, backup: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = 0o600
    if path.exists():
        mode = path.stat().st_mode & 0o777
        backup.write_text(old, "utf-8")
        os.chmod(backup, mode)
    tmp = path.with_name(f".{path.name}.bgmon-tmp")
    tmp.write_text(new, "utf-8")
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def main(argv: list[str], out=None) -> int:
    """`bgmon hooks install|uninstall AGENT [--dry-run] [--file FILE]`; exit 0, or 2 with a
    one-line message when the file must be fixed first."""
    from bgmon.agents import by_name
    from bgmon.parser import Parser

    out = out or sys.stdout
    p = Parser(prog="bgmon hooks", description="Let an agent report its own state "
                                "to bgmon through its hooks (opt-in; see docs/agents.md).")
    p.add_argument("action", choices=("install", "uninstall"))
    p.add_argument("agent", choices=sorted(PLANS), help="claude, codex (hooks.json, Codex 0.114+) or "
                   "codex-notify (notify in config.toml, for older Codex)")
    p.add_argument("--dry-run", action="store_true", help="print the change as a diff; write nothing")
    p.add_argument("--file", type=Path, help="the settings file to change (default: the one in the "
                   "agent's home: ~/.claude/settings.json, ~/.codex/hooks.json, ~/.codex/config.toml)")
    args = p.parse_args(argv)
    agent = by_name(PLANS[args.agent].agent)
    assert agent is not None
    path = args.file or target(args.agent, agent.home_dir(None) or Path.home())
    try:
        change(args.agent, path, args.action == "install", args.dry_run, out)
    except HookError as exc:
        print(f"bgmon: {exc}", file=sys.stderr)
        return 2
    return 0
