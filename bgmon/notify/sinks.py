"""Where notifications go: a command, the desktop, the terminal, a webhook.

Each sink takes a Batch and either delivers it within its timeout or raises SinkError with a
one-line reason; the notifier counts and shows failures and carries on. Nothing runs through a
shell: commands are argv lists and the environment carries the task's facts.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from typing import TextIO
from urllib.parse import urlsplit, urlunsplit

import httpx

from bgmon.notify import message
from bgmon.notify.policy import Batch
from bgmon.timefmt import clock


class SinkError(Exception):
    """A notification that could not be delivered; the message says why, in one line."""


def _run(argv: list[str], timeout: float, env: dict[str, str] | None = None) -> None:
    try:
        done = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise SinkError(f"{argv[0]} took longer than {timeout:g}s and was stopped") from None
    except OSError as exc:
        raise SinkError(f"cannot run {argv[0]}: {exc.strerror or exc}") from None
    if done.returncode != 0:
        err = done.stderr.decode("utf-8", "replace").strip().splitlines()
        tail = f": {message.shown(err[-1], 200)}" if err else ""
        raise SinkError(f"{argv[0]} exited with status {done.returncode}{tail}")


class CommandSink:
    """Runs `argv` once per notification with BGMON_* variables (message.environment)."""

    name = "command"

    def __init__(self, argv: tuple[str, ...], timeout: float) -> None:
        self.argv = list(argv)
        self.timeout = timeout

    def send(self, batch: Batch) -> None:
        _run(self.argv, self.timeout, {**os.environ, **message.environment(batch)})


# Tried in this order; the first one on PATH is used.
DESKTOP_TOOLS = ("notify-send", "terminal-notifier", "osascript")


def desktop_argv(tool: str, title: str, body: str, urgent: bool) -> list[str]:
    name = os.path.basename(tool)
    if name == "notify-send":
        return [tool, "--app-name=bgmon", f"--urgency={'critical' if urgent else 'normal'}",
                "--", title, body]
    if name == "terminal-notifier":
        return [tool, "-group", "bgmon", "-title", title, "-message", body]
    # osascript: the texts are arguments of the script, never spliced into its source.
    return [tool, "-e", "on run argv", "-e",
            "display notification (item 2 of argv) with title (item 1 of argv)",
            "-e", "end run", title, body]


def find_desktop_tool(path: str | None = None) -> str | None:
    for tool in DESKTOP_TOOLS:
        found = shutil.which(tool, path=path)
        if found:
            return found
    return None


class DesktopSink:
    name = "desktop"

    def __init__(self, timeout: float, tool: str | None = None) -> None:
        self.timeout = timeout
        self.tool = tool or find_desktop_tool()

    def send(self, batch: Batch) -> None:
        if self.tool is None:
            raise SinkError(f"no desktop notifier found on PATH (tried {', '.join(DESKTOP_TOOLS)})")
        urgent = batch.alerts[0].severity >= 4
        _run(desktop_argv(self.tool, message.title(batch), message.body(batch), urgent), self.timeout)


def terminal_sequence(mode: str, batch: Batch) -> str:
    """The bytes a terminal turns into a notification: a bell, OSC 9 or OSC 777. They work over
    ssh, since they travel with the screen. The texts hold no control characters (alerts are
    sanitised), so nothing can end the sequence early."""
    if mode == "bell":
        return "\a"
    title = message.title(batch)
    text = " · ".join(message.lines(batch))
    if mode == "osc9":
        return f"\x1b]9;{title}: {text}\x07"
    # OSC 777 separates its fields with ';': the title must not hold one.
    return f"\x1b]777;notify;{title.replace(';', ',')};{text}\x07"


class TerminalSink:
    name = "terminal"

    def __init__(self, mode: str, write: Callable[[str], None] | None = None) -> None:
        self.mode = mode
        self.write = write or _write_stderr

    def send(self, batch: Batch) -> None:
        self.write(terminal_sequence(self.mode, batch))


def _write_stderr(text: str) -> None:
    sys.stderr.write(text)
    sys.stderr.flush()


class LogSink:
    """`bgmon watch`'s own record: each notification as lines on a stream (stdout)."""

    name = "log"

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def send(self, batch: Batch) -> None:
        head = f"[{clock(batch.at)}] {message.title(batch)}"
        self.out.write("\n".join([head, *("  " + x for x in message.lines(batch))]) + "\n")
        self.out.flush()


def ntfy_target(url: str) -> tuple[str, str]:
    """`https://ntfy.sh/mytopic` → (`https://ntfy.sh/`, `mytopic`): ntfy takes a JSON body at
    its root URL with the topic inside."""
    parts = urlsplit(url)
    path = parts.path.rstrip("/")
    base, _, topic = path.rpartition("/")
    if not topic:
        raise ValueError(f"an ntfy webhook URL ends with its topic (https://ntfy.sh/TOPIC), not {url}")
    return urlunsplit((parts.scheme, parts.netloc, base + "/", "", "")), topic


class WebhookSink:
    name = "webhook"

    def __init__(self, url: str, fmt: str, timeout: float) -> None:
        self.fmt = fmt
        self.timeout = timeout
        if fmt == "ntfy":
            self.url, self.topic = ntfy_target(url)
        else:
            self.url, self.topic = url, ""

    def body(self, batch: Batch) -> dict:
        if self.fmt == "ntfy":
            return message.ntfy_body(batch, self.topic)
        if self.fmt == "slack":
            return message.slack_body(batch)
        return message.json_body(batch)

    def send(self, batch: Batch) -> None:
        try:
            response = httpx.post(self.url, json=self.body(batch), timeout=self.timeout)
        except httpx.HTTPError as exc:
            raise SinkError(f"webhook {self.url}: {type(exc).__name__}: {exc}") from None
        if response.status_code >= 300:
            raise SinkError(f"webhook {self.url} answered {response.status_code}")
