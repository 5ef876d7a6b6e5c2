"""A remote host in the TUI: its tasks under the host's group, and recovery on one of them run
by the host's own bgmon (`bgmon propose` / `approve` there), with the approval prompt showing
the exact command and the host's words for the effect. The "host" is a real local
`bgmon --follow --json` started through `cmd:`, watching its own root."""

from __future__ import annotations

import json
import shlex
import sys

from test_tui_recovery import alive, approve, looping, no_key, procs, shown, sleeper  # noqa: F401
from tuikit import SIZE, badge_of, config_for, wait_for, write_task

from bgmon.model import Badge
from bgmon.remote.spec import parse_remote
from bgmon.views.tui.app import BgmonApp

FLAGS = ("--no-git", "--no-claude", "--no-codex", "--no-omo")


async def test_remote_task_recovered_on_its_host(no_key, procs, tmp_path):  # noqa: F811
    here, far = tmp_path / "here", tmp_path / "far"
    here.mkdir()
    far.mkdir()
    write_task(here, "local-one")
    proc = sleeper(procs)
    write_task(far, "far-looper", pid=proc.pid, events=looping())
    stream = [sys.executable, "-m", "bgmon", "--follow", "--json", *FLAGS, str(far)]
    remote = parse_remote(f"box=cmd:{shlex.join(stream)}")
    app = BgmonApp(config_for(here, proc_interval=0.5, remotes=(remote,)))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: badge_of(app, "far-looper") is Badge.STUCK, timeout=30,
                       what="the remote task, stuck (loop), judged over there")
        key = next(k for k, s in app.sync.snaps.items() if s.name == "far-looper")
        assert key.startswith("@box/") and app.sync.snaps[key].group == f"box:{far}"
        assert f"group:box:{far}" in [k for _, k in app.sync.tree_order()]

        app.task_tree.move_cursor(app.sync.nodes[key])
        await pilot.pause()
        await pilot.press("r")
        await wait_for(pilot, lambda: app.panel.proposal is not None or app.panel.error,
                       timeout=60, what="a proposal from the host")
        assert app.panel.error is None
        assert f"send SIGTERM to pid {proc.pid}" in shown(app)
        assert proc.poll() is None  # proposing runs nothing

        said = await approve(pilot, app)
        # The exact local command, then the host's own description of the effect.
        pid = app.panel.proposal.id
        assert f"on box: {shlex.join([*stream[:3], 'approve', pid, '--yes', '--json'])}" in " ".join(said.split())
        assert f"send SIGTERM to pid {proc.pid}" in said
        await wait_for(pilot, lambda: proc.poll() is not None, timeout=30, what="the kill, over there")
        assert "box: " in shown(app) and app.panel.outcome.ok
    # The host's journal has the proposal, the decision and the result: it happened there.
    records = [json.loads(x) for x in (far / ".agents/logs/background_monitoring.jsonl").read_text().splitlines()]
    assert [r["kind"] for r in records if r.get("proposal") == pid or
            (isinstance(r.get("proposal"), dict) and r["proposal"]["id"] == pid)] == [
        "proposal", "decision", "result"]
    assert not (here / ".agents/logs/background_monitoring.jsonl").exists() or pid not in (
        here / ".agents/logs/background_monitoring.jsonl").read_text()


async def test_remote_warnings_and_link_problems_join_the_warnings_panel(tmp_path):
    """The host's own reading warnings (a status.json it cannot parse) and a link that cannot
    connect show in the status line's count and the group panel's warnings, each labelled with
    its host, beside this machine's; when the host's warning goes away, so does it here."""
    here, far = tmp_path / "here", tmp_path / "far"
    here.mkdir()
    far.mkdir()
    write_task(here, "local-one")
    write_task(far, "far-ok")
    broken = write_task(far, "far-broken")
    (broken / "status.json").write_text("{not json")
    stream = [sys.executable, "-m", "bgmon", "--follow", "--json", *FLAGS, str(far)]
    dead = [sys.executable, "-c", "import sys; sys.exit('no bgmon here')"]
    remotes = (parse_remote(f"box=cmd:{shlex.join(stream)}"),
               parse_remote(f"dead=cmd:{shlex.join(dead)}"))
    app = BgmonApp(config_for(here, remotes=remotes))

    def host_warnings() -> list[str]:
        return [w for w in app.read_warnings if w.startswith(("box: ", "dead: "))]

    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: len(host_warnings()) == 2, timeout=60,
                       what="the host's warning and the dead link's, in the app's warnings")
        box, down = sorted(host_warnings())
        assert box.startswith("box: far-broken (worktree:") and "status.json unreadable" in box
        assert down.startswith("dead: not connected: the stream exited with status 1: no bgmon here")
        assert "2 reading warnings" in str(app.query_one("#status").render())

        app.task_tree.move_cursor(app.sync.groups[str(here)])  # any group shows them all
        await pilot.pause()
        panel = " ".join(app.query_one("#detail").plain(width=400).split())
        assert "Warnings while reading (2)" in panel
        assert "box: far-broken (worktree:" in panel and "dead: not connected:" in panel

        write_task(far, "far-broken")  # readable again: the host's warning goes
        await wait_for(pilot, lambda: host_warnings() == [down], timeout=60,
                       what="the host's warning gone here too")
        await wait_for(pilot, lambda: "Warnings while reading (1)" in app.query_one("#detail").plain(400),
                       what="the open panel redrawn with the shorter list")
