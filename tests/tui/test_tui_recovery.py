"""The recovery panel on real files and real processes: r → proposal → a → y, x, esc.

Without an API key the rules propose; two tests run the real anthropic SDK against the fake
Messages API on 127.0.0.1 from tests/test_recovery_support.py.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import threading

import psutil
import pytest
from rich.console import Console
from test_recovery_support import FakeAPI, tool_message
from tuikit import SIZE, badge_of, config_for, row_text, wait_for, write_task

from bgmon.model import Badge
from bgmon.recovery.service import RecoveryService
from bgmon.views.tui.app import BgmonApp
from bgmon.views.tui.confirm import ConfirmScreen

API_KEY = "sk-ant-api03-TUITEST-" + "k3Y9" * 10
CREDENTIALS = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_PROFILE", "ANTHROPIC_CONFIG_DIR",
               "ANTHROPIC_IDENTITY_TOKEN", "ANTHROPIC_IDENTITY_TOKEN_FILE", "ANTHROPIC_CUSTOM_HEADERS",
               "ANTHROPIC_BASE_URL", "BGMON_MODEL")


@pytest.fixture
def no_key(home, monkeypatch):
    """No credentials anywhere: proposals come from the rules."""
    for name in CREDENTIALS:
        monkeypatch.delenv(name, raising=False)
    return home


@pytest.fixture
def api(no_key, monkeypatch):
    """The real SDK, pointed at a fake Messages API through its usual environment variables."""
    server = FakeAPI()
    monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", API_KEY)
    yield server
    server.close()


@pytest.fixture
def procs():
    """Processes a test started or bgmon restarted; all killed at the end."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            proc.kill()
            proc.wait(5)  # reaps our own children
        except psutil.Error:
            pass


def sleeper(procs: list[int]) -> subprocess.Popen:
    proc = subprocess.Popen([shutil.which("sleep") or "sleep", "600"], start_new_session=True)
    procs.append(proc.pid)
    return proc


def looping(n: int = 6) -> list[dict]:
    """The same call, again and again: bgmon calls that a loop (stuck), the rules say kill."""
    out = []
    for i in range(n):
        out.append({"type": "tool_call", "tool": "Read", "call_id": f"c{i}", "input": {"file": "schema.sql"}})
        out.append({"type": "tool_result", "call_id": f"c{i}", "ok": True, "text": "412 lines"})
    return out


def journal(app: BgmonApp) -> list[dict]:
    path = app.config.journal_path()
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def kinds(records: list[dict], proposal: str) -> list[str]:
    """The journal's records about one proposal, in order: proposal, decision:…, result."""
    out = []
    for r in records:
        ref = r.get("proposal")
        if ref == proposal or (isinstance(ref, dict) and ref["id"] == proposal):
            out.append(r["kind"] if r["kind"] != "decision" else f"decision:{r['decision']}")
    return out


def plain(renderable) -> str:
    console = Console(width=400, record=True, file=io.StringIO(), color_system=None)
    console.print(renderable)
    return console.export_text()


def note_of(app: BgmonApp, name: str) -> str | None:
    return next((s.note for s in app.sync.snaps.values() if s.name == name), None)


def shown(app: BgmonApp) -> str:
    """The recovery panel's text, one line per paragraph."""
    return app.panel.plain(width=400)


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def missing_script_app(root) -> BgmonApp:
    """The app on one task, docs, failed on a missing npm script (the rules propose a mark)."""
    write_task(root, "docs", status="failed", error="npm ERR! Missing script: build:docs")
    return BgmonApp(config_for(root))


async def ask(pilot, app: BgmonApp, name: str, once: Badge | None = None, what: str = "") -> None:
    """Select the task (`once` it shows that badge) and press r; wait for the proposal."""
    if once is not None:
        await wait_for(pilot, lambda: badge_of(app, name) is once, what=what or once.value)
    key = next(k for k, s in app.sync.snaps.items() if s.name == name)
    app.task_tree.move_cursor(app.sync.nodes[key])
    await pilot.pause()
    await pilot.press("r")
    await wait_for(pilot, lambda: app.panel.proposal is not None or app.panel.error, what="a proposal")
    assert app.panel.error is None


async def approve(pilot, app: BgmonApp) -> str:
    """a, then y in the prompt; returns what the prompt said."""
    await pilot.press("a")
    await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the prompt")
    said = plain(app.screen.text)
    await pilot.press("y")
    await wait_for(pilot, lambda: app.panel.outcome is not None, what="the result")
    return said


async def test_r_a_y_kills_a_looping_task_and_the_journal_records_it(no_key, procs):
    proc = sleeper(procs)
    write_task(no_key, "looper", pid=proc.pid, step="reading the schema", events=looping())
    app = BgmonApp(config_for(no_key, proc_interval=0.5))
    notes: list[str] = []
    async with app.run_test(size=SIZE) as pilot:
        app.notify = lambda message, **kw: notes.append(message)
        await wait_for(pilot, lambda: badge_of(app, "looper") is Badge.STUCK, what="stuck (loop)")
        # Nothing to approve or reject yet: say so, do nothing.
        await pilot.press("a", "x")
        assert any("No proposal to approve" in n for n in notes)
        assert any("No proposal to reject" in n for n in notes)
        assert not journal(app) or all(r["kind"] == "health" for r in journal(app))

        await ask(pilot, app, "looper")
        text = shown(app)
        assert app.panel.display and app.task_tree.has_focus  # a side panel; the tree keeps the keys
        assert "rules (no API key)" in text and "loop" in text
        assert f"send SIGTERM to pid {proc.pid} (no children), SIGKILL after 5s" in text
        assert "pending" in text and proc.poll() is None  # proposing runs nothing

        said = await approve(pilot, app)
        assert f"send SIGTERM to pid {proc.pid}" in said and "y run it" in said
        await wait_for(pilot, lambda: proc.poll() is not None, what="the process to die")
        text = shown(app)
        assert "Result: done: 1 action(s) succeeded" in text
        assert f"✓ ok kill: stopped pid {proc.pid}" in text and "executed" in text
        detail = app.query_one("#detail").plain()
        assert "Last recovery" in detail and f"stopped pid {proc.pid}" in detail
        pid = app.panel.proposal.id
        assert kinds(journal(app), pid) == ["proposal", "decision:approved", "result"]
        (result,) = [r for r in journal(app) if r["kind"] == "result"]
        assert result["ok"] and result["results"][0]["kind"] == "kill"
        # esc closes the panel; the tree is as it was.
        await pilot.press("escape")
        assert not app.panel.display and app.task_tree.has_focus


async def test_restart_writes_the_new_pid_and_a_second_approve_does_nothing(no_key, procs):
    script = no_key / "worker.py"
    script.write_text("import time\ntime.sleep(600)\n")
    dead = subprocess.Popen([sys.executable, str(script)])
    dead.kill()
    dead.wait()
    task = write_task(no_key, "worker", pid=dead.pid, command=[sys.executable, str(script)], step="working")
    status = task / "status.json"

    def running_script() -> list[int]:
        found = []
        for p in psutil.process_iter(["cmdline"]):
            if str(script) in (p.info["cmdline"] or []) and alive(p.pid):
                found.append(p.pid)
        return found

    app = BgmonApp(config_for(no_key, proc_interval=0.5))
    try:
        async with app.run_test(size=SIZE) as pilot:
            await ask(pilot, app, "worker", once=Badge.FAILED, what="failed (process gone)")
            text = shown(app)
            assert f"start ['{sys.executable}', '{script}'] in {task}, detached" in text
            assert f"write the new pid and status running to {status}" in text

            said = await approve(pilot, app)
            assert f"start ['{sys.executable}', '{script}']" in said
            new_pid = json.loads(status.read_text())["pid"]
            assert new_pid != dead.pid and alive(new_pid)
            assert f"new pid {new_pid}" in shown(app)
            assert f"new pid {new_pid}" in app.query_one("#detail").plain()

            # The second approval: no prompt, no second restart; the service says why.
            await pilot.press("a")
            await wait_for(pilot, lambda: app.panel.note is not None, what="the no-op message")
            assert "already approved and executed; nothing done again" in shown(app)
            assert not isinstance(app.screen, ConfirmScreen)
            assert json.loads(status.read_text())["pid"] == new_pid
            assert running_script() == [new_pid]
            pid = app.panel.proposal.id
            assert kinds(journal(app), pid) == ["proposal", "decision:approved", "result"]
    finally:
        procs.extend(running_script())  # whatever bgmon started, even when a check failed


async def test_x_rejects_with_a_reason(no_key):
    app = missing_script_app(no_key)
    async with app.run_test(size=SIZE) as pilot:
        await ask(pilot, app, "docs", once=Badge.FAILED)
        await pilot.press("x")
        box = app.panel.query_one("#recovery-reason")
        assert box.display and box.has_focus
        # esc in the box goes back to the proposal, which stays pending.
        await pilot.press("escape")
        assert not box.display and app.panel.display and app.task_tree.has_focus
        assert app.panel.state == "pending"
        await pilot.press("x")
        assert box.display and box.has_focus
        # Typed into the box, r, a and x are text, not keys.
        await pilot.press(*"a fix is in review", "enter")
        await wait_for(pilot, lambda: app.panel.state == "rejected", what="rejected")
        assert not box.display and app.task_tree.has_focus
        assert "rejected" in shown(app) and "r ask again" in shown(app)
        pid = app.panel.proposal.id
        (decision,) = [r for r in journal(app) if r["kind"] == "decision"]
        assert decision["proposal"] == pid and decision["decision"] == "rejected"
        assert decision["reason"] == "a fix is in review" and decision["by"] == "tui"
        # Approving a rejected proposal does nothing.
        await pilot.press("a")
        await wait_for(pilot, lambda: app.panel.note is not None, what="the refusal")
        assert "was rejected; nothing done" in shown(app)
        assert kinds(journal(app), pid) == ["proposal", "decision:rejected"]


async def test_claude_proposes_a_kill_through_the_sdk(home, api, procs):
    proc = sleeper(procs)
    write_task(home, "hung", pid=proc.pid, events=looping())
    api.push(body=tool_message({
        "diagnosis": "It re-reads schema.sql in a loop and makes no progress.",
        "confidence": 0.85,
        "actions": [{"kind": "kill", "pid": proc.pid, "grace": 2},
                    {"kind": "shell", "cmd": "rm -rf ~"}],
    }))
    app = BgmonApp(config_for(home, proc_interval=0.5))
    async with app.run_test(size=SIZE) as pilot:
        await ask(pilot, app, "hung", once=Badge.STUCK, what="stuck (loop)")
        assert len(api.requests) == 1 and api.requests[0]["path"] == "/v1/messages"
        text = shown(app)
        assert "claude claude-opus-5-5" in text and "0.85" in text
        assert "re-reads schema.sql in a loop" in text
        assert f"1. send SIGTERM to pid {proc.pid} (no children), SIGKILL after 2s" in text
        assert "✗ refused unknown action kind" in text and "rm -rf ~" in text  # shown, never run
        said = await approve(pilot, app)
        assert f"send SIGTERM to pid {proc.pid}" in said and "rm -rf" not in said
        await wait_for(pilot, lambda: proc.poll() is not None, what="the process to die")
        assert "Result: done: 1 action(s) succeeded" in shown(app)
        screen = "\n".join(str(w.render()) for w in app.query("Static"))
        assert API_KEY not in screen and API_KEY not in shown(app)
    assert API_KEY not in app.config.journal_path().read_text()
    assert kinds(journal(app), app.panel.proposal.id) == ["proposal", "decision:approved", "result"]


async def test_esc_cancels_a_slow_request_and_the_ui_stays_live(home, api):
    write_task(home, "alpha", status="failed", error="boom")
    write_task(home, "beta", status="failed", error="bang")
    api.push(body=tool_message({"diagnosis": "late", "confidence": 0.5, "actions": []}), delay=30)
    config = config_for(home)
    service = RecoveryService.from_config(config)
    returned = threading.Event()
    request = service.request_proposal

    def tracked(*args, **kwargs):
        try:
            return request(*args, **kwargs)
        finally:
            returned.set()

    service.request_proposal = tracked
    app = BgmonApp(config, recovery=service)
    notes: list[str] = []
    async with app.run_test(size=SIZE) as pilot:
        app.notify = lambda message, **kw: notes.append(message)
        await wait_for(pilot, lambda: len(app.sync.nodes) == 2, what="two tasks")
        first = app.selected
        await pilot.press("r")
        await wait_for(pilot, lambda: len(api.requests) == 1, what="the request at the fake API")
        assert app.panel.loading_proposal and app.panel.query_one("#recovery-spin").display
        assert "Asking for a proposal… esc cancels." in shown(app)
        # The API is still thinking; the UI is not waiting for it.
        await pilot.press("j")
        assert app.selected != first and app.selected in app.sync.snaps
        await pilot.press("k")
        assert app.selected == first
        await pilot.press("a")
        assert any("still coming" in n for n in notes)
        await pilot.press("escape")
        assert not app.panel.display and not app.panel.loading_proposal
        api.release.set()  # the answer arrives after all …
        await wait_for(pilot, returned.is_set, what="the cancelled request to return")
        await pilot.pause(0.2)
        # … and is dropped: nothing shown, nothing recorded.
        assert not app.panel.display and app.panel.proposal is None
        assert not [r for r in journal(app) if r["kind"] == "proposal"]


async def test_an_approved_mark_shows_in_the_tree_and_the_detail(no_key):
    app = missing_script_app(no_key)
    async with app.run_test(size=SIZE) as pilot:
        await ask(pilot, app, "docs", once=Badge.FAILED)
        note = "needs a person: failed, cause unknown"
        assert f"1. mark the task '{note}'" in shown(app)
        await approve(pilot, app)
        assert f"✓ ok mark: marked '{note}'" in shown(app)
        # The engine reads marks from the journal; the detail shows it, and (with the panel
        # closed and the tree at its full width again) so does the row.
        await wait_for(pilot, lambda: note_of(app, "docs") == note, what="the mark on the task")
        assert f"note      {note}" in app.query_one("#detail").plain()
        await pilot.press("escape")
        await pilot.pause()
        assert "✎ needs a pers…" in row_text(app, "docs")  # cut to the room the row has


async def test_the_panel_says_what_a_restart_waits_for(no_key, procs):
    """A restart with a backoff shows `waiting Ns before the restart (backoff)…` in the panel
    while it waits, as `bgmon approve` prints it, instead of a silent spinner."""
    script = no_key / "client.py"
    script.write_text("import time\ntime.sleep(600)\n")
    write_task(no_key, "client", status="failed", command=[sys.executable, str(script)],
               error="ConnectionRefusedError: [Errno 111] Connection refused")
    app = BgmonApp(config_for(no_key, proc_interval=0.5))
    gate = threading.Event()
    try:
        async with app.run_test(size=SIZE) as pilot:
            await ask(pilot, app, "client", once=Badge.FAILED)
            restart = app.panel.proposal.actions[0]
            assert restart.kind == "restart" and restart.delay > 0, app.panel.proposal
            app.panel.service.executor._sleep = lambda seconds: gate.wait(seconds)
            await pilot.press("a")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the prompt")
            await pilot.press("y")
            waiting = f"waiting {restart.delay:g}s before the restart (backoff)…"
            await wait_for(pilot, lambda: waiting in shown(app), what="the backoff line")
            gate.set()
            await wait_for(pilot, lambda: app.panel.outcome is not None, what="the result")
            assert waiting not in shown(app) and "the restart started the task again" in shown(app)
    finally:
        gate.set()
        for p in psutil.process_iter(["cmdline"]):
            if str(script) in (p.info["cmdline"] or []):
                procs.append(p.pid)
