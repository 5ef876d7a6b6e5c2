"""What to announce and when: hysteresis, coalescing and a rate limit, on a clock passed in.

Pure: no I/O, no clock of its own. The notifier feeds it the engine's changes (`observe`) and
asks once a pass what is due (`poll`); tests drive it with a hand-moved clock.

- **Hysteresis**: a new badge must hold for `hold` seconds before it counts. A task that flaps
  back to the badge the person last knew within that time says nothing.
- **Once per transition**: the badge a person was last told of (or first saw) is the reference;
  a badge that holds becomes the new reference whether or not it notifies.
- **Coalescing**: changes confirmed within `coalesce` seconds of the first go out as one batch.
- **Rate limit**: at most one batch per `min_interval`; what is confirmed meanwhile waits for
  the next batch (nothing is dropped, except news that went stale: a task whose badge changed
  again before its batch went out, or that was acknowledged).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from bgmon.model import Badge


@dataclass(frozen=True, slots=True)
class Alert:
    """One confirmed badge change, as every sink shows it. Text fields are already sanitised."""

    key: str
    id: str
    name: str
    group: str
    path: str
    old: str | None  # the badge the person last knew; None for a task that appeared with it
    new: str
    reason: str  # the first reason behind the new badge
    rule: str | None
    since: float  # when the new badge began (epoch seconds)

    @property
    def severity(self) -> int:
        try:
            return Badge(self.new).severity
        except ValueError:
            return 0


@dataclass(frozen=True, slots=True)
class Batch:
    alerts: tuple[Alert, ...]  # worst first
    at: float


@dataclass(frozen=True, slots=True)
class Rules:
    on: frozenset[str]  # badges whose arrival is announced
    hold: float
    coalesce: float
    min_interval: float


class Policy:
    def __init__(self, rules: Rules) -> None:
        self.rules = rules
        self._known: dict[str, str] = {}  # key → the badge the person was told of, or first saw
        self._pending: dict[str, Alert] = {}  # key → a new badge waiting out `hold`
        self._ready: dict[str, Alert] = {}  # confirmed, waiting for coalescing / the rate limit
        self._ready_since: float | None = None
        self._last_sent: float | None = None

    def baseline(self, key: str, badge: str) -> None:
        """What was there when watching began: known, never announced."""
        self._known[key] = badge
        self._pending.pop(key, None)
        self._ready.pop(key, None)

    def forget(self, key: str) -> None:
        self._known.pop(key, None)
        self._pending.pop(key, None)
        self._ready.pop(key, None)

    def observe(self, alert: Alert, now: float, acknowledged: bool = False) -> None:
        """The task's latest state (as an Alert whose `new` is its badge now)."""
        key, badge = alert.key, alert.new
        ready = self._ready.get(key)
        if ready is not None:
            if ready.new == badge and not acknowledged:
                self._ready[key] = replace(ready, reason=alert.reason, rule=alert.rule, name=alert.name)
                return
            del self._ready[key]  # stale news: it changed again, or a person already knows
        if acknowledged:
            self._pending.pop(key, None)
            self._known[key] = badge
            return
        known = self._known.get(key)
        if badge == known:
            self._pending.pop(key, None)  # back where it was: a flap, nothing to say
            return
        pending = self._pending.get(key)
        since = pending.since if pending is not None and pending.new == badge else now
        self._pending[key] = replace(alert, old=known, since=since)

    def poll(self, now: float) -> Batch | None:
        """Confirm what has held long enough; return a batch when one is due, else None."""
        rules = self.rules
        for key, alert in list(self._pending.items()):
            if now - alert.since < rules.hold:
                continue
            del self._pending[key]
            self._known[key] = alert.new
            if alert.new in rules.on:
                if not self._ready:
                    self._ready_since = now
                self._ready[key] = alert
        if not self._ready or self._ready_since is None:
            return None
        if now < self._ready_since + rules.coalesce:
            return None
        if self._last_sent is not None and now < self._last_sent + rules.min_interval:
            return None
        alerts = sorted(self._ready.values(), key=lambda a: (-a.severity, a.name, a.key))
        self._ready.clear()
        self._ready_since = None
        self._last_sent = now
        return Batch(tuple(alerts), now)
