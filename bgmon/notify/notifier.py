"""The live engine's changes → the policy → the sinks, on a thread of their own, so a slow
webhook or desktop never holds up the engine (or the TUI)."""

from __future__ import annotations

import queue
import sys
import threading
from collections.abc import Callable, Iterable
from typing import Protocol

from bgmon.config import Config, ConfigError, Notify
from bgmon.engine import Change
from bgmon.model import TaskSnapshot
from bgmon.notify.message import alert_for
from bgmon.notify.policy import Batch, Policy, Rules
from bgmon.notify.sinks import CommandSink, DesktopSink, SinkError, TerminalSink, WebhookSink


class Sink(Protocol):
    name: str

    def send(self, batch: Batch) -> None: ...


def make_sinks(notify: Notify, terminal: Callable[[str], None] | None = None) -> list[Sink]:
    """The sinks [notify] turns on. The terminal sink needs a writer to the person's terminal
    (the TUI's driver); without one it is left out. ConfigError when a setting cannot work."""
    sinks: list[Sink] = []
    if notify.command:
        sinks.append(CommandSink(notify.command, notify.timeout))
    if notify.desktop:
        sinks.append(DesktopSink(notify.timeout))
    if notify.terminal != "off" and terminal is not None:
        sinks.append(TerminalSink(notify.terminal, terminal))
    if notify.webhook:
        try:
            sinks.append(WebhookSink(notify.webhook, notify.webhook_format, notify.timeout))
        except ValueError as exc:
            raise ConfigError(f"[notify] webhook (--notify-webhook): {exc}") from None
    return sinks


def notifier_for(
    config: Config, extra: list[Sink] | None = None, terminal: Callable[[str], None] | None = None,
    report: Callable[[str], None] | None = None,
    acknowledged: Callable[[TaskSnapshot], bool] | None = None,
) -> Notifier | None:
    """A Notifier over the sinks [notify] turns on plus `extra`; None when there are none."""
    sinks = [*make_sinks(config.notify, terminal), *(extra or [])]
    if not sinks:
        return None
    kw = {"acknowledged": acknowledged} if acknowledged is not None else {}
    return Notifier(config.notify, sinks, report or _stderr, **kw)


def _stderr(text: str) -> None:
    print(f"bgmon: {text}", file=sys.stderr, flush=True)


class Notifier:
    def __init__(
        self,
        notify: Notify,
        sinks: list[Sink],
        report: Callable[[str], None] = _stderr,
        acknowledged: Callable[[TaskSnapshot], bool] = lambda s: s.ack is not None,
    ) -> None:
        self.policy = Policy(Rules(frozenset(notify.on), notify.hold, notify.coalesce,
                                   notify.min_interval))
        self.sinks = sinks
        self.report = report  # where a failed delivery is said (stderr, or the TUI's toast)
        self.acknowledged = acknowledged
        self.sent = 0  # batches delivered by at least one sink
        self.failures = 0  # deliveries that failed, all sinks counted
        self._started = False
        self._queue: queue.Queue[Batch | None] = queue.Queue()
        self._thread: threading.Thread | None = None

    def on_changes(self, changes: Iterable[Change], now: float) -> None:
        """Every engine pass, changes or not (the hold and the rate limit run on time)."""
        policy = self.policy
        first = not self._started
        self._started = True
        for c in changes:
            snap = c.snapshot
            if c.kind == "removed" or snap is None:
                policy.forget(c.key)
            elif first:
                policy.baseline(c.key, snap.health.badge.value)
            else:
                policy.observe(alert_for(snap), now, self.acknowledged(snap))
        batch = policy.poll(now)
        if batch is not None and self.sinks:
            if self._thread is None:
                self._thread = threading.Thread(target=self._deliver, name="bgmon-notify", daemon=True)
                self._thread.start()
            self._queue.put(batch)

    def close(self, wait: float = 5.0) -> None:
        """Deliver what is queued (within `wait` seconds), then stop the delivery thread."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(wait)
            self._thread = None

    def _deliver(self) -> None:
        while (batch := self._queue.get()) is not None:
            delivered = False
            for sink in self.sinks:
                try:
                    sink.send(batch)
                    delivered = True
                except SinkError as exc:
                    self._failed(f"notification by {sink.name} failed: {exc}")
                except Exception as exc:  # a sink's bug must not end notifications
                    self._failed(f"notification by {sink.name} failed: {type(exc).__name__}: {exc}")
            self.sent += delivered

    def _failed(self, text: str) -> None:
        self.failures += 1
        try:
            self.report(text)
        except Exception:
            pass
