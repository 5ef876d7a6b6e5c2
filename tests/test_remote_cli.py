"""`bgmon propose | approve | reject @HOST/…` from a shell: run on that host through its remote
(here `cmd:`, a real local bgmon watching its own root; the task there a real `bgmon run`), with
the exact effect shown before approval as for a local proposal, and the decision made there."""

from __future__ import annotations

import io
import shlex
import sys

import orjson
import pytest

from bgmon.cli import main as cli_main
from bgmon.recovery.journal import Journal
from tests.conftest import bgmon_cmd, wait_for
from tests.test_one_voice import REFUSED, run

FLAGS = ("--no-git", "--no-claude", "--no-codex")
pytestmark = pytest.mark.usefixtures("reap_strays")


class TTY(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def host(tmp_path):
    """(here, far, home, --remote value): far holds a `bgmon run` task that failed."""
    here, far, home = tmp_path / "here", tmp_path / "far", tmp_path / "home"
    for d in (here, far, home):
        d.mkdir()
    done = run(["run", "--name", "svc", "--restart", "no", "--quiet", "--", sys.executable, "-c",
                REFUSED], far, home)
    assert done.returncode == 1, done.stderr
    stream = [sys.executable, "-m", "bgmon", "--follow", "--json", *FLAGS, str(far)]
    return here, far, home, f"box=cmd:{shlex.join(stream)}"


def journal(far) -> list[dict]:
    return Journal(far / ".agents" / "logs" / "background_monitoring.jsonl").records()


def test_propose_approve_reject_at_a_host_run_there(host, monkeypatch, capsys):
    here, far, home, remote = host
    prefix = [sys.executable, "-m", "bgmon"]

    text = run(["propose", "@box/svc", "--rules", "--remote", remote], here, home)
    assert text.returncode == 0, text.stderr
    assert "Proposal p_" in text.stdout and "task svc #bg_" in text.stdout
    pid = text.stdout.split("Proposal ", 1)[1].split()[0]
    assert f"approve: bgmon approve @box/{pid}" in text.stdout  # how to name it from here
    assert f"under `bgmon run --dir {far}/.worktrees/svc`" in text.stdout
    made = [r for r in journal(far) if r["kind"] == "proposal"]
    assert [r["proposal"]["id"] for r in made] == [pid]  # made and recorded over there
    assert not (here / ".agents").exists()  # nothing of it on this machine

    as_json = orjson.loads(run(["propose", "@box/svc", "--rules", "--json", "--remote", remote],
                               here, home).stdout)
    assert as_json["id"] == pid and as_json["state"] == "pending"  # still current: the same one
    assert as_json["task"].startswith("@box/worktree:")
    argv = [*prefix, "approve", pid, "--yes", "--json", *FLAGS, "--root", str(far)]
    assert as_json["effect"][0] == f"on box: {shlex.join(argv)}"
    assert as_json["effect"][1].startswith("  1. wait 5s, then start")

    # Without a terminal bgmon cannot ask: exit 2, nothing done there.
    assert run(["approve", f"@box/{pid}", "--remote", remote], here, home).returncode == 2
    dry = run(["approve", f"@box/{pid}", "--dry-run", "--remote", remote], here, home)
    assert dry.returncode == 0 and "dry run: nothing done (the proposal is pending)" in dry.stdout
    assert not [r for r in journal(far) if r["kind"] == "decision"]

    # From a terminal: the same prompt as for a local proposal, with the exact effect.
    def started():
        return orjson.loads((far / ".worktrees/svc/status.json").read_bytes())["startedAt"]

    before = started()
    monkeypatch.chdir(here)
    monkeypatch.setattr(sys, "stdin", TTY("n\n"))
    assert cli_main(["approve", f"@box/{pid}", "--remote", remote]) == 0
    said = capsys.readouterr().out
    assert said.startswith(f"Approve @box/{pid} for task svc #bg_")
    assert f"  on box: {shlex.join(argv)}\n" in said and "    1. wait 5s, then start" in said
    assert said.endswith("Run this? [y/N] not approved; nothing done\n")
    monkeypatch.setattr(sys, "stdin", TTY("y\n"))
    assert cli_main(["approve", f"@box/{pid}", "--remote", remote]) == 0
    said = capsys.readouterr().out
    assert "box: done: 1 action(s) ran" in said and "[ok] restart: waited 5s; started" in said
    decided = [r for r in journal(far) if r.get("proposal") == pid]
    assert [(r["kind"], r.get("decision"), r.get("by")) for r in decided] == [
        ("decision", "approved", "cli"), ("result", None, None)]
    wait_for(lambda: started() != before,
             timeout=60, what="the task restarted over there")

    # Again: the host says it already ran; a no-op, as for a local proposal.
    again = run(["approve", f"@box/{pid}", "--yes", "--remote", remote], here, home)
    assert again.returncode == 0, again.stderr
    assert again.stdout == f"box: {pid} was already approved and executed; nothing done again\n"

    fresh = orjson.loads(run(["propose", "@box/svc", "--rules", "--fresh", "--json", "--remote",
                              remote], here, home).stdout)
    no = run(["reject", f"@box/{fresh['id']}", "--reason", "not now; later", "--remote", remote],
             here, home)
    assert no.returncode == 0, no.stderr
    assert no.stdout.startswith("box: ")
    (rejected,) = [r for r in journal(far) if r.get("proposal") == fresh["id"]]
    assert (rejected["decision"], rejected["reason"]) == ("rejected", "not now; later")


def test_remote_references_from_the_config_and_their_errors(host, tmp_path):
    here, far, home, remote = host
    config = tmp_path / "config.toml"
    url = remote.split("=", 1)[1]
    config.write_text(f'[[remote]]\nname = "box"\nurl = {orjson.dumps(url).decode()}\n')
    made = run(["propose", "@box/svc", "--rules", "--json", "--config", str(config)], here, home)
    assert made.returncode == 0, made.stderr
    assert orjson.loads(made.stdout)["task"].startswith("@box/")

    cases = [  # (argv, exit status, what the one line says)
        (["propose", "@nowhere/svc"], 2, "no remote host named 'nowhere'"),
        (["approve", "@nowhere/p_1", "--yes"], 2, "--remote nowhere="),
        (["propose", "@box/nothing-here", "--rules"], 1, "box: bgmon: no task matches 'nothing-here'"),
        (["approve", "@box/p_0000", "--yes"], 1, "box: bgmon: no proposal p_0000"),
        (["reject", "@box/p_0000"], 1, "box:"),
    ]
    for argv, code, message in cases:
        done = run([*argv, "--config", str(config)], here, home)
        assert done.returncode == code, (argv, done.stdout, done.stderr)
        assert message in done.stderr + done.stdout, (argv, done.stderr)
        assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) <= 1

    down = run(["propose", "@gone/svc", "--remote", "gone=cmd:" + shlex.join(
        [*bgmon_cmd("--follow", "--json"), str(tmp_path / "missing")])], here, home)
    assert down.returncode == 1 and "gone: " in down.stderr and "Traceback" not in down.stderr
