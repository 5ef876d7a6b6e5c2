"""Notifications from the TUI: a toast in the app, and OSC 9 / OSC 777 / bell bytes in the
real terminal output (the real app in a pseudo-terminal)."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import time
from dataclasses import replace

import pytest
from tuikit import SIZE, append_log, badge_of, config_for, failing, wait_for, write_task

from bgmon.config import Notify
from bgmon.model import Badge
from bgmon.views.tui.app import BgmonApp

OSC = re.compile(rb"\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)")
QUICK = "[notify]\nhold = 0\ncoalesce = 0\nmin_interval = 0\n"


async def test_a_confirmed_fault_shows_a_toast_once(home):
    task = write_task(home, "worker", events=[{"type": "step", "text": "compiling"}])
    config = replace(config_for(home), notify=Notify(hold=0, coalesce=0, min_interval=0))
    app = BgmonApp(config)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: badge_of(app, "worker") is Badge.HEALTHY, what="healthy")
        assert not list(app._notifications)  # what was there at the start is not announced
        append_log(task, *failing(3, error="pytest: 12 failed"))

        def toasts():
            return [n for n in app._notifications if (n.title or "").startswith("bgmon: worker")]

        await wait_for(pilot, lambda: toasts(), what="a toast")
        (toast,) = toasts()
        assert toast.title == "bgmon: worker struggling"
        assert "healthy → struggling" in toast.message and "pytest: 12 failed" in toast.message
        await pilot.pause(1.5)
        assert len(toasts()) == 1


def bells(out: bytes) -> int:
    """Bare BELs: not the terminators of OSC sequences (Textual sends some of its own)."""
    return OSC.sub(b"", out).count(b"\x07")


def read_until(fd: int, done, timeout: float = 30.0) -> bytes:
    """Terminal output until `done(output)` (an AssertionError after `timeout`)."""
    seen = b""
    deadline = time.monotonic() + timeout
    while not done(seen):
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"terminal output never matched within {timeout}s")
        if select.select([fd], [], [], min(left, 0.2))[0]:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                chunk = b""
            if not chunk:
                raise AssertionError("the terminal closed")
            seen += chunk
    return seen


def read_for(fd: int, seconds: float) -> bytes:
    seen = b""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        if select.select([fd], [], [], left)[0]:
            try:
                seen += os.read(fd, 65536)
            except OSError:
                break
    return seen


@pytest.mark.parametrize(("mode", "expected"), [
    ("osc9", b"\x1b]9;bgmon: worker failed: \xe2\x9c\x97 worker: healthy \xe2\x86\x92 failed"),
    ("osc777", b"\x1b]777;notify;bgmon: worker failed;\xe2\x9c\x97 worker: healthy"),
    ("bell", None),
])
def test_terminal_notifications_reach_the_terminal(home, mode, expected):
    write_task(home, "worker", step="building")
    cfg = home / "bgmon.toml"
    cfg.write_text(QUICK + f'terminal = "{mode}"\n')
    env = {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
           "TERM": "xterm-256color", "COLUMNS": "100", "LINES": "30"}
    env.pop("NO_COLOR", None)
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bgmon", "--config", str(cfg), "--no-git", "--no-claude",
         "--no-codex", str(home)], stdin=slave, stdout=slave, stderr=slave, env=env,
        start_new_session=True,
    )
    os.close(slave)
    try:
        before = read_until(master, lambda out: b"worker" in out)  # the first screen is up
        before += read_for(master, 2.0)  # the engine's first look is the baseline
        # Nothing is announced for what was there at the start.
        assert (bells(before) == 0) if expected is None else (expected not in before)
        write_task(home, "worker", status="failed", error="linker failed")
        if expected is None:
            out = read_until(master, bells)
            assert bells(out + read_for(master, 1.5)) == 1
        else:
            out = read_until(master, lambda out: expected in out)
            start = out.index(expected)
            end = out.index(b"\x07", start)
            text = out[start:end].decode()
            assert "linker failed" in text and "\x1b" not in text[1:]
        os.write(master, b"q")
        proc.wait(20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
