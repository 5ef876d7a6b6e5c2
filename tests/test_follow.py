"""`bgmon --follow --json` as a real subprocess: snapshot lines, then one line per badge change."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import time

import orjson

from tests.conftest import bgmon_cmd


class Lines:
    """Read a child's stdout line by line with a deadline (never a blocking read)."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc
        self.sel = selectors.DefaultSelector()
        self.sel.register(proc.stdout, selectors.EVENT_READ)
        self.buf = b""

    def next(self, timeout: float = 20.0) -> dict | None:
        line = self.raw(timeout)
        return None if line is None else orjson.loads(line)

    def raw(self, timeout: float = 20.0) -> bytes | None:
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0 or not self.sel.select(left):
                return None
            chunk = os.read(self.proc.stdout.fileno(), 65536)
            if not chunk:
                return None
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line

    def until(self, predicate, timeout: float = 20.0) -> dict | None:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            obj = self.next(left)
            if obj is None:
                return None
            if predicate(obj):
                return obj
        return None


def start(ws, isolated_home):
    env = {**os.environ, "HOME": str(isolated_home), "XDG_CONFIG_HOME": str(isolated_home / ".config")}
    return subprocess.Popen(
        bgmon_cmd("--follow", "--json", "--no-git", "--no-claude", "--no-codex", str(ws.root)),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    )


def test_badge_change_appears_as_one_json_line(ws, isolated_home):
    ws.task("steady")
    ws.task("worker")
    ws.log("worker", {"type": "tool_call", "tool": "Bash", "call_id": "ok", "input": "make"},
           {"type": "tool_result", "call_id": "ok", "ok": True})
    proc = start(ws, isolated_home)
    lines = Lines(proc)
    try:
        hello = lines.next()
        assert hello["event"] == "hello" and hello["version"] == 1
        assert hello["bgmon"] and hello["host"] and hello["roots"] == [str(ws.root)]
        snaps = [lines.next(), lines.next()]
        assert {s["event"] for s in snaps} == {"snapshot"}
        synced = lines.next()
        assert synced["event"] == "synced" and synced["tasks"] == 2
        assert {s["task"]["name"] for s in snaps} == {"steady", "worker"}
        assert all(s["task"]["health"] == "healthy" for s in snaps)

        ws.fail("worker", 3, error="exit 2")
        change = lines.until(lambda o: o.get("event") == "health")
        assert change is not None, "no health change line"
        assert change["from"] == "healthy" and change["to"] == "struggling"
        assert change["id"] == "worker" and change["key"].endswith("/worker")
        assert change["reasons"][0]["rule"] == "struggling.streak"
        assert change["task"]["health"] == "struggling"  # the whole task rides along
        # …and the transition is in the journal under the watched root.
        journal = ws.root / ".agents" / "logs" / "background_monitoring.jsonl"
        records = [orjson.loads(x) for x in journal.read_bytes().splitlines()]
        health = [r for r in records if r["kind"] == "health"]
        assert [(r["task"], r["from"], r["to"]) for r in health] == [
            (change["key"], "healthy", "struggling")]

        ws.task("newcomer")
        added = lines.until(lambda o: o.get("event") == "added")
        assert added is not None and added["task"]["name"] == "newcomer"
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert b"Traceback" not in err


def test_first_picture_and_a_burst_of_changes_are_whole_in_several_writes(ws, isolated_home):
    """More tasks than one write batch (live.WRITE_BATCH): every snapshot line once, the synced
    line last; then as many changes at once, each its own whole line."""
    from bgmon.live import WRITE_BATCH

    names = [f"t{i:02d}" for i in range(WRITE_BATCH * 2 + 5)]
    for name in names:
        ws.task(name)
    proc = start(ws, isolated_home)
    lines = Lines(proc)
    try:
        assert lines.next()["event"] == "hello"
        snaps = [lines.next() for _ in names]
        assert [s["event"] for s in snaps] == ["snapshot"] * len(names)
        assert sorted(s["task"]["name"] for s in snaps) == names
        synced = lines.next()
        assert synced["event"] == "synced" and synced["tasks"] == len(names)

        for name in names:
            ws.fail(name, 3, error="exit 2")
        struggling = set()
        while len(struggling) < len(names):
            change = lines.until(lambda o: o.get("event") == "health")
            assert change is not None, f"{len(struggling)} of {len(names)} health lines"
            assert change["to"] == "struggling"
            struggling.add(change["task"]["name"])
        assert struggling == set(names)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err


def test_sigint_exits_cleanly(ws, isolated_home):
    ws.task("one")
    proc = start(ws, isolated_home)
    lines = Lines(proc)
    assert lines.next() is not None
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0 and b"Traceback" not in err


def test_heartbeats_and_exits_once_its_reader_is_gone(ws, isolated_home):
    """Nothing changes, nobody signals it: only the closed pipe says the reader left. The
    heartbeat line finds that out (EPIPE) and the stream ends cleanly."""
    ws.task("one")
    proc = start(ws, isolated_home)
    try:
        lines = Lines(proc)
        assert lines.next()["event"] == "hello"
        assert lines.until(lambda o: o.get("event") == "synced") is not None
        beat = lines.until(lambda o: o.get("event") == "heartbeat", timeout=30)
        assert beat is not None and isinstance(beat["at"], str)
        proc.stdout.close()  # the reader goes; the task stays as it is
        assert proc.wait(timeout=60) == 0
        err = proc.stderr.read()
        assert b"Traceback" not in err and b"Exception ignored" not in err, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
