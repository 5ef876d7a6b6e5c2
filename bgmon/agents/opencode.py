"""OpenCode: sessions in `~/.local/share/opencode` (or $XDG_DATA_HOME/opencode), either as JSON
files `storage/{session,message,part}/…` (up to 1.1) or in the SQLite store `opencode.db`
(tables session, message, part, todo). Each session is read as a document: its messages and
parts → events (tool parts by `state.status`, `todowrite`/todos as progress); child sessions
(`parentID`, the `task` tool's sub-agents) nest under their parent.

The database is opened read-only, one short query at a time, and never waited on: when the
agent holds it locked the last good events are kept and the next pass tries again.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from urllib.parse import quote

import orjson

from bgmon.agents.base import Agent, DocFormat, DocumentUnreadable, Scan, parse_json
from bgmon.formats import canonical_input, checklist_events, dict_at
from bgmon.model import Event, EventKind, clip
from bgmon.sources.files import read_regular
from bgmon.sources.found import TaskSpec, is_dir, mtime, scandir

NAME = "opencode"
FILES = "opencode-files"  # the document format of a session in storage/
DB = "opencode-db"  # … and of a session in opencode.db
DB_FILE = "opencode.db"
_RECENT_MESSAGES = 3  # part folders of this many latest messages tell whether a session changed
_ABORTED = "MessageAbortedError"


def _ms(value: object) -> float | None:
    return value / 1000.0 if isinstance(value, int | float) and not isinstance(value, bool) else None


# -- the events of one session (both stores) --------------------------------------------------


def session_events(session: dict, messages: list[tuple[dict, list[dict]]],
                   todos: list[dict] | None) -> list[Event]:
    """One session's facts → events, in order. `messages`: (info, parts) oldest first."""
    events: list[Event] = []
    time = dict_at(session, "time")
    if isinstance(session.get("directory"), str):
        events.append(Event(EventKind.META, ts=_ms(time.get("created")), cwd=session["directory"]))
    ts = None
    for info, parts in messages:
        mtime_ = dict_at(info, "time")
        ts = _ms(mtime_.get("created")) or ts
        if info.get("role") == "user":
            text = " ".join(p["text"] for p in parts if p.get("type") == "text"
                            and isinstance(p.get("text"), str) and not p.get("synthetic")).strip()
            events.append(Event(EventKind.TURN_START, ts=ts, text=clip(text or "prompt", 400)))
        elif info.get("role") == "assistant":
            _assistant(info, parts, ts, events)
            ts = _ms(mtime_.get("completed")) or ts
    if todos:
        checklist_events(todos, lambda item: item.get("content"), ts, events)
    return events


def _assistant(info: dict, parts: list[dict], ts: float | None, out: list[Event]) -> None:
    tools = 0
    for part in parts:
        kind = part.get("type")
        if kind == "text" and isinstance(part.get("text"), str) and part["text"].strip():
            out.append(Event(EventKind.MESSAGE, ts=ts, text=clip(part["text"].strip(), 400)))
        elif kind == "tool":
            tools += 1
            _tool(part, ts, out)
    error = info.get("error")
    done = _ms((info.get("time") or {}).get("completed")) if isinstance(info.get("time"), dict) else None
    if isinstance(error, dict):
        name = error.get("name")
        data = dict_at(error, "data")
        text = clip(str(data.get("message") or name or "error"), 400)
        kind = EventKind.TURN_ABORTED if name == _ABORTED else EventKind.API_ERROR
        out.append(Event(kind, ts=done or ts, text=text))
    elif done is not None:
        finish = info.get("finish")
        # A step that called tools is followed by another step; `finish` (1.x) says so for sure,
        # older messages only by having tool parts.
        if finish == "tool-calls" or (finish is None and tools):
            return
        out.append(Event(EventKind.TURN_END, ts=done, text=str(finish or "completed")))


def _tool(part: dict, ts: float | None, out: list[Event]) -> None:
    state = dict_at(part, "state")
    times = dict_at(state, "time")
    start = _ms(times.get("start")) or ts
    tool = clip(str(part.get("tool") or "tool"), 80)
    call_id = clip(str(part.get("callID") or part.get("id") or ""), 120) or None
    args = state.get("input")
    out.append(Event(EventKind.TOOL_CALL, ts=start, tool=tool, call_id=call_id, input=canonical_input(args)))
    if tool == "todowrite" and isinstance(args, dict):
        checklist_events(args.get("todos"), lambda item: item.get("content"), start, out)
    status = state.get("status")
    end = _ms(times.get("end")) or start
    if status == "completed":
        meta = dict_at(state, "metadata")
        code = meta.get("exit")
        ok = not (isinstance(code, int) and not isinstance(code, bool) and code != 0)
        error = None if ok else clip(f"exit code {code}: {state.get('output') or ''}".strip(), 400)
        out.append(Event(EventKind.TOOL_RESULT, ts=end, tool=tool, call_id=call_id, ok=ok, error=error))
    elif status == "error":
        out.append(Event(EventKind.TOOL_RESULT, ts=end, tool=tool, call_id=call_id, ok=False,
                         error=clip(str(state.get("error") or "error"), 400)))


# -- storage/ (JSON files) --------------------------------------------------------------------


def _load_json(path: str, limit: int = 16 << 20) -> object:
    return parse_json(path, read_regular(path, limit))


def _storage(session_file: str) -> Path:
    return Path(session_file).parents[2]  # storage/session/<project>/<id>.json → storage/


def _listing(folder: Path) -> list[str]:
    try:
        return sorted(n for n in os.listdir(folder) if n.endswith(".json"))
    except OSError:
        return []


def load_files(path: str) -> list[Event]:
    try:
        session = _load_json(path)
        if not isinstance(session, dict) or not isinstance(session.get("id"), str):
            raise DocumentUnreadable(f"{path} is not an OpenCode session")
        storage = _storage(path)
        messages = []
        for name in _listing(storage / "message" / session["id"]):
            info = _load_json(str(storage / "message" / session["id"] / name))
            if not isinstance(info, dict):
                continue
            part_dir = storage / "part" / str(info.get("id") or name[:-5])
            parts = [_load_json(str(part_dir / n)) for n in _listing(part_dir)]
            messages.append((info, [p for p in parts if isinstance(p, dict)]))
        todos = _load_json(str(storage / "todo" / f"{session['id']}.json")) \
            if (storage / "todo" / f"{session['id']}.json").exists() else None
    except FileNotFoundError:
        raise DocumentUnreadable(f"{path}: a file vanished while reading (rewritten?)") from None
    except OSError as exc:
        raise DocumentUnreadable(f"cannot read {path}: {exc.strerror or exc}") from None
    messages.sort(key=lambda m: (_created(m[0]), str(m[0].get("id"))))
    return session_events(session, messages, todos if isinstance(todos, list) else None)


def _created(info: dict) -> float:
    t = info.get("time")
    value = t.get("created") if isinstance(t, dict) else None
    return float(value) if isinstance(value, int | float) else 0.0


def files_signature(path: str) -> tuple[float, ...]:
    """The session file, its message folder and the part folders of its latest messages: a
    new message, a new part or a rewritten part changes one of these."""
    storage = _storage(path)
    st = os.stat(path)
    sig = [st.st_mtime, st.st_size, st.st_mtime_ns]
    sid = Path(path).stem
    messages = storage / "message" / sid
    names = _listing(messages)
    for folder in [messages] + [storage / "part" / n[:-5] for n in names[-_RECENT_MESSAGES:]]:
        try:
            fst = os.stat(folder)
        except OSError:
            continue
        sig += [fst.st_mtime, fst.st_mtime_ns]
        if folder != messages:
            for n in _listing(folder)[-4:]:  # a part rewritten in place (a tool's state)
                try:
                    sig.append(os.stat(folder / n).st_mtime_ns)
                except OSError:
                    continue
    sig[0] = max(v for v in sig if isinstance(v, float))
    return tuple(sig)


def _discover_files(scan: Scan, storage: Path) -> None:
    found = scan.found
    sessions = storage / "session"
    found.looked.append(str(sessions / "*" / "ses_*.json"))
    for project in scandir(str(sessions), found):
        if not is_dir(project):
            continue
        found.watch.add(project.path)
        for entry in scandir(project.path, found):
            if not entry.name.endswith(".json"):
                continue
            sid = entry.name[:-5]
            messages = storage / "message" / sid
            if max(mtime(entry), mtime(str(messages))) < scan.cutoff:
                continue
            try:
                session = _load_json(entry.path, 1 << 20)
            except (OSError, DocumentUnreadable):
                found.keep.add(f"{NAME}:{sid}")  # mid-write: keep what we knew
                continue
            if isinstance(session, dict):
                found.watch.add(str(messages))
                latest = _listing(messages)[-1:]
                if latest:  # the parts a running tool rewrites are the latest message's
                    found.watch.add(str(storage / "part" / latest[0][:-5]))
                found.specs.append(_spec(session, sid, entry.path, FILES, entry.path))


def _spec(session: dict, sid: str, path: str, fmt: str, document: str) -> TaskSpec:
    directory = session.get("directory") if isinstance(session.get("directory"), str) else None
    parent = session.get("parentID") or session.get("parent_id")
    title = session.get("title")
    short = sid.removeprefix("ses_")[:10]
    return TaskSpec(
        key=f"{NAME}:{sid}", source=NAME, id=short,
        name=clip(title, 60) if isinstance(title, str) and title else short,
        path=path, group=directory or NAME, parent=f"{NAME}:{parent}" if isinstance(parent, str) else None,
        fmt=fmt, transcript=True, document=document,
    )


# -- opencode.db (SQLite) ---------------------------------------------------------------------


def _connect(db: str) -> sqlite3.Connection:
    """Read-only, and never waiting on the agent's locks (a busy database is "try later")."""
    try:
        return sqlite3.connect(f"file:{quote(db)}?mode=ro", uri=True, timeout=0, check_same_thread=False)
    except sqlite3.Error as exc:
        raise DocumentUnreadable(f"cannot open {db}: {exc}") from None


def _query(db: str, run) -> object:
    con = _connect(db)
    try:
        return run(con)
    except sqlite3.Error as exc:
        raise DocumentUnreadable(f"{db}: {exc} (kept the last good value)") from None
    finally:
        con.close()


def db_signature(document: str) -> tuple[float, ...]:
    """The database and its write-ahead log: any write changes one of them."""
    db = document.split("#", 1)[0]
    sig: list[float] = []
    for path in (db, db + "-wal"):
        try:
            st = os.stat(path)
        except FileNotFoundError:
            continue
        sig += [st.st_mtime, float(st.st_size), float(st.st_mtime_ns)]
    if not sig:
        raise DocumentUnreadable(f"{db} is gone")
    return (max(sig[0::3]), *sig)


def load_db(document: str) -> list[Event]:
    db, _, sid = document.partition("#")

    def run(con: sqlite3.Connection) -> list[Event]:
        row = con.execute("SELECT directory, time_created FROM session WHERE id = ?", (sid,)).fetchone()
        if row is None:
            return []
        session = {"directory": row[0], "time": {"created": row[1]}}
        infos = con.execute(
            "SELECT id, data FROM message WHERE session_id = ? ORDER BY time_created, id", (sid,)
        ).fetchall()
        parts: dict[str, list[dict]] = {}
        for mid, data in con.execute(
            "SELECT message_id, data FROM part WHERE session_id = ? ORDER BY message_id, id", (sid,)
        ):
            parts.setdefault(mid, []).append(_row(data))
        try:
            todos = [{"content": c, "status": s} for c, s in con.execute(
                "SELECT content, status FROM todo WHERE session_id = ? ORDER BY position", (sid,))]
        except sqlite3.OperationalError:
            todos = []  # an older schema without the todo table
        messages = [(_row(data), parts.get(mid, [])) for mid, data in infos]
        return session_events(session, messages, todos)

    result = _query(db, run)
    assert isinstance(result, list)
    return result


def _row(data: object) -> dict:
    try:
        obj = orjson.loads(data) if isinstance(data, str | bytes) else None
    except orjson.JSONDecodeError:
        return {}
    return obj if isinstance(obj, dict) else {}


def _discover_db(scan: Scan, db: str) -> None:
    found = scan.found
    found.looked.append(db)
    if not os.path.isfile(db):
        return
    found.watch.add(os.path.dirname(db))
    cutoff_ms = int(scan.cutoff * 1000)
    try:
        rows = _query(db, lambda con: con.execute(
            "SELECT id, parent_id, directory, title FROM session WHERE time_updated >= ?",
            (cutoff_ms,)).fetchall())
    except DocumentUnreadable as exc:
        found.warnings.append(str(exc))
        found.keep.add(f"{NAME}:")  # locked now: keep every session we knew
        return
    assert isinstance(rows, list)
    for sid, parent, directory, title in rows:
        session = {"directory": directory, "parentID": parent, "title": title}
        found.specs.append(_spec(session, str(sid), db, DB, f"{db}#{sid}"))


def discover(scan: Scan) -> None:
    assert scan.home is not None
    _discover_files(scan, scan.home / "storage")
    _discover_db(scan, str(scan.home / DB_FILE))


AGENT = Agent(
    name=NAME,
    label="OpenCode sessions",
    discover=discover,
    formats=(DocFormat(FILES, load_files, files_signature), DocFormat(DB, load_db, db_signature)),
    home="~/.local/share/opencode",
    home_env=(("XDG_DATA_HOME", "opencode"),),
    processes=frozenset({"opencode"}),
)
