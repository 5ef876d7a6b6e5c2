"""The live watch under stress: changes in the first moments, no inotify at all, bursts of new
task directories and of log bytes. Each runs the real `bgmon --follow --json` on real files, with
the safety sweep set to an hour so that only the watch (or the fallback that replaces it) can see
the change: a change seen late is a change not seen before the (generous) deadline."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import time

import orjson
import pytest

from bgmon.engine import Monitor
from bgmon.live import LiveEngine
from bgmon.sources.watch import DirWatch, Inotify
from tests.conftest import Clock, append_lines, bgmon_cmd
from tests.test_follow import Lines

HOUR = 3600


def _config(tmp_path, **monitor) -> str:
    path = tmp_path / "bgmon.toml"
    lines = ["[monitor]"] + [f"{k} = {v!r}" for k, v in monitor.items()]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def _start(ws, home, config: str, prefix: tuple[str, ...] = ()) -> subprocess.Popen:
    env = {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")}
    argv = [*prefix, *bgmon_cmd("--follow", "--json", "--no-git", "--no-claude", "--no-codex",
                                "--config", config, str(ws.root))]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)


def _stop(proc: subprocess.Popen) -> bytes:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    return err


def _snapshots(lines: Lines, n: int) -> dict[str, dict]:
    out: dict[str, dict] = {}
    while len(out) < n:
        obj = lines.next(timeout=120)
        assert obj is not None, f"only {len(out)} of {n} snapshot lines"
        if obj.get("event") == "snapshot":
            out[obj["task"]["name"]] = obj["task"]
    return out


def _struggling(lines: Lines, keys: set[str], timeout: float = 60.0) -> set[str]:
    """Wait for a `health … to struggling` line of each key; returns the keys never seen."""
    left = set(keys)
    deadline = time.monotonic() + timeout
    while left and (rest := deadline - time.monotonic()) > 0:
        obj = lines.next(timeout=rest)
        if obj is None:
            break
        if obj.get("event") == "health" and obj.get("to") == "struggling":
            left.discard(obj.get("key"))
    return left


def _fail(ws, name: str) -> None:
    now = time.time()
    ws.log(name, *({"ts": now, "type": "tool_result", "call_id": f"x{i}", "ok": False,
                    "error": "exit 1"} for i in range(3)))


async def test_a_change_right_after_the_first_scan_is_seen(ws, isolated_home):
    """Start-up race: the watch is armed before the first scan. A log written the moment the
    first snapshot is out (the emit callback of the first pass writes it) must reach the
    engine as an event: the sweep is an hour away."""
    for i in range(200):
        ws.task(f"t{i:03d}", name=f"t{i:03d}")
    monitor = Monitor(ws.config(sweep_interval=HOUR))
    seen: list[str] = []
    done = asyncio.Event()

    def emit(changes) -> None:
        if not seen:
            seen.append("snapshot")
            _fail(ws, "t007")
            return
        if any(c.kind == "health" and c.snapshot.name == "t007" for c in changes):
            seen.append("struggling")
            done.set()

    engine = LiveEngine(monitor, emit)
    runner = asyncio.create_task(engine.run())
    try:
        await asyncio.wait_for(done.wait(), 30)
    except TimeoutError:
        pass
    finally:
        engine.stop()
        await asyncio.wait_for(runner, 30)
    assert seen == ["snapshot", "struggling"], "a change made right after the first scan was missed"


def _userns_without_inotify() -> tuple[str, ...] | None:
    """A command prefix that runs its command in a new user namespace whose inotify instance
    limit is 0: a real exhausted-instances condition that touches no one else's budget."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return None
    script = 'echo 0 > /proc/sys/user/max_inotify_instances && exec "$@"'
    prefix = (unshare, "--user", "--map-root-user", "sh", "-c", script, "sh")
    probe = subprocess.run([*prefix, "true"], capture_output=True, timeout=30)
    return prefix if probe.returncode == 0 else None


def test_exhausted_inotify_instances_fall_back_to_sweeping_and_say_so(ws, isolated_home, tmp_path):
    prefix = _userns_without_inotify()
    if prefix is None:
        pytest.skip("cannot make a user namespace here (unshare)")
    ws.task("steady", name="steady")
    ws.task("worker", name="worker")
    proc = _start(ws, isolated_home, _config(tmp_path, sweep_interval=0.5), prefix)
    lines = Lines(proc)
    try:
        tasks = _snapshots(lines, 2)
        _fail(ws, "worker")
        assert not _struggling(lines, {tasks["worker"]["key"]}), "change not seen without inotify"
        ws.task("newcomer", name="newcomer")
        added = lines.until(lambda o: o.get("event") == "added", timeout=60)
        assert added is not None and added["task"]["name"] == "newcomer"
        assert proc.poll() is None, "bgmon --follow exited"
    finally:
        err = _stop(proc)
    assert proc.returncode == 0, err
    assert b"Traceback" not in err, err
    text = err.decode()
    assert "inotify" in text and "checking every" in text, text


def test_a_burst_of_new_task_directories_is_seen_without_the_sweep(ws, isolated_home, tmp_path):
    """Thousands of task directories appearing at once (each: mkdir, status.json, a log) are
    all added, through the watch alone."""
    ws.task("first", name="first")
    proc = _start(ws, isolated_home, _config(tmp_path, sweep_interval=HOUR))
    lines = Lines(proc)
    n = 1500
    try:
        _snapshots(lines, 1)
        time.sleep(0.5)
        for i in range(n):
            d = ws.root / ".worktrees" / f"b{i:04d}"
            d.mkdir()
            tmp = d / "status.json.tmp"
            tmp.write_bytes(orjson.dumps({"status": "running", "name": f"b{i:04d}", "updatedAt": time.time()}))
            os.replace(tmp, d / "status.json")
            append_lines(d / "logs" / "events.jsonl", {"ts": time.time(), "type": "heartbeat"})
        seen: set[str] = set()
        deadline = time.monotonic() + 120
        while len(seen) < n and (rest := deadline - time.monotonic()) > 0:
            obj = lines.next(timeout=rest)
            if obj is None:
                break
            if obj.get("event") == "added":
                seen.add(obj["task"]["name"])
        assert len(seen) == n, f"{n - len(seen)} of {n} new tasks not seen"
    finally:
        err = _stop(proc)
    assert proc.returncode == 0 and b"Traceback" not in err, err


def test_a_log_burst_larger_than_one_pass_is_read_to_its_end(ws, isolated_home, tmp_path):
    """Reading is bounded per pass (read_chunk × passes); what is left is read on the next
    passes at once, not when the file next changes or the sweep comes."""
    ws.task("big", name="big")
    ws.log("big", {"type": "heartbeat"})
    config = tmp_path / "bgmon.toml"
    config.write_text(f"[monitor]\nsweep_interval = {HOUR}\n[reading]\nread_chunk = 4096\n")
    proc = _start(ws, isolated_home, str(config))
    lines = Lines(proc)
    try:
        tasks = _snapshots(lines, 1)
        now = time.time()
        filler = b"".join(
            orjson.dumps({"ts": now, "type": "message", "stream": "stdout", "text": "x" * 200}) + b"\n"
            for _ in range(8000)
        )  # ~2 MB: many more than 64 chunks of 4 KB
        failing = b"".join(
            orjson.dumps({"ts": now, "type": "tool_result", "call_id": f"f{i}", "ok": False}) + b"\n"
            for i in range(3)
        )
        with open(ws.root / ".worktrees" / "big" / "logs" / "events.jsonl", "ab") as fh:
            fh.write(filler + failing)
        assert not _struggling(lines, {tasks["big"]["key"]}), "the end of the burst was never read"
    finally:
        err = _stop(proc)
    assert proc.returncode == 0 and b"Traceback" not in err, err


def test_folders_beyond_the_watch_budget_are_polled_not_swept(ws):
    """With fewer watches than folders, the folders left out are polled each sweep_interval
    (a stat of the folder and of its task files) and the full sweep stays a rare safety net."""
    for i in range(10):
        ws.task(f"t{i}", name=f"t{i}")
        ws.log(f"t{i}", {"type": "heartbeat"})

    class Counting(Monitor):
        sweeps = 0

        def sweep(self) -> None:
            Counting.sweeps += 1
            super().sweep()

    monitor = Counting(ws.config(sweep_interval=1.0))
    clock = Clock(1000.0)
    engine = LiveEngine(monitor, lambda changes: None, clock=clock)
    engine.watch = DirWatch(Inotify(), budget=4)
    try:
        engine._step(None, True)
        assert engine.watch.limited > 0 and len(engine.watch) == 4
        assert "beyond the inotify watch budget" in engine.warnings[0]
        engine._rescan = False
        engine._next_sweep = clock.t + HOUR
        engine._step(None, False)  # the first poll learns the folders' listings (and sweeps)
        engine._next_sweep = clock.t + HOUR
        unwatched = sorted(engine.watch.unwatched)
        victim = next(p for p in unwatched if p.endswith("/logs"))
        name = os.path.basename(os.path.dirname(victim))
        sweeps = Counting.sweeps
        _fail(ws, name)
        clock.t += 1.0
        engine._step(set(), False)
        assert Counting.sweeps == sweeps, "polling an unwatched folder ran a full sweep"
        snap = next(s for s in monitor.snapshots() if s.name == name)
        assert snap.health.badge.value == "struggling"
    finally:
        engine.watch.close()


def test_the_watchfiles_backend_sees_changes_where_inotify_is_not(ws, isolated_home, tmp_path,
                                                                  monkeypatch):
    """macOS and the BSDs have no inotify: bgmon watches through watchfiles there (the same
    interface). Forced here with BGMON_WATCH=watchfiles, the sweep an hour away: a failing log
    and a new task directory are seen through its events alone."""
    pytest.importorskip("watchfiles")
    monkeypatch.setenv("BGMON_WATCH", "watchfiles")
    ws.task("steady", name="steady")
    ws.task("worker", name="worker")
    proc = _start(ws, isolated_home, _config(tmp_path, sweep_interval=HOUR))
    lines = Lines(proc)
    try:
        tasks = _snapshots(lines, 2)
        time.sleep(0.5)  # the first pass's watch is (re)started over the task folders
        _fail(ws, "worker")
        assert not _struggling(lines, {tasks["worker"]["key"]}), "change not seen through watchfiles"
        ws.task("newcomer", name="newcomer")
        added = lines.until(lambda o: o.get("event") == "added", timeout=60)
        assert added is not None and added["task"]["name"] == "newcomer"
        time.sleep(0.5)
        _fail(ws, "newcomer")
        assert not _struggling(lines, {added["task"]["key"]}), "a new task's folder is not watched"
    finally:
        err = _stop(proc)
    assert proc.returncode == 0 and b"Traceback" not in err, err
    assert b"cannot watch" not in err, err


def test_a_missing_watchfiles_is_one_warning_and_bgmon_sweeps(monkeypatch):
    """Where neither inotify nor watchfiles can be had, the engine is told why (and sweeps)."""
    import builtins

    from bgmon.sources.watch import instances_problem, open_watch

    real_import = builtins.__import__

    def no_watchfiles(name, *args, **kwargs):
        if name == "watchfiles":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setenv("BGMON_WATCH", "watchfiles")
    monkeypatch.setattr(builtins, "__import__", no_watchfiles)
    with pytest.raises(OSError) as caught:
        open_watch()
    assert instances_problem(caught.value) == "cannot watch files: watchfiles is not installed"
