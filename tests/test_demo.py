"""`bgmon demo`: real simulated agents, judged by the real engine, and cleaned up on every exit path."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import psutil
import pytest

from bgmon import demo
from bgmon.demo import MARKER, TASKS, start_demo
from bgmon.engine import collect
from bgmon.model import Badge
from bgmon.timefmt import parse_time
from tests.conftest import bgmon_cmd

SPEED = 10.0  # stuck_after 2 s; the busy agent's child runs 6 s
DEADLINE = 30.0


def demo_processes(root: Path) -> list[psutil.Process]:
    """Every process whose command line names something in the workspace."""
    root_s = str(root)
    out = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        if proc.info.get("status") == psutil.STATUS_ZOMBIE:
            continue
        cmd = proc.info.get("cmdline") or []
        if any(a == root_s or a.startswith(root_s + os.sep) for a in cmd):
            out.append(proc)
    return out


def assert_all_gone(procs: list[psutil.Process], root: Path) -> None:
    _, alive = psutil.wait_procs(procs, timeout=5)
    alive = [p for p in alive if p.status() != psutil.STATUS_ZOMBIE]
    assert not alive, f"demo processes left alive: {alive}"
    assert not demo_processes(root)


def snapshot_of(handle, config):
    return {s.name: s for s in collect(config).snapshots()}


def wait_until(check, what: str, deadline: float = DEADLINE):
    end = time.monotonic() + deadline
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > end:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.2)


def rule_of(snap) -> str | None:
    return snap.health.reasons[0].rule if snap.health.reasons else None


def test_every_simulated_agent_gets_its_badge_and_stop_leaves_nothing(isolated_home):
    handle = start_demo(speed=SPEED)
    root = handle.root
    config = replace(handle.config(), cpu_sample=0.3)
    assert config.thresholds.stuck_after == 2.0
    assert config.roots == (str(root),) and config.sources == ("worktrees",) and not config.git
    watched = [psutil.Process(pid) for pid in handle.pids.values()]
    seen: dict[str, str] = {}
    try:
        end = time.monotonic() + DEADLINE
        while len(seen) < len(TASKS):
            now = time.time()
            snaps = snapshot_of(handle, config)
            for task in TASKS:
                s = snaps.get(task.name)
                if s is None or task.name in seen:
                    continue
                if s.health.badge.value != task.badge:
                    continue
                if task.rule is not None and rule_of(s) != task.rule:
                    continue
                if task.role == "busy":
                    # Silent (no heartbeat, no status write, no log line) for longer than
                    # stuck_after, yet healthy: its child process is working.
                    silent_since = max(parse_time(s.fields["updatedAt"]),
                                       *(os.path.getmtime(f) for f in s.files))
                    if now - silent_since <= config.thresholds.stuck_after:
                        continue
                    assert s.proc is not None and s.proc.children
                    watched += [psutil.Process(p) for p in s.proc.children if psutil.pid_exists(p)]
                # (Not a zombie: the demo reaps its agents.)
                exited = f"process {s.pid} exited without a final status"
                if task.role == "crash" and s.health.reasons[0].detail != exited:
                    continue
                if task.role == "coordinator":
                    assert s.own_health is not None and s.own_health.badge is Badge.HEALTHY
                    assert "migrate-db" in s.health.summary
                seen[task.name] = s.health.summary
            if time.monotonic() > end:
                missing = {
                    t.name: (snaps[t.name].health.badge.value, rule_of(snaps[t.name]))
                    for t in TASKS if t.name not in seen and t.name in snaps
                }
                pytest.fail(f"never saw the expected badge for: {missing}")
            time.sleep(0.2)
        # The tree: children nest under their parent (by the `parent` id in status.json).
        snaps = snapshot_of(handle, config)
        parent = snaps["ship-release"]
        assert parent.parent is None
        assert snaps["migrate-db"].parent == parent.key
        assert snaps["write-changelog"].parent == parent.key
        # Every task records the argv that restarts it, run from its own directory.
        for task in TASKS:
            s = snaps[task.name]
            assert s.command is not None and s.command[1].endswith("demo_agent.py")
            assert task.role in s.command and s.cwd == str(handle.task_dir(task.name))
    finally:
        handle.stop()
    assert not root.exists()
    assert_all_gone(watched, root)


def test_kept_dir_restart_by_command_and_stop(tmp_path, isolated_home):
    """`--dir` keeps the workspace; a task restarted from its `command` (as recovery does) is
    stopped with the rest; the crashed task succeeds when restarted."""
    root = tmp_path / "ws"
    handle = start_demo(root, speed=SPEED)
    config = replace(handle.config(), cpu_sample=0.05)
    restarted: list[subprocess.Popen] = []
    try:
        snaps = wait_until(
            lambda: (s := snapshot_of(handle, config))
            and s["build-assets"].health.badge is Badge.FAILED
            and s["refactor-api"].health.badge is Badge.STUCK
            and s,
            "build-assets to fail and refactor-api to loop",
        )
        # Restart build-assets (it died) and refactor-api (kill it first, as recovery would).
        os.killpg(snaps["refactor-api"].pid, signal.SIGKILL)
        for name in ("build-assets", "refactor-api"):
            s = snaps[name]
            restarted.append(subprocess.Popen(
                list(s.command), cwd=s.cwd, start_new_session=True,
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            ))
        status = lambda name: json.loads((handle.task_dir(name) / "status.json").read_text())  # noqa: E731
        wait_until(lambda: status("build-assets")["status"] == "completed", "the restarted build to complete")
        assert status("build-assets")["attempt"] == 2
        wait_until(
            lambda: status("refactor-api").get("pid") == restarted[1].pid
            and status("refactor-api")["status"] == "running",
            "the restarted agent to write its pid",
        )
        assert restarted[1].poll() is None
    finally:
        handle.stop()
    # The restarted agent was not started by the handle, yet it is gone too.
    assert restarted[1].wait(5) is not None
    assert root.is_dir() and not (root / MARKER).exists()
    assert (handle.task_dir("fix-login") / "logs" / "events.jsonl").stat().st_size > 0
    # Stopped agents said so: a kept workspace does not show them as crashed later.
    assert json.loads((handle.task_dir("fix-login") / "status.json").read_text())["status"] == "cancelled"
    assert not demo_processes(root)


def test_agents_stop_by_themselves_when_the_demo_is_gone(isolated_home):
    """If the demo is killed outright (no clean-up), its agents notice and end."""
    handle = start_demo(speed=SPEED)
    try:
        wait_until(
            lambda: all(
                json.loads((handle.task_dir(t.name) / "status.json").read_text())["status"] != "created"
                for t in TASKS
            ),
            "every agent to start",
        )
        (handle.root / MARKER).unlink()
        for name, proc in handle.procs.items():
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                pytest.fail(f"{name} kept running after the demo went away")
        assert not [p for p in demo_processes(handle.root) if p.pid != os.getpid()]
    finally:
        handle.stop()
    assert not handle.root.exists()


def test_once_subprocess_prints_every_task_with_its_badge(isolated_home):
    proc = subprocess.run(
        bgmon_cmd("demo", "--once", "--speed", str(SPEED)),
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 1, proc.stderr
    lines = proc.stdout.splitlines()
    for task in TASKS:
        mine = [line for line in lines if f" {task.name} #" in line]
        assert len(mine) == 1, (task.name, proc.stdout)
        assert f"| {Badge(task.badge).glyph} {task.badge}" in mine[0], mine[0]
    assert "\x1b[" not in proc.stdout  # not a terminal: no escape codes
    root = Path(proc.stderr.split(" in ", 1)[1].split(" (", 1)[0])
    assert root.name.startswith("bgmon-demo-")
    assert not root.exists()
    assert not demo_processes(root)


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 128 + signal.SIGTERM), (signal.SIGINT, 0)])
def test_no_tui_stops_everything_on_signal(sig, code, isolated_home):
    proc = subprocess.Popen(
        bgmon_cmd("demo", "--no-tui", "--speed", str(SPEED)),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # even under `cmd &`
    )
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 20)
        assert ready, "no output from bgmon demo --no-tui"
        first = proc.stdout.readline()
        assert "simulated tasks running in " in first, first
        root = Path(first.rsplit(" in ", 1)[1].strip())
        wait_until(lambda: len(demo_processes(root)) >= len(TASKS) - 2, "the agents to run")
        watched = demo_processes(root)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == code, err
    assert not root.exists()
    assert_all_gone(watched, root)


@pytest.mark.parametrize("outcome", ["returns", "raises"])
def test_tui_gets_the_demo_config_and_cleanup_follows(outcome, monkeypatch, isolated_home):
    seen = {}

    def fake_tui(config):
        seen["config"] = config
        root = Path(config.roots[0])
        seen["root"] = root
        wait_until(lambda: len(demo_processes(root)) >= len(TASKS) - 2, "the agents to run")
        seen["procs"] = demo_processes(root)
        if outcome == "raises":
            raise RuntimeError("the TUI broke")
        return 0

    before = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)}
    monkeypatch.setattr(demo, "_load_tui", lambda: fake_tui)
    monkeypatch.setattr(demo, "_has_terminal", lambda: True)
    if outcome == "raises":
        with pytest.raises(RuntimeError):
            demo.main(["--speed", str(SPEED)])
    else:
        assert demo.main(["--speed", str(SPEED)]) == 0
    config = seen["config"]
    assert (config.sources, config.git) == (("worktrees",), False)
    assert config.thresholds.stuck_after == 2.0
    assert not seen["root"].exists()
    assert_all_gone(seen["procs"], seen["root"])
    assert {sig: signal.getsignal(sig) for sig in before} == before  # handlers restored


def test_usage_errors(tmp_path, capsys):
    afile = tmp_path / "f"
    afile.write_text("x")
    for argv in (["--json"], ["--speed", "0"], ["--speed", "fast"], ["--dir", str(afile)],
                 ["--once", "--no-tui"]):
        with pytest.raises(SystemExit) as exc:
            demo.main(argv)
        assert exc.value.code == 2, argv
    with pytest.raises(ValueError):
        start_demo(speed=0)


def test_a_dir_in_use_by_another_demo_is_refused(tmp_path, capsys):
    root = tmp_path / "ws"
    root.mkdir()
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        (root / MARKER).write_text(str(other.pid))
        assert demo.main(["--dir", str(root), "--once"]) == 2
        assert f"another bgmon demo (pid {other.pid})" in capsys.readouterr().err
        assert not (root / ".worktrees").exists()
    finally:
        other.kill()
        other.wait()


def test_logs_stay_bounded(tmp_path, monkeypatch):
    from bgmon import demo_agent

    task = tmp_path / ".worktrees" / "t"
    task.mkdir(parents=True)
    monkeypatch.setattr(demo_agent, "LOG_CAP", 1000)
    agent = demo_agent.Agent("loop", str(task), 1.0)
    for i in range(100):
        agent.event("message", text=f"line {i} " + "x" * 50)
    log = task / "logs" / "events.jsonl"
    # The cap plus at most one line (a line's length varies with its timestamp's digits).
    longest = max(len(x) + 1 for x in log.read_bytes().splitlines())
    assert log.stat().st_size <= 1000 + longest
    assert (task / "logs" / "events.jsonl.1").stat().st_size <= 1000 + 2 * longest
    assert json.loads(log.read_text().splitlines()[-1])["text"].startswith("line 99 ")


def test_agent_script_runs_standalone(tmp_path):
    """The recorded command needs no installed bgmon (`-I`: no site-packages, no cwd on the path);
    it runs while its demo (the marker's pid) lives, and ends, saying so, when the marker goes."""
    task = tmp_path / ".worktrees" / "t"
    task.mkdir(parents=True)
    status = task / "status.json"
    (tmp_path / MARKER).write_text(str(os.getpid()))
    proc = subprocess.Popen(
        [sys.executable, "-I", str(demo.AGENT_SCRIPT), "steady", str(task), "--speed", "5"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        log = task / "logs" / "events.jsonl"
        wait_until(lambda: status.exists() and json.loads(status.read_text())["status"] == "running"
                   and log.exists() and b'"tool_result"' in log.read_bytes(),
                   "the agent to report running and finish a tool call")
        (tmp_path / MARKER).unlink()
        assert proc.wait(5) == 0, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    fields = json.loads(status.read_text())
    assert fields["status"] == "cancelled" and fields["name"] == "t" and fields["id"].startswith("bg_")
    events = [json.loads(line) for line in (task / "logs" / "events.jsonl").read_text().splitlines()]
    assert {"step", "tool_call", "tool_result"} <= {e["type"] for e in events}
    # Without a demo around, it does not even start.
    (task / "status.json").unlink()
    alone = subprocess.run([sys.executable, "-I", str(demo.AGENT_SCRIPT), "loop", str(task)],
                           capture_output=True, text=True, timeout=20)
    assert alone.returncode == 0 and not status.exists()
