"""Prometheus metrics: a real `bgmon serve` scraped over HTTP and parsed with prometheus_client's
own parser after real badge changes; the textfile written atomically; a real Prometheus (when
Debian's package is installed) scraping bgmon and evaluating the shipped rules."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bgmon.board import Board
from bgmon.engine import collect
from bgmon.recovery.journal import Journal
from bgmon.recovery.state import state_path
from bgmon.timefmt import parse_time
from bgmon.views.metrics import (
    BoardCollector,
    JournalCounts,
    exposition,
    parse_address,
    write_textfile,
)
from tests.conftest import REPO, bgmon_cmd, wait_for, write_json
from tests.test_follow import Lines

ALERTS = REPO / "docs" / "prometheus" / "alerts.yml"
FLAGS = ("--no-git", "--no-claude", "--no-codex")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def samples(text: str) -> dict[str, list]:
    """metric sample name → [Sample]; the parser raises on anything malformed."""
    out: dict[str, list] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append(s)
    return out


def value(found: dict, metric: str, /, **labels) -> float | None:
    for s in found.get(metric, ()):
        if all(s.labels.get(k) == v for k, v in labels.items()):
            return s.value
    return None


def scrape(port: int) -> dict[str, list]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        return samples(r.read().decode())


def env_for(home: Path) -> dict[str, str]:
    return {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")}


class Served:
    """`bgmon serve --metrics` as a real subprocess, stopped with SIGTERM."""

    def __init__(self, root: Path, home: Path) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            bgmon_cmd("serve", "--metrics", f"127.0.0.1:{self.port}", *FLAGS, str(root)),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env_for(home),
        )

    def until(self, pred, what: str, timeout: float = 30.0) -> dict:
        last: dict = {}

        def check():
            nonlocal last
            if self.proc.poll() is not None:
                raise AssertionError(f"bgmon serve exited: {self.proc.stderr.read().decode()}")
            try:
                last = scrape(self.port)
            except OSError:
                return None
            return last if pred(last) else None

        return wait_for(check, timeout=timeout, what=what)

    def stop(self) -> str:
        self.proc.send_signal(signal.SIGTERM)
        _, err = self.proc.communicate(timeout=20)
        assert self.proc.returncode == 0, err
        return err.decode()


def test_serve_exposition_follows_real_badge_changes(ws, isolated_home):
    ws.task("steady")
    ws.task("worker")
    served = Served(ws.root, isolated_home)
    try:
        found = served.until(lambda f: value(f, "bgmon_tasks", badge="healthy") == 2, "2 healthy")
        assert value(found, "bgmon_tasks", badge="failed") == 0
        key = str(ws.root / ".worktrees" / "worker")
        assert value(found, "bgmon_task_health", name="worker", badge="healthy") == 1
        # No start time, output or progress yet: health says "no progress recorded yet", and
        # there is no moment to count from, so no series (not a made-up 0).
        assert value(found, "bgmon_task_seconds_since_progress", name="worker") is None
        assert value(found, "bgmon_sweeps_total") >= 1
        assert value(found, "bgmon_scrape_duration_seconds") is not None

        ws.fail("worker", 3)  # three failed tool calls in a row: struggling
        found = served.until(
            lambda f: value(f, "bgmon_task_health", name="worker", badge="struggling") == 1,
            "worker struggling")
        # One series per task: the healthy one is gone, not left behind at 0.
        assert value(found, "bgmon_task_health", name="worker", badge="healthy") is None
        worker = [s for s in found["bgmon_task_health"] if s.labels["name"] == "worker"]
        assert len(worker) == 1 and worker[0].labels["key"] == f"worktree:{key}"
        assert value(found, "bgmon_tasks", badge="struggling") == 1
        assert value(found, "bgmon_transitions_total", **{"from": "healthy", "to": "struggling"}) == 1

        # A proposal made by another process counts too (it is read from the journal).
        done = subprocess.run(bgmon_cmd("propose", "worker", "--rules", "--root", str(ws.root),
                                        *FLAGS), capture_output=True, env=env_for(isolated_home),
                              timeout=60)
        assert done.returncode == 0, done.stderr
        served.until(lambda f: value(f, "bgmon_proposals_total", source="rules") == 1,
                     "the proposal counted")

        (ws.root / ".worktrees" / "steady" / "status.json").write_text('{"status": "failed"}')
        found = served.until(lambda f: value(f, "bgmon_tasks", badge="failed") == 1, "a failure")
        assert value(found, "bgmon_transitions_total", **{"from": "healthy", "to": "failed"}) == 1
    finally:
        err = served.stop()
    assert "Traceback" not in err


def test_textfile_is_written_whole(ws, isolated_home, tmp_path):
    """node_exporter may read the file at any moment: it must see a whole exposition, never a
    half-written one, and no temporary file it would read (*.prom) is ever left."""
    for i in range(200):
        ws.task(f"t{i:03d}", name=f"task {i} " + "x" * 50)
    ws.fail("t007", 3)
    monitor = collect(ws.config())
    board = Board(live=False)
    board.load(monitor.snapshots(), monitor.warnings())
    collector = BoardCollector(board, journal=tmp_path / "none.jsonl")
    out = tmp_path / "prom"
    out.mkdir()
    target = out / "bgmon.prom"
    write_textfile(target, collector)
    seen: list[str] = []
    stop = threading.Event()
    problems: list[str] = []

    def reader() -> None:
        while not stop.is_set():
            text = target.read_text()
            found = samples(text)  # raises on a torn file
            if value(found, "bgmon_tasks", badge="struggling") != 1 or "bgmon_scrape_duration_seconds" not in found:
                problems.append(text[-200:])
            seen.append(text[:10])
            for name in os.listdir(out):
                if name != "bgmon.prom" and name.endswith(".prom"):
                    problems.append(f"temporary file named like a metrics file: {name}")

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for _ in range(60):
            write_textfile(target, collector)
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not problems
    assert seen, "the reader never read"
    assert os.listdir(out) == ["bgmon.prom"]
    found = samples(target.read_text())
    assert len(found["bgmon_task_health"]) == 200


def test_once_textfile_from_the_command_line(ws, isolated_home, tmp_path):
    ws.task("ok")
    ws.task("broken", status="failed", error="exit 3")
    target = tmp_path / "bgmon.prom"
    done = subprocess.run(bgmon_cmd("--once", "--textfile", str(target), *FLAGS, str(ws.root)),
                          capture_output=True, env=env_for(isolated_home), timeout=60)
    assert done.returncode == 1  # as --once: something failed
    assert done.stdout == b""  # for cron: nothing printed
    found = samples(target.read_text())
    assert value(found, "bgmon_tasks", badge="failed") == 1
    assert value(found, "bgmon_task_health", name="broken", badge="failed") == 1
    assert "bgmon_transitions_total" not in found  # one look has no transitions to count
    with_json = subprocess.run(
        bgmon_cmd("--once", "--json", "--textfile", str(target), *FLAGS, str(ws.root)),
        capture_output=True, env=env_for(isolated_home), timeout=60)
    assert orjson.loads(with_json.stdout)["tasks"]


@pytest.mark.parametrize("args, message", [
    (["--once", "--textfile", "/nonexistent-dir/x.prom"], "cannot write --textfile"),
    (["--once", "--metrics", "127.0.0.1:9"], "--textfile"),
    (["--textfile", "x.prom"], "--textfile goes with --once"),
    (["serve"], "needs --metrics"),
    (["serve", "--metrics", "nonsense"], "HOST:PORT"),
])
def test_metrics_usage_errors_are_one_line(ws, isolated_home, args, message):
    if args[0] == "serve":
        args = [args[0], *FLAGS, *args[1:], str(ws.root)]
    else:
        args = [*args, *FLAGS, str(ws.root)]
    done = subprocess.run(bgmon_cmd(*args), capture_output=True, env=env_for(isolated_home),
                          timeout=60)
    assert done.returncode == 2
    err = done.stderr.decode()
    assert message in err and "Traceback" not in err


def test_busy_port_is_a_usage_error(ws, isolated_home):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        done = subprocess.run(bgmon_cmd("serve", "--metrics", f"127.0.0.1:{port}", *FLAGS,
                                        str(ws.root)),
                              capture_output=True, env=env_for(isolated_home), timeout=60)
    assert done.returncode == 2
    assert b"cannot serve metrics" in done.stderr and b"Traceback" not in done.stderr


def test_address_forms():
    assert parse_address("127.0.0.1:9488") == ("127.0.0.1", 9488)
    assert parse_address(":9488") == ("127.0.0.1", 9488)
    assert parse_address("[::1]:9488") == ("::1", 9488)
    for bad in ("9488", "host:", "host:0", "host:99999", "host:x"):
        with pytest.raises(ValueError):
            parse_address(bad)


def test_hostile_names_stay_one_valid_series(ws, tmp_path):
    ws.task("odd", name='a "quoted"\nname\\with' + "é" * 300)
    monitor = collect(ws.config())
    board = Board(live=False)
    board.load(monitor.snapshots(), monitor.warnings())
    found = samples(exposition(BoardCollector(board)).decode())
    (series,) = found["bgmon_task_health"]
    assert series.labels["name"].startswith('a "quoted"\nname\\with')
    assert len(series.labels["name"]) <= 200


@pytest.mark.skipif(shutil.which("promtool") is None,
                    reason="promtool is not installed (Debian: apt-get install prometheus)")
def test_promtool_accepts_rules_and_exposition(ws, tmp_path):
    done = subprocess.run(["promtool", "check", "rules", str(ALERTS)], capture_output=True,
                          timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    ws.task("one")
    monitor = collect(ws.config())
    board = Board()
    board.load(monitor.snapshots(), monitor.warnings())
    text = exposition(BoardCollector(board, journal=tmp_path / "j.jsonl"))
    lint = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                          timeout=60)
    assert lint.returncode == 0, lint.stdout + lint.stderr


PROMETHEUS_YML = """\
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: ["{alerts}", "{rules}"]
scrape_configs:
  - job_name: bgmon
    static_configs:
      - targets: ["127.0.0.1:{port}"]
"""

RECORDING = """\
groups:
  - name: test
    rules:
      - record: bgmon:failed_tasks
        expr: sum(bgmon_tasks{badge="failed"})
"""


def _api(port: int, path: str, **params) -> dict:
    url = f"http://127.0.0.1:{port}/api/v1/{path}"
    if params:
        url += "?" + urllib.parse.urlencode(params)
    with urllib.request.urlopen(url, timeout=10) as r:
        return orjson.loads(r.read())


@pytest.mark.skipif(shutil.which("prometheus") is None,
                    reason="Prometheus is not installed (Debian: apt-get install prometheus; "
                    ".ci/run installs it when it runs as root)")
def test_real_prometheus_scrapes_bgmon_and_fires_the_failed_alert(ws, isolated_home, tmp_path):
    ws.task("fine")
    ws.task("doomed")
    served = Served(ws.root, isolated_home)
    prom_port = free_port()
    rules = tmp_path / "rules.yml"
    rules.write_text(RECORDING)
    config = tmp_path / "prometheus.yml"
    config.write_text(PROMETHEUS_YML.format(alerts=ALERTS, rules=rules, port=served.port))
    prom = subprocess.Popen(
        ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{prom_port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        served.until(lambda f: value(f, "bgmon_tasks", badge="healthy") == 2, "bgmon up")

        def target_up():
            result = _api(prom_port, "query", query='up{job="bgmon"}')["data"]["result"]
            return result and result[0]["value"][1] == "1"

        wait_for(target_up, timeout=60, what="Prometheus scraping bgmon", step=0.5)
        (ws.root / ".worktrees" / "doomed" / "status.json").write_text('{"status": "failed"}')

        def failed_recorded():
            result = _api(prom_port, "query", query="bgmon:failed_tasks")["data"]["result"]
            return result and result[0]["value"][1] == "1"

        wait_for(failed_recorded, timeout=60, what="the recording rule's value", step=0.5)

        def alert_firing():
            alerts = _api(prom_port, "alerts")["data"]["alerts"]
            return [a for a in alerts if a["labels"]["alertname"] == "BgmonTaskFailed"
                    and a["state"] == "firing"]

        (firing,) = wait_for(alert_firing, timeout=60, what="BgmonTaskFailed firing", step=0.5)
        assert firing["labels"]["name"] == "doomed"
    finally:
        prom.send_signal(signal.SIGTERM)
        try:
            prom.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            prom.kill()
            prom.communicate()
        served.stop()


def test_seconds_since_progress_grows_while_only_heartbeats_come(ws, isolated_home):
    """Health tells life from progress: a task that keeps its heartbeat fresh but does no work
    is alive, and its seconds since progress keep growing (they do not restart at each beat)."""
    status = ws.root / ".worktrees" / "idler" / "status.json"
    started = time.time()
    ws.task("idler", timestamp=started, progress={"done": 1, "total": 5}, step="waiting for db")
    beating = threading.Event()

    def beat() -> None:
        while not beating.wait(0.3):  # the same progress and step, a new updatedAt
            write_json(status, {"status": "running", "timestamp": started, "updatedAt": time.time(),
                                "progress": {"done": 1, "total": 5}, "step": "waiting for db"})

    heart = threading.Thread(target=beat, daemon=True)
    heart.start()
    served = Served(ws.root, isolated_home)
    follow = subprocess.Popen(bgmon_cmd("--follow", "--json", *FLAGS, str(ws.root)),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env=env_for(isolated_home))
    try:
        first = served.until(
            lambda f: value(f, "bgmon_task_seconds_since_progress", name="idler") is not None,
            "the idler's series")
        seen = value(first, "bgmon_task_seconds_since_progress", name="idler")
        later = served.until(
            lambda f: value(f, "bgmon_task_seconds_since_progress", name="idler") >= seen + 3,
            "seconds since progress to grow by 3 s while the heartbeats go on", timeout=60)
        assert value(later, "bgmon_task_health", name="idler", badge="healthy") == 1
        # The same moment in the JSON (one source of truth: the health rules' last progress),
        # beside a last sign of life that the heartbeats keep fresh.
        def apart(o: dict) -> bool:
            task = o.get("task") or {}
            if task.get("name") != "idler":
                return False
            life, work = parse_time(task["last_activity"]), parse_time(task["last_progress"])
            return life is not None and work is not None and life - work >= 3

        assert Lines(follow).until(apart, timeout=60) is not None
    finally:
        beating.set()
        heart.join(5)
        follow.send_signal(signal.SIGTERM)
        follow.communicate(timeout=20)
        err = served.stop()
    assert "Traceback" not in err


def test_journal_counts_are_the_state_stores_sums(tmp_path):
    """Proposals by source and actions by kind and outcome: queries on the state store, equal
    to counting the journal's records, and growing with what is appended."""
    journal = tmp_path / "j.jsonl"
    assert JournalCounts(journal).refresh() == ({}, {})
    assert not state_path(journal).exists()  # nothing recorded: no database made for it
    shutil.copy(Path(__file__).parent / "data" / "journal_v1.jsonl", journal)

    def by_hand() -> tuple[dict, dict]:
        proposals: dict[str, int] = {}
        actions: dict[tuple[str, str], int] = {}
        for r in Journal(journal).history():
            if r.get("kind") == "proposal":
                source = r["proposal"].get("source")
                key = source if source in ("claude", "rules") else "other"
                proposals[key] = proposals.get(key, 0) + 1
            for a in r.get("results") or () if r.get("kind") == "result" else ():
                kind = a.get("kind") if a.get("kind") in ("kill", "restart", "signal", "run", "mark") else "other"
                outcome = "skipped" if a.get("skipped") else ("ok" if a.get("ok") else "failed")
                actions[(kind, outcome)] = actions.get((kind, outcome), 0) + 1
        return proposals, actions

    counts = JournalCounts(journal)
    first = counts.refresh()
    assert first == by_hand() and sum(first[1].values()) > 0
    Journal(journal).append({"kind": "result", "task": "t", "proposal": "p_x", "ok": True,
                             "results": [{"kind": "kill", "ok": True}, {"kind": "odd", "ok": False}]})
    proposals, actions = counts.refresh()
    assert actions[("kill", "ok")] == first[1].get(("kill", "ok"), 0) + 1
    assert actions[("other", "failed")] == first[1].get(("other", "failed"), 0) + 1
    assert (proposals, actions) == by_hand()
