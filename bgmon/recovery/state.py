"""The recovery state store: an SQLite index of the recovery journal, so state is looked up,
not rescanned.

The JSONL journal stays the append-only audit log; this database (WAL mode, beside it) holds
what bgmon asks of it: every record by task, proposals and their states, marks, acks, restarts,
and the running sums of `bgmon report`. It is kept by catching up with the journal: a byte
offset into the journal file says how far it has read, and every reader first reads what was
appended since (one `stat` when nothing was). So lines written by any process, by an older bgmon
or by hand, are indexed exactly once; an existing journal is migrated on first use; a database
moved aside is rebuilt from the journal and its rotated segments. A reader never creates the
database where nothing was recorded (see `StateStore._reader`): the first write does.

Writers take SQLite's write lock (`BEGIN IMMEDIATE`) around appending to the journal and
indexing it, so the TUI, `bgmon approve` in a shell and `bgmon run` never interleave, and a
rotation never races an append. Readers never wait for writers (WAL); when the lock is held
longer than the busy timeout, a reader answers from what is indexed so far.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import sqlite3
import stat
import statistics
import threading
import time
import weakref
from collections import Counter
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from bgmon.model import Badge
from bgmon.recovery.records import (
    APPROVED,
    AUTOMATIC,
    EXECUTED,
    FAILED,
    PENDING,
    REJECTED,
    SUPERSEDED,
    action_results,
    proposal_id,
    well_formed,
)
from bgmon.timefmt import parse_time

SCHEMA = 2  # 2: records by their own `name`, sums of actions by kind and outcome
BUSY_TIMEOUT = 5.0  # seconds a writer waits for another's lock before giving up with a message
CHUNK = 4 << 20  # journal bytes read at a time while catching up (bounds memory on migration)
LINE_CAP = 16 << 20  # a "line" longer than this is junk: skipped, counted
BACKGROUND_BYTES = 4 << 20  # the live engine's marks index more than this in a background thread
KEEP_ROTATED = 9  # journal.jsonl.1 … .9 are read when the database is built from scratch
IN_MEMORY = -1  # the held connection's "inode" when the index is kept in memory (see `_reader`)
_NOT_DENIED = object()
FAULTS = frozenset(b.value for b in Badge if b.is_fault)
RECOVERED = frozenset({Badge.HEALTHY.value, Badge.COMPLETED.value})

_TABLES = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS records (
    seq INTEGER PRIMARY KEY, kind TEXT, task TEXT, task_id TEXT, ts REAL, body TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS records_task ON records (task, kind);
CREATE INDEX IF NOT EXISTS records_task_id ON records (task_id);
CREATE INDEX IF NOT EXISTS records_name ON records (json_extract(body, '$.name'));
CREATE TABLE IF NOT EXISTS proposals (
    id TEXT PRIMARY KEY, task TEXT, seq INTEGER NOT NULL, state TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS proposals_task ON proposals (task, state);
CREATE TABLE IF NOT EXISTS marks (task TEXT PRIMARY KEY, note TEXT NOT NULL, seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS acks (
    task TEXT PRIMARY KEY, badge TEXT NOT NULL, note TEXT, at REAL, seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS restarts (seq INTEGER PRIMARY KEY, task TEXT NOT NULL, ts REAL NOT NULL,
    n INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS restarts_task ON restarts (task, ts);
CREATE TABLE IF NOT EXISTS counts (name TEXT NOT NULL, key TEXT NOT NULL, n INTEGER NOT NULL,
    PRIMARY KEY (name, key));
CREATE TABLE IF NOT EXISTS faults (task TEXT PRIMARY KEY, since REAL);
CREATE TABLE IF NOT EXISTS waiting (task TEXT PRIMARY KEY, n INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS recoveries (seconds REAL NOT NULL);
CREATE INDEX IF NOT EXISTS recoveries_seconds ON recoveries (seconds);
"""


class JournalUnreadable(OSError):
    """The journal or its state database cannot be used (a directory, a FIFO, no permission, a
    corrupt or locked database, a full disk); the message is one line for the person.
    `denied`: bgmon may not create or write the file there (a read-only folder or disk)."""

    denied = False


@dataclass(frozen=True, slots=True)
class Ack:
    """A person acknowledged a task's badge (`bgmon ack`): views may quiet it until it changes."""

    task: str
    badge: str
    note: str | None
    at: float | None


def state_path(journal: Path) -> Path:
    """Where a journal's state database lives: beside it, `NAME.db` for `NAME.jsonl`."""
    db = journal.with_suffix(".db")
    return db if db != journal else journal.with_name(journal.name + ".db")


def rotated(journal: Path, n: int) -> Path:
    return journal.with_name(f"{journal.name}.{n}")


class _Held:
    """The open connection (apart from the store, so a finalizer can close it)."""

    conn: sqlite3.Connection | None = None
    ino: int | None = None

    def close(self) -> None:
        conn, self.conn, self.ino = self.conn, None, None
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):
                conn.close()


class StateStore:
    def __init__(self, journal: Path, db: Path | None = None, busy_timeout: float = BUSY_TIMEOUT):
        self.journal = journal
        self.path = db or state_path(journal)
        self.busy_timeout = busy_timeout
        self._seen: tuple[int, int, int] | None = None  # the journal's (ino, size, mtime) when caught up
        self.torn_tail = False  # the journal ends in a line without its newline
        self._marks: tuple[tuple[int, int, int] | None, dict[str, str]] | None = None
        self._acks: dict[str, Ack] = {}
        self._lock = threading.RLock()
        self._held = _Held()
        self._background: threading.Thread | None = None
        self._background_error: JournalUnreadable | None = None
        self._denied_for: object = _NOT_DENIED  # the database file as it was when it was refused
        weakref.finalize(self, _Held.close, self._held)

    # --- connections -------------------------------------------------------------------------

    @contextlib.contextmanager
    def _connect(self, writing: bool = False) -> Iterator[sqlite3.Connection]:
        """The store's connection, one user at a time (threads take turns). It stays open:
        closing the last connection checkpoints the WAL, which costs more than the query.
        Only a writer creates the database where nothing was recorded yet (see `_reader`)."""
        with self._lock:
            try:
                conn = self._connection() if writing else self._reader()
                yield conn
            except sqlite3.Error as exc:
                self._drop()  # a damaged or replaced file: open it afresh next time
                raise self._error(exc) from None

    def _reader(self) -> sqlite3.Connection:
        """The connection a reader asks on. A command that only looks (`--once`, `history`, the
        TUI before anything happens) must leave no file behind: where there is no database and
        no journal, nothing was recorded, and an empty index in memory says so. Where there is
        a journal, the database is created to index it (a migration), unless bgmon may not
        write there (a read-only folder): then the journal is indexed in memory, as it would be
        in the file, so the reader still sees every record the journal holds."""
        db = _identity(self.path)
        if db is None and self._nothing_recorded():
            return self._in_memory()
        if self._held.ino == IN_MEMORY and self._denied_for == db:
            return self._in_memory()  # refused before, and the file is as it was: not again
        try:
            conn = self._connection()
        except (JournalUnreadable, sqlite3.Error) as exc:
            self._drop()
            unreadable = self._error(exc)
            if not unreadable.denied:
                raise unreadable from None
            self._denied_for = db
            return self._in_memory()
        self._denied_for = _NOT_DENIED
        return conn

    def _nothing_recorded(self) -> bool:
        """No journal, nor a rotated segment of one: no record to index."""
        return not any(os.path.lexists(p) for p in (
            self.journal, *(rotated(self.journal, n) for n in range(1, KEEP_ROTATED + 1))))

    def _in_memory(self) -> sqlite3.Connection:
        held = self._held
        if held.conn is not None and held.ino == IN_MEMORY:
            return held.conn
        self._drop()
        conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        _create_tables(conn)
        held.conn, held.ino = conn, IN_MEMORY
        return conn

    def _connection(self) -> sqlite3.Connection:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            st = None
        except OSError as exc:
            raise self._error(exc) from None
        held = self._held
        if held.conn is not None and st is not None and st.st_ino == held.ino:
            return held.conn
        self._drop()  # moved aside or deleted: the next one is a new database
        try:
            if st is not None and not stat.S_ISREG(st.st_mode):
                what = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
                raise JournalUnreadable(f"cannot use the state database {self.path}: it is {what}")
            if st is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))
            conn = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None,
                                   check_same_thread=False)
        except (OSError, sqlite3.Error) as exc:
            raise self._error(exc) from None
        try:
            conn.execute("PRAGMA synchronous=NORMAL")  # WAL: the journal itself is fsynced
            self._schema(conn)
        except BaseException:
            conn.close()
            raise
        held.conn, held.ino = conn, os.stat(self.path).st_ino
        return conn

    def _drop(self) -> None:
        """Close the connection; the next one starts from what it holds, not what this saw."""
        _Held.close(self._held)
        self._seen, self._marks = None, None

    def close(self) -> None:
        with self._lock:
            self._drop()

    def _schema(self, conn: sqlite3.Connection) -> None:
        row = conn.execute("SELECT name FROM sqlite_master WHERE name = 'meta'").fetchone()
        if row is not None:
            version = conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
            if version is not None and version[0] > SCHEMA:
                raise JournalUnreadable(
                    f"the state database {self.path} was written by a newer bgmon "
                    f"(schema {version[0]}); upgrade bgmon or move the file aside"
                )
            if version is not None:
                if version[0] < SCHEMA:
                    self._upgrade(conn)
                return
        if self._retry_busy(lambda: conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]) != "wal":
            raise JournalUnreadable(f"the state database {self.path} cannot use WAL mode")
        _create_tables(conn)

    def _upgrade(self, conn: sqlite3.Connection) -> None:
        """Schema 1 → 2, once, in one write transaction (a second process finds it done): the
        index of records by name, and the action sums counted from the result records so far."""
        conn.execute("BEGIN IMMEDIATE")
        try:
            if conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()[0] < SCHEMA:
                for statement in _TABLES.split(";"):  # (executescript would commit first)
                    if statement.strip():
                        conn.execute(statement)  # each IF NOT EXISTS: adds what is new
                sums: Counter[str] = Counter()
                for (body,) in conn.execute("SELECT body FROM records WHERE kind = 'result'"):
                    with contextlib.suppress(orjson.JSONDecodeError):
                        sums.update(action_sums(orjson.loads(body)))
                conn.executemany("INSERT INTO counts VALUES ('actions', ?, ?) ON CONFLICT (name, key) "
                                 "DO UPDATE SET n = n + excluded.n", sums.items())
                conn.execute("UPDATE meta SET value = ? WHERE key = 'schema'", (SCHEMA,))
            conn.execute("COMMIT")
        except BaseException:
            _rollback(conn)
            raise

    def _retry_busy(self, step: Callable[[], Any]) -> Any:
        """`step()`, tried again while another process holds the lock, up to the busy timeout
        (changing the journal mode does not always wait on SQLite's own busy handler)."""
        deadline = time.monotonic() + self.busy_timeout
        while True:
            try:
                return step()
            except sqlite3.OperationalError as exc:
                text = str(exc).lower()
                if ("locked" not in text and "busy" not in text) or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def _error(self, exc: BaseException) -> JournalUnreadable:
        if isinstance(exc, JournalUnreadable):
            return exc
        text = str(exc.strerror if isinstance(exc, OSError) and exc.strerror else exc)
        low = text.lower()
        if _denied(exc, low):
            unreadable = JournalUnreadable(
                f"cannot write the state database {self.path}: {text} (bgmon may not write "
                "there; point [recovery] journal at a folder it may write to)")
            unreadable.denied = True
            return unreadable
        if "locked" in low or "busy" in low:
            return JournalUnreadable(
                f"the state database {self.path} is locked by another process "
                f"(waited {self.busy_timeout:g}s); try again"
            )
        if "not a database" in low or "malformed" in low or "corrupt" in low:
            return JournalUnreadable(
                f"the state database {self.path} is damaged ({text}); move it aside and "
                "bgmon rebuilds it from the journal"
            )
        return JournalUnreadable(f"cannot use the state database {self.path}: {text}")

    @contextlib.contextmanager
    def writing(self) -> Iterator[sqlite3.Connection]:
        """A write transaction, caught up with the journal first. Holds SQLite's write lock:
        every bgmon process appends to the journal only inside one."""
        with self._connect(writing=True) as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                self._catch_up(conn)
                yield conn
                self._catch_up(conn)
                conn.execute("COMMIT")
            except BaseException:
                _rollback(conn)
                raise

    @contextlib.contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        """A connection caught up with the journal (or, while another process holds the write
        lock past the busy timeout, as far as it was indexed)."""
        key = self._journal_key()
        with self._connect() as conn:
            if key != self._seen:
                try:
                    conn.execute("BEGIN IMMEDIATE")
                except sqlite3.OperationalError as exc:
                    if "locked" not in str(exc) and "busy" not in str(exc):
                        raise
                else:
                    try:
                        self._catch_up(conn)
                        conn.execute("COMMIT")
                    except BaseException:
                        _rollback(conn)
                        raise
            yield conn

    # --- the journal file --------------------------------------------------------------------

    def _open_journal(self, path: Path) -> tuple[int, os.stat_result] | None:
        """An open descriptor on a journal file and its stat, or None when it does not exist."""
        try:
            # O_NONBLOCK: a FIFO planted at the path must not hang the reader in open().
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise JournalUnreadable(f"cannot read the journal {path}: {exc.strerror or exc}") from None
        try:
            st = os.fstat(fd)
        except OSError as exc:
            os.close(fd)
            raise JournalUnreadable(f"cannot read the journal {path}: {exc.strerror or exc}") from None
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            what = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
            raise JournalUnreadable(f"cannot read the journal {path}: it is {what}")
        return fd, st

    def _journal_key(self) -> tuple[int, int, int] | None:
        opened = self._open_journal(self.journal)
        if opened is None:
            return None
        fd, st = opened
        os.close(fd)
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def _catch_up(self, conn: sqlite3.Connection) -> None:
        """Index what was appended to the journal since the last catch-up (inside a write
        transaction)."""
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        opened = self._open_journal(self.journal)
        if opened is None:
            self._seen, self.torn_tail = None, False
            return
        fd, st = opened
        try:
            key = (st.st_ino, st.st_size, st.st_mtime_ns)
            if (meta.get("ino") == st.st_ino and meta.get("size") == st.st_size
                    and meta.get("head") == _head(fd, st.st_size)):
                self._seen, self.torn_tail = key, bool(meta.get("torn"))
                return
            ingest = _Ingest(conn, meta)
            start = self._resume(ingest, meta, fd, st)
            end = ingest.file(fd, start, st.st_size)
            torn = end < st.st_size
            ingest.finish({"ino": st.st_ino, "size": st.st_size, "offset": end,
                           "head": _head(fd, st.st_size), "torn": int(torn)})
            self._seen, self.torn_tail = key, torn
        finally:
            os.close(fd)

    def _resume(self, ingest: _Ingest, meta: dict, fd: int, st: os.stat_result) -> int:
        """Where to start reading the current journal file; first reads the rest of the file it
        last read if that was rotated away, or every rotated segment on a fresh database."""
        if "ino" not in meta:
            for n in range(KEEP_ROTATED, 0, -1):
                opened = self._open_journal(rotated(self.journal, n))
                if opened is not None:
                    ingest.file(opened[0], 0, opened[1].st_size)
                    os.close(opened[0])
            return 0
        offset = int(meta.get("offset") or 0)
        if meta["ino"] == st.st_ino and offset <= st.st_size:
            head = meta.get("head")
            if not head or head == _head(fd, st.st_size):
                return offset
            return 0  # rewritten in place: read it from the start
        for n in range(1, KEEP_ROTATED + 1):
            opened = self._open_journal(rotated(self.journal, n))
            if opened is None:
                continue
            seg_fd, seg_st = opened
            try:
                if seg_st.st_ino == meta["ino"]:
                    ingest.file(seg_fd, offset, seg_st.st_size)
                    break
            finally:
                os.close(seg_fd)
        return 0  # a new journal file (rotated, or replaced by hand): from its start

    # --- queries -----------------------------------------------------------------------------

    def counts(self) -> tuple[int, int]:
        """(lines that are not a JSON object, records of a known kind with a wrong shape)."""
        with self.reading() as conn:
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        return int(meta.get("bad_lines") or 0), int(meta.get("bad_records") or 0)

    def records(self, tasks: str | Collection[str] | None = None,
                name: str | None = None) -> list[dict[str, Any]]:
        """Every record, oldest first; given `tasks` (keys or ids), only theirs; given `name`
        as well, also the records that name themselves so or whose worktree key holds it (a
        superset of `bgmon history NAME`'s: the caller applies the exact rule)."""
        query, args = select_records(tasks, name)
        with self.reading() as conn:
            return [orjson.loads(body) for (body,) in conn.execute(query, args)]

    def sums(self, name: str) -> dict[str, int]:
        """One family of the running sums (e.g. "actions": `KIND/OUTCOME` → how many)."""
        with self.reading() as conn:
            return dict(conn.execute("SELECT key, n FROM counts WHERE name = ?", (name,)).fetchall())

    def proposal_record(self, pid: str) -> dict[str, Any] | None:
        """The first record that holds proposal `pid`."""
        with self.reading() as conn:
            row = conn.execute("SELECT r.body FROM proposals p JOIN records r ON r.seq = p.seq "
                               "WHERE p.id = ?", (pid,)).fetchone()
        return orjson.loads(row[0]) if row else None

    def proposal_state(self, pid: str) -> str | None:
        with self.reading() as conn:
            row = conn.execute("SELECT state FROM proposals WHERE id = ?", (pid,)).fetchone()
        return row[0] if row else None

    def newest_proposal(self, task: str) -> tuple[str | None, str | None] | None:
        """(id, state) of the task's newest proposal record; None when it has none."""
        with self.reading() as conn:
            row = conn.execute("SELECT body FROM records WHERE task = ? AND kind = 'proposal' "
                               "ORDER BY seq DESC LIMIT 1", (task,)).fetchone()
            if row is None:
                return None
            pid = proposal_id(orjson.loads(row[0]))
            if pid is None:
                return None, None
            state = conn.execute("SELECT state FROM proposals WHERE id = ?", (pid,)).fetchone()
        return pid, state[0] if state else None

    def restarts(self, task: str, since: float) -> int:
        with self.reading() as conn:
            row = conn.execute("SELECT coalesce(sum(n), 0) FROM restarts WHERE task = ? AND ts >= ?",
                               (task, since)).fetchone()
        return int(row[0])

    def marks(self) -> dict[str, str]:
        """Task key → its latest mark note. Asked every second by the live engine: answered from
        memory while the journal is unchanged, and never held up by a migration (a big journal
        not indexed yet is indexed in a background thread; meanwhile the marks known so far)."""
        key = self._journal_key()
        cached = self._marks
        if cached is not None and cached[0] == key and key is not None:
            return dict(cached[1])
        if self._indexing_in_background(key):
            return dict(cached[1]) if cached else {}
        with self.reading() as conn:
            out = dict(conn.execute("SELECT task, note FROM marks ORDER BY seq").fetchall())
        if self._seen == key:  # not a stale answer while another process held the lock
            self._marks = (key, out)
        return dict(out)

    def _indexing_in_background(self, key: tuple[int, int, int] | None) -> bool:
        """Whether a background catch-up runs (started here when more than BACKGROUND_BYTES of
        journal wait to be indexed). Its failure is raised to the next caller."""
        worker = self._background
        if worker is not None and worker.is_alive():
            return True
        self._background = None
        error, self._background_error = self._background_error, None
        if error is not None:
            raise error
        if key is None or key == self._seen:
            return False
        with self._connect() as conn:
            meta = dict(conn.execute(
                "SELECT key, value FROM meta WHERE key IN ('ino', 'offset')").fetchall())
        done = int(meta.get("offset") or 0) if meta.get("ino") == key[0] else 0
        if key[1] - done <= BACKGROUND_BYTES:
            return False
        worker = threading.Thread(target=self._index_now, name="bgmon-journal-index", daemon=True)
        self._background = worker
        worker.start()
        return True

    def _index_now(self) -> None:
        try:
            with self.reading():
                pass
        except JournalUnreadable as exc:
            self._background_error = exc

    def acks(self) -> dict[str, Ack]:
        """Asked every second by the live engine too: like `marks`, never held up by a big
        journal being indexed in the background (the acks known so far meanwhile)."""
        if self._indexing_in_background(self._journal_key()):
            return dict(self._acks)
        with self.reading() as conn:
            rows = conn.execute("SELECT task, badge, note, at FROM acks ORDER BY seq").fetchall()
        self._acks = {task: Ack(task, badge, note, at) for task, badge, note, at in rows}
        return dict(self._acks)

    def report(self) -> dict[str, Any]:
        """The running sums behind `bgmon report` (see `Journal.report`)."""
        with self.reading() as conn:
            counts: dict[str, dict[str, int]] = {}
            for name, key, n in conn.execute("SELECT name, key, n FROM counts ORDER BY rowid"):
                counts.setdefault(name, {})[key] = n
            n = conn.execute("SELECT count(*) FROM recoveries").fetchone()[0]
            median = None
            if n:
                middle = [s for (s,) in conn.execute(
                    "SELECT seconds FROM recoveries ORDER BY seconds LIMIT ? OFFSET ?",
                    (2 - n % 2, (n - 1) // 2))]
                median = statistics.median(middle)
            failing = [t for (t,) in conn.execute("SELECT task FROM faults ORDER BY task")]
            unconfirmed = conn.execute("SELECT coalesce(sum(n), 0) FROM waiting").fetchone()[0]
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        one = counts.get("one", {})
        failures = counts.get("failures", {})
        return {
            "records": one.get("records", 0),
            "skipped": int(meta.get("bad_lines") or 0) + int(meta.get("bad_records") or 0)
            + int(bool(meta.get("torn"))),
            "failures_by_pattern": dict(sorted(failures.items(), key=lambda kv: -kv[1])),
            "proposals": counts.get("proposals", {}),
            "decisions": counts.get("decisions", {}),
            "automatic": one.get("automatic", 0),
            "actions_total": one.get("actions_total", 0),
            "actions_ok": one.get("actions_ok", 0),
            "restarts": {k: counts.get("restarts", {}).get(k, 0)
                         for k in ("started", "recovered", "failed_again")},
            "unconfirmed": unconfirmed,
            "by_kind": counts.get("by_kind", {}),
            "recoveries": n,
            "median_recovery_seconds": median,
            "still_failing": failing,
        }


def _create_tables(conn: sqlite3.Connection) -> None:
    # One write transaction taken up front (BEGIN IMMEDIATE waits through the busy timeout):
    # statement by statement, two processes creating the database at once each start with a
    # read snapshot that the other's CREATE makes stale, and SQLite answers that with "locked"
    # at once, without waiting. Each statement is idempotent, so the second creator is a no-op.
    conn.executescript(f"BEGIN IMMEDIATE;{_TABLES}"
                       f"INSERT OR IGNORE INTO meta VALUES ('schema', {SCHEMA:d});COMMIT;")


def _identity(path: Path) -> tuple[int, int] | None:
    """A file's (inode, mtime): tells it was replaced or written since; None when it is not there."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns


def _denied(exc: BaseException, text: str) -> bool:
    """Whether bgmon may not create or write the database where it is (permissions, a read-only
    file system): SQLite says so in words, the OS by errno."""
    if isinstance(exc, OSError):
        return exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS)
    return "readonly" in text or "read-only" in text or "unable to open database" in text


def select_records(tasks: str | Collection[str] | None, name: str | None) -> tuple[str, list[str]]:
    """The query behind `StateStore.records`: index lookups by key, id and own name; the
    worktree-key test reads only the task index's worktree range."""
    if tasks is None and name is None:
        return "SELECT body FROM records ORDER BY seq", []
    refs = [tasks] if isinstance(tasks, str) else list(tasks or ())
    marks = ", ".join("?" * len(refs))
    query = f"SELECT body FROM records WHERE task IN ({marks}) OR task_id IN ({marks})"
    args = refs + refs
    if name is not None:
        query += (" OR json_extract(body, '$.name') = ? OR (task >= 'worktree:' AND "
                  "task < 'worktree;' AND instr(task, ?) > 0)")
        args += [name, name]
    return query + " ORDER BY seq", args


def action_sums(r: dict) -> Iterator[str]:
    """`KIND/OUTCOME` (ok, failed or skipped) of each action of a result record."""
    for a in action_results(r):
        kind = a.get("kind")
        outcome = "skipped" if a.get("skipped") else ("ok" if a.get("ok") else "failed")
        yield f"{kind if isinstance(kind, str) else ''}/{outcome}"


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")


def _head(fd: int, size: int) -> str:
    """A fingerprint of the file's first line: tells a file rewritten in place from one that grew."""
    first = os.pread(fd, min(size, 4096), 0)
    cut = first.find(b"\n")
    return hashlib.blake2b(first[:cut], digest_size=8).hexdigest() if cut >= 0 else ""


class _Ingest:
    """One catch-up: journal lines → rows, in file order, inside the caller's transaction. The
    running sums are kept in memory and written once at the end."""

    def __init__(self, conn: sqlite3.Connection, meta: dict) -> None:
        self.conn = conn
        self.meta = meta
        self.seq = conn.execute("SELECT coalesce(max(seq), 0) FROM records").fetchone()[0]
        self.rows: list[tuple] = []
        self.counts: Counter[tuple[str, str]] = Counter()
        self.faults = dict(conn.execute("SELECT task, since FROM faults").fetchall())
        self.waiting = dict(conn.execute("SELECT task, n FROM waiting").fetchall())
        self.faults_changed = False
        self.recoveries: list[tuple[float]] = []
        self.bad_lines = int(meta.get("bad_lines") or 0)
        self.bad_records = int(meta.get("bad_records") or 0)

    def file(self, fd: int, start: int, end: int) -> int:
        """Index the complete lines in [start, end); returns the offset after the last one."""
        pos, carry, skipping = start, b"", False
        while pos < end:
            chunk = os.pread(fd, min(CHUNK, end - pos), pos)
            if not chunk:
                break
            pos += len(chunk)
            data = carry + chunk
            cut = data.rfind(b"\n")
            if cut < 0:
                carry = data
                if len(carry) > LINE_CAP:  # no newline in sight: junk, skip to the next one
                    carry, skipping = b"", True
                continue
            lines = data[:cut].split(b"\n")
            if skipping:
                lines, skipping = lines[1:], False
                self.bad_lines += 1
            for raw in lines:
                self.line(raw)
            carry = data[cut + 1:]
            if len(self.rows) >= 20_000:
                self.flush()
        self.flush()
        return pos - len(carry) if not skipping else pos

    def line(self, raw: bytes) -> None:
        if not raw.strip():
            return
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError:
            self.bad_lines += 1
            return
        if not isinstance(obj, dict):
            self.bad_lines += 1
        elif not well_formed(obj):
            self.bad_records += 1
        else:
            self.record(obj, raw)

    def record(self, r: dict, raw: bytes) -> None:
        self.seq += 1
        seq = self.seq
        kind, task, task_id = r.get("kind"), r.get("task"), r.get("task_id")
        kind = kind if isinstance(kind, str) else None
        task = task if isinstance(task, str) else None
        ts = parse_time(r.get("ts"))
        self.rows.append((seq, kind, task, task_id if isinstance(task_id, str) else None, ts,
                          raw.decode()))
        self.counts["one", "records"] += 1
        if kind == "health":
            if task is not None:
                self._health(task, r.get("to"), r.get("patterns"), ts)
        elif kind == "proposal":
            self._proposal(r, task, seq)
        elif kind == "decision":
            self._decision(r, task, ts)
        elif kind == "result":
            self._result(r, task, ts)
        elif kind == "mark" and task is not None:
            note = r.get("note") or ""
            if note:
                self.conn.execute("INSERT OR REPLACE INTO marks VALUES (?, ?, ?)", (task, note, seq))
            else:
                self.conn.execute("DELETE FROM marks WHERE task = ?", (task,))
        elif kind == "ack" and task is not None:
            if r.get("badge"):
                self.conn.execute("INSERT OR REPLACE INTO acks VALUES (?, ?, ?, ?, ?)",
                                  (task, r["badge"], r.get("note"), ts, seq))
            else:
                self.conn.execute("DELETE FROM acks WHERE task = ?", (task,))

    # A failure is counted once per episode (from a task's first fault until it is healthy
    # again), whether bgmon saw it as a badge change or `bgmon run` restarted after it. A restart
    # that started the command waits: it succeeded once the task is healthy again, and failed
    # again when the task fails before that.

    def _health(self, task: str, new: object, pats: object, ts: float | None) -> None:
        if new in FAULTS:
            self._failed(task, str(pats[0]) if isinstance(pats, list) and pats else "unclassified", ts)
        elif new in RECOVERED:
            self.counts["restarts", "recovered"] += self.waiting.pop(task, 0)
            if task in self.faults:
                start = self.faults.pop(task)
                self.faults_changed = True
                if ts is not None and start is not None:
                    self.recoveries.append((max(0.0, ts - start),))

    def _failed(self, task: str, pattern: str, ts: float | None) -> None:
        self.counts["restarts", "failed_again"] += self.waiting.pop(task, 0)
        if task not in self.faults:
            self.counts["failures", pattern] += 1
            self.faults[task] = ts
            self.faults_changed = True

    def _proposal(self, r: dict, task: str | None, seq: int) -> None:
        if isinstance(r.get("proposal"), dict):
            self.counts["proposals", str(r["proposal"].get("source", "?"))] += 1
        pid = proposal_id(r)
        # Only a task's newest proposal can be pending: a newer one supersedes the others,
        # also when two processes proposed at the same time.
        if pid is None:
            self.conn.execute("UPDATE proposals SET state = ? WHERE task IS ? AND state = ?",
                              (SUPERSEDED, task, PENDING))
            return
        self.conn.execute("UPDATE proposals SET state = ? WHERE task IS ? AND state = ? AND id != ?",
                          (SUPERSEDED, task, PENDING, pid))
        self.conn.execute("INSERT INTO proposals VALUES (?, ?, ?, ?) "
                          "ON CONFLICT (id) DO UPDATE SET task = excluded.task",
                          (pid, task, seq, PENDING))

    def _decision(self, r: dict, task: str | None, ts: float | None) -> None:
        if r.get("proposal"):  # `bgmon run`'s own restarts have none: not a proposal
            self.counts["decisions", str(r.get("decision"))] += 1
        if r.get("decision") == APPROVED and r.get("by") in AUTOMATIC:
            self.counts["one", "automatic"] += 1
        if r.get("by") == "bgmon run" and r.get("failure") and task is not None:
            # `bgmon run` restarts after a failure it saw, often before any monitor did.
            self._failed(task, str(r.get("pattern") or r.get("failure")), ts)
        decision = r.get("decision")
        if isinstance(r.get("proposal"), str) and decision in (APPROVED, REJECTED, SUPERSEDED):
            self.conn.execute("UPDATE proposals SET state = ? WHERE id = ? AND state = ?",
                              (decision, r["proposal"], PENDING))

    def _result(self, r: dict, task: str | None, ts: float | None) -> None:
        for key in action_sums(r):
            self.counts["actions", key] += 1
        restarts = 0
        for a in action_results(r):
            restarts += a.get("kind") == "restart" and bool(a.get("ok"))
            if a.get("skipped"):
                continue
            self.counts["one", "actions_total"] += 1
            self.counts["by_kind", str(a.get("kind"))] += 1
            if a.get("kind") == "restart" and a.get("ok") and task is not None:
                self.counts["restarts", "started"] += 1
                self.waiting[task] = self.waiting.get(task, 0) + 1
            else:
                self.counts["one", "actions_ok"] += bool(a.get("ok"))
        if isinstance(r.get("proposal"), str):
            self.conn.execute(
                "UPDATE proposals SET state = ? WHERE id = ? AND state IN (?, ?)",
                (EXECUTED if r.get("ok") else FAILED, r["proposal"], PENDING, APPROVED))
        if restarts and task is not None and ts is not None:
            self.conn.execute("INSERT INTO restarts (task, ts, n) VALUES (?, ?, ?)", (task, ts, restarts))

    def flush(self) -> None:
        if self.rows:
            self.conn.executemany("INSERT INTO records VALUES (?, ?, ?, ?, ?, ?)", self.rows)
            self.rows.clear()

    def finish(self, where: dict[str, Any]) -> None:
        self.flush()
        conn = self.conn
        conn.executemany(
            "INSERT INTO counts VALUES (?, ?, ?) ON CONFLICT (name, key) DO UPDATE SET n = n + excluded.n",
            [(name, key, n) for (name, key), n in self.counts.items()])
        if self.faults_changed:
            conn.execute("DELETE FROM faults")
            conn.executemany("INSERT INTO faults VALUES (?, ?)", self.faults.items())
        conn.execute("DELETE FROM waiting")
        conn.executemany("INSERT INTO waiting VALUES (?, ?)", self.waiting.items())
        conn.executemany("INSERT INTO recoveries VALUES (?)", self.recoveries)
        where = {**where, "bad_lines": self.bad_lines, "bad_records": self.bad_records}
        conn.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", where.items())
