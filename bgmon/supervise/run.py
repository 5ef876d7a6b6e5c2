"""The supervision loop of `bgmon run`: start, watch (output, stall, signals), decide, restart."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from bgmon.cli import EXIT_FAILED, EXIT_OK, EXIT_TIMEOUT, exit_for_signal
from bgmon.model import clip
from bgmon.recovery.patterns import Catalogue, Pattern
from bgmon.supervise.journal import RestartJournal
from bgmon.supervise.output import EventLog, Segment, classification, line_event, pump
from bgmon.supervise.policy import CLEAN_EXIT, GiveUp, RestartPolicy
from bgmon.supervise.proc import (
    Echo,
    TreeCpu,
    describe_exit,
    exit_fields,
    exit_status,
    reap_group,
    signal_group,
    signame,
    spawn,
    start_error,
    stop_group,
)
from bgmon.supervise.status import Heartbeat, StatusFile, fsync_dir, iso_ms

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
TRANSIENT_PROGRESS_EVERY = 1.0  # s between progress events taken from `\r` progress bars


@dataclass
class RunConfig:
    argv: list[str]
    cwd: str
    stall: float | None = None  # seconds; None: no stall detection
    quiet: bool = False
    kill_grace: float = 5.0
    progress: list = field(default_factory=list)  # compiled progress regexes


@dataclass
class Run:
    """One start of the command."""

    proc: subprocess.Popen
    last_output: float  # monotonic time of its last output (or of its start)
    pattern: Pattern | None = None  # last failure pattern its output matched
    pattern_line: str = ""  # the output line it matched
    readers: list[threading.Thread] = field(default_factory=list)
    last_transient: float = 0.0


@dataclass(frozen=True)
class Exit:
    """Supervision is over: exit with this status."""

    code: int


@dataclass(frozen=True)
class Outcome:
    code: int  # Popen returncode: negative for a signal
    stalled: bool = False


class Supervisor:
    def __init__(self, cfg: RunConfig, status: StatusFile, log: EventLog,
                 catalogue: Catalogue, policy: RestartPolicy,
                 journal: RestartJournal | None = None) -> None:
        self.cfg = cfg
        self.status = status
        self.log = log
        self.catalogue = catalogue
        self.policy = policy
        self.journal = journal  # the recovery journal: every automatic restart goes there too
        self.run: Run | None = None
        self.stop_signal: int | None = None
        self._forwarded_at: float | None = None
        self._restarts = 0

    # ---- entry point -------------------------------------------------------------------

    def supervise(self) -> int:
        heartbeat = Heartbeat(self.status.heartbeat, self._beat)
        previous = self._install_signals()
        heartbeat.start()
        try:
            return self._loop()
        except OSError as exc:
            # The task directory went away or the disk is full: supervision cannot go on
            # honestly, so stop the command rather than leave it running unrecorded.
            self._crash(exc)
            print(f"bgmon run: stopped: cannot write the task's files: {exc}", file=sys.stderr)
            return EXIT_FAILED
        except BaseException as exc:
            self._crash(exc)
            raise
        finally:
            heartbeat.stop()
            _restore_signals(previous)
            self.log.close()
            fsync_dir(self.status.path.parent)

    def _loop(self) -> int:
        while self.stop_signal is None:
            if not self._start():
                return EXIT_FAILED
            outcome = self._watch()
            delay = self._after(outcome)
            if isinstance(delay, Exit):
                return delay.code
            if not self._wait_restart(delay):
                return exit_for_signal(self.stop_signal or signal.SIGTERM)
            self._restarts += 1
        self._final("cancelled", f"{signame(self.stop_signal)} sent to bgmon run")
        return exit_for_signal(self.stop_signal or signal.SIGTERM)

    # ---- start ---------------------------------------------------------------------------

    def _start(self) -> bool:
        try:
            proc = spawn(self.cfg.argv, self.cfg.cwd)
        except OSError as exc:
            message = start_error(self.cfg.argv, exc)
            if self.journal is not None:
                self.journal.not_started(message)
            self._final("failed", message, say=False, exitCode=None)
            # Said even with --quiet: the user must learn why nothing ran.
            print(f"bgmon run: {message}", file=sys.stderr, flush=True)
            return False
        now = time.monotonic()
        self.run = Run(proc, now)
        if self.journal is not None:
            self.journal.started(proc.pid)  # records only a restart it decided on
        if self.stop_signal is not None:
            # The stop came while it was being started: it must not run on unsupervised.
            signal_group(proc.pid, signal.SIGTERM)
            self._forwarded_at = now
        self.policy.started()
        self.status.update(status="running", pid=proc.pid, step=None, restartAt=None,
                           startedAt=iso_ms(time.time()), restarts=self._restarts)
        self._note(f"started {self._cmd()} (pid {proc.pid})")
        for stream in ("stdout", "stderr"):
            t = threading.Thread(target=self._read, args=(self.run, stream),
                                 name=f"bgmon-{stream}", daemon=True)
            t.start()
            self.run.readers.append(t)
        return True

    def _read(self, run: Run, stream: str) -> None:
        """Reader thread: one per stream, so a child that fills stderr while we wait on stdout
        never blocks."""
        pipe = getattr(run.proc, stream)
        echo = None if self.cfg.quiet else Echo.of(stream)

        def touched() -> None:
            run.last_output = time.monotonic()

        def segment(seg: Segment) -> None:
            try:
                self._line(run, seg, stream)
            except OSError:
                # A full disk loses this event; the pipe must still be drained or the
                # command would block on its next write.
                pass

        def gap(dropped: int) -> None:
            with contextlib.suppress(OSError):
                self.log.write("message", stream=stream, skipped=dropped,
                               text=f"[bgmon run: {dropped} bytes of {stream} not logged: the "
                                    "command wrote faster than they could be logged; the "
                                    "terminal got them all]")

        try:
            pump(pipe.fileno(), echo, segment, touched, gap)
        finally:
            pipe.close()

    def _line(self, run: Run, seg: Segment, stream: str) -> None:
        event, pattern, progress = line_event(seg, stream, self.catalogue, self.cfg.progress)
        if seg.transient:
            # A progress bar redraw: only its progress counts, and at most once a second.
            now = time.monotonic()
            if progress is None or now - run.last_transient < TRANSIENT_PROGRESS_EVERY:
                return
            run.last_transient = now
        self.log.write(event.pop("type"), **event)
        if pattern is not None:
            run.pattern, run.pattern_line = pattern, seg.text
            self.status.update_lazy(pattern=_pattern_field(pattern))
        if progress is not None:
            self.status.update_lazy(progress={"done": progress[0], "total": progress[1]})

    # ---- watch ---------------------------------------------------------------------------

    def _watch(self) -> Outcome:
        run = self.run
        assert run is not None
        cpu = TreeCpu(run.proc.pid)
        stall = self.cfg.stall
        tick = 0.2 if stall is None else max(0.05, min(0.25, stall / 4))
        last_cpu = time.monotonic()
        while True:
            try:
                run.proc.wait(timeout=tick)
                break
            except subprocess.TimeoutExpired:
                pass
            self.status.flush()
            self._escalate_stop()
            if stall is None or self.stop_signal is not None:
                continue
            now = time.monotonic()
            if cpu.changed():
                last_cpu = now
            if now - max(run.last_output, last_cpu) >= stall:
                return self._stalled(run)
        reap_group(run.proc.pid, self.cfg.kill_grace)
        self._join_readers(run)
        return Outcome(run.proc.returncode)

    def _stalled(self, run: Run) -> Outcome:
        code = stop_group(run.proc, self.cfg.kill_grace)
        self._join_readers(run)
        return Outcome(code, stalled=True)

    def _join_readers(self, run: Run) -> None:
        # The group is gone, so the pipes are at EOF; the timeout only guards against a
        # descendant that left the group (setsid) but kept our pipe open.
        for t in run.readers:
            t.join(timeout=2.0)

    def _escalate_stop(self) -> None:
        """A forwarded stop signal the child ignores for kill_grace s becomes SIGKILL."""
        run = self.run
        if self._forwarded_at is None or run is None:
            return
        if time.monotonic() - self._forwarded_at >= self.cfg.kill_grace:
            signal_group(run.proc.pid, signal.SIGKILL)
            self._forwarded_at = None

    # ---- decide --------------------------------------------------------------------------

    def _after(self, outcome: Outcome) -> float | Exit:
        """The delay before the restart, or the end of supervision."""
        run = self.run
        assert run is not None
        fields: dict[str, Any] = {"pid": None, **exit_fields(outcome.code)}
        if self.stop_signal is not None:
            self._final("cancelled", f"{signame(self.stop_signal)} sent to bgmon run, "
                        "forwarded to the command", **fields)
            return Exit(exit_status(outcome.code))
        kind, pattern, text = self._failure(run, outcome)
        retryable = pattern.retryable if pattern is not None else True
        if pattern is not None:
            fields["pattern"] = _pattern_field(pattern)
        if outcome.stalled:
            fields["status"] = "timeout"  # for the moment; a restart makes it running again
        self.status.update(**fields)
        if kind != CLEAN_EXIT:
            self.log.write("error", text=text, source="bgmon",
                           **_classified(pattern), **exit_fields(outcome.code))
        decision = self.policy.decide(kind, retryable, limit=_limit(pattern))
        if isinstance(decision, GiveUp):
            return Exit(self._give_up(outcome, kind, text, decision))
        self._announce_restart(kind, pattern, decision)
        return decision

    def _failure(self, run: Run, outcome: Outcome) -> tuple[str, Pattern | None, str]:
        """(failure kind, its pattern, a one-line description) of how the run ended."""
        if outcome.stalled:
            stall = self.cfg.stall or 0
            text = f"stalled: no output and no CPU use for {stall:g}s; stopped"
            return "stalled", self.catalogue.get("stalled"), text
        text = describe_exit(outcome.code)
        if outcome.code == 0:
            return CLEAN_EXIT, None, text
        # The output's last failure line names the cause best; else the exit itself may (137).
        if run.pattern is not None:
            # Quote the line: the TUI shows it, and the recovery rules match error text.
            line = clip(run.pattern_line.strip(), 160)
            return run.pattern.name, run.pattern, f'{text} after "{line}" ({run.pattern.name})'
        pattern = self.catalogue.match_text(text)
        if pattern is not None:
            return pattern.name, pattern, f"{text} ({pattern.name})"
        return ("signal" if outcome.code < 0 else "exit"), None, text

    def _give_up(self, outcome: Outcome, kind: str, text: str, decision: GiveUp) -> int:
        if kind == CLEAN_EXIT:
            self._final("completed", None)
            if self.journal is not None and self._restarts:
                self.journal.ended("completed", text)  # the restarts worked in the end
            return EXIT_OK
        status = "timeout" if outcome.stalled else "failed"
        self._final(status, f"{text}; {decision.reason}")
        if self.journal is not None:
            # The end of the story for `bgmon report` and `history`, also when no monitor ran.
            self.journal.ended("failed", f"{text}; {decision.reason}", kind)
        return EXIT_TIMEOUT if outcome.stalled else exit_status(outcome.code)

    def _announce_restart(self, kind: str, pattern: Pattern | None, delay: float) -> None:
        attempt = self.policy.attempts(kind)
        why = "clean exit" if kind == CLEAN_EXIT else kind
        most = _limit(pattern) or self.policy.max_attempts
        of = "" if kind == CLEAN_EXIT else f" of {min(most, self.policy.max_attempts)}"
        breaker = self.policy.breaker
        wait = f"restarting in {delay:.2f}s ({why}, restart {attempt}{of})"
        if not breaker.allow():
            wait = f"{breaker.describe()}; {wait}"
        # A journal-ready record of an automatic action: what, why, when, by which rule.
        self.log.write("message", text=wait, source="bgmon", action="restart", automatic=True,
                       reason=why, attempt=attempt, delay=round(delay, 3),
                       **({"pattern": pattern.name, "strategy": pattern.strategy} if pattern else {}))
        if self.journal is not None:
            self.journal.decided(text=wait, reason=why, attempt=attempt, delay=delay,
                                 pattern=pattern.name if pattern else None,
                                 strategy=pattern.strategy if pattern else None)
        self._say(wait)
        self.status.update(status="running", step=wait,
                           restartAt=iso_ms(time.time() + delay))

    def _wait_restart(self, delay: float) -> bool:
        """Sleep the backoff; False when a stop signal came meanwhile. Polls a plain attribute:
        the signal handler must take no lock (an Event's lock may be held by this very thread
        when the signal lands, and the handler would wait for ever)."""
        deadline = time.monotonic() + delay
        while self.stop_signal is None and (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, 0.05))
        if self.stop_signal is not None:
            if self.journal is not None:
                self.journal.not_started(f"cancelled: {signame(self.stop_signal)} sent to "
                                         "bgmon run while it waited")
            self._final("cancelled", f"{signame(self.stop_signal)} sent to bgmon run "
                        "while it waited to restart the command")
            return False
        return True

    # ---- status, events, signals ---------------------------------------------------------

    def _final(self, status: str, error: str | None, say: bool = True, **fields: object) -> None:
        self.status.update(status=status, error=error, step=None, restartAt=None,
                           restarts=self._restarts, endedAt=iso_ms(time.time()), **fields)
        self._note(status + (f" ({error})" if error else ""))
        if say and error and status != "cancelled":
            self._say(f"{status}: {error}")

    def _crash(self, exc: BaseException) -> None:
        """Whatever went wrong inside bgmon run: the child must not outlive us unsupervised and
        status.json must say why supervision ended."""
        run = self.run
        if run is not None and run.proc.returncode is None:
            stop_group(run.proc, self.cfg.kill_grace)
        try:
            self._final("failed", f"bgmon run stopped: {exc!r}", say=False)
        except OSError:
            pass

    def _beat(self) -> None:
        self.status.update()
        self.log.write("heartbeat", source="bgmon")

    def _note(self, text: str) -> None:
        self.log.write("message", text=f"bgmon run: {text}", source="bgmon")

    def _say(self, text: str) -> None:
        if not self.cfg.quiet:
            print(f"bgmon run: {text}", file=sys.stderr, flush=True)

    def _cmd(self) -> str:
        return " ".join(self.cfg.argv)[:200]

    def _install_signals(self) -> dict[int, Any]:
        previous: dict[int, Any] = {}
        for sig in STOP_SIGNALS:
            old = signal.getsignal(sig)
            if sig == signal.SIGHUP and old == signal.SIG_IGN:
                continue  # started under nohup: keep running when the terminal goes away
            previous[sig] = old
            signal.signal(sig, self._on_signal)
        return previous

    def _on_signal(self, signum: int, _frame: object) -> None:
        first = self.stop_signal is None
        if first:
            self.stop_signal = signum
        run = self.run
        if run is None or run.proc.returncode is not None:
            return
        # SIGHUP means our terminal went away; the child has none to lose, so it gets SIGTERM.
        # A second signal means "now": SIGKILL.
        forward = signal.SIGKILL if not first else (
            signal.SIGTERM if signum == signal.SIGHUP else signum)
        signal_group(run.proc.pid, forward)
        self._forwarded_at = time.monotonic()


def _restore_signals(previous: dict[int, Any]) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)


def _limit(p: Pattern | None) -> int | None:
    """The catalogue's strategy can cap the restarts: `restart_once` (e.g. out of memory)."""
    return 1 if p is not None and p.strategy == "restart_once" else None


def _pattern_field(p: Pattern) -> dict[str, object]:
    return {"name": p.name, **classification(p)}


def _classified(p: Pattern | None) -> dict[str, object]:
    return {"pattern": p.name, "class": classification(p)} if p is not None else {}
