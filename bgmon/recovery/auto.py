"""Automatic recovery for tasks that opted in (`bgmon run --auto-recover` → `autoRecover: true`).

The live engine hands every batch of changes to `AutoRecovery.on_changes`. When a task that
opted in turns faulty (struggling, stuck or failed, judged on its own health, not a child's),
a rule-based proposal is requested and, if everything in it is an action the rules may take on
their own (restart, kill, signal, mark: never `run`, never anything a model proposed), approved
with `by="auto"`. The journal then holds the proposal, the decision (`by: "auto"`) and the result
exactly as for a proposal a person approved.

Limits:
- only when the monitor itself was started with `bgmon --auto-recover` (or `[recovery] auto`):
  a status.json alone never turns it on;
- only for a task `bgmon run --auto-recover` opted in itself, by a record in bgmon's own state
  directory (`grant_auto_recover`; `$XDG_STATE_HOME/bgmon/auto-recover/`, 0700) naming the
  status.json and the command: `autoRecover: true` in a status.json is a request, never the
  opt-in, since a cloned repository's committed `.worktrees/X/status.json` is the cloning user's
  own file and passes every check on the file itself;
- only for a task whose status.json is a regular file owned by the user running the monitor and
  writable by nobody else (`trust_problem`): anyone else who can write into a watched folder
  could otherwise pick the command bgmon runs or the pid it kills. A task that fails a check is
  skipped, and why is said in `events` and in the journal (a record of kind `auto`);
- never while `bgmon run`'s own supervisor is alive and the task not finished: the supervisor is
  in charge of its command (its restart policy); the monitor acts once it has given up or died;
- at most `max_attempts` automatic attempts per failure episode, spaced by backoff (the first at
  once, then `backoff_delay`); an episode ends when the task has been healthy for `reset_after`
  seconds;
- one attempt at a time per task (and `RecoveryService.approve` holds a per-task lock across
  processes, so a person approving at the same moment does not run it twice);
- the caller is never blocked: each attempt runs in a daemon thread (a `wait_restart` strategy
  sleeps inside the approval).
"""

from __future__ import annotations

import hashlib
import os
import random
import stat
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from bgmon.model import Badge, TaskSnapshot
from bgmon.procs import running
from bgmon.recovery.breaker import backoff_delay
from bgmon.recovery.proposal import Proposal
from bgmon.recovery.service import RecoveryService
from bgmon.recovery.validate import status_file

# What the rules may do without a person. `run` (an arbitrary program) never is.
AUTO_KINDS = frozenset({"restart", "kill", "signal", "mark"})
# Actions that try to fix something; a proposal with none of them (only marks) says a person is
# needed, so the episode's automatic attempts end there.
FIXING_KINDS = frozenset({"restart", "kill", "signal"})
BY = "auto"
ACTIVE_STATUSES = frozenset({"created", "running", "pending", "queued"})

Lookup = Callable[[str], "TaskSnapshot | None"]


@dataclass
class _Episode:
    badge: Badge | None = None  # the task's own badge when last seen
    attempts: int = 0  # automatic attempts in this failure episode
    in_flight: bool = False  # an attempt's thread is running
    settled: bool = False  # nothing more to try automatically in this episode
    gave_up: bool = False  # the give-up mark was written
    deferred: bool = False  # a fault seen while bgmon run's supervisor was in charge
    healthy_since: float | None = None
    started_pid: int | None = None  # the pid an automatic restart started


def auto_enabled(snapshot: TaskSnapshot) -> bool:
    return snapshot.fields.get("autoRecover") is True


def own_badge(snapshot: TaskSnapshot) -> Badge:
    """The task's own badge: a parent is not restarted because a child failed."""
    return (snapshot.own_health or snapshot.health).badge


def supervisor_in_charge(snapshot: TaskSnapshot) -> bool:
    """`bgmon run` still supervises the task: its supervisor process is alive (not a zombie) and
    the health rules do not say it died. While it lives it restarts, stops or finishes the
    command itself, so the monitor must not act as well (a second copy of the command)."""
    pid = snapshot.fields.get("supervisorPid")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    if any(r.rule == "supervisor.died" for r in (snapshot.own_health or snapshot.health).reasons):
        return False
    # Exists but cannot be looked at (None): assume it is in charge.
    return running(pid) is not False


def trust_problem(snapshot: TaskSnapshot) -> str | None:
    """None if the task's status.json may steer automatic recovery, else why not: it must be a
    regular file (not a symlink) owned by the current user and not group- or world-writable, and
    bgmon run --auto-recover must have opted the task in (`opt_in_problem`)."""
    path = status_file(snapshot)
    if path is None:
        return "it has no status.json to check who wrote it"
    try:
        st = os.lstat(path)
    except OSError as exc:
        return f"cannot check {path}: {exc.strerror or exc}"
    if stat.S_ISLNK(st.st_mode):
        return f"{path} is a symbolic link"
    if not stat.S_ISREG(st.st_mode):
        return f"{path} is not a regular file"
    uid = os.getuid()
    if st.st_uid != uid:
        return f"{path} is owned by uid {st.st_uid}, not by the user running bgmon (uid {uid})"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        who = "group- and world" if st.st_mode & stat.S_IWGRP and st.st_mode & stat.S_IWOTH else (
            "group" if st.st_mode & stat.S_IWGRP else "world")
        return f"{path} is {who}-writable (mode {stat.S_IMODE(st.st_mode):04o})"
    return opt_in_problem(snapshot, path)


def opt_in_dir() -> Path:
    """bgmon's own record of the tasks `bgmon run --auto-recover` started: outside every
    repository, so nothing a clone or a checkout brings can opt a task in."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return Path(base) / "bgmon" / "auto-recover"


def _opt_in_file(status_path: str | os.PathLike[str]) -> Path:
    real = os.path.realpath(status_path)
    return opt_in_dir() / (hashlib.sha256(real.encode()).hexdigest()[:32] + ".json")


def grant_auto_recover(status_path: str | os.PathLike[str], command: list[str] | None,
                       cwd: str | None) -> Path:
    """Record that this user started the task at `status_path` with `bgmon run --auto-recover`
    to run `command` in `cwd` (the directory 0700, the file 0600, written atomically)."""
    folder = opt_in_dir()
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(folder, 0o700)
    path = _opt_in_file(status_path)
    record = {"status": os.path.realpath(status_path), "command": command, "cwd": cwd,
              "granted": time.time()}
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(orjson.dumps(record))
    os.replace(tmp, path)
    return path


def opt_in_record(status_path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """bgmon run's opt-in record for this status file, if there is one this user wrote."""
    record_path = _opt_in_file(status_path)
    try:
        st = os.lstat(record_path)
        record = orjson.loads(record_path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    if (not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid()
            or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) or not isinstance(record, dict)
            or record.get("status") != os.path.realpath(status_path)):
        return None
    return record


def opt_in_problem(snapshot: TaskSnapshot, path: str) -> str | None:
    """None if bgmon run's record opts this task in for the command it has now, else why not."""
    how = "start it with `bgmon run --auto-recover` to opt it in"
    record = opt_in_record(path)
    if record is None:
        return f"autoRecover in {path} was not set by bgmon run --auto-recover for this user; {how}"
    command = list(snapshot.command) if snapshot.command else None
    if record.get("command") != command:
        return (f"{path} now names another command than bgmon run --auto-recover started "
                f"({record.get('command')!r}); {how}")
    if record.get("cwd") != snapshot.cwd and record.get("cwd") is not None:
        return f"{path} now names another directory than bgmon run --auto-recover started in"
    return None


def auto_allowed(proposal: Proposal) -> str | None:
    """None if the rules may carry the proposal out alone, else why not."""
    if proposal.source != "rules":
        return f"it comes from {proposal.origin}; only rule-based proposals run automatically"
    if proposal.refused:
        return "it lists refused actions"
    if not proposal.actions:
        return "it has no actions"
    bad = sorted({a.kind for a in proposal.actions} - AUTO_KINDS)
    if bad:
        return f"{', '.join(bad)} never runs automatically"
    return None


class AutoRecovery:
    """Acts on `autoRecover: true` tasks without a person; see the module docstring.

    `on_changes` must be called from one thread (the engine's worker), ideally after every
    evaluate, also with an empty list: a fault held back while `bgmon run` was still in charge
    is looked at again through `lookup` then."""

    def __init__(
        self,
        service: RecoveryService,
        *,
        max_attempts: int = 3,
        first_delay: float = 2.0,  # before attempt 2; attempt 1 goes at once
        factor: float = 2.0,
        cap: float = 60.0,
        reset_after: float = 60.0,  # healthy this long ends a failure episode
        stale_after: float = 600.0,  # a fault older than this when first seen is left alone
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,  # epoch time, to judge how old a fault is
        rng: Callable[[], float] = random.random,
        history: int = 100,
    ) -> None:
        self.service = service
        self.max_attempts = max_attempts
        self.first_delay = first_delay
        self.factor = factor
        self.cap = cap
        self.reset_after = reset_after
        self.stale_after = stale_after
        self.clock = clock
        self.wall = wall
        self.rng = rng
        self.errors = 0  # attempts that raised (a journal that cannot be written, …)
        self.events: deque[tuple[str, str]] = deque(maxlen=history)  # (task key, what happened)
        self._lock = threading.Lock()
        self._episodes: dict[str, _Episode] = {}
        self._latest: dict[str, TaskSnapshot] = {}
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()

    # --- the engine's side (fast, never blocks) ----------------------------------------------

    def on_changes(self, changes: Iterable[Any], lookup: Lookup) -> None:
        """Look at one batch of `bgmon.engine.Change`s; start an attempt where one is due."""
        seen: set[str] = set()
        for change in changes:
            snap = change.snapshot
            if change.kind == "removed" or snap is None:
                with self._lock:
                    self._latest.pop(change.key, None)
                    ep = self._episodes.get(change.key)
                    if ep is not None and not ep.in_flight:
                        del self._episodes[change.key]
                continue
            seen.add(snap.key)
            self._consider(snap)
        # Faults held back while bgmon run was in charge, and tasks with an attempt under way
        # (its thread reads the newest snapshot): their snapshot may not change when the
        # supervisor exits, so look them up.
        with self._lock:
            again = [k for k, ep in self._episodes.items() if (ep.deferred or ep.in_flight)
                     and k not in seen]
        for key in again:
            try:
                snap = lookup(key)
            except Exception:  # the engine's lookup must never break the engine
                snap = None
            if snap is not None:
                self._consider(snap)

    def _consider(self, snap: TaskSnapshot) -> None:
        now = self.clock()
        badge = own_badge(snap)
        with self._lock:
            ep = self._episodes.get(snap.key)
            if ep is None:
                if not auto_enabled(snap):
                    return
                ep = self._episodes[snap.key] = _Episode()
            self._latest[snap.key] = snap  # what an attempt's thread looks at
            previous, ep.badge = ep.badge, badge
            if not badge.is_fault:
                ep.deferred = False
                if ep.healthy_since is None:
                    ep.healthy_since = now
                elif now - ep.healthy_since >= self.reset_after and not ep.in_flight:
                    self._reset(ep)
                return
            if ep.healthy_since is not None:
                if now - ep.healthy_since >= self.reset_after and not ep.in_flight:
                    self._reset(ep)
                ep.healthy_since = None
            restarted_died = (
                ep.started_pid is not None and snap.pid == ep.started_pid
                and snap.proc is not None and not snap.proc.alive
            )
            if not (badge != previous or ep.deferred or restarted_died):
                return
            if previous is None and not ep.deferred and self._stale(snap):
                # Found already failed when the monitor started, long ago: a person's business
                # (a task abandoned last week is not restarted because someone opened bgmon).
                self._note_locked(snap.key, "fault found at start-up is old; left alone")
                return
            if restarted_died:
                ep.started_pid = None
            if not auto_enabled(snap):
                ep.deferred = False
                return
            if ep.in_flight:
                return
        if supervisor_in_charge(snap):  # a process look: outside the lock
            with self._lock:
                ep.deferred = True
            return
        target: Callable[..., None]
        args: tuple[object, ...]
        with self._lock:
            ep.deferred = False
            if ep.in_flight or ep.settled:
                return
            if ep.attempts >= self.max_attempts:
                if ep.gave_up:
                    return
                ep.gave_up = True
                ep.in_flight = True
                target, args = self._give_up, (snap,)
            else:
                ep.attempts += 1
                ep.in_flight = True
                delay = self._delay(ep.attempts)
                target, args = self._attempt, (snap.key, ep.attempts, delay)
            thread = threading.Thread(
                target=self._guarded, args=(snap.key, target, args),
                name=f"bgmon-auto-{snap.name}", daemon=True,
            )
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
        thread.start()

    def _stale(self, snap: TaskSnapshot) -> bool:
        last = snap.last_activity
        return last is None or self.wall() - last > self.stale_after

    def _reset(self, ep: _Episode) -> None:
        ep.attempts = 0
        ep.settled = ep.gave_up = False
        ep.started_pid = None

    def _delay(self, attempt: int) -> float:
        if attempt <= 1:
            return 0.0
        return backoff_delay(attempt - 1, first=self.first_delay, factor=self.factor,
                             cap=self.cap, rng=self.rng)

    # --- the attempt's thread ------------------------------------------------------------------

    def _guarded(self, key: str, target: Callable[..., None], args: tuple[object, ...]) -> None:
        try:
            target(*args)
        except Exception as exc:  # a daemon thread must not die with a traceback on stderr
            with self._lock:
                self.errors += 1
            self._note(key, f"automatic recovery failed: {exc!r}")
        finally:
            with self._lock:
                ep = self._episodes.get(key)
                if ep is not None:
                    ep.in_flight = False

    def _attempt(self, key: str, attempt: int, delay: float) -> None:
        if delay > 0 and self._stop.wait(delay):
            return
        if self._stop.is_set():
            return
        snap = self._current(key)
        # The situation may have changed during the backoff.
        if snap is None or not auto_enabled(snap) or not own_badge(snap).is_fault:
            self._note(key, f"attempt {attempt} not needed any more")
            return
        if supervisor_in_charge(snap):
            with self._lock:
                ep = self._episodes.get(key)
                if ep is not None:
                    ep.deferred = True
                    ep.attempts = max(0, ep.attempts - 1)
            return
        untrusted = trust_problem(snap)
        if untrusted is not None:
            self._settle(key)  # once per failure episode, not on every change
            reason = (f"{untrusted}; automatic recovery acts only on a task bgmon run "
                      "--auto-recover started, whose status.json belongs to the user running "
                      "bgmon and only they can write")
            self._note(key, f"skipped: {reason}")
            self.service.record_auto(snap.key, snap.id, "skipped", reason)
            return
        proposal = self.service.request_proposal(snap, use_claude=False)
        if proposal is None:
            return
        why_not = auto_allowed(proposal)
        if why_not is not None:
            # Left pending for a person (a model's proposal someone asked for, say).
            self._settle(key)
            self._note(key, f"{proposal.id} not approved automatically: {why_not}")
            return
        outcome = self.service.approve(proposal.id, self._current, by=BY)
        kinds = {a.kind for a in proposal.actions}
        new_pid = next((r.new_pid for r in outcome.results if r.new_pid is not None), None)
        with self._lock:
            ep = self._episodes.get(key)
            if ep is not None:
                if new_pid is not None:
                    ep.started_pid = new_pid
                if not kinds & FIXING_KINDS:
                    ep.settled = True  # only marks: the rules say a person is needed
        self._note(key, f"attempt {attempt}: {proposal.id} {outcome.status}: {outcome.message}")

    def _give_up(self, snap: TaskSnapshot) -> None:
        note = f"auto-recover gave up after {self.max_attempts} attempts"
        self.service.set_mark(snap.key, snap.id, note)
        self._note(snap.key, note)

    def _settle(self, key: str) -> None:
        with self._lock:
            ep = self._episodes.get(key)
            if ep is not None:
                ep.settled = True

    def _current(self, ref: str) -> TaskSnapshot | None:
        """The newest snapshot the engine handed over (thread-safe: never the engine's own
        structures, which its worker changes meanwhile), by key or id."""
        with self._lock:
            snap = self._latest.get(ref)
            if snap is None:
                matches = [s for s in self._latest.values() if s.id == ref]
                snap = matches[0] if len(matches) == 1 else None
        return snap

    def _note(self, key: str, text: str) -> None:
        with self._lock:
            self._note_locked(key, text)

    def _note_locked(self, key: str, text: str) -> None:
        self.events.append((key, text))

    # --- lifecycle -------------------------------------------------------------------------------

    def busy(self) -> bool:
        """An attempt is under way for some task."""
        with self._lock:
            return any(ep.in_flight for ep in self._episodes.values())

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the attempts under way (tests, shutdown); False if some still run."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            threads = list(self._threads)
        for t in threads:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            t.join(left)
        return not any(t.is_alive() for t in threads)

    def close(self) -> None:
        """Stop waiting backoffs (an action already running finishes on its own)."""
        self._stop.set()
