"""The live engine: file events + a slow safety sweep + process looks + a 1 s health tick.

One `watchfiles.awatch` watches every directory that holds a task file, non-recursively (a
watch on a file dies at the first atomic replace; a directory's does not). Events are only a
hint: they name paths to re-read through the same incremental readers `--once` uses. The sweep
catches what the kernel dropped (queue overflow, directories beyond the inotify limit). All
Monitor calls happen one at a time in a worker thread, so the event loop (and a UI) never waits
on the disk.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from watchfiles import awatch

from bgmon.board import Board, SweepStats
from bgmon.cli import EXIT_OK
from bgmon.config import Config
from bgmon.engine import Change, Monitor
from bgmon.recovery.auto import AutoRecovery

if TYPE_CHECKING:
    from bgmon.notify.notifier import Notifier

TICK_MS = 1000  # time-based rules (stuck) are re-checked at least this often
MAX_WATCHED = 8000  # beyond this, rely on the sweep (inotify watches are a shared budget)
# While every directory is watched the sweep is only a safety net: it may use at most this share
# of one core, so with many tasks its interval stretches beyond `sweep_interval` (up to
# SWEEP_STRETCH_MAX seconds). With 1,000 tasks a sweep costs ~30 ms of CPU: every ~15 s.
SWEEP_SHARE = 0.002
SWEEP_STRETCH_MAX = 60.0


class Recorder(Protocol):
    """Where badge changes are journaled and marks come from (recovery's service)."""

    def record_transition(self, snapshot, previous) -> None: ...

    def marks(self) -> dict[str, str]: ...


class LiveEngine:
    def __init__(
        self,
        monitor: Monitor,
        emit: Callable[[list[Change]], None],
        clock: Callable[[], float] = time.monotonic,
        recorder: Recorder | None = None,
        auto: AutoRecovery | None = None,
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
        self.clock = clock
        self.config: Config = monitor.config
        self._next_sweep = 0.0
        self._next_procs = 0.0
        self._stop = asyncio.Event()
        self._rewatch = asyncio.Event()
        self._watching_all = False  # every wanted directory is under the watch
        self.batches = 0  # file-event batches handled (for tests and benches)

    def stop(self) -> None:
        if self.auto is not None:
            self.auto.close()
        self._stop.set()
        self._rewatch.set()

    async def run(self) -> None:
        await asyncio.to_thread(self._step, None, True)
        while not self._stop.is_set():
            wanted = self.monitor.watch_dirs()
            dirs, complete = self._dirs(wanted)
            self._rewatch = asyncio.Event()
            if not dirs:
                await self._idle()
                continue
            self._watching_all = complete and len(dirs) == len(wanted)
            try:
                async for changes in awatch(
                    *dirs,
                    watch_filter=None,
                    recursive=False,
                    debounce=30,
                    step=25,
                    rust_timeout=TICK_MS,
                    yield_on_timeout=True,
                    stop_event=self._rewatch,
                    ignore_permission_denied=True,
                ):
                    paths = {path for _, path in changes}
                    read = await asyncio.to_thread(self._step, paths, False)
                    if read and self._moved(wanted, dirs, complete):
                        break  # new or vanished directories: watch the new set
            except OSError:
                # A watched directory vanished while the watch was set up: the next pass
                # watches the new set; meanwhile the tick and the sweep carry on.
                self._watching_all = False
                await self._idle()
            self._watching_all = False

    async def _idle(self) -> None:
        """No directory to watch (yet): tick and sweep until one appears."""
        try:
            await asyncio.wait_for(self._stop.wait(), TICK_MS / 1000)
        except TimeoutError:
            await asyncio.to_thread(self._step, None, False)

    @staticmethod
    def _dirs(wanted: set[str]) -> tuple[list[str], bool]:
        """The directories to watch (those that exist, at most MAX_WATCHED), and whether
        every wanted directory existed."""
        existing = sorted(d for d in wanted if os.path.isdir(d))
        return existing[:MAX_WATCHED], len(existing) == len(wanted)

    def _moved(self, wanted: set[str], dirs: list[str], complete: bool) -> bool:
        """Must the watch be set up again? Runs after every pass (each tick too), so the common
        case is cheap: compare the monitor's set of directories, not stat thousands of them.
        Only when some were missing at the start is existence checked again, to pick them up."""
        now_wanted = self.monitor.watch_dirs()
        if now_wanted != wanted:
            return True
        return not complete and self._dirs(now_wanted)[0] != dirs

    def _step(self, paths: set[str] | None, first: bool) -> bool:
        """One pass in the worker thread: read what changed, sweep and look when due, judge.
        Returns whether files were read (only then can the set of directories change)."""
        monitor = self.monitor
        now = self.clock()
        sweep = first or now >= self._next_sweep
        if paths:
            self.batches += 1
            sweep |= monitor.on_paths(paths)
        if sweep:
            cpu, wall = time.thread_time(), time.perf_counter()
            monitor.sweep()
            self.sweeps.add(time.perf_counter() - wall)
            interval = self.config.sweep_interval
            if self._watching_all:
                cost = time.thread_time() - cpu
                interval = min(max(interval, cost / SWEEP_SHARE), max(interval, SWEEP_STRETCH_MAX))
            self._next_sweep = now + interval
        if first or now >= self._next_procs:
            monitor.look_procs()
            self._next_procs = now + self.config.proc_interval
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
        if changes or first:
            self.emit(changes)
        return sweep or bool(paths)

    def _load_marks(self) -> None:
        if self.recorder is None:
            return
        try:
            self.monitor.set_notes(self.recorder.marks())
        except OSError:
            self.journal_errors += 1

    def _journal(self, changes: list[Change]) -> None:
        """Every badge change goes into the journal; a journal that cannot be written is
        counted, never allowed to stop the monitor."""
        if self.recorder is None:
            return
        for c in changes:
            if c.kind == "health" and c.snapshot is not None:
                try:
                    self.recorder.record_transition(c.snapshot, c.previous.badge if c.previous else None)
                except OSError:
                    self.journal_errors += 1


def _recorder(config: Config) -> Recorder | None:
    """The recovery journal for this root, or None when it cannot be opened (read-only root):
    the monitor works without it."""
    from bgmon.recovery.service import RecoveryService

    try:
        return RecoveryService.from_config(config)
    except (OSError, ValueError) as exc:
        print(f"bgmon: journal disabled: {exc}", file=sys.stderr)
        return None


def run_live(
    config: Config,
    monitor: Monitor,
    emit: Callable[[list[Change]], None],
    sweeps: SweepStats | None = None,
    notifier: Notifier | None = None,
    done: Callable[[], bool] | None = None,
    timeout: float | None = None,
    journal: bool = True,
) -> bool:
    """Run the live engine without a screen until SIGINT or SIGTERM, until `done()` says so
    after a pass, or until `timeout` seconds pass (then returns True). `journal`: record badge
    changes and let opted-in automatic recovery act (the monitors do; `bgmon wait` only
    watches). `notifier` announces badge changes ([notify])."""
    timed_out = False

    async def main() -> None:
        nonlocal timed_out
        loop = asyncio.get_running_loop()
        recorder = _recorder(config) if journal else None
        auto = AutoRecovery(recorder) if recorder is not None and config.auto_recover else None

        def emit_then_check(changes: list[Change]) -> None:
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
        await engine.run()

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
    (views/text). With `board`, the metrics endpoint's board is kept current too."""
    from bgmon.views import jsonout
    from bgmon.views.text import ChangePrinter

    out = sys.stdout.buffer
    monitor = Monitor(config)
    printer = None if as_json else ChangePrinter(sys.stdout)
    started = False
    warnings: list[str] = []
    to_metrics = to_board(monitor, board) if board is not None else None

    def emit(changes: list[Change]) -> None:
        nonlocal started, warnings
        if to_metrics is not None:
            to_metrics(changes)
        now = monitor.clock()
        first, started = not started, True
        if printer is not None:
            printer.print_changes([Change("added", s.key, s) for s in monitor.snapshots()]
                                  if first else changes, now)
            return
        if first:
            snaps = monitor.snapshots()
            warnings = monitor.warnings()
            # After the first look rather than at once: by then SIGINT stops the engine cleanly.
            lines = [jsonout.hello_line(config, now)]
            lines += [jsonout.snapshot_line(s, now) for s in snaps]
            lines.append(jsonout.synced_line(len(snaps), warnings, now))
        else:
            lines = jsonout.change_lines(changes, now)
            current = monitor.warnings()
            if current != warnings:
                warnings = current
                lines.append(jsonout.warnings_line(warnings, now))
        if lines:
            out.write(b"".join(lines))
            out.flush()

    try:
        run_live(config, monitor, emit, board.sweeps if board is not None else None, notifier)
    except BrokenPipeError:
        pass
    return EXIT_OK


def serve(config: Config, board: Board, notifier: Notifier | None = None) -> int:
    """`bgmon serve --metrics HOST:PORT`: the live engine keeping the metrics' board current,
    with nothing on screen, until SIGINT or SIGTERM."""
    monitor = Monitor(config)
    run_live(config, monitor, to_board(monitor, board), board.sweeps, notifier)
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
