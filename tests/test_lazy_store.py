"""The state store opens lazily: a command that only reads (`--once`, `--follow`, `history`,
`report`) in a folder where nothing was ever recorded sees "nothing recorded" and creates
nothing; the database appears with the first record written, or to index a journal that is
already there. A folder bgmon may not write to still shows its tasks, and a write there is a
one-line message."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import bgmon_cmd, wait_for, write_json

from bgmon.recovery.journal import DEFAULT_PATH, Journal
from bgmon.recovery.state import state_path

DATA = Path(__file__).parent / "data"


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("CLAUDE_CONFIG_DIR", "CODEX_HOME", "XDG_DATA_HOME", "GEMINI_CLI_HOME",
                        "COPILOT_HOME", "ANTHROPIC_API_KEY")}
    return {**env, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"), "NO_COLOR": "1"}


def bgmon(*argv: str, cwd: Path, home: Path) -> subprocess.CompletedProcess:
    return subprocess.run(bgmon_cmd(*argv), cwd=cwd, env=_env(home), capture_output=True,
                          text=True, timeout=120)


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.fixture
def folder(tmp_path) -> tuple[Path, Path]:
    """(an empty project folder, a HOME with nothing in it)."""
    root, home = tmp_path / "project", tmp_path / "home"
    root.mkdir()
    home.mkdir()
    return root, home


def _task(root: Path, name: str = "build", status: str = "running") -> None:
    write_json(root / ".worktrees" / name / "status.json",
               {"version": 1, "id": name, "name": name, "status": status,
                "updatedAt": time.time()})


@pytest.mark.parametrize("argv", [
    ("--once",), ("--once", "--json"), ("history",), ("history", "--json"), ("history", "build"),
    ("report",), ("report", "--json"),
])
def test_a_read_only_command_where_nothing_was_recorded_creates_nothing(folder, argv):
    root, home = folder
    _task(root)
    before = files_under(root)
    r = bgmon(*argv, cwd=root, home=home)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    assert files_under(root) == before
    assert not (root / ".agents").exists()


def test_history_and_report_say_nothing_was_recorded(folder):
    root, home = folder
    r = bgmon("history", cwd=root, home=home)
    assert "no records" in r.stdout
    r = bgmon("report", cwd=root, home=home)
    assert "0 records" in r.stdout
    assert not (root / ".agents").exists()


def test_follow_on_an_empty_folder_creates_nothing(folder, reap_strays):
    root, home = folder
    proc = subprocess.Popen(bgmon_cmd("--follow", "--json", str(root)), cwd=root, env=_env(home),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # the wire protocol's heartbeat: the engine has looked (and read marks) at least once
        assert proc.stdout is not None
        wait_for(lambda: proc.stdout.readline(), timeout=60, what="a first --follow line")
        time.sleep(1.5)  # a few more turns of the live engine, which asks for marks every second
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert files_under(root) == []


async def test_the_tui_on_an_empty_folder_creates_nothing(folder, monkeypatch):
    from bgmon.config import Config
    from bgmon.views.tui.app import BgmonApp

    root, home = folder
    monkeypatch.setenv("HOME", str(home))
    config = Config(roots=(str(root),), sources=("worktrees", "omo"), git=False,
                    match_agents=False)
    app = BgmonApp(config)
    async with app.run_test(size=(120, 40)) as pilot:
        for _ in range(4):
            await pilot.pause(0.5)
    assert files_under(root) == []


def test_the_database_appears_with_the_first_record(tmp_path):
    journal = Journal(tmp_path / DEFAULT_PATH)
    assert journal.history() == [] and journal.marks() == {} and journal.acks() == {}
    assert journal.report()["records"] == 0 and journal.read().records == []
    assert journal.state("nope") is None and journal.pending_for("t") is None
    assert journal.restarts("t") == 0
    assert files_under(tmp_path) == []
    journal.record_ack("t", "t1", "failed")
    assert state_path(journal.path).exists() and journal.path.exists()
    assert journal.acks()["t"].badge == "failed"
    assert [r["kind"] for r in journal.history()] == ["ack"]


def test_a_reader_that_saw_nothing_sees_what_another_process_wrote_later(tmp_path):
    reader = Journal(tmp_path / DEFAULT_PATH)
    assert reader.marks() == {}
    Journal(tmp_path / DEFAULT_PATH).append({"kind": "mark", "task": "t", "note": "looked at"})
    assert reader.marks() == {"t": "looked at"}
    assert [r["kind"] for r in reader.history()] == ["mark"]


def test_an_existing_journal_is_migrated_by_a_reader(tmp_path):
    path = tmp_path / DEFAULT_PATH
    path.parent.mkdir(parents=True)
    shutil.copy(DATA / "journal_v1.jsonl", path)
    assert Journal(path).history()
    assert state_path(path).exists()


# --- a folder bgmon may not write to ----------------------------------------------------------


def _dirs(root: Path) -> list[Path]:
    return [root, *(p for p in root.rglob("*") if p.is_dir())]


def _can_create_in(path: Path) -> bool:
    try:
        (path / ".probe").touch()
    except OSError:
        return False
    (path / ".probe").unlink()
    return True


def _read_only(root: Path) -> None:
    """No new file anywhere under `root`: mode 555, and for root (whom modes do not bind) the
    immutable attribute, where the file system has it."""
    for d in _dirs(root):
        d.chmod(0o555)
    if _can_create_in(root) and shutil.which("chattr"):
        subprocess.run(["chattr", "+i", *map(str, _dirs(root))], capture_output=True)
    if _can_create_in(root):
        pytest.skip("cannot make a folder read-only for this user (root, no chattr)")


@pytest.fixture
def locked_folder(folder):
    root, home = folder
    yield root, home
    if shutil.which("chattr"):
        subprocess.run(["chattr", "-i", *map(str, _dirs(root))], capture_output=True)
    for d in _dirs(root):
        d.chmod(0o755)


def test_a_read_only_folder_with_no_journal_shows_its_tasks(locked_folder):
    root, home = locked_folder
    _task(root)
    _read_only(root)
    r = bgmon("--once", cwd=root, home=home)
    assert r.returncode == 0, r.stderr
    assert "build" in r.stdout
    assert r.stderr == ""
    r = bgmon("history", cwd=root, home=home)
    assert r.returncode == 0 and "Traceback" not in r.stderr


@pytest.mark.parametrize("with_database", [False, True])
def test_a_read_only_folder_with_a_journal_shows_what_it_holds(locked_folder, with_database):
    root, home = locked_folder
    _task(root, status="failed")
    r = bgmon("ack", "build", "--note", "seen it", cwd=root, home=home)
    assert r.returncode == 0, r.stderr
    if not with_database:  # a journal from before the state store
        os.remove(state_path(root / DEFAULT_PATH))
    _read_only(root)
    r = bgmon("--once", cwd=root, home=home)
    assert r.returncode == 0, r.stderr  # acknowledged: the fault no longer counts
    assert "acknowledged: seen it" in r.stdout
    assert "warning" not in r.stdout and r.stderr == ""
    r = bgmon("history", cwd=root, home=home)
    assert r.returncode == 0, r.stderr
    assert "ack" in r.stdout
    r = bgmon("report", cwd=root, home=home)
    assert r.returncode == 0 and "1 records" in r.stdout, r.stdout + r.stderr
    # a write there is refused in one line, and the journal keeps what it had
    r = bgmon("ack", "build", "--clear", cwd=root, home=home)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "cannot" in r.stderr
    assert "acknowledged: seen it" in bgmon("--once", cwd=root, home=home).stdout


def test_a_write_in_a_read_only_folder_is_one_line_exit_2(locked_folder):
    root, home = locked_folder
    _task(root, status="failed")
    _read_only(root)
    for argv in (("ack", "build"), ("propose", "build")):
        r = bgmon(*argv, cwd=root, home=home)
        assert r.returncode == 2, (argv, r.stdout, r.stderr)
        assert "Traceback" not in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert "cannot" in r.stderr, r.stderr
    assert not (root / ".agents").exists()


def test_a_reader_running_as_python_sees_nothing_recorded_too(folder):
    """The same through the library, in a fresh process (no state carried over from tests)."""
    root, _ = folder
    code = ("import sys; from bgmon.recovery.journal import Journal; "
            "j = Journal.for_root(sys.argv[1]); print(len(j.history()), j.report()['records'])")
    out = subprocess.run([sys.executable, "-c", code, str(root)], capture_output=True, text=True,
                         timeout=60)
    assert out.stdout.split() == ["0", "0"], out.stderr
    assert files_under(root) == []


def test_in_a_read_only_folder_the_index_in_memory_follows_the_journal(locked_folder):
    root, _ = locked_folder
    path = root / DEFAULT_PATH
    Journal(path).append({"kind": "mark", "task": "t", "note": "one"})
    os.remove(state_path(path))
    _read_only(root)
    reader = Journal(path)
    assert reader.marks() == {"t": "one"}
    with open(path, "ab") as fh:  # the journal file itself may still grow (another user's bgmon)
        fh.write(b'{"v": 1, "ts": "2026-01-01T00:00:00Z", "kind": "mark", "task": "t", "note": "two"}\n')
    assert reader.marks() == {"t": "two"}
    assert [r["note"] for r in reader.history()] == ["one", "two"]
    assert not state_path(path).exists()


def test_the_live_engine_in_a_read_only_folder_says_its_changes_are_not_recorded(locked_folder):
    from bgmon.config import Config
    from bgmon.engine import Monitor
    from bgmon.live import LiveEngine
    from bgmon.model import Badge
    from bgmon.recovery.service import RecoveryService

    root, _ = locked_folder
    _task(root)
    _read_only(root)
    config = Config(roots=(str(root),), sources=("worktrees",), git=False, match_agents=False)
    seen: list = []
    engine = LiveEngine(Monitor(config), seen.extend,
                        recorder=RecoveryService(Journal(config.journal_path()), use_claude=False))
    engine._step(None, True)
    assert engine.warnings == [] and engine.journal_errors == 0  # nothing to record yet
    status = root / ".worktrees" / "build" / "status.json"
    status.write_text(status.read_text().replace('"running"', '"failed"'))  # in place
    engine._step(None, True)
    assert [c.snapshot.health.badge for c in seen if c.kind == "health"] == [Badge.FAILED]
    assert engine.journal_errors == 1  # the monitor went on
    (warning,) = engine.warnings
    assert "not recorded" in warning and str(root / ".agents") in warning
    assert "\n" not in warning
