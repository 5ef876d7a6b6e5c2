"""Remote hosts through `cmd:`: a real local `bgmon --follow --json` subprocess is the "host".
Its tasks appear under the host's group, change, vanish when the connection is cut (the host
shows unknown with the reason) and come back when the link reconnects."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys

import orjson
import psutil
import pytest

from bgmon.config import ConfigError, load_config
from bgmon.remote.spec import RemoteError, parse_remote
from tests.conftest import bgmon_cmd, processes_under, wait_for
from tests.test_follow import Lines

FLAGS = ("--no-git", "--no-claude", "--no-codex")
pytestmark = pytest.mark.usefixtures("reap_strays")
# Like sshd: runs the stream with its stdout on a pipe it holds, relays it, and when its own
# connection goes (SIGTERM from the link) simply exits, signalling nothing.
RELAY = ("import subprocess, sys\n"
         "p = subprocess.Popen(sys.argv[1:], stdout=subprocess.PIPE, start_new_session=True)\n"
         "for line in iter(p.stdout.readline, b''):\n"
         "    sys.stdout.buffer.write(line); sys.stdout.buffer.flush()\n")


def env_for(home) -> dict[str, str]:
    return {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")}


def remote_arg(name: str, root) -> str:
    stream = [sys.executable, "-m", "bgmon", "--follow", "--json", *FLAGS, str(root)]
    return f"{name}=cmd:{shlex.join(stream)}"


def inner_streams(outer: subprocess.Popen) -> list[psutil.Process]:
    """The `cmd:` children of the outer bgmon: the remote side of each link."""
    return processes_under("", "--follow", among=psutil.Process(outer.pid).children(recursive=True))


@pytest.fixture
def far(tmp_path):
    """The remote host's root, with its own worktree tasks."""
    from tests.conftest import Workspace

    root = tmp_path / "far"
    root.mkdir()
    return Workspace(root)


def test_follow_merges_a_remote_through_cmd_and_survives_a_cut(ws, far, isolated_home):
    ws.task("local-one")
    far.task("far-worker")
    proc = subprocess.Popen(
        bgmon_cmd("--follow", "--json", *FLAGS, str(ws.root), "--remote", remote_arg("box", far.root)),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env_for(isolated_home),
    )
    lines = Lines(proc)
    try:
        assert lines.next()["event"] == "hello"
        assert lines.until(lambda o: o.get("event") == "synced") is not None
        added = lines.until(lambda o: o.get("event") == "added" and o["task"]["name"] == "far-worker")
        assert added is not None, "the remote's task never appeared"
        task = added["task"]
        assert task["host"] == "box"
        assert task["key"].startswith("@box/worktree:") and task["key"].endswith("far-worker")
        assert task["group"] == f"box:{far.root}"

        far.fail("far-worker", 3)  # judged over there: struggling
        change = lines.until(lambda o: o.get("event") == "health" and o["key"] == task["key"])
        assert change is not None and change["to"] == "struggling"

        (inner,) = wait_for(lambda: inner_streams(proc), what="the cmd: child")
        inner.send_signal(signal.SIGKILL)  # the connection drops
        gone = lines.until(lambda o: o.get("event") == "removed" and o["key"] == task["key"])
        assert gone is not None
        host = lines.until(lambda o: o.get("task", {}).get("key") == "@box"
                           and o["task"]["status"] == "unreachable")
        assert host is not None, "the host was not shown unknown"
        assert host["task"]["health"] == "unknown"
        reason = host["task"]["reasons"][0]
        assert reason["rule"] == "remote.lost"
        assert "signal 9" in reason["detail"] and "reconnecting" in reason["detail"]

        back = lines.until(lambda o: o.get("event") == "added" and o["task"]["key"] == task["key"],
                           timeout=30)
        assert back is not None, "the link did not reconnect"
        assert back["task"]["health"] == "struggling"
        assert lines.until(lambda o: o.get("event") == "removed" and o["key"] == "@box") is not None
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert b"Traceback" not in err
    # Quitting is not the host's tasks going away: no `removed` lines on the way out.
    tail = [orjson.loads(x) for x in (lines.buf + out).splitlines() if x.strip()]
    assert not [o for o in tail if o.get("event") == "removed"]
    assert not [p for p in psutil.process_iter(["cmdline"])
                if str(far.root) in " ".join(p.info["cmdline"] or ())], "the cmd: child outlived bgmon"


def test_once_groups_tasks_by_host(ws, far, tmp_path, isolated_home):
    ws.task("local-one")
    far.task("far-ok")
    far.task("far-broken", status="failed", error="exit 3")
    other = tmp_path / "other"
    other.mkdir()
    args = ["--once", "--json", *FLAGS, str(ws.root), "--remote", remote_arg("box", far.root),
            "--remote", remote_arg("empty", other),
            "--remote", "dead=cmd:" + shlex.join([sys.executable, "-c", "import sys; sys.exit('no bgmon here')"])]
    done = subprocess.run(bgmon_cmd(*args), capture_output=True, env=env_for(isolated_home), timeout=120)
    assert done.returncode == 1, done.stderr  # a remote task failed
    doc = orjson.loads(done.stdout)
    rows = [(t["host"], t["name"], t["health"]) for t in doc["tasks"]]
    assert rows[0] == (None, "local-one", "healthy")  # this machine first
    hosts = [h for h, _, _ in rows]
    assert hosts == sorted(hosts, key=lambda h: h or "")  # each host's tasks together
    assert ("box", "far-broken", "failed") in rows and ("box", "far-ok", "healthy") in rows
    dead = next(t for t in doc["tasks"] if t["host"] == "dead")
    assert dead["health"] == "unknown" and "no bgmon here" in dead["reasons"][0]["detail"]
    assert "reconnecting" not in dead["reasons"][0]["detail"]

    assert "dead: not connected: the stream exited with status 1: no bgmon here" in doc["warnings"]

    text = subprocess.run(bgmon_cmd(*[a for a in args if a != "--json"]), capture_output=True,
                          env=env_for(isolated_home), timeout=120)
    out = text.stdout.decode()
    assert f"box:{far.root}" in out and "far-broken" in out and "no bgmon here" in out
    assert out.index(str(ws.root)) < out.index(f"box:{far.root}")

    # For cron: the same look as metrics, each host's tasks and warnings under its own label.
    from tests.test_metrics import samples, value

    prom = tmp_path / "bgmon.prom"
    done = subprocess.run(bgmon_cmd(*[a for a in args if a != "--json"], "--textfile", str(prom)),
                          capture_output=True, env=env_for(isolated_home), timeout=120)
    assert done.returncode == 1 and done.stdout == b"", done.stderr
    found = samples(prom.read_text())
    assert value(found, "bgmon_tasks", host="box", badge="failed") == 1
    assert value(found, "bgmon_tasks", host="box", badge="healthy") == 1
    assert value(found, "bgmon_tasks", host="dead", badge="unknown") == 1
    assert value(found, "bgmon_read_warnings", host="dead") == 1
    assert value(found, "bgmon_read_warnings", host="box") == 0


@pytest.mark.parametrize("text, message", [
    ("box", "NAME=ssh://"),
    ("box=http://x", "neither"),
    ("b@d=ssh://h", "remote name"),
    ("box=ssh://us;er@host", "bad user or host"),
    ("box=ssh://host:99999", "bad port"),
    ("box=cmd:", "needs a command"),
    ("box=cmd:'unclosed", "cmd:"),
])
def test_bad_remotes_are_one_line_errors(text, message, ws, isolated_home):
    with pytest.raises(RemoteError, match=message):
        parse_remote(text)
    done = subprocess.run(bgmon_cmd("--once", *FLAGS, str(ws.root), "--remote", text),
                          capture_output=True, env=env_for(isolated_home), timeout=60)
    assert done.returncode == 2 and b"Traceback" not in done.stderr
    assert len(done.stderr.decode().strip().splitlines()) == 1


def test_ssh_remote_argv_quotes_every_word():
    spec = parse_remote("dev=ssh://me@devbox:2222/~/src")
    argv = spec.command_argv(["propose", "worktree:/x y;rm -rf ~", "--json"])
    assert argv[:2] == ["ssh", "-T"] and "BatchMode=yes" in argv and "ControlMaster=auto" in argv
    assert argv[argv.index("-p") + 1] == "2222"
    assert argv[-3:-1] == ["--", "me@devbox"]
    assert shlex.split(argv[-1]) == ["bgmon", "propose", "worktree:/x y;rm -rf ~", "--json",
                                     "--root", "~/src"]
    assert spec.stream_argv()[-1] == "bgmon --follow --json '~/src'"


def test_cmd_remote_reuses_its_bgmon_for_commands():
    spec = parse_remote("c=cmd:docker exec -i box bgmon --follow --json --since 1h /work --no-codex")
    assert spec.command_argv(["approve", "p1", "--yes"]) == [
        "docker", "exec", "-i", "box", "bgmon", "approve", "p1", "--yes",
        "--since", "1h", "--root", "/work", "--no-codex"]
    assert parse_remote("c=cmd:cat stream.jsonl").command_argv(["propose", "x"]) is None


def test_remote_tables_in_the_config_file(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text('[[remote]]\nname = "dev"\nurl = "ssh://me@devbox/srv/agents"\n'
                    'bgmon = "~/.local/bin/bgmon"\noptions = ["--no-claude"]\n'
                    'ssh_options = ["-i", "~/.ssh/bgmon"]\n'
                    '[[remote]]\nname = "ci"\nurl = "cmd:kubectl exec -i ci -- bgmon --follow --json"\n')
    config, warnings = load_config(path, explicit=True)
    assert not warnings
    dev, ci = config.remotes
    assert (dev.name, dev.target, dev.root, dev.bgmon) == ("dev", "me@devbox", "/srv/agents",
                                                          ("~/.local/bin/bgmon",))
    assert shlex.split(dev.stream_argv()[-1]) == ["~/.local/bin/bgmon", "--follow", "--json",
                                                  "--no-claude", "/srv/agents"]
    assert "-i" in dev.stream_argv() and ci.kind == "cmd"
    assert "[[remote]]" in config.to_toml()
    path.write_text('[[remote]]\nname = "dev"\n')
    with pytest.raises(ConfigError, match="needs name"):
        load_config(path, explicit=True)
    path.write_text('remote = "x"\n')
    with pytest.raises(ConfigError, match=r"\[\[remote\]\]"):
        load_config(path, explicit=True)


def test_serve_exports_remote_tasks_and_link_state(ws, far, isolated_home):
    from tests.test_metrics import free_port, scrape, value

    ws.task("local-one")
    far.task("far-broken", status="failed")
    port = free_port()
    proc = subprocess.Popen(
        bgmon_cmd("serve", "--metrics", f"127.0.0.1:{port}", *FLAGS, str(ws.root),
                  "--remote", remote_arg("box", far.root)),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env_for(isolated_home),
    )
    try:
        def remote_seen():
            try:
                found = scrape(port)
            except OSError:
                return None
            return found if value(found, "bgmon_tasks", host="box", badge="failed") == 1 else None

        found = wait_for(remote_seen, timeout=30, what="the remote's failed task in the metrics")
        assert value(found, "bgmon_remote_connected", host="box") == 1
        assert value(found, "bgmon_task_health", name="far-broken", host="box", badge="failed") == 1
        assert value(found, "bgmon_task_health", name="local-one", badge="healthy") == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and b"Traceback" not in err


def test_a_follow_whose_reader_left_exits(ws, far, isolated_home):
    """The link closes (here: `--once` is done) but the host's `--follow --json` is not its
    child: behind ssh, only its pipe closes. It must notice (a heartbeat gets EPIPE) and exit."""
    far.task("far-ok")
    stream = [sys.executable, "-c", RELAY, *bgmon_cmd("--follow", "--json", *FLAGS, str(far.root))]
    done = subprocess.run(
        bgmon_cmd("--once", "--json", *FLAGS, str(ws.root), "--remote", f"box=cmd:{shlex.join(stream)}"),
        capture_output=True, env=env_for(isolated_home), timeout=120)
    assert done.returncode == 0, done.stderr
    names = {t["name"] for t in orjson.loads(done.stdout)["tasks"]}
    assert "far-ok" in names
    wait_for(lambda: not processes_under(far.root, "--follow"),
             timeout=60, what="the far side's --follow to exit after its reader left")


def test_follow_says_the_hosts_warnings_labelled(ws, far, isolated_home):
    """`--follow` as text and as JSON: a host's reading warnings and a link that cannot connect
    join this machine's warnings, each labelled with its host; a new one on the host later is
    said when it comes."""
    ws.task("local-one")
    far.task("far-ok")
    (far.task("far-broken") / "status.json").write_text("{not json")
    dead = "dead=cmd:" + shlex.join([sys.executable, "-c", "import sys; sys.exit('no bgmon here')"])
    args = [*FLAGS, str(ws.root), "--remote", remote_arg("box", far.root), "--remote", dead]

    text = subprocess.Popen(bgmon_cmd("--follow", *args), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={**env_for(isolated_home), "NO_COLOR": "1"})
    as_json = subprocess.Popen(bgmon_cmd("--follow", "--json", *args), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, env=env_for(isolated_home))
    try:
        said = Lines(text)
        warned: list[str] = []

        def warning(prefix: str) -> str | None:
            while not any(w.startswith(prefix) for w in warned):
                line = said.raw(timeout=60)
                if line is None:
                    return None
                if line.startswith("⚠ [".encode()):
                    warned.append(line.decode().split("] ", 1)[1])
            return next(w for w in warned if w.startswith(prefix))

        box = warning("box: far-broken (worktree:")
        assert box is not None and "status.json unreadable" in box, warned
        down = warning("dead: not connected: ")
        assert down is not None and "no bgmon here" in down, warned

        stream = Lines(as_json)
        event = stream.until(lambda o: o.get("event") == "warnings"
                             and any(w.startswith("box: far-broken") for w in o["warnings"])
                             and any(w.startswith("dead: not connected") for w in o["warnings"]),
                             timeout=60)
        assert event is not None, "the JSON stream never listed both hosts' warnings"

        (far.task("far-later") / "status.json").write_text("[1, 2")  # a new one over there
        later = warning("box: far-later (worktree:")
        assert later is not None, warned
        assert warned.count(down) == 1  # said once while it lasts, not at every reconnect
        assert stream.until(lambda o: o.get("event") == "warnings"
                            and any(w.startswith("box: far-later") for w in o["warnings"]),
                            timeout=60) is not None
    finally:
        for proc in (text, as_json):
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=30)
            assert proc.returncode == 0 and b"Traceback" not in err, err


def test_follow_over_several_hosts_groups_each_hosts_tasks(ws, far, tmp_path, isolated_home):
    """`--follow --json` and `--follow` over two remote hosts and this machine: every task
    carries its host and lies in its host's group, and text lines come under their host's
    heading, as `--once` groups them."""
    from tests.conftest import Workspace

    dock = Workspace(tmp_path / "dock")
    dock.root.mkdir()
    ws.task("local-one")
    far.task("far-a")
    far.task("far-b", status="failed", error="exit 3")
    dock.task("dock-a")
    args = [*FLAGS, str(ws.root), "--remote", remote_arg("box", far.root),
            "--remote", remote_arg("dock", dock.root)]
    want = {"local-one": (None, str(ws.root)), "far-a": ("box", f"box:{far.root}"),
            "far-b": ("box", f"box:{far.root}"), "dock-a": ("dock", f"dock:{dock.root}")}

    as_json = subprocess.Popen(bgmon_cmd("--follow", "--json", *args), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, env=env_for(isolated_home))
    text = subprocess.Popen(bgmon_cmd("--follow", *args), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={**env_for(isolated_home), "NO_COLOR": "1"})
    try:
        seen: dict[str, tuple] = {}
        stream = Lines(as_json)
        while set(seen) != set(want):
            o = stream.next(timeout=60)
            assert o is not None, f"only {sorted(seen)} arrived"
            task = o.get("task")
            if o.get("event") in ("snapshot", "added") and task and task["name"] in want:
                seen[task["name"]] = (task["host"], task["group"])
        assert seen == want

        heading, under = None, {}
        lines = Lines(text)
        while set(under) != set(want):
            raw = lines.raw(timeout=60)
            assert raw is not None, f"only {sorted(under)} printed"
            line = raw.decode()
            if not line.startswith(" "):
                heading = line
            elif (name := next((n for n in want if f"] {n} " in line), None)) is not None:
                under[name] = heading
        assert under == {name: group for name, (_, group) in want.items()}
    finally:
        for proc in (as_json, text):
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=30)
            assert proc.returncode == 0 and b"Traceback" not in err, err
