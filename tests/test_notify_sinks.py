"""Sinks at the edge, each against the real thing: a command as a real subprocess, a desktop
notifier as a stub executable on PATH, a webhook against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
import stat
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from bgmon.config import Notify
from bgmon.notify.notifier import Notifier, make_sinks
from bgmon.notify.policy import Alert, Batch
from bgmon.notify.sinks import (
    CommandSink,
    DesktopSink,
    SinkError,
    TerminalSink,
    WebhookSink,
    find_desktop_tool,
    terminal_sequence,
)

HOSTILE = "evil\x1b]0;pwned\x07name\n"


def alert(key="worktree:/w/api", name="api-client", new="failed", old="healthy", reason="exit 2"):
    return Alert(key=key, id=name, name=name, group="/w", path="/w/.worktrees/api", old=old,
                 new=new, reason=reason, rule="status.failed", since=1.0)


BATCH = Batch((alert(),), 2.0)
MANY = Batch((alert(), alert("worktree:/w/b", "b", "stuck", reason="silent 11m")), 2.0)


def stub(dirpath: Path, name: str) -> Path:
    """An executable that appends its argv (as JSON) to NAME.log beside it."""
    dirpath.mkdir(parents=True, exist_ok=True)
    exe = dirpath / name
    exe.write_text(
        f"#!{sys.executable}\nimport json, sys\n"
        f"open({str(dirpath / (name + '.log'))!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n"
    )
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    return exe


def test_command_sink_runs_argv_with_bgmon_environment(tmp_path):
    out = tmp_path / "env.json"
    script = ("import json, os, sys; json.dump({'argv': sys.argv[1:], 'env': {k: v for k, v in "
              "os.environ.items() if k.startswith('BGMON_')}}, open(sys.argv[1], 'w'))")
    CommandSink((sys.executable, "-c", script, str(out), "$HOME;rm -rf /"), timeout=20).send(MANY)
    got = json.loads(out.read_text())
    assert got["argv"] == [str(out), "$HOME;rm -rf /"]  # argv as given: no shell ever saw it
    env = got["env"]
    assert env["BGMON_OLD_BADGE"] == "healthy" and env["BGMON_NEW_BADGE"] == "failed"
    assert env["BGMON_TASK_KEY"] == "worktree:/w/api" and env["BGMON_TASK_ID"] == "api-client"
    assert env["BGMON_TASK_NAME"] == "api-client" and env["BGMON_TASK_PATH"] == "/w/.worktrees/api"
    assert env["BGMON_REASON"] == "exit 2" and env["BGMON_COUNT"] == "2"
    assert [a["name"] for a in json.loads(env["BGMON_ALERTS"])] == ["api-client", "b"]
    assert "b: healthy → stuck: silent 11m" in env["BGMON_MESSAGE"]


def test_command_sink_failures_are_one_line_errors(tmp_path):
    with pytest.raises(SinkError, match=r"exited with status 3: boom"):
        CommandSink((sys.executable, "-c", "import sys; sys.stderr.write('boom\\n'); sys.exit(3)"),
                    timeout=20).send(BATCH)
    with pytest.raises(SinkError, match="cannot run"):
        CommandSink((str(tmp_path / "missing"),), timeout=5).send(BATCH)
    with pytest.raises(SinkError, match="longer than 0.5s"):
        CommandSink((sys.executable, "-c", "import time; time.sleep(30)"), timeout=0.5).send(BATCH)


def test_desktop_sink_uses_the_notifier_found_on_path(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    stub(bin_dir, "osascript")
    stub(bin_dir, "notify-send")
    monkeypatch.setenv("PATH", str(bin_dir))
    assert find_desktop_tool() == str(bin_dir / "notify-send")  # preferred over osascript
    DesktopSink(timeout=20).send(BATCH)
    (argv,) = [json.loads(x) for x in (bin_dir / "notify-send.log").read_text().splitlines()]
    assert argv[:3] == ["--app-name=bgmon", "--urgency=critical", "--"]
    assert argv[3] == "bgmon: api-client failed"
    assert argv[4].startswith("✗ api-client: healthy → failed: exit 2\nopen: bgmon history api-client")


def test_desktop_sink_osascript_gets_texts_as_arguments(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    stub(bin_dir, "osascript")
    monkeypatch.setenv("PATH", str(bin_dir))
    quoted = Batch((alert(name='say "hi" \\ end'),), 2.0)
    DesktopSink(timeout=20).send(quoted)
    (argv,) = [json.loads(x) for x in (bin_dir / "osascript.log").read_text().splitlines()]
    assert argv[-2] == 'bgmon: say "hi" \\ end failed'  # never spliced into the script
    assert "item 1 of argv" in " ".join(argv[:-2])


def test_desktop_sink_without_a_notifier_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SinkError, match="no desktop notifier"):
        DesktopSink(timeout=5).send(BATCH)


def test_terminal_sequences():
    assert terminal_sequence("bell", BATCH) == "\a"
    osc9 = terminal_sequence("osc9", BATCH)
    assert osc9.startswith("\x1b]9;bgmon: api-client failed: ✗ api-client") and osc9.endswith("\x07")
    osc777 = terminal_sequence("osc777", Batch((alert(name="a;b"),), 2.0))
    assert osc777.startswith("\x1b]777;notify;bgmon: a,b failed;✗ a;b: healthy → failed")
    written: list[str] = []
    TerminalSink("osc9", written.append).send(BATCH)
    assert written == [osc9]


class Hook(BaseHTTPRequestHandler):
    received: list[tuple[str, dict]] = []
    status = 200

    def do_POST(self):  # noqa: N802
        length = int(self.headers["Content-Length"])
        Hook.received.append((self.path, json.loads(self.rfile.read(length))))
        self.send_response(Hook.status)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    Hook.received, Hook.status = [], 200
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_webhook_ntfy_body(server):
    WebhookSink(f"{server}/bgmon-alerts", "ntfy", timeout=10).send(MANY)
    ((path, body),) = Hook.received
    assert path == "/"  # ntfy's JSON form goes to the root, the topic inside
    assert body["topic"] == "bgmon-alerts"
    assert body["title"] == "bgmon: 2 tasks changed"
    assert body["message"].splitlines()[0] == "✗ api-client: healthy → failed: exit 2"
    assert body["tags"] == ["x"] and body["priority"] == 4


def test_webhook_slack_body(server):
    WebhookSink(f"{server}/services/T/B/X", "slack", timeout=10).send(
        Batch((alert(name="<!channel> & co"),), 2.0))
    ((path, body),) = Hook.received
    assert path == "/services/T/B/X"
    assert set(body) == {"text"}
    assert body["text"].startswith("*bgmon: &lt;!channel&gt; &amp; co failed*\n")


def test_webhook_json_body_and_errors(server):
    WebhookSink(f"{server}/hook", "json", timeout=10).send(BATCH)
    ((_, body),) = Hook.received
    assert body["alerts"][0]["to"] == "failed" and body["alerts"][0]["from"] == "healthy"
    Hook.status = 500
    with pytest.raises(SinkError, match="answered 500"):
        WebhookSink(f"{server}/hook", "json", timeout=10).send(BATCH)
    with pytest.raises(SinkError, match="ConnectError"):
        WebhookSink("http://127.0.0.1:9/hook", "json", timeout=10).send(BATCH)
    with pytest.raises(ValueError, match="ends with its topic"):
        WebhookSink("http://127.0.0.1:9/", "ntfy", timeout=10)


def test_notifier_delivers_to_every_sink_and_reports_failures(tmp_path, server):
    from bgmon.engine import Change
    from bgmon.model import Badge, Health, Reason, TaskSnapshot

    def snap(badge: Badge, name: str = HOSTILE) -> TaskSnapshot:
        return TaskSnapshot(key="k", id="k", name=name, source="worktree", group="/w", parent=None,
                            status="running", health=Health(badge, (Reason("r", "why\x1b[2J"),)),
                            progress=None, step=None, last_activity=None, pid=None, path="/w/k")

    notify = Notify(hold=0, coalesce=0, min_interval=0, command=(str(tmp_path / "missing"),),
                    webhook=f"{server}/hook", webhook_format="json")
    problems: list[str] = []
    written: list[str] = []
    notifier = Notifier(notify, make_sinks(notify, written.append), problems.append)
    assert [s.name for s in notifier.sinks] == ["command", "webhook"]  # terminal: off
    notifier.on_changes([Change("added", "k", snap(Badge.HEALTHY))], 10.0)  # the baseline
    notifier.on_changes([Change("health", "k", snap(Badge.FAILED))], 11.0)
    notifier.on_changes([], 12.0)
    notifier.close()
    ((_, body),) = Hook.received
    (sent,) = body["alerts"]
    # Control characters made visible (bgmon.printable), newlines folded: nothing a terminal runs.
    assert sent["name"] == "evil␛]0;pwned␇name" and sent["reason"] == "why␛[2J"
    assert notifier.sent == 1 and notifier.failures == 1
    assert problems and "notification by command failed: cannot run" in problems[0]
