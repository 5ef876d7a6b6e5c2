"""`bgmon watch` and `bgmon --follow` (text) as real subprocesses on a real workspace."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import bgmon_cmd, terminate, wait_for
from tests.test_follow import Lines

WATCH = ("--no-git", "--no-claude", "--no-codex")


def env_for(home):
    return {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")}


class TextLines(Lines):
    def next(self, timeout: float = 20.0) -> str | None:
        line = self.raw(timeout)
        return None if line is None else line.decode()


def test_watch_runs_the_command_once_per_transition(ws, isolated_home, tmp_path):
    ws.task("steady")
    ws.task("worker")
    record = tmp_path / "calls.jsonl"
    script = tmp_path / "record.py"
    script.write_text("import json, os, sys\nwith open(sys.argv[1], 'a') as f:\n"
                      "    f.write(json.dumps({k: v for k, v in os.environ.items() "
                      "if k.startswith('BGMON_')}) + '\\n')\n")
    config = tmp_path / "bgmon.toml"
    config.write_text("[notify]\nhold = 0\ncoalesce = 0\nmin_interval = 0\n"
                      f"command = [{json.dumps(sys.executable)}, {json.dumps(str(script))}, "
                      f"{json.dumps(str(record))}]\n")
    proc = subprocess.Popen(bgmon_cmd("watch", "--config", str(config), *WATCH, str(ws.root)),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env_for(isolated_home))
    out = TextLines(proc)
    try:
        ready = proc.stderr.readline().decode()
        assert ready.startswith("bgmon watch: watching 2 task(s); notifying by command, log"), ready
        # Existing badges are the baseline: nothing is announced until something changes.
        ws.fail("worker", 3, error="exit 2")
        head = out.until(lambda x: "bgmon:" in x)
        assert head is not None and head.endswith("bgmon: worker struggling")
        detail = out.next().strip()
        assert detail.startswith("⚠ worker: healthy → struggling: ") and "exit 2" in detail
        calls = wait_for(lambda: record.read_text().splitlines(), what="the command's record")
        (call,) = [json.loads(x) for x in calls]
        assert call["BGMON_OLD_BADGE"] == "healthy" and call["BGMON_NEW_BADGE"] == "struggling"
        assert call["BGMON_TASK_NAME"] == "worker" and call["BGMON_TASK_KEY"].endswith("/worker")
        assert call["BGMON_TASK_PATH"].endswith(".worktrees/worker")
        ws.task("worker", status="failed", error="boom")
        assert out.until(lambda x: x.endswith("bgmon: worker failed")) is not None
        calls = wait_for(lambda: len(record.read_text().splitlines()) == 2 and record.read_text())
        assert json.loads(calls.splitlines()[1])["BGMON_REASON"].endswith("boom")
    finally:
        code = terminate(proc)
    assert code == 0
    assert len(record.read_text().splitlines()) == 2  # once per transition, no repeats


def test_watch_bad_settings_are_one_line_errors(ws, isolated_home):
    for args in (["--notify-on", "failed,bogus"], ["--notify-webhook", "ftp://x"],
                 ["--notify-webhook", "http://127.0.0.1:9/", "--notify-format", "ntfy"],
                 ["--notify-command", "'unclosed"]):
        p = subprocess.run(bgmon_cmd("watch", *WATCH, *args, str(ws.root)), capture_output=True,
                           text=True, env=env_for(isolated_home), timeout=60)
        assert p.returncode == 2, (args, p.stderr)
        assert len(p.stderr.strip().splitlines()) == 1 and "Traceback" not in p.stderr, p.stderr


def test_follow_text_prints_one_once_line_per_change_under_its_group(ws, isolated_home):
    ws.task("steady", name="steady")
    ws.task("worker", name="worker")
    proc = subprocess.Popen(bgmon_cmd("--follow", *WATCH, str(ws.root)), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env_for(isolated_home))
    out = TextLines(proc)
    try:
        first = [out.next() for _ in range(3)]
        assert first[0] == str(ws.root)  # the group heading, then its tasks
        assert sorted(x.split("] ", 1)[1] for x in first[1:]) == ["steady | ✓ healthy",
                                                                  "worker | ✓ healthy"]
        ws.fail("worker", 3, error="exit 2")
        line = out.until(lambda x: "worker" in x)
        assert line is not None and line.startswith("  [")
        assert "worker | ⚠ struggling: " in line and "exit 2" in line
        ws.task("worker", name="worker", status="completed")
        assert "worker | ● completed" in out.until(lambda x: "worker" in x)
    finally:
        assert terminate(proc) == 0
    rest = proc.stdout.read().decode()
    assert "steady" not in rest  # an unchanged task is not printed again
