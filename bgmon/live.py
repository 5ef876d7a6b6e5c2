"""The live engine: file events + a slow safety sweep + process looks + a 1 s health tick.

Every directory that holds a task file is watched, non-recursively (a watch on a file dies at
the first atomic replace; a directory's does not), through `sources.watch`. The watch is armed
before the first scan and before each new directory is read again, so nothing written in between
is missed. Events are only a hint: they name paths to re-read through the same incremental
readers `--once` uses. Directories beyond the watch limit are polled at `sweep_interval`; the
full sweep (discovery + every file) is then only a safety net for what the kernel dropped. With
no inotify at all, everything is swept at `sweep_interval`, and the person is told.

All Monitor calls happen one at a time in a worker thread, so the event loop (and a UI) never
waits on the disk.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from itertools import chain, islice
from typing import TYPE_CHECKING, Protocol

from bgmon.board import Board, SweepStats
from bgmon.cli import EXIT_OK
from bgmon.config import Config
from bgmon.engine import Change, Monitor, first_load
from bgmon.model import Acknowledged
from bgmon.printable import single_line
from bgmon.recovery.auto import AutoRecovery
from bgmon.sources.discover import Found, discover
from bgmon.sources.watch import (
    WATCHES_LIMIT,
    DirWatch,
    FilesWatch,
    Inotify,
    instances_problem,
    open_watch,
    read_limit,
)

if TYPE_CHECKING:
    from bgmon.notify.notifier import Notifier
    from bgmon.recovery.service import RecoveryService

TICK_MS = 1000  # time-based rules (stuck) are re-checked at least this often
COALESCE = 0.005  # after the first event, wait this long so one burst of writes is one pass
RESYNC = 1.0  # after reads without a sweep, re-check the set of directories at most this often
# While the watch works the full sweep is only a safety net: it may use at most this share of
# one core, so with many tasks its interval stretches beyond `sweep_interval` (up to
# SWEEP_STRETCH_MAX seconds). With 1,000 tasks a sweep costs ~30 ms of CPU: every ~15 s.
SWEEP_SHARE = 0.002
SWEEP_STRETCH_MAX = 60.0
# A safety sweep while the watch works reads this long per pass (seconds), then lets the pass go
# on: at 10,000 tasks a whole sweep held a pass (and any append waiting on it) for 0.1-1 s.
SWEEP_SLICE = 0.02
# Process looks likewise: at most this share of a core, so with a thousand live pids a look
# comes every few seconds rather than every `proc_interval` (never rarer than the maximum).
PROC_SHARE = 0.01
PROC_STRETCH_MAX = 10.0
WRITE_BATCH = 32  # `--follow --json` lines joined per write (a snapshot line is ~2-3 KB)


class Recorder(Protocol):
    """Where badge changes are journaled and marks come from (recovery's service)."""

    def record_transition(self, snapshot, previous) -> None: ...

    def marks(self) -> dict[str, str]: ...

    def acks(self) -> dict[str, Acknowledged]: ...

    def clear_ack(self, task: str, task_id: str | None) -> None: ...


class LiveEngine:
    def __init__(
        self,
        monitor: Monitor,
        emit: Callable[[list[Change]], None],
        clock: Callable[[], float] = time.monotonic,
        recorder: Recorder | None = None,
        auto: AutoRecovery | None = None,
        inotify: Callable[[], Inotify] | None = None,  # a seam for tests; None: Inotify
        sweeps: SweepStats | None = None,
        notifier: Notifier | None = None,
    ) -> None:
        self.monitor = monitor
        self.sweeps = sweeps if sweeps is not None else SweepStats()  # the exporter reads them
        self.emit = emit
        self.recorder = recorder
        self.auto = auto  # rule-based recovery for tasks that opted in (autoRecover: true)
        self.notifier = notifier  # announces badge changes ([notify])
        self.journal_errors = 0
        self.journal_problem: str | None = None  # why the last journal read or write failed
        self.clock = clock
        self.config: Config = monitor.config
        self._inotify = inotify
        self.watch: DirWatch | FilesWatch | None = None
        self.watch_problem: str | None = None  # why nothing is watched (then all is swept)
        self._next_sweep = 0.0
        self._next_procs = 0.0
        self._next_poll = 0.0
        self._next_sync = 0.0
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._overflow = False  # the kernel dropped events: sweep
        self._rescan = False  # directories were armed after their files were read: sweep
        self._behind: set[str] = set()  # logs with more bytes than one pass reads
        self._polled: dict[str, int | None] = {}  # unwatched directory → its mtime (ns)
        self._files_in: dict[str, list[str]] = {}  # directory → the task files in it
        self._announced: list[str] = []
        self._sweeping: _Sweep | None = None  # a safety sweep spread over passes
        self.batches = 0  # file-event batches handled (for tests and benches)

    def stop(self) -> None:
        if self.auto is not None:
            self.auto.close()
        self._stop.set()
        self._wake.set()

    @property
    def warnings(self) -> list[str]:
        """What a person should know about the watch itself (shown by every live view)."""
        out = []
        every = f"{self.config.sweep_interval:g} s"
        if self.watch_problem:
            out.append(f"{self.watch_problem}; checking every {every} instead")
        elif self.watch is not None and self.watch.limited:
            limit = read_limit(WATCHES_LIMIT)
            known = f" of {limit:,}" if limit else ""
            out.append(f"{self.watch.limited:,} folder(s) beyond the inotify watch budget "
                       f"({self.watch.budget:,}{known} per user; raise fs.inotify.max_user_watches): "
                       f"checking them every {every}")
        if self.journal_problem is not None:
            # Stable text while the same failure repeats (every view re-announces a new one).
            out.append(single_line(f"badge changes and marks not recorded: {self.journal_problem}"))
        return out

    # -- the loop (event loop side) --------------------------------------------------------

    # -- the safety sweep, spread over passes ----------------------------------------------

    def _spread_sweep(self, now: float) -> tuple[bool, bool]:
        """The safety sweep while the watch works, without holding up a pass: discovery runs
        in a thread of its own, then each pass reads the files of some tasks (SWEEP_SLICE of
        time), so an append is judged within a pass however many tasks there are. Returns
        (tasks were adopted, the sweep is done)."""
        if self._sweeping is None:
            if now < self._next_sweep:
                return False, False
            self._sweeping = _Sweep(self.monitor)
        sweep = self._sweeping
        adopted = sweep.take_found(self.monitor)
        if adopted is None:
            return False, False  # still discovering
        if adopted:
            return True, False  # adopting 10,000 specs is a pass's share; the reads follow at once
        sweep.read_slice(self.monitor)
        if sweep.left:
            return adopted, False
        self._sweeping = None
        if sweep.failed:
            self._rescan = True  # discovery raised: a plain sweep next pass (it reports it)
            return adopted, False
        self.monitor.swept()
        self.sweeps.add(sweep.wall)
        self._schedule_sweep(now, sweep.cpu)
        return adopted, True

    def _stop_spread(self) -> None:
        """A full sweep replaces the one spread over passes (no two discoveries at once)."""
        sweep, self._sweeping = self._sweeping, None
        if sweep is not None:
            sweep.wait()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        self._open_watch(loop)
        try:
            # What the first pass loads (every task's record) lives as long as the engine: out
            # of the collector's reach, a full collection no longer walks it (135 ms at 10,000
            # tasks, landing on whatever pass was running; the TUI does the same for its nodes).
            with first_load(keep=True):
                await asyncio.to_thread(self._step, None, True)
            while not self._stop.is_set():
                if not (self._wake.is_set() or self._more()):
                    try:
                        await asyncio.wait_for(self._wake.wait(), TICK_MS / 1000)
                    except TimeoutError:
                        pass
                if self._stop.is_set():
                    break
                if self._wake.is_set():
                    await asyncio.sleep(COALESCE)
                    self._wake.clear()
                await asyncio.to_thread(self._step, self._take(), False)
        finally:
            self._close_watch(loop)

    def _open_watch(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            self.watch = DirWatch(self._inotify()) if self._inotify else open_watch()
            loop.add_reader(self.watch.fileno(), self._on_events)
        except OSError as exc:
            self._lose_watch(loop, instances_problem(exc))

    def _lose_watch(self, loop: asyncio.AbstractEventLoop, problem: str) -> None:
        """No watch (none could be had, or it broke): sweep everything at the configured pace."""
        self._close_watch(loop)
        self.watch_problem = problem
        self._next_sweep = 0.0
        self._wake.set()

    def _close_watch(self, loop: asyncio.AbstractEventLoop) -> None:
        watch, self.watch = self.watch, None
        if watch is not None:
            if watch.fileno() >= 0:
                loop.remove_reader(watch.fileno())
            watch.close()

    def _on_events(self) -> None:
        watch = self.watch
        if watch is None:
            return
        try:
            if watch.drain():
                self._wake.set()
        except OSError as exc:
            self._lose_watch(asyncio.get_running_loop(), f"file watch failed: {exc.strerror or exc}")

    def _more(self) -> bool:
        """Work that must not wait for the next tick."""
        return self._rescan or self._overflow or bool(self._behind) or (
            self._sweeping is not None and bool(self._sweeping.left))

    def _take(self) -> set[str]:
        paths: set[str] = set()
        if self.watch is not None:
            paths, overflow = self.watch.take()
            self._overflow |= overflow
        return paths | self._behind

    # -- one pass (worker thread side) -----------------------------------------------------

    def _step(self, paths: set[str] | None, first: bool) -> bool:
        """One pass in the worker thread: read what changed, sweep and look when due, judge.
        Returns whether files were read."""
        monitor = self.monitor
        now = self.clock()
        if first and self.watch is not None:
            # Arm before the first read: whatever is written after a file is read is an event.
            found = discover(self.config, monitor.clock())
            self._sync(found.watch)
        # With a watch, the sweep due by the clock is a safety net: spread over passes (below).
        sweep = first or self._overflow or self._rescan or (self.watch is None and now >= self._next_sweep)
        self._overflow = self._rescan = False
        read = bool(paths)
        everything = False  # were files read beyond `paths`?
        if paths:
            self.batches += 1
            sweep |= monitor.on_paths(paths)
        if not sweep and self.watch is not None and self.watch.unwatched and now >= self._next_poll:
            sweep |= self._poll_unwatched()
            read = everything = True
            self._next_poll = now + self.config.sweep_interval
        if sweep:
            self._stop_spread()
            self._sweep(now)
        elif self.watch is not None:
            # New tasks' folders are to be watched at once, as after a sweep.
            sweep, done = self._spread_sweep(now)
            read |= done
            everything |= done
        read |= sweep
        if read:
            self._behind = self._behind_logs(None if sweep or everything else paths)
        if self.watch is not None and (sweep or (read and now >= self._next_sync)):
            if self._sync(monitor.watch_dirs()):
                self._rescan = True  # newly armed after a read: what changed between needs a look
            self._next_sync = now + RESYNC
        if first or now >= self._next_procs:
            cpu = time.thread_time()
            monitor.look_procs()
            # Many live pids: the looks space out to stay near PROC_SHARE of a core.
            cost = time.thread_time() - cpu
            interval = self.config.proc_interval
            self._next_procs = now + min(max(interval, cost / PROC_SHARE), max(interval, PROC_STRETCH_MAX))
        self._load_marks()
        changes = monitor.evaluate()
        self._journal(changes)
        if self.auto is not None:
            # Every pass, changes or not: a fault held back while bgmon run still restarts the
            # task is picked up once its supervisor gives up, which may change nothing else.
            self.auto.on_changes(changes, monitor.find)
        if self.notifier is not None:
            # Every pass too: a new badge is announced once it has held, which takes time.
            self.notifier.on_changes(changes, monitor.clock())
        warnings = self.warnings
        if changes or first or warnings != self._announced:
            self._announced = warnings
            self.emit(changes)
        return read

    def _sweep(self, now: float) -> None:
        cpu, wall = time.thread_time(), time.perf_counter()
        self.monitor.sweep()
        self.sweeps.add(time.perf_counter() - wall)
        self._schedule_sweep(now, time.thread_time() - cpu)

    def _schedule_sweep(self, now: float, cost: float) -> None:
        interval = self.config.sweep_interval
        if self.watch is not None:
            # Watched folders report their changes and unwatched ones are polled: the full
            # sweep only catches what the kernel dropped, so it may be rarer.
            interval = min(max(interval, cost / SWEEP_SHARE), max(interval, SWEEP_STRETCH_MAX))
        self._next_sweep = now + interval

    def _sync(self, wanted: set[str]) -> bool:
        """Watch `wanted`; True when directories were newly armed."""
        assert self.watch is not None
        added = self.watch.sync(wanted)
        if self.watch.unwatched:
            files: dict[str, list[str]] = {}
            for snap in self.monitor.snapshots():
                for path in snap.files:
                    files.setdefault(os.path.dirname(path), []).append(path)
            self._files_in = files
        else:
            self._files_in = {}
        return bool(added)

    def _poll_unwatched(self) -> bool:
        """Folders the watch could not take: a changed listing (mtime) means a sweep; else
        re-read the task files in them (a stat each when nothing changed). True to sweep."""
        assert self.watch is not None
        changed = False
        polled: dict[str, int | None] = {}
        for d in self.watch.unwatched:
            try:
                mtime: int | None = os.stat(d).st_mtime_ns
            except OSError:
                mtime = None
            polled[d] = mtime
            if self._polled.get(d, -1) != mtime:
                changed = True
        self._polled = polled
        if changed:
            return True
        files = [f for d in self.watch.unwatched for f in self._files_in.get(d, ())]
        return self.monitor.on_paths(files) if files else False

    def _behind_logs(self, paths: set[str] | None) -> set[str]:
        """Logs with bytes left after this pass (a burst bigger than one pass reads): read on
        the next pass at once, not when the file next changes. Only the logs just read can be
        behind (`paths`; None: every log, after a sweep)."""
        tasks = self.monitor.tasks
        if paths is None:
            return {path for record in tasks.values() for path, feed in record.feeds.items()
                    if feed.reader.behind}
        by_file = self.monitor.store.by_file
        out = set()
        for path in paths:
            record = tasks.get(by_file.get(path, ""))
            feed = record.feeds.get(path) if record is not None else None
            if feed is not None and feed.reader.behind:
                out.add(path)
        return out

    def _load_marks(self) -> None:
        if self.recorder is None:
            return
        try:
            self.monitor.set_notes(self.recorder.marks())
            self.monitor.set_acks(self.recorder.acks())
        except OSError as exc:
            self._journal_failed(exc)

    def _journal(self, changes: list[Change]) -> None:
        """Every badge change goes into the journal; a journal that cannot be written is
        counted, never allowed to stop the monitor."""
        if self.recorder is None:
            return
        acks = self.monitor.acks
        for c in changes:
            if c.kind == "health" and c.snapshot is not None:
                try:
                    self.recorder.record_transition(c.snapshot, c.previous.badge if c.previous else None)
                    ack = acks.get(c.key)
                    if ack is not None and ack.badge != c.snapshot.health.badge.value:
                        # The task changed since a person acknowledged it: spent, so the same
                        # badge coming back later counts (and notifies) again.
                        self.recorder.clear_ack(c.key, c.snapshot.id)
                except OSError as exc:
                    self._journal_failed(exc)
                else:
                    self.journal_problem = None  # written again (a disk that had no room has)

    def _journal_failed(self, exc: OSError) -> None:
        self.journal_errors += 1
        self.journal_problem = str(exc)


class _Sweep:
    """One safety sweep spread over passes: discovery in a thread, then reads by slices."""

    def __init__(self, monitor: Monitor) -> None:
        self.found: Found | None = None
        self.failed = False
        self.left: deque[str] = deque()
        self.cpu = 0.0  # seconds of CPU (discovery's thread and the passes' slices)
        self.wall = 0.0  # seconds of work, for the sweep statistics
        self._thread = threading.Thread(target=self._discover, args=(monitor,),
                                        name="bgmon-sweep", daemon=True)
        self._thread.start()

    def _discover(self, monitor: Monitor) -> None:
        cpu, wall = time.thread_time(), time.perf_counter()
        try:
            self.found = monitor.discover()
        except Exception:
            self.failed = True
        self.cpu += time.thread_time() - cpu
        self.wall += time.perf_counter() - wall

    def take_found(self, monitor: Monitor) -> bool | None:
        """None while discovering; then, once, adopt what was found (True: adopted now)."""
        if self._thread.is_alive():
            return None
        if self.found is None:
            return False
        cpu, wall = time.thread_time(), time.perf_counter()
        self.left = deque(monitor.adopt(self.found))
        self.found = None
        self.cpu += time.thread_time() - cpu
        self.wall += time.perf_counter() - wall
        return True

    def read_slice(self, monitor: Monitor) -> None:
        cpu, start = time.thread_time(), time.perf_counter()
        end = start + SWEEP_SLICE
        left = self.left
        while left and time.perf_counter() < end:
            monitor.read(left.popleft())
        self.cpu += time.thread_time() - cpu
        self.wall += time.perf_counter() - start

    def wait(self) -> None:
        self._thread.join()


def _recorder(config: Config) -> RecoveryService | None:
    """The recovery journal for this root, or None when it cannot be opened (read-only root):
    the monitor works without it."""
    from bgmon.recovery.service import RecoveryService

    try:
        return RecoveryService.from_config(config)
    except (OSError, ValueError) as exc:
        print(f"bgmon: journal disabled: {exc}", file=sys.stderr)
        return None


class Reader:
    """A Recorder that only reads: marks and acknowledgements for the views, no journaling
    (`bgmon wait` watches; the monitors keep the record)."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder

    def record_transition(self, snapshot, previous) -> None:
        pass

    def clear_ack(self, task: str, task_id: str | None) -> None:
        pass

    def marks(self) -> dict[str, str]:
        return self.recorder.marks()

    def acks(self) -> dict[str, Acknowledged]:
        return self.recorder.acks()


def run_live(
    config: Config,
    monitor: Monitor,
    emit: Callable[[list[Change]], None],
    sweeps: SweepStats | None = None,
    notifier: Notifier | None = None,
    done: Callable[[], bool] | None = None,
    timeout: float | None = None,
    journal: bool = True,
    heartbeat: tuple[float, Callable[[], bool]] | None = None,
) -> bool:
    """Run the live engine without a screen until SIGINT or SIGTERM, until `done()` says so
    after a pass, or until `timeout` seconds pass (then returns True). `journal`: record badge
    changes and let opted-in automatic recovery act (the monitors do; `bgmon wait` only
    watches, reading marks and acknowledgements). `notifier` announces badge changes.
    `heartbeat` (every, beat): `beat()` runs (off the event loop) every `every` seconds; when
    it returns False (the reader has gone) the engine stops."""
    timed_out = False

    async def main() -> None:
        nonlocal timed_out
        loop = asyncio.get_running_loop()
        service = _recorder(config)
        recorder: Recorder | None = service
        auto = None
        if service is not None and not journal:
            recorder = Reader(service)
        elif service is not None and config.auto_recover:
            auto = AutoRecovery(service)

        told: set[str] = set()

        def emit_then_check(changes: list[Change]) -> None:
            for warning in engine.warnings:
                if warning not in told:  # e.g. no inotify: said once, on stderr
                    told.add(warning)
                    print(f"bgmon: {warning}", file=sys.stderr, flush=True)
            emit(changes)
            if done is not None and done():
                loop.call_soon_threadsafe(engine.stop)

        def expire() -> None:
            nonlocal timed_out
            timed_out = True
            engine.stop()

        engine = LiveEngine(monitor, emit_then_check, recorder=recorder, auto=auto, sweeps=sweeps,
                            notifier=notifier)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, engine.stop)
        if timeout is not None:
            loop.call_later(timeout, expire)

        async def beat(every: float, alive: Callable[[], bool]) -> None:
            while True:
                await asyncio.sleep(every)
                if not await asyncio.to_thread(alive):
                    engine.stop()
                    return

        beating = asyncio.create_task(beat(*heartbeat)) if heartbeat is not None else None
        try:
            await engine.run()
        finally:
            if beating is not None:
                beating.cancel()

    try:
        asyncio.run(main())
    finally:
        if notifier is not None:
            notifier.close()  # what was confirmed before the stop still goes out
    return timed_out


def to_board(monitor: Monitor, board: Board) -> Callable[[list[Change]], None]:
    """An emit that keeps `board` current: the first call loads every task, later ones apply
    the changes. Runs in the engine's thread, so it may read the monitor."""
    loaded = False

    def emit(changes: list[Change]) -> None:
        nonlocal loaded
        if not loaded:
            loaded = True
            board.load(monitor.snapshots(), monitor.warnings())
            return
        board.apply(changes)
        board.set_warnings(monitor.warnings())

    return emit


def follow(config: Config, board: Board | None = None, as_json: bool = True,
           notifier: Notifier | None = None) -> int:
    """`bgmon --follow`: the tasks as they are, then every change, until a signal. With --json:
    a hello line, snapshot lines, a synced line, then one line per change; else --once lines
    (views/text). With `board`, the metrics endpoint's board is kept current too. Remote hosts'
    tasks follow as `added` lines once this host has synced, as each host answers."""
    from bgmon.views import jsonout
    from bgmon.views.order import current as default_view
    from bgmon.views.text import ChangePrinter

    out = sys.stdout.buffer
    monitor = Monitor(config)
    printer = None if as_json else ChangePrinter(sys.stdout)
    started = False
    local: list[str] = []  # this machine's reading warnings, as the engine last said
    said: list[str] | None = None  # the merged warnings as last written
    said_lock = threading.Lock()
    to_metrics = to_board(monitor, board) if board is not None else None
    lock = threading.Lock()  # remote hosts' threads write too
    gone = threading.Event()  # the reader left: the engine stops at its next pass

    def write(lines: Iterable[bytes]) -> None:
        if gone.is_set():
            return
        with lock:
            try:
                # A few lines at a time, made as they are written: 10,000 snapshot lines joined
                # at once were ~25 MB twice over, and glibc, having handed back so big a block,
                # raises its mmap threshold and keeps later freed heap (~15 MB more RSS, for ever).
                it = iter(lines)
                while batch := list(islice(it, WRITE_BATCH)):
                    out.write(b"".join(batch))
                out.flush()
            except (BrokenPipeError, ValueError):
                gone.set()

    def new_warnings() -> list[str] | None:
        """This machine's warnings, then each remote host's (its warnings and link problems,
        labelled with it), when they differ from those last written; else None."""
        nonlocal said
        merged = local + (fleet.warnings() if fleet is not None else [])
        with said_lock:
            if merged == said:
                return None
            said = merged
            return merged

    def show(changes: list[Change], now: float) -> None:
        warnings = new_warnings()
        if printer is None:
            tail = [jsonout.warnings_line(warnings, now)] if warnings is not None else []
            write(chain(jsonout.change_lines(changes, now), tail))
            return
        with lock:
            try:
                printer.print_changes(changes, now)
                if warnings is not None:
                    printer.print_warnings(warnings, now)
            except (BrokenPipeError, ValueError):
                gone.set()

    fleet = _fleet(config, lambda changes: show(changes, time.time()), board)

    def emit(changes: list[Change]) -> None:
        nonlocal started, local, said
        if gone.is_set():
            raise BrokenPipeError
        if to_metrics is not None:
            to_metrics(changes)
        now = monitor.clock()
        first, started = not started, True
        local = monitor.warnings()
        if printer is not None:
            # The first picture is the default view's: no task that aged out (--all keeps them).
            picture = default_view(monitor.snapshots(), now, config.age_out) if first else []
            show([Change("added", s.key, s) for s in picture] if first else changes, now)
        elif first:
            snaps = monitor.snapshots()
            with said_lock:
                said = list(local)  # the synced line says them (no remote host has spoken yet)
            # After the first look rather than at once: by then SIGINT stops the engine cleanly.
            write(chain(
                [jsonout.hello_line(config, now)],
                (jsonout.snapshot_line(s, now) for s in snaps),
                [jsonout.synced_line(len(snaps), local, now)],
            ))
        else:
            show(changes, now)
        if first and fleet is not None:
            fleet.start()

    def alive() -> bool:
        if started:  # never before the hello line
            write([jsonout.heartbeat_line(time.time())])
        return not gone.is_set()

    try:
        run_live(config, monitor, emit, board.sweeps if board is not None else None, notifier,
                 heartbeat=(jsonout.HEARTBEAT, alive) if printer is None else None)
    except BrokenPipeError:
        pass
    finally:
        if fleet is not None:
            fleet.stop()
        if gone.is_set():
            # Nothing left to flush to: no "Exception ignored … BrokenPipeError" at exit.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return EXIT_OK


def _fleet(config: Config, emit: Callable[[list[Change]], None], board: Board | None):
    """The links to the remote hosts (not started), or None without any."""
    if not config.remotes:
        return None
    from bgmon.remote.fleet import Fleet

    return Fleet(config.remotes, emit, board=board)


def serve(config: Config, board: Board, notifier: Notifier | None = None) -> int:
    """`bgmon serve --metrics HOST:PORT`: the live engine keeping the metrics' board current,
    with nothing on screen, until SIGINT or SIGTERM; remote hosts' tasks join the board."""
    from bgmon.remote.fleet import noop

    monitor = Monitor(config)
    fleet = _fleet(config, noop, board)
    if fleet is not None:
        fleet.start()
    try:
        run_live(config, monitor, to_board(monitor, board), board.sweeps, notifier)
    finally:
        if fleet is not None:
            fleet.stop()
    return EXIT_OK


def watch(config: Config, notifier: Notifier) -> int:
    """`bgmon watch`: no screen; notifications (each also printed by the caller's log sink), the
    journal, and one line on stderr once the first look is done."""
    monitor = Monitor(config)
    started = False

    def emit(changes: list[Change]) -> None:
        nonlocal started
        if not started:
            started = True
            sinks = ", ".join(s.name for s in notifier.sinks)
            print(f"bgmon watch: watching {len(monitor.snapshots())} task(s); notifying by {sinks}",
                  file=sys.stderr, flush=True)

    run_live(config, monitor, emit, notifier=notifier)
    return EXIT_OK
