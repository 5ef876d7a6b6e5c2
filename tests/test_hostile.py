"""Hostile and broken input found in review: none of it may hang, crash or hide other tasks."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import orjson

from bgmon.engine import Monitor, collect
from bgmon.model import Badge
from bgmon.sources.tail import TailReader
from tests.conftest import bgmon_cmd, write_json


def names(monitor) -> dict:
    return {s.name: s for s in monitor.snapshots()}


def run_once(ws, home, *extra, timeout=30):
    env = {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")}
    return subprocess.run(
        bgmon_cmd("--once", "--no-git", "--no-claude", "--no-codex", *extra, str(ws.root)),
        capture_output=True, text=True, timeout=timeout, env=env,
    )


def test_a_fifo_where_a_log_or_status_should_be_does_not_hang(ws, isolated_home):
    d = ws.task("piped")
    os.mkfifo(d / "logs" / "x.jsonl")
    other = ws.task("fine")
    os.mkfifo(other / "logs" / "y.jsonl")
    write_json(other / "status.json", {"status": "running", "updatedAt": time.time(), "log": "logs/y.jsonl"})
    fifo_status = ws.root / ".worktrees" / "fifo-status"
    fifo_status.mkdir(parents=True)
    os.mkfifo(fifo_status / "status.json")
    (ws.root / ".opencode").mkdir()
    os.mkfifo(ws.root / ".opencode" / "background-tasks.json")
    p = run_once(ws, isolated_home, "--json")
    assert "Traceback" not in p.stderr
    doc = orjson.loads(p.stdout)
    warnings = " ".join(doc["warnings"])
    assert "not a regular file" in warnings
    assert {t["name"] for t in doc["tasks"]} >= {"piped", "fine"}


def test_malformed_status_values_stay_that_tasks_problem(ws, isolated_home):
    ws.task("huge-pid", pid="9" * 40)
    ws.task("huge-progress", progress="9" * 40 + "/5")
    ws.task("nul-log", log="a\u0000b")
    one = ws.task("pid-one", pid=1, updatedAt=time.time() - 7200)
    os.utime(one / "status.json", (time.time() - 7200,) * 2)
    ws.task("nan-times", updatedAt="NaN", readyUntil=1e300)
    ws.task("failed", status="failed", error="real failure")
    p = run_once(ws, isolated_home, "--json")
    assert p.returncode == 1, p.stderr
    assert "Traceback" not in p.stderr
    tasks = {t["name"]: t for t in orjson.loads(p.stdout)["tasks"]}
    assert tasks["failed"]["health"] == "failed"
    assert tasks["huge-pid"]["pid"] is None and tasks["huge-progress"]["progress"] is None
    # pid 1 is never a task's process: judged as if no pid was recorded (silent for 2 h → stuck)
    assert tasks["pid-one"]["pid"] is None and tasks["pid-one"]["health"] == "stuck"


def test_a_parent_loop_shows_every_task_and_keeps_the_exit_code(ws, isolated_home):
    ws.task("a", id="a", parent="b")
    ws.task("b", id="b", parent="a", status="failed")
    p = run_once(ws, isolated_home, "--json")
    assert p.returncode == 1
    tasks = {t["name"]: t for t in orjson.loads(p.stdout)["tasks"]}
    assert set(tasks) == {"a", "b"}
    loops = [t for t in tasks.values() if any("loops back" in w for w in t["warnings"])]
    assert len(loops) == 1 and loops[0]["parent"] is None


def test_text_output_never_reads_names_as_markup(ws, isolated_home):
    ws.task("odd", name="fix [/] bug [bold]x[/bold]", status="failed", error="[red]boom[/]")
    p = run_once(ws, isolated_home)
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert "fix [/] bug [bold]x[/bold]" in p.stdout and "[red]boom[/]" in p.stdout


def test_rotation_between_looks_reads_the_new_file_once(tmp_path):
    path = tmp_path / "a.jsonl"

    def line(i):
        return orjson.dumps({"type": "message", "n": i}) + b"\n"

    path.write_bytes(b"".join(line(i) for i in range(3)))
    reader = TailReader(str(path))
    reader.prime(1 << 20, 200)
    os.rename(path, tmp_path / "a.jsonl.1")
    path.write_bytes(b"".join(line(100 + i) for i in range(6)))
    first = [o["n"] for o in reader.read()]
    second = [o["n"] for o in reader.read()]
    assert first == [100, 101, 102, 103, 104, 105] and second == []
    assert reader.stats.bad_json == 0


def test_a_reused_pid_is_not_the_task_s_process(ws):
    d = ws.task("old", updatedAt=time.time() - 7200)
    status = d / "status.json"
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        write_json(status, {"status": "running", "updatedAt": time.time() - 7200, "pid": proc.pid})
        past = time.time() - 7200
        os.utime(status, (past, past))  # the pid was recorded two hours before this process began
        s = names(collect(ws.config()))["old"]
        assert s.health.badge is Badge.FAILED
        assert "now belongs to a process started later" in s.health.summary
    finally:
        proc.kill()
        proc.wait()


def test_one_task_s_unexpected_error_does_not_stop_the_others(ws, monkeypatch):
    ws.task("bad")
    ws.task("good", status="failed")
    m = Monitor(ws.config())
    real = m._read_files

    def explode(record):
        if record.spec.id == "bad":
            raise ValueError("boom")
        return real(record)

    monkeypatch.setattr(m, "_read_files", explode)
    m.sweep()
    m.evaluate()
    s = names(m)
    assert s["good"].health.badge is Badge.FAILED
    assert any("boom" in w for w in s["bad"].warnings)


def test_a_log_outside_the_task_directory_is_not_read_unless_configured(ws, tmp_path):
    # A status.json can name any file as its `log`: a 0600 file elsewhere would be read, shown
    # and sent to the API. Only the task's own directory (and configured log_dirs) count.
    elsewhere = tmp_path / "private"
    elsewhere.mkdir()
    secret = elsewhere / "notes.jsonl"
    secret.write_text(orjson.dumps({"type": "step", "text": "PRIVATE-NOTES"}).decode() + "\n")
    secret.chmod(0o600)
    ws.task("nosy", log=[str(secret), "../../private/notes.jsonl"])
    monitor = collect(ws.config())
    (s,) = monitor.snapshots()
    assert "PRIVATE-NOTES" not in orjson.dumps([e.to_json() for e in s.recent]).decode()
    assert any("outside the task directory" in w for w in s.warnings), s.warnings
    from dataclasses import replace

    config = ws.config()
    config = replace(config, reading=replace(config.reading, log_dirs=(str(elsewhere),)))
    (s,) = collect(config).snapshots()
    assert s.step == "PRIVATE-NOTES"


def test_a_device_is_never_opened_to_find_out_it_is_not_a_log(monkeypatch):
    from bgmon.sources import files

    opened = []
    real_open = os.open
    monkeypatch.setattr(files.os, "open", lambda p, *a, **k: opened.append(p) or real_open(p, *a, **k))
    for path in ("/dev/null", "/dev/zero"):
        try:
            files.open_regular(path)
        except files.NotRegularFile:
            pass
        else:
            raise AssertionError(f"{path} accepted as a log")
    assert opened == []


def test_a_status_file_nested_a_thousand_levels_deep_is_shown_and_proposed_for(ws, isolated_home):
    d = ws.task("deep", status="failed", command=["true"], cwd=str(ws.root))
    text = (d / "status.json").read_text()
    (d / "status.json").write_text(text[:-1] + ', "extra": ' + "[" * 1000 + "0" + "]" * 1000 + "}")
    for args in (("--once",), ("--once", "--json")):
        p = run_once(ws, isolated_home, *args)
        assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr
    env = {**os.environ, "HOME": str(isolated_home), "XDG_CONFIG_HOME": str(isolated_home / ".config")}
    p = subprocess.run(bgmon_cmd("propose", "deep", "--rules", "--no-git"),
                       capture_output=True, text=True, timeout=60, env=env, cwd=ws.root)
    assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr
