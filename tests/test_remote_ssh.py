"""One remote host through real ssh: a throw-away sshd on 127.0.0.1 (temporary host key and
authorized key, a non-privileged port), and bgmon reaching it with the system ssh. Skips, with
the reason, where openssh-server is not installed or sshd cannot start here."""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson
import pytest

from bgmon.config import load_config
from bgmon.remote.recovery import RemoteRecovery
from bgmon.views.jsonout import split_remote_key, task_from_json
from tests.conftest import Workspace, bgmon_cmd, processes_under, wait_for

SSHD = shutil.which("sshd") or ("/usr/sbin/sshd" if os.path.exists("/usr/sbin/sshd") else None)
pytestmark = pytest.mark.skipif(
    SSHD is None or shutil.which("ssh") is None or shutil.which("ssh-keygen") is None,
    reason="openssh-server/openssh-client not installed (Debian: apt-get install openssh-server; "
    ".ci/run installs it when it runs as root)",
)
FLAGS = ["--no-git", "--no-claude", "--no-codex"]
pytestmark = [pytestmark, pytest.mark.usefixtures("reap_strays")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Sshd:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.port = _free_port()
        keygen = ["ssh-keygen", "-q", "-t", "ed25519", "-N", ""]
        subprocess.run([*keygen, "-f", str(base / "host_key")], check=True, timeout=60)
        subprocess.run([*keygen, "-f", str(base / "client_key")], check=True, timeout=60)
        (base / "authorized_keys").write_bytes((base / "client_key.pub").read_bytes())
        host_pub = (base / "host_key.pub").read_text().split()
        (base / "known_hosts").write_text(f"[127.0.0.1]:{self.port} {host_pub[0]} {host_pub[1]}\n")
        config = base / "sshd_config"
        config.write_text("\n".join([
            f"Port {self.port}", "ListenAddress 127.0.0.1", f"HostKey {base / 'host_key'}",
            f"AuthorizedKeysFile {base / 'authorized_keys'}", f"PidFile {base / 'sshd.pid'}",
            "PasswordAuthentication no", "KbdInteractiveAuthentication no", "UsePAM no",
            "StrictModes no", "PermitRootLogin prohibit-password", "LogLevel ERROR",
        ]) + "\n")
        if os.geteuid() == 0:
            os.makedirs("/run/sshd", exist_ok=True)  # sshd's privilege separation directory
        self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def wait_up(self) -> str | None:
        """None when sshd listens; else why not (the test skips with it)."""
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return f"sshd did not start: {self.proc.stderr.read().decode().strip()[:300]}"
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return None
            except OSError:
                time.sleep(0.1)
        return "sshd did not listen within 20s"

    def ssh_options(self) -> list[str]:
        return ["-F", "/dev/null", "-i", str(self.base / "client_key"), "-o", "IdentitiesOnly=yes",
                "-o", f"UserKnownHostsFile={self.base / 'known_hosts'}",
                "-o", "StrictHostKeyChecking=yes"]

    def stop(self) -> None:
        for sock in (self.base / "c" / "bgmon" / "ssh").glob("*"):  # end shared connections now
            subprocess.run(["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "x"],
                           capture_output=True, timeout=20)
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def sshd():
    base = Path(tempfile.mkdtemp(prefix="bgssh"))  # short: ssh's control socket path is limited
    server = Sshd(base)
    try:
        why = server.wait_up()
        if why:
            pytest.skip(why)
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


def test_once_and_recovery_through_real_ssh(sshd, tmp_path, isolated_home, monkeypatch):
    far = Workspace(tmp_path / "far")
    far.root.mkdir()
    far.task("far-ok")
    far.task("far-broken", status="failed", error="exit 3")
    url = f"ssh://{getpass.getuser()}@127.0.0.1:{sshd.port}{far.root}"
    config = tmp_path / "config.toml"
    config.write_text(
        "[[remote]]\n"
        f'name = "box"\nurl = "{url}"\n'
        f"bgmon = {orjson.dumps([sys.executable, '-m', 'bgmon']).decode()}\n"
        f"options = {orjson.dumps(FLAGS).decode()}\n"
        f"ssh_options = {orjson.dumps(sshd.ssh_options()).decode()}\n"
    )
    local = tmp_path / "here"
    local.mkdir()
    env = {**os.environ, "HOME": str(isolated_home), "XDG_CONFIG_HOME": str(isolated_home / ".config"),
           "XDG_CACHE_HOME": str(sshd.base / "c")}
    done = subprocess.run(bgmon_cmd("--once", "--json", "--config", str(config), *FLAGS, str(local)),
                          capture_output=True, env=env, timeout=120)
    assert done.returncode == 1, done.stderr  # a task over there failed
    doc = orjson.loads(done.stdout)
    rows = {(t["host"], t["name"], t["health"]) for t in doc["tasks"]}
    assert rows == {("box", "far-ok", "healthy"), ("box", "far-broken", "failed")}, doc
    # The connection is shared (ControlMaster): its socket lives under bgmon's cache directory.
    control = sshd.base / "c" / "bgmon" / "ssh"
    assert control.is_dir() and oct(control.stat().st_mode & 0o777) == "0o700"
    wait_for(lambda: list(control.iterdir()), what="the shared connection's socket")

    # Recovery over the same ssh: propose there, then reject there, with a reason that would be
    # shell syntax if it were not quoted word by word.
    monkeypatch.setenv("XDG_CACHE_HOME", str(sshd.base / "c"))
    (spec,) = load_config(config, explicit=True)[0].remotes
    service = RemoteRecovery(spec)
    snap = next(t for t in doc["tasks"] if t["name"] == "far-broken")
    proposal = service.request_proposal(task_from_json(
        {**snap, "key": split_remote_key(snap["key"])[1]}, "box"))
    assert proposal is not None and proposal.task == snap["key"]
    assert service.state(proposal.id) == "pending"
    assert service.preview(proposal)[0].startswith("on box: ssh ")
    outcome = service.reject(proposal.id, "not now; $(touch pwned) `x`")
    assert outcome.status == "rejected", outcome
    assert not (far.root / "pwned").exists() and not Path("pwned").exists()
    journal = (far.root / ".agents/logs/background_monitoring.jsonl").read_text()
    assert "not now; $(touch pwned) `x`" in journal

    # The same from a shell: `@box/…` names the host's task and proposal ([[remote]] box).
    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(bgmon_cmd(*args, "--config", str(config)), capture_output=True,
                              text=True, env=env, cwd=local, timeout=120)

    made = cli("propose", "@box/far-broken", "--rules", "--json")
    assert made.returncode == 0, made.stderr
    again = orjson.loads(made.stdout)
    assert again["id"] != proposal.id and again["task"] == snap["key"]
    assert again["effect"][0].startswith("on box: ssh ")
    dry = cli("approve", f"@box/{again['id']}", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert f"Approve @box/{again['id']} for task far-broken" in dry.stdout
    assert "  on box: ssh " in dry.stdout and "(the proposal is pending)" in dry.stdout
    no = cli("reject", f"@box/{again['id']}", "--reason", "from a shell")
    assert no.returncode == 0 and no.stdout.startswith("box: "), no.stderr
    assert "from a shell" in (far.root / ".agents/logs/background_monitoring.jsonl").read_text()
    # The --once link is closed: sshd only closed the stream's pipes, and the far side's
    # `--follow --json` must notice that by itself and exit (it used to run forever).
    wait_for(lambda: not processes_under(far.root, "--follow"), timeout=60,
             what="the far side's --follow to exit after the link closed")
