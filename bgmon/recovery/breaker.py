"""Circuit breaker and backoff, shared by the Claude client and `bgmon run`'s restart policy.

Both take an injectable clock/random source so tests drive them without sleeping.
"""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Callable
from enum import StrEnum


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


class CircuitBreaker:
    """Opens after `failures` failures within `window` s; after `cooldown` s lets calls through as
    trials (half-open); `trials` successes in a row close it, any failure re-opens it."""

    def __init__(
        self,
        failures: int = 5,
        window: float = 60.0,
        cooldown: float = 30.0,
        trials: int = 3,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.failures = failures
        self.window = window
        self.cooldown = cooldown
        self.trials = trials
        self._clock = clock
        self._recent: deque[float] = deque()
        self._opened_at: float | None = None
        self._trial_successes = 0

    @property
    def state(self) -> BreakerState:
        if self._opened_at is None:
            return BreakerState.CLOSED
        if self._clock() - self._opened_at >= self.cooldown:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    def allow(self) -> bool:
        return self.state is not BreakerState.OPEN

    def retry_in(self) -> float:
        """Seconds until an open breaker lets a trial through (0 when it already would)."""
        if self._opened_at is None:
            return 0.0
        return max(0.0, self.cooldown - (self._clock() - self._opened_at))

    def record_success(self) -> None:
        if self._opened_at is None:
            return
        self._trial_successes += 1
        if self._trial_successes >= self.trials:
            self._opened_at = None
            self._trial_successes = 0
            self._recent.clear()

    def record_failure(self) -> None:
        now = self._clock()
        if self._opened_at is not None:
            # A failed trial (or a failure while open) starts the cooldown again.
            self._opened_at = now
            self._trial_successes = 0
            return
        self._recent.append(now)
        while self._recent and now - self._recent[0] > self.window:
            self._recent.popleft()
        if len(self._recent) >= self.failures:
            self._opened_at = now
            self._trial_successes = 0

    def describe(self) -> str:
        state = self.state
        if state is BreakerState.OPEN:
            return (
                f"circuit breaker open ({self.failures} failures within {self.window:g}s); "
                f"next trial in {self.retry_in():.0f}s"
            )
        if state is BreakerState.HALF_OPEN:
            return f"circuit breaker half-open ({self._trial_successes}/{self.trials} good trials)"
        return "circuit breaker closed"


def backoff_delay(
    attempt: int,
    first: float = 0.1,
    factor: float = 2.0,
    cap: float = 30.0,
    jitter: float = 0.25,
    rng: Callable[[], float] = random.random,
) -> float:
    """Delay before retry number `attempt` (1-based): first·factor^(attempt-1), capped, ±jitter."""
    base = min(cap, first * factor ** max(0, attempt - 1))
    spread = base * jitter
    return max(0.0, base - spread + 2 * spread * rng())
