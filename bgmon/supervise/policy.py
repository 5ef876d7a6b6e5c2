"""`bgmon run`'s restart policy: a small pure object the supervisor asks after every exit.

It holds no process and never sleeps: the clock and the random source are injected, so the
backoff schedule and the circuit breaker are tested without waiting.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from bgmon.recovery.breaker import BreakerState, CircuitBreaker, backoff_delay

MODES = ("no", "on-failure", "always")
# The kind a policy sees for an exit with status 0 (only `--restart always` restarts it).
CLEAN_EXIT = "clean_exit"


@dataclass(frozen=True, slots=True)
class GiveUp:
    """No restart; `reason` is written to status.json's `error` after the failure itself."""

    reason: str


@dataclass(frozen=True, slots=True)
class Backoff:
    first: float = 0.1
    factor: float = 2.0
    cap: float = 30.0
    jitter: float = 0.25


class RestartPolicy:
    """decide(kind, retryable, now) → seconds to wait before the restart, or GiveUp(reason).

    - Each failure kind (a catalogue pattern name, `stalled`, `exit`, `signal`) gets at most
      `max_attempts` restarts; the backoff grows per kind.
    - A run that stayed up `reset_after` seconds proves the restarts worked: counters and the
      breaker start afresh at its next failure.
    - The circuit breaker opens after `failures` failures of any kinds within `window` s; the
      next start then waits `cooldown` s and is a trial. `trials` failed trials in a row → give up.
    """

    def __init__(
        self,
        mode: str = "on-failure",
        *,
        backoff: Backoff | None = None,
        max_attempts: int = 3,
        reset_after: float = 60.0,
        breaker: tuple[int, float, float, int] = (5, 60.0, 30.0, 3),
        clock: Callable[[], float] = time.monotonic,
        rng: Callable[[], float] = random.random,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"restart mode must be one of {', '.join(MODES)}, not {mode!r}")
        self.mode = mode
        self.backoff = backoff or Backoff()
        self.max_attempts = max_attempts
        self.reset_after = reset_after
        self._breaker_args = breaker
        self._clock = clock
        self._rng = rng
        self._now = clock()
        self._started_at: float | None = None
        self.reset()

    def reset(self) -> None:
        self._attempts: dict[str, int] = {}
        self._trial_failures = 0
        failures, window, cooldown, trials = self._breaker_args
        self.breaker = CircuitBreaker(failures, window, cooldown, trials, clock=self._clock)

    def started(self, now: float | None = None) -> None:
        """The supervisor started (or restarted) the command."""
        self._tick(now)
        self._started_at = self._now

    def attempts(self, kind: str) -> int:
        return self._attempts.get(kind, 0)

    def decide(
        self, kind: str, retryable: bool, now: float | None = None, limit: int | None = None
    ) -> float | GiveUp:
        """`now` (a reading of the policy's clock) saves a second reading; the breaker reads the
        clock itself. `limit` lowers max_attempts for this kind (a `restart_once` pattern)."""
        self._tick(now)
        if self._started_at is not None and self._now - self._started_at >= self.reset_after:
            self.reset()
        self._started_at = None
        if kind == CLEAN_EXIT:
            return self._clean_exit()
        if self.mode == "no":
            return GiveUp("not restarted (--restart no)")
        if not retryable:
            return GiveUp(f"not restarted: {kind} is not retryable, a restart would fail the same way")
        most = self.max_attempts if limit is None else min(limit, self.max_attempts)
        n = self._attempts[kind] = self._attempts.get(kind, 0) + 1
        if n > most:
            return GiveUp(f"gave up: {_times(most)} after {kind} did not help")
        return self._breaker_delay(n)

    def _clean_exit(self) -> float | GiveUp:
        if self.mode != "always":
            return GiveUp("exited cleanly")
        # `always` keeps it running for ever; backoff only stops a tight loop of quick exits.
        n = self._attempts[CLEAN_EXIT] = self._attempts.get(CLEAN_EXIT, 0) + 1
        return self._delay(n)

    def _breaker_delay(self, attempt: int) -> float | GiveUp:
        trial = self.breaker.state is not BreakerState.CLOSED
        self.breaker.record_failure()
        if trial:
            self._trial_failures += 1
            if self._trial_failures >= self.breaker.trials:
                b = self.breaker
                return GiveUp(
                    f"gave up: circuit breaker opened ({b.failures} failures within "
                    f"{b.window:g}s) and {b.trials} trial starts failed"
                )
        return max(self._delay(attempt), self.breaker.retry_in())

    def _delay(self, attempt: int) -> float:
        b = self.backoff
        return backoff_delay(attempt, b.first, b.factor, b.cap, b.jitter, self._rng)

    def _tick(self, now: float | None) -> None:
        self._now = self._clock() if now is None else now


def _times(n: int) -> str:
    return "1 restart" if n == 1 else f"{n} restarts"
