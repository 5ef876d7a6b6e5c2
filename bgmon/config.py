"""Effective settings: built-in defaults, then the TOML file, then flags. Merged here and only here.

`bgmon --print-config` prints the result, so a person can see which value won.
"""

from __future__ import annotations

import math
import os
import shlex
import tomllib
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from bgmon.agents import REGISTRY, by_name
from bgmon.remote.spec import RemoteError, RemoteSpec, from_table
from bgmon.timefmt import format_duration, parse_duration


class ConfigError(ValueError):
    """A setting a person must fix; the message says which file and key."""


@dataclass(frozen=True, slots=True)
class Thresholds:
    """The numbers behind every health rule (documented in README's health table)."""

    stuck_after: float = 600.0  # seconds alive with no progress (or no life at all) → stuck
    loop_repeats: int = 5  # the same tool call this many times in a row → stuck (loop)
    fail_streak: int = 3  # failed tool results in a row → struggling
    fail_window: int = 10  # … or at least half of the last N results failed
    fail_window_min: int = 4  # (judged only once this many results exist)
    # fail_streak error events with no success between, the last within this window → struggling
    error_window: float = 60.0
    # A transcript's tool call with no result this long while its agent idles → waiting (approval)
    approval_after: float = 15.0


@dataclass(frozen=True, slots=True)
class Reading:
    """Limits of the log readers."""

    line_cap: int = 1 << 20  # lines longer than this are skipped and counted
    startup_bytes: int = 256 << 10  # back-scan at most this much of each log at start-up
    startup_lines: int = 200  # … or stop once this many complete lines are found
    read_chunk: int = 4 << 20  # read at most this much of one log per pass (the rest next pass)
    # When a log's last lines hold no to-do list, start-up looks further back for the newest
    # one: at most this much of each log, and this much in all per sweep (newest logs first),
    # so start-up cost grows neither with log size nor, past the budget, with tasks.
    checklist_search: int = 8 << 20
    checklist_budget: int = 16 << 20
    # Directories a task's `log` field may point into besides the task's own directory.
    log_dirs: tuple[str, ...] = ()


NOTIFY_TERMINAL = ("off", "bell", "osc9", "osc777")
WEBHOOK_FORMATS = ("ntfy", "slack", "json")
BADGE_NAMES = ("healthy", "struggling", "stuck", "failed", "completed", "unknown", "waiting")


@dataclass(frozen=True, slots=True)
class Notify:
    """When and where badge changes are announced (README "Get told", docs/notify.md)."""

    on: tuple[str, ...] = ("failed", "stuck", "struggling", "waiting")  # badges that notify
    hold: float = 30.0  # a new badge must hold this long first (a flapping task stays quiet)
    coalesce: float = 5.0  # changes confirmed within this window go out as one notification
    min_interval: float = 60.0  # at most one notification per this many seconds (none lost)
    command: tuple[str, ...] = ()  # argv run per notification (never through a shell)
    desktop: bool = False  # notify-send, terminal-notifier or osascript, whichever exists
    terminal: str = "off"  # the TUI's terminal: off | bell | osc9 | osc777
    webhook: str = ""  # URL a JSON body is POSTed to
    webhook_format: str = "ntfy"  # ntfy | slack | json
    timeout: float = 10.0  # seconds each sink may take

    def sinks(self) -> list[str]:
        """The names of the sinks that are on (the TUI also shows its own toast)."""
        on = [("command", bool(self.command)), ("desktop", self.desktop),
              ("terminal", self.terminal != "off"), ("webhook", bool(self.webhook))]
        return [name for name, enabled in on if enabled]


@dataclass(frozen=True, slots=True)
class Config:
    roots: tuple[str, ...] = (".",)
    since: float = 86400.0  # transcripts active within this window
    # The agents to read, by name (bgmon.agents.REGISTRY); None: every one. The file and the
    # flags set them one agent at a time (`claude = false`, --no-claude).
    sources: tuple[str, ...] | None = None
    dirs: tuple[tuple[str, str], ...] = ()  # (agent, its home folder) instead of the default
    git: bool = True  # also ask `git worktree list` for worktrees of each root
    match_agents: bool = True  # look for claude/codex processes by working directory
    # Seconds between safety sweeps in the live view, at least. While inotify works the full
    # sweep is only a safety net and stretches (up to 60 s) to stay under 0.2% of a core;
    # folders beyond the watch budget are polled at this pace; with no inotify at all,
    # everything is swept at this pace.
    sweep_interval: float = 5.0
    # Seconds between process looks in the live view, at least: with many live pids the looks
    # space out (up to 10 s) to stay near 1% of a core.
    proc_interval: float = 2.0
    cpu_sample: float = 0.3  # --once: seconds between its two CPU samples
    journal: str = ".agents/logs/background_monitoring.jsonl"  # relative to the first root
    # Let rule-based recovery act without a person on tasks that opted in (autoRecover: true).
    # Off unless the person running the monitor asks (--auto-recover): a status file alone,
    # which anyone who can write into a watched folder can plant, must never make bgmon act.
    auto_recover: bool = False
    # Finished worktree tasks (completed, failed, cancelled, timed out) with no sign of life for
    # this long leave the default view, its counts and the exit status; 0 keeps them (--all).
    age_out: float = 86400.0
    model: str | None = None  # Claude model for proposals (default: see recovery)
    patterns: str | None = None  # extra failure patterns TOML
    thresholds: Thresholds = field(default_factory=Thresholds)
    reading: Reading = field(default_factory=Reading)
    notify: Notify = field(default_factory=Notify)
    # Remote hosts whose bgmon streams its tasks here ([[remote]] tables, --remote NAME=URL).
    remotes: tuple[RemoteSpec, ...] = ()

    def enabled(self, agent: str) -> bool:
        return self.sources is None or agent in self.sources

    def home(self, agent: str) -> Path | None:
        """The agent's home folder: its `NAME_dir`, else its variable, else its default."""
        found = by_name(agent)
        return found.home_dir(dict(self.dirs).get(agent)) if found else None

    def switched(self, agent: str, on: bool) -> Config:
        names = [a.name for a in REGISTRY if self.enabled(a.name) and (a.name != agent or on)]
        if on and agent not in names:
            names.append(agent)
        return replace(self, sources=tuple(names))

    def with_home(self, agent: str, path: str) -> Config:
        return replace(self, dirs=(*(d for d in self.dirs if d[0] != agent), (agent, path)))

    def journal_path(self) -> Path:
        path = Path(self.journal).expanduser()
        return path if path.is_absolute() else Path(self.roots[0]).resolve() / path

    def to_toml(self) -> str:
        """The effective configuration in the same TOML shape the file takes (durations as
        written, `24h`; every section, so the output can be saved as a config file)."""
        recovery = {key: getattr(self, name) for key, name in _RECOVERY_KEYS.items()}
        top = {k: v for k, v in asdict(self).items()
               if k not in _NOT_KEYS and k not in _RECOVERY_KEYS.values()}
        lines = ["[monitor]"]
        lines += [_toml_line(k, v) for k, v in top.items() if v is not None]
        for agent in REGISTRY:
            lines.append(f"{agent.name} = {_toml_value(self.enabled(agent.name))}")
            if agent.home is not None:
                lines.append(f"{agent.name}_dir = {_toml_value(str(self.home(agent.name)))}")
        lines.append("\n[health]")
        lines += [_toml_line(k, v) for k, v in asdict(self.thresholds).items()]
        lines.append("\n[reading]")
        lines += [_toml_line(k, v) for k, v in asdict(self.reading).items()]
        lines.append("\n[notify]")
        lines += [_toml_line(k, v) for k, v in asdict(self.notify).items()]
        lines.append("\n[recovery]")
        for k, v in recovery.items():
            lines.append(_toml_line(k, v) if v is not None else f"# {k} = …  ({_UNSET[k]})")
        for remote in self.remotes:
            lines += ["\n[[remote]]", f"name = {_toml_value(remote.name)}",
                      f"url = {_toml_value(remote.url)}"]
            if remote.kind == "ssh":
                lines.append(f"bgmon = {_toml_value(remote.bgmon)}")
            for key in ("options", "ssh_options"):
                if getattr(remote, key):
                    lines.append(f"{key} = {_toml_value(getattr(remote, key))}")
        return "\n".join(lines) + "\n"


_UNSET = {"model": "default: the newest Opus model the installed SDK lists",
          "patterns": "default: only the built-in catalogue"}


def _toml_line(key: str, value: Any) -> str:
    if key in _DURATIONS and isinstance(value, int | float):
        return f'{key} = "{format_duration(value)}"'
    return f"{key} = {_toml_value(value)}"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def default_config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or "~/.config"
    return Path(base).expanduser() / "bgmon" / "config.toml"


# Keys whose TOML value may be a duration string ("10m") as well as seconds.
_DURATIONS = {"since", "sweep_interval", "proc_interval", "cpu_sample", "stuck_after",
              "age_out", "hold", "coalesce", "min_interval", "timeout",
              "error_window", "approval_after"}


def _coerce(where: str, key: str, value: Any, current: Any) -> Any:
    if key in _DURATIONS and isinstance(value, str):
        try:
            return parse_duration(value)
        except ValueError as exc:
            raise ConfigError(f"{where}: {key}: {exc}") from None
    if key == "roots":
        if isinstance(value, str):
            return (value,)
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return tuple(value)
        raise ConfigError(f"{where}: roots must be a list of paths")
    if isinstance(current, tuple):  # a list of words; a command may also be one string
        if isinstance(value, str):
            try:
                return tuple(shlex.split(value)) if key == "command" else (value,)
            except ValueError as exc:
                raise ConfigError(f"{where}: {key}: {exc}") from None
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return tuple(value)
        raise ConfigError(f"{where}: {key} must be a list of strings, not {value!r}")
    expected = type(current) if current is not None else str
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
        raise ConfigError(f"{where}: {key} must be {expected.__name__}, not {value!r}")
    return value


def _checked(where: str, key: str, value: Any, current: Any) -> Any:
    """`value` converted to the setting's type and range-checked; ConfigError names where and key."""
    value = _coerce(where, key, value, current)
    problem = _range_problem(key, value)
    if problem:
        raise ConfigError(f"{where}: {key} {problem}")
    return value


# Allowed ranges. Every other setting takes any value of its type.
_COUNTS = {"loop_repeats", "fail_streak", "fail_window", "fail_window_min",
           "line_cap", "startup_bytes", "startup_lines", "read_chunk"}  # ≥ 1 (counts, byte sizes)
_POSITIVE = {"since", "stuck_after", "sweep_interval", "proc_interval", "timeout",
             "error_window", "approval_after"}  # seconds, > 0
# ≥ 0: seconds, and byte sizes where 0 turns a search off
_NON_NEGATIVE = {"cpu_sample", "hold", "coalesce", "min_interval", "age_out", "checklist_search",
                 "checklist_budget"}
_CHOICES = {"terminal": NOTIFY_TERMINAL, "webhook_format": WEBHOOK_FORMATS}


def _range_problem(key: str, value: Any) -> str | None:
    """What is wrong with `value` for `key`, as the end of a sentence; None when it is fine."""
    if key in _COUNTS and value < 1:
        return f"must be at least 1, not {value!r}"
    if key in _POSITIVE and not (math.isfinite(value) and value > 0):
        return f"must be a duration greater than 0, not {value!r}"
    if key in _NON_NEGATIVE and not (math.isfinite(value) and value >= 0):
        return f"must be a duration of 0 or more, not {value!r}"
    if key == "roots" and not value:
        return "must name at least one root"
    if key == "journal" and not value.strip():
        return "must be a file path, not empty"
    if key in _CHOICES and value not in _CHOICES[key]:
        return f"must be one of {', '.join(_CHOICES[key])}, not {value!r}"
    if key == "on" and (bad := [b for b in value if b not in BADGE_NAMES]):
        return f"names unknown badge(s) {', '.join(map(repr, bad))} (known: {', '.join(BADGE_NAMES)})"
    if key == "webhook" and value and not value.startswith(("http://", "https://")):
        return f"must be an http:// or https:// URL, not {value!r}"
    return None


# Flags that set a checked value, named in validate()'s message.
_FLAGS = {"roots": "ROOT arguments", "since": "--since", "stuck_after": "--stuck-after",
          "on": "--notify-on", "hold": "--notify-hold", "min_interval": "--notify-interval",
          "terminal": "--notify-terminal", "webhook": "--notify-webhook",
          "webhook_format": "--notify-format"}


def validate(config: Config) -> Config:
    """`config` unchanged if every value is in range, else ConfigError naming the setting.

    load_config checks file values as it reads them (naming the file); this re-checks the merged
    result, so values from flags get the same rules.
    """
    for section, obj in (("monitor", config), ("health", config.thresholds),
                         ("reading", config.reading), ("notify", config.notify)):
        for f in fields(obj):
            if f.name in _NOT_KEYS:
                continue
            problem = _range_problem(f.name, getattr(obj, f.name))
            if problem:
                flag = f" ({_FLAGS[f.name]})" if f.name in _FLAGS else ""
                raise ConfigError(f"[{section}] {f.name}{flag} {problem}")
    return config


# Config fields that are not `[monitor]` keys of their own.
_NOT_KEYS = ("thresholds", "reading", "notify", "sources", "dirs", "remotes")


def _agent_keys(config: Config, table: dict, where: str) -> tuple[Config, dict]:
    """`NAME = false` and `NAME_dir = "…"` for every registered agent; the other keys returned."""
    rest = {}
    for key, value in table.items():
        agent = by_name(key.removesuffix("_dir"))
        if agent is None or (key.endswith("_dir") and agent.home is None):
            rest[key] = value
        elif key.endswith("_dir"):
            if not isinstance(value, str) or not value.strip():
                raise ConfigError(f"{where}: {key} must be a folder path, not {value!r}")
            config = config.with_home(agent.name, value)
        else:
            if not isinstance(value, bool):
                raise ConfigError(f"{where}: {key} must be true or false, not {value!r}")
            config = config.switched(agent.name, value)
    return config, rest


def _apply(obj: Any, table: dict, where: str) -> tuple[Any, list[str]]:
    known = {f.name for f in fields(obj)}
    changes: dict[str, Any] = {}
    unknown = []
    for key, value in table.items():
        if key not in known or key in _NOT_KEYS:
            unknown.append(f"{where}.{key}")
            continue
        changes[key] = _checked(where, key, value, getattr(obj, key))
    return replace(obj, **changes), unknown


def load_config(path: Path | None, explicit: bool = False) -> tuple[Config, list[str]]:
    """Defaults overlaid with a TOML file. Returns (config, warnings about unknown keys).

    A missing default file is fine; a missing file named with --config is an error.
    """
    config = Config()
    path = path or default_config_path()
    try:
        text = path.read_text("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not UTF-8 text (byte {exc.start}); save it as UTF-8"
        ) from None
    except FileNotFoundError:
        if explicit:
            raise ConfigError(f"config file not found: {path}") from None
        return config, []
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    warnings: list[str] = []
    for section in data:
        if section not in _SECTIONS and section != "remote":
            warnings.append(f"{path}: unknown section [{section}] ignored")
    tables = {}
    for section in _SECTIONS:
        table = data.get(section, {})
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: [{section}] must be a table (a [{section}] section), "
                              f"not {section} = {table!r}")
        tables[section] = table
    config, monitor = _agent_keys(config, tables["monitor"], f"{path} [monitor]")
    config, unknown = _apply(config, monitor, f"{path} [monitor]")
    warnings += [f"unknown key {k} ignored" for k in unknown]
    thresholds, unknown = _apply(config.thresholds, tables["health"], f"{path} [health]")
    warnings += [f"unknown key {k} ignored" for k in unknown]
    reading, unknown = _apply(config.reading, tables["reading"], f"{path} [reading]")
    warnings += [f"unknown key {k} ignored" for k in unknown]
    notify, unknown = _apply(config.notify, tables["notify"], f"{path} [notify]")
    warnings += [f"unknown key {k} ignored" for k in unknown]
    changes: dict[str, Any] = {"thresholds": thresholds, "reading": reading, "notify": notify}
    where = f"{path} [recovery]"
    for key, value in tables["recovery"].items():
        name = _RECOVERY_KEYS.get(key)
        if name is None:
            warnings.append(f"unknown key {where}.{key} ignored")
            continue
        changes[name] = _checked(where, key, value, getattr(config, name))
    changes["remotes"] = _remotes(path, data.get("remote", []))
    return validate(replace(config, **changes)), warnings


def _remotes(path: Path, tables: object) -> tuple[RemoteSpec, ...]:
    if not isinstance(tables, list):
        raise ConfigError(f"{path}: remotes are [[remote]] tables (name, url), not remote = …")
    try:
        return merge_remotes((), [from_table(f"{path} [[remote]] #{i}", t)
                                  for i, t in enumerate(tables, 1)])
    except RemoteError as exc:
        raise ConfigError(str(exc)) from None


def merge_remotes(base: tuple[RemoteSpec, ...], more: list[RemoteSpec]) -> tuple[RemoteSpec, ...]:
    """`base` with `more` added; a later remote of the same name replaces the earlier one
    (so a --remote flag wins over the file's [[remote]] of that name)."""
    out = {r.name: r for r in base}
    for r in more:
        out[r.name] = r
    return tuple(out.values())


_SECTIONS = ("monitor", "health", "reading", "recovery", "notify")
# [recovery] key → Config field
_RECOVERY_KEYS = {"model": "model", "auto": "auto_recover", "patterns": "patterns",
                  "journal": "journal"}
