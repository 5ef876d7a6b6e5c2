"""OpenCode sessions: the JSON files under storage/ and the SQLite store opencode.db (read-only,
never waited on). Fixtures are modelled on OpenCode's session/message/part records
(packages/opencode/src/session: message-v2 parts, session.sql.ts)."""

from __future__ import annotations

import sqlite3

import orjson

from bgmon.config import Config
from bgmon.engine import Monitor
from tests.conftest import Clock, write_json

T0 = 1_790_000_000.0
MS = int(T0 * 1000)


def config(home) -> Config:
    return Config(roots=(str(home),), sources=("opencode",), dirs=(("opencode", str(home)),),
                  match_agents=False, since=1e9)


def bash(n: int, exit_code: int, status: str = "completed") -> dict:
    state = {"status": status, "input": {"command": f"npm test {n}"}, "time": {"start": MS + n, "end": MS + n + 5}}
    if status == "completed":
        state |= {"output": "FAIL" if exit_code else "ok", "title": "npm test",
                  "metadata": {"exit": exit_code, "output": "…"}}
    elif status == "error":
        state |= {"error": "Error: command timed out"}
    return {"type": "tool", "tool": "bash", "callID": f"call_{n}", "state": state}


def todowrite(*states: str) -> dict:
    todos = [{"content": f"task {i}", "status": s, "priority": "high", "id": str(i)} for i, s in enumerate(states)]
    return {"type": "tool", "tool": "todowrite", "callID": "call_todo",
            "state": {"status": "completed", "input": {"todos": todos}, "output": "[]",
                      "time": {"start": MS, "end": MS + 1}}}


def assistant(finish: str | None = "tool-calls", completed: bool = True, error: dict | None = None) -> dict:
    info: dict = {"role": "assistant", "time": {"created": MS}, "modelID": "claude-sonnet-4",
                  "providerID": "anthropic", "path": {"cwd": "/work/site", "root": "/work/site"}}
    if completed:
        info["time"]["completed"] = MS + 100
    if finish:
        info["finish"] = finish
    if error:
        info["error"] = error
    return info


USER = {"role": "user", "time": {"created": MS}}


class Storage:
    """storage/session/<project>/<ses>.json, message/<ses>/<msg>.json, part/<msg>/<prt>.json."""

    def __init__(self, home) -> None:
        self.root = home / "storage"
        self.n = 0

    def session(self, sid: str, parent: str | None = None, directory: str = "/work/site") -> None:
        info = {"id": sid, "version": "1.0.0", "projectID": "p1", "directory": directory, "title": f"title {sid}",
                "time": {"created": MS, "updated": MS}}
        if parent:
            info["parentID"] = parent
        write_json(self.root / "session" / "p1" / f"{sid}.json", info)

    def message(self, sid: str, info: dict, *parts: dict) -> None:
        self.n += 1
        mid = f"msg_{self.n:04d}"
        write_json(self.root / "message" / sid / f"{mid}.json", {**info, "id": mid, "sessionID": sid})
        for i, part in enumerate(parts):
            write_json(self.root / "part" / mid / f"prt_{self.n:04d}{i:03d}.json",
                       {**part, "id": f"prt_{i}", "sessionID": sid, "messageID": mid})


def look(home, t: float = T0 + 10) -> dict:
    monitor = Monitor(config(home), clock=Clock(t))
    monitor.sweep()
    monitor.evaluate()
    return {s.key: s for s in monitor.snapshots()}


def test_storage_session_failures_progress_and_subagents(tmp_path):
    st = Storage(tmp_path)
    st.session("ses_main")
    st.message("ses_main", USER, {"type": "text", "text": "fix the tests"})
    st.message("ses_main", assistant(), todowrite("completed", "in_progress", "pending"),
               bash(1, 1), bash(2, 1), bash(3, 0, status="error"))
    st.session("ses_child", parent="ses_main")
    st.message("ses_child", USER, {"type": "text", "text": "explore"})
    st.message("ses_child", assistant(finish="stop"), {"type": "text", "text": "Found it."})
    snaps = look(tmp_path)
    main = snaps["opencode:ses_main"]
    assert main.source == "opencode" and main.group == "/work/site" and main.name == "site"
    assert str(main.progress) == "1/3" and main.step == "task 1"
    assert main.health.badge.value == "struggling"
    assert "command timed out" in main.health.summary
    child = snaps["opencode:ses_child"]
    assert child.parent == "opencode:ses_main" and child.health.badge.value == "completed"


def test_aborted_waits_for_the_person_and_api_errors_fail(tmp_path):
    st = Storage(tmp_path)
    st.session("ses_a")
    st.message("ses_a", USER, {"type": "text", "text": "go"})
    st.message("ses_a", assistant(finish=None, error={"name": "MessageAbortedError", "data": {"message": "aborted"}}))
    st.session("ses_b")
    st.message("ses_b", USER, {"type": "text", "text": "go"})
    st.message("ses_b", assistant(finish=None, error={"name": "APIError", "data": {"message": "overloaded"}}))
    snaps = look(tmp_path)
    # An interrupt is the person's doing: waiting for them, not a failure (issue 9).
    assert snaps["opencode:ses_a"].health.reasons[0].rule == "waiting.interrupted"
    assert snaps["opencode:ses_a"].health.badge.value == "waiting"
    assert snaps["opencode:ses_b"].health.reasons[0].rule == "turn.api_error"


def test_a_running_tool_keeps_the_session_running(tmp_path):
    st = Storage(tmp_path)
    st.session("ses_r")
    st.message("ses_r", USER, {"type": "text", "text": "build"})
    st.message("ses_r", assistant(finish=None, completed=False), bash(1, 0, status="running"))
    snap = look(tmp_path)["opencode:ses_r"]
    assert snap.health.badge.value == "healthy" and snap.status == "running"


def test_half_written_part_keeps_the_last_good_events(tmp_path):
    st = Storage(tmp_path)
    st.session("ses_h")
    st.message("ses_h", USER, {"type": "text", "text": "go"})
    st.message("ses_h", assistant(), bash(1, 1), bash(2, 1), bash(3, 1))
    monitor = Monitor(config(tmp_path), clock=Clock(T0 + 10))
    monitor.sweep()
    monitor.evaluate()
    assert monitor.snapshots()[0].health.badge.value == "struggling"
    part = next((tmp_path / "storage" / "part").glob("*/prt_*001.json"))
    text = part.read_bytes()
    part.write_bytes(text[: len(text) // 2])
    monitor.sweep()
    monitor.evaluate()
    snap = monitor.snapshots()[0]
    assert snap.health.badge.value == "struggling"
    assert any("keeping the last good value" in w for w in snap.warnings)


# -- opencode.db ------------------------------------------------------------------------------

SCHEMA = """
CREATE TABLE session (id TEXT PRIMARY KEY, project_id TEXT NOT NULL, parent_id TEXT, slug TEXT NOT NULL,
  directory TEXT NOT NULL, title TEXT NOT NULL, version TEXT NOT NULL, time_created INTEGER NOT NULL,
  time_updated INTEGER NOT NULL);
CREATE TABLE message (id TEXT PRIMARY KEY, session_id TEXT NOT NULL, time_created INTEGER NOT NULL,
  time_updated INTEGER NOT NULL, data TEXT NOT NULL);
CREATE TABLE part (id TEXT PRIMARY KEY, message_id TEXT NOT NULL, session_id TEXT NOT NULL,
  time_created INTEGER NOT NULL, time_updated INTEGER NOT NULL, data TEXT NOT NULL);
CREATE TABLE todo (session_id TEXT NOT NULL, content TEXT NOT NULL, status TEXT NOT NULL,
  priority TEXT NOT NULL, position INTEGER NOT NULL, time_created INTEGER NOT NULL,
  time_updated INTEGER NOT NULL, PRIMARY KEY (session_id, position));
"""


def database(home, wal: bool = False) -> sqlite3.Connection:
    home.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(home / "opencode.db", isolation_level=None)
    if wal:
        con.execute("PRAGMA journal_mode=WAL")
    con.executescript(SCHEMA)
    return con


def add_session(con, sid, parent=None, updated=MS) -> None:
    con.execute("INSERT INTO session VALUES (?, 'p1', ?, 'slug', '/work/db', ?, '1.2.0', ?, ?)",
                (sid, parent, f"t {sid}", MS, updated))


def add_message(con, sid, mid, info, *parts) -> None:
    con.execute("INSERT INTO message VALUES (?, ?, ?, ?, ?)", (mid, sid, MS, MS, orjson.dumps(info).decode()))
    for i, part in enumerate(parts):
        con.execute("INSERT INTO part VALUES (?, ?, ?, ?, ?, ?)",
                    (f"prt_{mid}_{i:03d}", mid, sid, MS, MS, orjson.dumps(part).decode()))


def test_sqlite_sessions_with_todos_and_children(tmp_path):
    con = database(tmp_path, wal=True)
    add_session(con, "ses_1")
    add_message(con, "ses_1", "msg_1", USER, {"type": "text", "text": "go"})
    add_message(con, "ses_1", "msg_2", assistant(), bash(1, 2), bash(2, 2), bash(3, 2))
    con.executemany("INSERT INTO todo VALUES ('ses_1', ?, ?, 'high', ?, 0, 0)",
                    [("a", "completed", 0), ("b", "completed", 1), ("c", "in_progress", 2)])
    add_session(con, "ses_2", parent="ses_1")
    add_session(con, "ses_old", updated=1000)
    snaps = look(tmp_path)
    assert set(snaps) == {"opencode:ses_1", "opencode:ses_2"}
    one = snaps["opencode:ses_1"]
    assert one.group == "/work/db" and str(one.progress) == "2/3" and one.step == "c"
    assert (one.own_health or one.health).badge.value == "struggling"
    assert snaps["opencode:ses_2"].parent == "opencode:ses_1"


def test_locked_database_keeps_the_last_good_value_and_never_blocks_the_agent(tmp_path):
    con = database(tmp_path)  # rollback journal: an exclusive writer shuts readers out
    add_session(con, "ses_1")
    add_message(con, "ses_1", "msg_1", USER, {"type": "text", "text": "go"})
    add_message(con, "ses_1", "msg_2", assistant(), bash(1, 1), bash(2, 1), bash(3, 1))
    monitor = Monitor(config(tmp_path), clock=Clock(T0 + 10))
    monitor.sweep()
    monitor.evaluate()
    assert monitor.snapshots()[0].health.badge.value == "struggling"

    con.execute("BEGIN EXCLUSIVE")  # the agent writes, holding the database
    con.execute("UPDATE session SET time_updated = time_updated + 1")
    monitor.sweep()  # returns at once: bgmon never waits on the agent's lock
    monitor.evaluate()
    (snap,) = monitor.snapshots()
    assert snap.key == "opencode:ses_1" and snap.health.badge.value == "struggling"
    assert any("locked" in w for w in snap.warnings + tuple(monitor.warnings()))
    con.execute("COMMIT")

    # bgmon holds nothing open between looks: the agent can always take the lock at once.
    monitor.sweep()
    other = sqlite3.connect(tmp_path / "opencode.db", timeout=0, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    other.execute("COMMIT")
    other.close()
    monitor.evaluate()
    assert not monitor.snapshots()[0].warnings


def test_a_database_without_tables_is_a_warning(tmp_path):
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / "opencode.db").write_bytes(b"not a database at all" * 10)
    monitor = Monitor(config(tmp_path), clock=Clock(T0))
    monitor.sweep()
    assert monitor.snapshots() == [] and any("opencode.db" in w for w in monitor.warnings())
