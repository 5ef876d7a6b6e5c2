"""Shared fixtures: real workspaces in temp dirs, written the way agents write them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from bgmon.config import Config

REPO = Path(__file__).resolve().parents[1]
# The real agent logs beside the repository (../shared/corpus), or where BGMON_CORPUS says (a
# git worktree sits one level deeper); tests that read it skip when it is absent.
CORPUS = Path(os.environ.get("BGMON_CORPUS") or REPO.parent / "shared" / "corpus")


def write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(orjson.dumps(obj))
    os.replace(tmp, path)


def append_lines(path: Path, *objs) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab") as fh:
        for obj in objs:
            fh.write(orjson.dumps(obj) + b"\n")


class Workspace:
    """ROOT/.worktrees/<name>/status.json + logs/events.jsonl, as `bgmon run` lays them out."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def task(self, dirname: str, **status) -> Path:
        d = self.root / ".worktrees" / dirname
        status.setdefault("status", "running")
        status.setdefault("updatedAt", time.time())
        write_json(d / "status.json", status)
        (d / "logs").mkdir(parents=True, exist_ok=True)
        return d

    def log(self, name: str, *events) -> Path:
        path = self.root / ".worktrees" / name / "logs" / "events.jsonl"
        append_lines(path, *events)
        return path

    def fail(self, name: str, n: int, tool: str = "Bash", error: str = "exit 1", start: int = 0) -> None:
        now = time.time()
        for i in range(start, start + n):
            self.log(
                name,
                {"ts": now, "type": "tool_call", "tool": tool, "call_id": f"f{i}", "input": {"i": i}},
                {"ts": now, "type": "tool_result", "call_id": f"f{i}", "ok": False, "error": error},
            )

    def config(self, **kw) -> Config:
        kw.setdefault("roots", (str(self.root),))
        kw.setdefault("sources", ("worktrees", "omo"))
        kw.setdefault("git", False)
        kw.setdefault("cpu_sample", 0.05)
        return Config(**kw)


@pytest.fixture
def ws(tmp_path) -> Workspace:
    return Workspace(tmp_path)


@pytest.fixture
def isolated_home(tmp_path, monkeypatch):
    """No real ~/.claude, ~/.codex or config file leaks into a test."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.delenv("CLAUDE_CONFIG_DIR", raising=False)
    monkeypatch.delenv("CODEX_HOME", raising=False)
    for var in ("XDG_DATA_HOME", "XDG_STATE_HOME", "GEMINI_CLI_HOME", "COPILOT_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("BGMON_MODEL", raising=False)
    return home


def wait_for(pred, timeout: float = 15.0, what: str = "condition", step: float = 0.05):
    """Poll `pred` until it returns something truthy (returned) or `timeout` passes (an
    AssertionError). Files caught mid-write (OSError, ValueError, KeyError) count as not yet."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = pred()
        except (OSError, ValueError, KeyError):
            value = None
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class Clock:
    """A clock tests move by hand: `clock.t += 601`."""

    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def terminate(proc: subprocess.Popen, timeout: float = 20.0) -> int:
    """SIGTERM, then SIGKILL if it has not exited within `timeout`; its exit status (negative
    when killed, so a test asserting a clean exit still fails). It waits rather than reading the
    pipes, which a test's own reader thread may own; give it a process whose pipes are read."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def bgmon_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "bgmon", *args]


def processes_under(path: Path | str, word: str = "", among=None) -> list:
    """The live processes (of `among`, default all) whose command line names `path` (a test's
    tmp dir) and `word`: what the test started there, directly or on the far side of a link."""
    import psutil

    found = []
    for proc in psutil.process_iter() if among is None else among:
        try:
            line = " ".join(proc.cmdline())
            if proc.pid != os.getpid() and str(path) in line and word in line:
                found.append(proc)
        except psutil.Error:
            pass
    return found


@pytest.fixture
def reap_strays(tmp_path):
    """After the test, kill (by pid) whatever it started that still runs with its tmp dir in
    the command line, so a leak fails one test instead of piling up on the machine."""
    yield
    import psutil

    for proc in processes_under(tmp_path):
        try:
            proc.kill()
        except psutil.Error:
            pass
