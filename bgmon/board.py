"""The board: every task's current snapshot, kept from the changes engines report.

Engines (the local one, and one per remote host) call `apply` from their own threads; readers
that live on other threads (the metrics endpoint, a scrape at any moment) call `tasks()` and get
a consistent copy. Nothing is recomputed here: the engines judge, the board only remembers.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from bgmon.engine import Change
from bgmon.model import TaskSnapshot


@dataclass
class SweepStats:
    """The live engine's own cost: how many safety sweeps, how long the last took (seconds of
    wall time) and their total. Written by the engine's worker thread, read at scrape time."""

    count: int = 0
    total: float = 0.0
    last: float = 0.0

    def add(self, seconds: float) -> None:
        self.count += 1
        self.total += seconds
        self.last = seconds


class Board:
    def __init__(self, live: bool = True) -> None:
        self.live = live  # False for one look (--once): no transitions or sweeps to count
        self._lock = threading.Lock()
        self._tasks: dict[str, TaskSnapshot] = {}
        self._warnings: dict[str, list[str]] = {}  # host ("" = this one) → reading warnings
        self.transitions: Counter[tuple[str, str]] = Counter()  # (from, to) badge words
        self.sweeps = SweepStats()
        # (name, connected, reconnects) of each remote host, when there are any (remote.Fleet)
        self.remotes: Callable[[], list[tuple[str, bool, int]]] | None = None

    def apply(self, changes: Iterable[Change]) -> None:
        with self._lock:
            for c in changes:
                if c.kind == "removed":
                    self._tasks.pop(c.key, None)
                    continue
                if c.snapshot is None:
                    continue
                self._tasks[c.key] = c.snapshot
                if c.kind == "health" and c.previous is not None:
                    self.transitions[(c.previous.badge.value, c.snapshot.health.badge.value)] += 1

    def load(self, snaps: Iterable[TaskSnapshot], warnings: list[str], host: str = "") -> None:
        """Every task of one host at once (a first look), replacing what the board had."""
        with self._lock:
            for key in [k for k, s in self._tasks.items() if (s.host or "") == host]:
                del self._tasks[key]
            self._tasks.update((s.key, s) for s in snaps)
            self._warnings[host] = list(warnings)

    def set_warnings(self, warnings: list[str], host: str = "") -> None:
        with self._lock:
            self._warnings[host] = list(warnings)

    def tasks(self) -> list[TaskSnapshot]:
        with self._lock:
            return list(self._tasks.values())

    def warnings(self) -> dict[str, list[str]]:
        with self._lock:
            return {h: list(w) for h, w in self._warnings.items()}

    def counts(self) -> tuple[dict[tuple[str, str], int], SweepStats]:
        with self._lock:
            return dict(self.transitions), SweepStats(self.sweeps.count, self.sweeps.total,
                                                      self.sweeps.last)
