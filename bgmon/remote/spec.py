"""Where a remote host is and how to reach it: `NAME=ssh://user@host[:port][/root]` or
`NAME=cmd:ARGV…`, from `--remote` or `[[remote]]` in the config file.

Every command is an argv list. Over ssh the remote side always runs a shell, so the remote
command is built from an argv with each word quoted (`shlex.quote`): no task data, key or
proposal id can become shell syntax there.
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_USER = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_HOST = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")  # a name, IPv4 or IPv6 (brackets removed)
# Options of the monitor that take a value (the others are flags): kept with their value when
# a `cmd:` remote's options are reused for `bgmon propose`/`approve` on that host.
_VALUE_OPTIONS = {"--since", "--stuck-after", "--config"}
_DROP_OPTIONS = {"--metrics": 1, "--textfile": 1, "--json": 0, "--follow": 0, "--once": 0,
                 "--auto-recover": 0}


class RemoteError(ValueError):
    """A remote that cannot be used as written; the message says what to fix."""


def control_dir() -> Path:
    """Where ssh keeps its shared connections (ControlMaster): private to this user."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(base) / "bgmon" / "ssh"


@dataclass(frozen=True, slots=True)
class RemoteSpec:
    name: str
    url: str  # as written (shown to people)
    kind: str  # ssh | cmd
    target: str = ""  # ssh: [user@]host
    port: int | None = None
    root: str | None = None  # ssh: the root to watch there (default: bgmon's default there)
    stream: tuple[str, ...] = ()  # cmd: the command that prints the stream
    bgmon: tuple[str, ...] = ("bgmon",)  # ssh: how bgmon is run on the host
    options: tuple[str, ...] = ()  # monitor options for the host's bgmon (e.g. --no-claude)
    ssh_options: tuple[str, ...] = ()  # extra ssh arguments (e.g. -i KEY, -F CONFIG)

    # -- commands --------------------------------------------------------------------------

    def stream_argv(self) -> list[str]:
        """The local argv whose stdout is the host's `--follow --json` stream."""
        if self.kind == "cmd":
            return list(self.stream)
        roots = [self.root] if self.root else []
        return self._ssh([*self.bgmon, "--follow", "--json", *self.options, *roots])

    def command_argv(self, args: list[str]) -> list[str] | None:
        """The local argv that runs `bgmon ARGS…` on the host with this remote's roots and
        options; None for a `cmd:` remote whose command is not `… --follow --json …`."""
        if self.kind == "cmd":
            split = _split_cmd(self.stream)
            if split is None:
                return None
            prefix, options = split
            return [*prefix, *args, *options]
        roots = ["--root", self.root] if self.root else []
        return self._ssh([*self.bgmon, *args, *roots, *self.options])

    def _ssh(self, remote_argv: list[str]) -> list[str]:
        control = control_dir()
        argv = [
            "ssh", "-T",
            "-o", "BatchMode=yes",  # never a password or host-key prompt: fail, say why
            "-o", "ControlMaster=auto",  # one connection per host, shared by every command
            "-o", f"ControlPath={control}/%C",
            "-o", "ControlPersist=60",
            "-o", "ConnectTimeout=10",
            "-o", "ServerAliveInterval=10",  # a dead link is noticed in ~30 s
            "-o", "ServerAliveCountMax=3",
        ]
        if self.port is not None:
            argv += ["-p", str(self.port)]
        argv += [*self.ssh_options, "--", self.target]
        argv.append(" ".join(shlex.quote(word) for word in remote_argv))
        return argv

    def prepare(self) -> None:
        """Create ssh's control directory (0700) before the first connection."""
        if self.kind == "ssh":
            control_dir().mkdir(parents=True, exist_ok=True, mode=0o700)


def _split_cmd(stream: tuple[str, ...]) -> tuple[list[str], list[str]] | None:
    """`PREFIX… --follow --json [OPTIONS] [ROOT…]` → (PREFIX, options for other commands with
    each ROOT as `--root ROOT`); None when the command does not have that shape."""
    if "--follow" not in stream:
        return None
    at = stream.index("--follow")
    prefix, rest = list(stream[:at]), list(stream[at:])
    options: list[str] = []
    i = 0
    while i < len(rest):
        word = rest[i]
        if word in _DROP_OPTIONS:
            i += 1 + _DROP_OPTIONS[word]
            continue
        if word in _VALUE_OPTIONS or (word.startswith("--") and word.endswith("-dir")):
            options += rest[i:i + 2]
            i += 2
            continue
        options += [word] if word.startswith("-") else ["--root", word]
        i += 1
    return prefix, options


def parse_remote(text: str) -> RemoteSpec:
    """`NAME=ssh://[user@]host[:port][/path]` or `NAME=cmd:ARGV…` → RemoteSpec."""
    name, sep, url = text.partition("=")
    if not sep or not url:
        raise RemoteError(f"--remote takes NAME=ssh://user@host[:port][/root] or NAME=cmd:ARGV…, "
                          f"not {text!r}")
    return make_remote(name.strip(), url.strip())


def make_remote(name: str, url: str, *, bgmon: list[str] | str | None = None,
                options: list[str] | None = None,
                ssh_options: list[str] | None = None) -> RemoteSpec:
    if not NAME.match(name):
        raise RemoteError(f"remote name {name!r}: use letters, digits, '.', '_' or '-'")
    extra: dict[str, Any] = {  # the fields both kinds share
        "bgmon": tuple(shlex.split(bgmon) if isinstance(bgmon, str) else bgmon or ("bgmon",)),
        "options": tuple(options or ()),
        "ssh_options": tuple(ssh_options or ()),
    }
    if url.startswith("cmd:"):
        try:
            argv = tuple(shlex.split(url[4:]))
        except ValueError as exc:
            raise RemoteError(f"remote {name}: cmd: {exc}") from None
        if not argv:
            raise RemoteError(f"remote {name}: cmd: needs a command that prints the stream")
        return RemoteSpec(name=name, url=url, kind="cmd", stream=argv, **extra)
    if not url.startswith("ssh://"):
        raise RemoteError(f"remote {name}: {url!r} is neither ssh://user@host[:port][/root] "
                          "nor cmd:ARGV…")
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        raise RemoteError(f"remote {name}: bad port in {url!r}") from None
    host = parts.hostname or ""
    user = unquote(parts.username) if parts.username else None
    if not _HOST.match(host) or (user is not None and not _USER.match(user)):
        raise RemoteError(f"remote {name}: bad user or host in {url!r}")
    if parts.query or parts.fragment or parts.password:
        raise RemoteError(f"remote {name}: {url!r} has parts ssh does not use (password, ?, #)")
    path = unquote(parts.path)
    root = None
    if path not in ("", "/"):
        root = path[1:] if path.startswith("/~") else path  # ssh://h/~/src → ~/src on the host
    target = f"{user}@{host}" if user else host
    return RemoteSpec(name=name, url=url, kind="ssh", target=target, port=port, root=root, **extra)


def from_table(where: str, table: object) -> RemoteSpec:
    """One `[[remote]]` table of the config file: name, url, and optionally bgmon (the command
    that runs bgmon on the host), options and ssh_options (lists of words)."""
    if not isinstance(table, dict):
        raise RemoteError(f"{where}: each [[remote]] must be a table")
    unknown = set(table) - {"name", "url", "bgmon", "options", "ssh_options"}
    if unknown:
        raise RemoteError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    name, url = table.get("name"), table.get("url")
    if not isinstance(name, str) or not isinstance(url, str):
        raise RemoteError(f"{where}: needs name = \"…\" and url = \"ssh://…\" or \"cmd:…\"")
    lists = {}
    for key in ("options", "ssh_options"):
        value = table.get(key, [])
        if not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            raise RemoteError(f"{where}: {key} must be a list of strings")
        lists[key] = value
    bgmon = table.get("bgmon")
    if bgmon is not None and not (isinstance(bgmon, str) or (
            isinstance(bgmon, list) and bgmon and all(isinstance(v, str) for v in bgmon))):
        raise RemoteError(f"{where}: bgmon must be a command (a string or a list of words)")
    try:
        return make_remote(name, url, bgmon=bgmon, **lists)
    except RemoteError as exc:
        raise RemoteError(f"{where}: {exc}") from None
