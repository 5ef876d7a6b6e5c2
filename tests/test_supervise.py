"""`bgmon run`: the restart policy (pure, injected clock), the output splitter, and real
supervised subprocesses (small Python scripts), both in-process and as a real `bgmon run`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bgmon import supervise
from bgmon.cli import main as cli_main
from bgmon.formats import native
from bgmon.model import EventKind
from bgmon.supervise.output import (
    DEFAULT_PROGRESS,
    EventLog,
    LineBuffer,
    compile_progress,
    find_progress,
)
from bgmon.supervise.policy import CLEAN_EXIT, Backoff, GiveUp, RestartPolicy
from bgmon.supervise.status import StatusFile
from bgmon.timefmt import parse_time
from tests.conftest import wait_for as _wait_for

PY = sys.executable
DEADLINE = 20.0


# ---- helpers ----------------------------------------------------------------------------


def script(tmp_path: Path, name: str, body: str, prelude: str = "") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(prelude) + textwrap.dedent(body))
    return str(path)


def run_here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    """`bgmon run ARGS` in this process (fast; signal handlers are restored afterwards)."""
    monkeypatch.chdir(tmp_path)
    return cli_main(["run", *args])


def wrapper(tmp_path: Path, *args: str, **kw) -> subprocess.Popen:
    """`bgmon run ARGS` as a real process, as a user would start it."""
    env = {**os.environ, "PYTHONPATH": str(Path(supervise.__file__).parents[2])}
    return subprocess.Popen([PY, "-m", "bgmon", "run", *args], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def status(task: Path) -> dict:
    return orjson.loads((task / "status.json").read_bytes())


def events(task: Path) -> list[dict]:
    lines = (task / "logs" / "events.jsonl").read_bytes().splitlines()
    return [orjson.loads(line) for line in lines]


def wait_for(pred, timeout: float = DEADLINE):
    return _wait_for(pred, timeout)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# A prelude that appends the start time of each run to the file named by argv[1].
RUNS = """\
    import sys, time
    with open(sys.argv[1], "a") as f:
        f.write(f"{time.time()}\\n")
    """


def run_counted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, body: str
                ) -> tuple[int, list[float]]:
    """`bgmon run -q --name NAME` of a child that runs `body` after RUNS: (the exit status, the
    start time of every run)."""
    child = script(tmp_path, f"{name}.py", prelude=RUNS, body=body)
    runs = tmp_path / "runs"
    rc = run_here(tmp_path, monkeypatch, "-q", "--name", name, "--", PY, child, str(runs))
    return rc, [float(x) for x in runs.read_text().split()]


# ---- restart policy (pure: no process, no sleeping) -------------------------------------


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_backoff_schedule_per_kind_then_give_up():
    clock = Clock()
    policy = RestartPolicy(clock=clock, rng=lambda: 0.5)  # 0.5 = no jitter
    delays = []
    for _ in range(3):
        policy.started()
        delays.append(policy.decide("connection_refused", True))
    assert delays == pytest.approx([0.1, 0.2, 0.4])
    policy.started()
    final = policy.decide("connection_refused", True)
    assert isinstance(final, GiveUp) and "3 restarts after connection_refused" in final.reason
    # Another kind has its own budget.
    policy.started()
    assert policy.decide("timeout", True) == pytest.approx(0.1)


@pytest.mark.parametrize(("rng", "first"), [(0.0, 0.075), (1.0, 0.125)])
def test_backoff_jitter_bounds_and_cap(rng, first):
    policy = RestartPolicy(clock=Clock(), rng=lambda: rng, max_attempts=20,
                           breaker=(100, 60.0, 30.0, 3))
    delays = [policy.decide("exit", True) for _ in range(12)]
    assert delays[0] == pytest.approx(first)
    assert max(delays) == pytest.approx(30.0 * first / 0.1)  # capped at 30 s ±25%


def test_stable_run_resets_counters():
    clock = Clock()
    policy = RestartPolicy(clock=clock, rng=lambda: 0.5)
    for _ in range(3):
        policy.started()
        policy.decide("exit", True)
    policy.started()
    clock.t += 61  # it stayed up past reset_after: the restarts worked
    assert policy.decide("exit", True) == pytest.approx(0.1)


def test_limit_lowers_the_attempts_for_one_kind():
    policy = RestartPolicy(clock=Clock(), rng=lambda: 0.5)
    assert policy.decide("out_of_memory", True, limit=1) == pytest.approx(0.1)
    final = policy.decide("out_of_memory", True, limit=1)
    assert isinstance(final, GiveUp) and "1 restart after out_of_memory" in final.reason


def test_not_retryable_and_restart_no_and_clean_exits():
    policy = RestartPolicy(clock=Clock(), rng=lambda: 0.5)
    assert "not retryable" in policy.decide("disk_full", False).reason
    assert "--restart no" in RestartPolicy("no").decide("exit", True).reason
    assert isinstance(RestartPolicy("on-failure").decide(CLEAN_EXIT, True), GiveUp)
    always = RestartPolicy("always", clock=Clock(), rng=lambda: 0.5)
    # `always` never gives up on clean exits; backoff keeps a quick exit from spinning.
    delays = [always.decide(CLEAN_EXIT, True) for _ in range(12)]
    assert delays[:3] == pytest.approx([0.1, 0.2, 0.4]) and delays[-1] == pytest.approx(30.0)
    with pytest.raises(ValueError):
        RestartPolicy("sometimes")


def test_circuit_breaker_opens_pauses_then_gives_up_after_failed_trials():
    clock = Clock()
    policy = RestartPolicy(clock=clock, rng=lambda: 0.5, backoff=Backoff(first=0.1))
    # Five different kinds (each within its own budget) within 60 s trip the breaker.
    for i, kind in enumerate(["a", "b", "c", "d"]):
        clock.t = 1000.0 + i
        assert policy.decide(kind, True) == pytest.approx(0.1)
    clock.t = 1004.0
    assert policy.decide("e", True) == pytest.approx(30.0)  # open: pause the cooldown
    assert not policy.breaker.allow()
    # Trial starts after the pause: each failing trial re-opens it; the third gives up.
    for n, kind in enumerate(["a", "b"], start=1):
        clock.t += 31
        assert policy.breaker.allow()
        policy.started()
        assert policy.decide(kind, True) == pytest.approx(30.0), n
    clock.t += 31
    policy.started()
    final = policy.decide("c", True)
    assert isinstance(final, GiveUp) and "circuit breaker" in final.reason


def test_breaker_trial_that_stays_up_closes_it():
    clock = Clock()
    policy = RestartPolicy(clock=clock, rng=lambda: 0.5)
    for kind in "abcde":
        policy.decide(kind, True)
    assert not policy.breaker.allow()
    clock.t += 31
    policy.started()
    clock.t += 61
    assert policy.decide("a", True) == pytest.approx(0.1)
    assert policy.breaker.allow()


# ---- output splitting and progress ------------------------------------------------------


@given(st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\r", b"")), max_size=8),
       st.data())
def test_any_chunking_gives_the_same_lines(lines, data):
    blob = b"\n".join(lines) + b"\r\n"
    cuts = sorted(data.draw(st.lists(st.integers(0, len(blob)), max_size=6)))
    whole = LineBuffer(cap=16)
    expected = whole.feed(blob) + whole.flush()
    buf = LineBuffer(cap=16)
    got = []
    for a, b in zip([0, *cuts], [*cuts, len(blob)], strict=True):
        got += buf.feed(blob[a:b])
    assert got + buf.flush() == expected


def test_line_buffer_cr_cap_and_bad_utf8():
    buf = LineBuffer(cap=8)
    segs = buf.feed(b" 10%\r 20%\r 30%\r\nabc\xff\xfedef-and-more\npartial")
    assert [(s.text, s.transient) for s in segs[:3]] == [(" 10%", True), (" 20%", True), (" 30%", False)]
    long = segs[3]
    assert long.text.startswith("abc\ufffd") and long.text.endswith("…") and long.dropped > 0
    assert [s.text for s in buf.flush()] == ["partial"]


@pytest.mark.parametrize(("text", "want"), [
    ("[12/40] compiling", (12, 40)),
    ("progress 37%", (37, 100)),
    ("done 12/40.", (12, 40)),
    ("released 11/21/2024", None),
    ("see a/1/2 and HTTP/1.1", None),
    ("50/40 is not progress", None),
])
def test_progress_recognition(text, want):
    assert find_progress(text, compile_progress(DEFAULT_PROGRESS)) == want


def test_progress_regex_needs_named_groups():
    with pytest.raises(ValueError, match="named groups"):
        compile_progress([r"(\d+) of (\d+)"])


def test_status_writes_are_atomic_and_carry_the_lease(tmp_path):
    path = tmp_path / "status.json"
    sf = StatusFile(path, {"status": "running"}, heartbeat=30.0)
    sf.update(pid=7)
    doc = orjson.loads(path.read_bytes())
    assert doc["pid"] == 7
    assert parse_time(doc["readyUntil"]) - parse_time(doc["updatedAt"]) == pytest.approx(60.0)
    assert [p.name for p in tmp_path.iterdir()] == ["status.json"]  # no temp file left


# ---- real subprocesses ------------------------------------------------------------------


def test_success_passes_output_through_and_logs_events(tmp_path):
    child = script(tmp_path, "build_things.py", """\
        import sys
        out = sys.stdout.buffer
        out.write(b"hello\\n[2/5] compiling\\n")
        out.write(b"bad bytes \\xff\\xfe here\\n")
        out.write(b"x" * 100_000 + b"\\n")
        out.write(b"40%\\n")
        out.write(b"no newline at the end")
        sys.stderr.write("note on stderr\\n")
        """)
    proc = wrapper(tmp_path, "--", PY, child)
    out, err = proc.communicate(timeout=DEADLINE)
    assert proc.returncode == 0, err
    assert b"x" * 100_000 in out and out.endswith(b"no newline at the end")  # untouched
    [task] = (tmp_path / ".worktrees").iterdir()
    assert task.name.startswith("build_things-")
    doc = status(task)
    assert doc["status"] == "completed" and doc["exitCode"] == 0 and doc["restarts"] == 0
    assert doc["id"].startswith("bg_") and doc["command"] == [PY, child]
    assert doc["log"] == "logs/events.jsonl" and doc["cwd"] == str(tmp_path)
    assert doc["pid"] is None and not alive(doc["supervisorPid"])
    assert doc["progress"] == {"done": 40, "total": 100}
    evs = events(task)
    for ev in evs:  # every line is bgmon's own format
        assert native.parse(ev)
    texts = {ev.get("text", "") for ev in evs if ev.get("stream")}
    assert {"hello", "no newline at the end", "note on stderr"} <= texts
    assert "bad bytes \ufffd\ufffd here" in texts
    huge = next(ev for ev in evs if ev.get("truncated"))
    assert len(huge["text"].encode()) <= 4096 + 3
    prog = [(ev["done"], ev["total"]) for ev in evs if ev["type"] == "progress"]
    assert prog == [(2, 5), (40, 100)]
    kinds = [native.parse(ev)[0].kind for ev in evs if ev["type"] == "progress"]
    assert kinds == [EventKind.PROGRESS, EventKind.PROGRESS]


def test_failure_is_classified_and_restarted_with_backoff(tmp_path, monkeypatch):
    rc, starts = run_counted(tmp_path, monkeypatch, "client", """\
        print("error: [Errno 111] Connection refused", file=sys.stderr)
        sys.exit(1)
        """)
    assert rc == 1
    task = tmp_path / ".worktrees" / "client"
    doc = status(task)
    assert doc["status"] == "failed" and doc["restarts"] == 3 and doc["exitCode"] == 1
    assert doc["pattern"]["name"] == "connection_refused" and doc["pattern"]["type"] == "network"
    assert "gave up" in doc["error"] and "connection_refused" in doc["error"]
    evs = events(task)
    errors = [ev for ev in evs if ev["type"] == "error" and ev.get("stream") == "stderr"]
    assert len(errors) == 4 and errors[0]["pattern"] == "connection_refused"
    assert errors[0]["class"]["retryable"] is True
    parsed = native.parse(errors[0])[0]
    assert parsed.kind is EventKind.ERROR and "Connection refused" in parsed.text
    restarts = [ev for ev in evs if ev.get("action") == "restart"]
    assert [ev["attempt"] for ev in restarts] == [1, 2, 3]
    assert all(ev["automatic"] and ev["reason"] == "connection_refused" for ev in restarts)
    for ev, base in zip(restarts, [0.1, 0.2, 0.4], strict=True):
        assert base * 0.75 - 1e-3 <= ev["delay"] <= base * 1.25 + 1e-3
    # The waits really happened: each start is at least its backoff after the one before.
    assert len(starts) == 4
    for gap, ev in zip(
        [b - a for a, b in zip(starts, starts[1:], strict=False)], restarts, strict=True
    ):
        assert gap >= ev["delay"] * 0.9


def test_non_retryable_failure_is_not_restarted(tmp_path, monkeypatch):
    rc, starts = run_counted(tmp_path, monkeypatch, "w", """\
        print("OSError: [Errno 28] No space left on device", file=sys.stderr)
        sys.exit(1)
        """)
    assert rc == 1
    doc = status(tmp_path / ".worktrees" / "w")
    assert doc["status"] == "failed" and doc["restarts"] == 0
    assert doc["pattern"]["name"] == "disk_full" and doc["pattern"]["retryable"] is False
    assert "not retryable" in doc["error"]
    assert len(starts) == 1


def test_restart_no_and_custom_patterns_and_progress(tmp_path, monkeypatch):
    patterns = tmp_path / "mine.toml"
    patterns.write_text(textwrap.dedent("""\
        [[pattern]]
        name = "db_asleep"
        regex = 'the database is asleep'
        type = "network"
        retryable = true
        strategy = "wait_restart"
        """))
    child = script(tmp_path, "sync.py", """\
        import sys
        print("copied 3 of 9 files")
        print("copied 50/50 things")  # not progress: a custom regex replaces the built-ins
        print("ERROR the database is asleep", file=sys.stderr)
        sys.exit(4)
        """)
    rc = run_here(tmp_path, monkeypatch, "-q", "--name", "s", "--restart", "no",
                  "--patterns", str(patterns),
                  "--progress-regex", r"(?P<done>\d+) of (?P<total>\d+)", "--", PY, child)
    assert rc == 4
    task = tmp_path / ".worktrees" / "s"
    doc = status(task)
    assert doc["status"] == "failed" and doc["restarts"] == 0 and "--restart no" in doc["error"]
    assert doc["pattern"]["name"] == "db_asleep" and doc["progress"] == {"done": 3, "total": 9}
    types = {ev.get("text"): ev["type"] for ev in events(task)}
    assert types["copied 3 of 9 files"] == "progress"
    assert types["copied 50/50 things"] == "message"
    assert types["ERROR the database is asleep"] == "error"


STALLS_ONCE = """\
    import os, sys, time
    if not os.path.exists(sys.argv[1]):
        open(sys.argv[1], "w").close()
        print("going quiet", flush=True)
        time.sleep(60)
    print("second run is fine", flush=True)
    """


def test_stall_is_detected_stopped_and_restarted(tmp_path, monkeypatch):
    child = script(tmp_path, "quiet.py", STALLS_ONCE)
    rc = run_here(tmp_path, monkeypatch, "-q", "--name", "q", "--stall", "1s",
                  "--", PY, child, str(tmp_path / "marker"))
    assert rc == 0
    task = tmp_path / ".worktrees" / "q"
    doc = status(task)
    assert doc["status"] == "completed" and doc["restarts"] == 1
    assert doc["pattern"]["name"] == "stalled"
    evs = events(task)
    stall = next(ev for ev in evs if ev["type"] == "error" and ev.get("pattern") == "stalled")
    assert "no output and no CPU" in stall["text"] and stall["signal"] == "SIGTERM"
    assert any(ev.get("text") == "second run is fine" for ev in evs)


def test_stall_without_restart_ends_as_timeout(tmp_path, monkeypatch):
    child = script(tmp_path, "quiet.py", STALLS_ONCE)
    rc = run_here(tmp_path, monkeypatch, "-q", "--name", "q", "--stall", "1s", "--restart", "no",
                  "--", PY, child, str(tmp_path / "marker"))
    assert rc == 124
    doc = status(tmp_path / ".worktrees" / "q")
    assert doc["status"] == "timeout" and "stalled" in doc["error"]


def test_heartbeat_refreshes_lease(tmp_path, monkeypatch):
    child = script(tmp_path, "nap.py", "import time; time.sleep(1.0)\n")
    rc = run_here(tmp_path, monkeypatch, "-q", "--name", "h", "--heartbeat", "0.2s",
                  "--", PY, child)
    assert rc == 0
    task = tmp_path / ".worktrees" / "h"
    beats = [ev for ev in events(task) if ev["type"] == "heartbeat"]
    assert len(beats) >= 2
    assert all(native.parse(ev)[0].kind is EventKind.HEARTBEAT for ev in beats)


def test_sigterm_is_forwarded_and_final_status_written(tmp_path):
    child = script(tmp_path, "server.py", """\
        import signal, sys, time
        def stop(signum, frame):
            print("child got SIGTERM", flush=True)
            sys.exit(3)
        signal.signal(signal.SIGTERM, stop)
        print("serving", flush=True)
        time.sleep(60)
        """)
    proc = wrapper(tmp_path, "-q", "--name", "srv", "--", PY, child)
    task = tmp_path / ".worktrees" / "srv"
    wait_for(lambda: any(ev.get("text") == "serving" for ev in events(task)))
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=DEADLINE)
    assert proc.returncode == 3, err
    doc = status(task)
    assert doc["status"] == "cancelled" and doc["exitCode"] == 3 and "SIGTERM" in doc["error"]
    assert any(ev.get("text") == "child got SIGTERM" for ev in events(task))


def test_child_ignoring_sigterm_is_killed_after_grace(tmp_path):
    child = script(tmp_path, "stubborn.py", """\
        import signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("ignoring you", flush=True)
        time.sleep(60)
        """)
    proc = wrapper(tmp_path, "-q", "--name", "st", "--kill-grace", "0.5s", "--", PY, child)
    task = tmp_path / ".worktrees" / "st"
    wait_for(lambda: any(ev.get("text") == "ignoring you" for ev in events(task)))
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=DEADLINE)
    assert proc.returncode == 128 + signal.SIGKILL
    doc = status(task)
    assert doc["status"] == "cancelled" and doc["signal"] == "SIGKILL"


def test_restart_always_restarts_clean_exits_until_stopped(tmp_path):
    child = script(tmp_path, "tick.py", RUNS)
    runs = tmp_path / "runs"
    proc = wrapper(tmp_path, "-q", "--name", "a", "--restart", "always", "--", PY, child, str(runs))
    wait_for(lambda: len(runs.read_text().split()) >= 3)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=DEADLINE)
    doc = status(tmp_path / ".worktrees" / "a")
    assert doc["status"] == "cancelled" and doc["restarts"] >= 2
    assert proc.returncode in (0, 128 + signal.SIGINT)  # stopped while running or waiting


def test_kill_9_of_wrapper_leaves_the_evidence(tmp_path):
    child = script(tmp_path, "long.py", "import time; print('up', flush=True); time.sleep(60)\n")
    proc = wrapper(tmp_path, "-q", "--name", "k", "--heartbeat", "0.2s", "--", PY, child)
    task = tmp_path / ".worktrees" / "k"
    doc = wait_for(lambda: (d := status(task))["status"] == "running" and d["pid"] and d)
    # Kill only once the child has written its line: a child that writes after its supervisor
    # died gets EPIPE and dies too, which would make the orphan below a race.
    wait_for(lambda: b'"up"' in (task / "logs" / "events.jsonl").read_bytes())
    proc.kill()
    proc.wait(timeout=DEADLINE)
    try:
        doc = status(task)
        assert doc["status"] == "running"  # nobody was left to write a final status
        assert doc["supervisorPid"] == proc.pid and not alive(proc.pid)
        assert alive(doc["pid"])  # the orphan the monitor names, so a proposal can stop it
        # The lease runs out within two heartbeats: a second sign for the monitor.
        wait_for(lambda: parse_time(status(task)["readyUntil"]) < time.time(), timeout=5)
        # And `bgmon --once` sees it: failed, "supervisor died", naming the orphan.
        once = subprocess.run(
            [PY, "-m", "bgmon", "--once", "--json", "--no-git", "--no-claude", "--no-codex"],
            cwd=tmp_path, capture_output=True, timeout=60,
        )
        assert once.returncode == 1, once.stderr
        (t,) = orjson.loads(once.stdout)["tasks"]
        assert t["health"] == "failed" and t["reasons"][0]["rule"] == "supervisor.died"
        assert f"orphaned child {doc['pid']} still runs" in t["reasons"][0]["detail"]
    finally:
        os.killpg(doc["pid"], signal.SIGKILL)


def test_command_that_does_not_exist(tmp_path):
    """A mistyped command is a usage error, said before a task is made for it."""
    proc = wrapper(tmp_path, "--name", "nx", "--", "no-such-command-bgmon-test", "arg")
    out, err = proc.communicate(timeout=DEADLINE)
    assert proc.returncode == 2
    assert err.decode() == "bgmon run: cannot start 'no-such-command-bgmon-test': command not found\n"
    assert not (tmp_path / ".worktrees").exists()


@pytest.mark.parametrize("args", [
    [],
    ["--progress-regex", "(", "--", "true"],
    ["--patterns", "/nonexistent/patterns.toml", "--", "true"],
    ["--name", "../up", "--", "true"],
])
def test_usage_errors_exit_2_without_traceback(tmp_path, monkeypatch, capsys, args):
    assert run_here(tmp_path, monkeypatch, *args) == 2
    err = capsys.readouterr().err
    assert err.startswith("bgmon run: ") and "Traceback" not in err


def test_refuses_a_directory_another_supervisor_owns(tmp_path, monkeypatch, capsys):
    other = subprocess.Popen([PY, "-c", "import time; time.sleep(30)"])
    try:
        task = tmp_path / ".worktrees" / "busy"
        task.mkdir(parents=True)
        (task / "status.json").write_bytes(
            orjson.dumps({"status": "running", "supervisorPid": other.pid}))
        assert run_here(tmp_path, monkeypatch, "--name", "busy", "--", "true") == 2
        assert "already supervised" in capsys.readouterr().err
    finally:
        other.kill()
        other.wait()


def test_task_directory_removed_under_it_stops_cleanly(tmp_path, monkeypatch, capsys):
    child = script(tmp_path, "wipe.py", """\
        import shutil
        shutil.rmtree(".worktrees/gone")
        print("removed my own task directory")
        """)
    assert run_here(tmp_path, monkeypatch, "-q", "--name", "gone", "--", PY, child) == 1
    err = capsys.readouterr().err
    assert "cannot write the task's files" in err and "Traceback" not in err


def test_death_by_sigkill_is_classified_and_restarted_once(tmp_path, monkeypatch):
    rc, starts = run_counted(tmp_path, monkeypatch, "hog", """\
        import os, signal
        os.kill(os.getpid(), signal.SIGKILL)
        """)
    assert rc == 128 + signal.SIGKILL
    doc = status(tmp_path / ".worktrees" / "hog")
    assert doc["signal"] == "SIGKILL" and doc["exitCode"] is None
    assert doc["pattern"]["name"] == "out_of_memory"  # strategy restart_once
    assert doc["restarts"] == 1 and len(starts) == 2


def test_add_parser_fits_the_cli_and_keeps_the_commands_own_options():
    import argparse

    parser = argparse.ArgumentParser(prog="bgmon")
    parser.add_argument("--config")
    parser.add_argument("--quiet", action="store_true")
    supervise.add_parser(parser.add_subparsers(dest="cmd"))
    args = parser.parse_args(["--config", "c.toml", "run", "--name", "x", "--stall", "5m",
                              "--", "rsync", "--name", "y", "-q"])
    assert args.cmd == "run" and args.config == "c.toml" and args.quiet is False
    assert args.run_name == "x" and args.run_stall == 300.0 and args.run_restart == "on-failure"
    assert args.run_argv[-4:] == ["rsync", "--name", "y", "-q"]


# ---- secrets: the terminal gets everything, bgmon's files get no secret ------------------------

PLANTED = "sk-ant-api03-PLANTEDkey0123456789abcdef"  # an Anthropic-style key in argv and output
ENV_KEY = "plainvalue0123456789"  # ANTHROPIC_API_KEY's value: no known shape, scrubbed by value


def test_no_secret_from_argv_or_output_reaches_the_task_files(tmp_path):
    child = script(tmp_path, "leaky.py", """\
        import os, sys
        print("key is", sys.argv[1], "env", os.environ["ANTHROPIC_API_KEY"], flush=True)
        print(f"ConnectionRefusedError: Connection refused using {sys.argv[1]}", file=sys.stderr)
        sys.exit(1)
        """)
    env = {**os.environ, "ANTHROPIC_API_KEY": ENV_KEY,
           "PYTHONPATH": str(Path(supervise.__file__).parents[2])}
    proc = subprocess.Popen(
        [PY, "-m", "bgmon", "run", "--name", "leaky", "--", PY, child, PLANTED, f"--{ENV_KEY}"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate(timeout=DEADLINE)
    assert proc.returncode == 1, err
    # Passed through to the terminal as the command wrote it.
    assert out.count(f"key is {PLANTED} env {ENV_KEY}".encode()) == 4  # 1 run + 3 restarts
    assert PLANTED.encode() in err
    task = tmp_path / ".worktrees" / "leaky"
    written = [task / "status.json", task / "logs" / "events.jsonl",
               tmp_path / ".agents" / "logs" / "background_monitoring.jsonl"]
    for path in written:
        data = path.read_bytes()
        assert PLANTED.encode() not in data and ENV_KEY.encode() not in data, path
        assert b"[REDACTED" in data, path
    doc = status(task)
    assert doc["command"][:2] == [PY, child] and "[REDACTED" in doc["command"][2]
    assert "[REDACTED" in doc["command"][3] and doc["status"] == "failed"
    assert "Connection refused using [REDACTED" in doc["error"]
    evs = events(task)
    assert any(ev.get("text", "").startswith("key is [REDACTED") for ev in evs)
    assert any("started" in ev.get("text", "") and "[REDACTED" in ev["text"] for ev in evs)


# ---- heavy output: the child is never throttled, the log is capped -----------------------------


def test_a_slow_log_never_slows_the_child_down():
    # The child writes 16 MiB while logging is stuck: every byte is still read (and echoed) at
    # once, what could not be logged is counted, and the newest output (the end, which says why
    # a command failed) is logged.
    import threading

    from bgmon.supervise.output import pump

    read_fd, write_fd = os.pipe()
    total = 16 << 20
    stuck = threading.Event()
    echoed, segments, gaps = [0], [], []

    def writer() -> None:
        chunk = b"x" * 1023 + b"\n"
        with os.fdopen(write_fd, "wb") as out:
            for _ in range(total // len(chunk)):
                out.write(chunk)
            out.write(b"the last line\n")

    def on_segment(seg) -> None:
        stuck.wait(60)
        segments.append(seg.text)

    done = threading.Event()
    t = threading.Thread(target=lambda: (pump(read_fd, lambda d: echoed.__setitem__(0, echoed[0] + len(d)),
                                               on_segment, lambda: None, gaps.append), done.set()))
    t.start()
    w = threading.Thread(target=writer)
    w.start()
    w.join(60)
    assert not w.is_alive(), "the child was blocked by the logging"
    deadline = time.monotonic() + 60
    while echoed[0] < total + 14 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert echoed[0] == total + len(b"the last line\n")  # every byte read and echoed
    stuck.set()
    assert done.wait(60)
    os.close(read_fd)
    assert sum(gaps) > 0  # counted, not silently lost
    assert segments[-1] == "the last line"


def test_the_event_log_is_capped_and_rotated(tmp_path):
    log = EventLog(tmp_path / "events.jsonl", max_bytes=20_000)
    for i in range(2000):
        log.write("message", stream="stdout", text=f"line {i} " + "y" * 40)
    log.close()
    current, rotated = tmp_path / "events.jsonl", tmp_path / "events.jsonl.1"
    assert current.stat().st_size <= 20_000 and rotated.stat().st_size <= 20_000
    assert orjson.loads(current.read_bytes().splitlines()[-1])["text"].startswith("line 1999 ")
    assert not (tmp_path / "events.jsonl.2").exists()
