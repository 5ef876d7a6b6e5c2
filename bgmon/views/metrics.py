"""Prometheus metrics: the board's current snapshot, read at scrape time (docs/metrics.md).

A custom collector rather than gauges kept up to date: the engine already holds every task's
state, so a scrape renders it, and a task that is gone is simply not rendered (no stale series
to remember to delete). Cardinality: one `bgmon_task_*` series per task the engine still shows,
and tasks leave with `--since` (transcripts) or when their files go.

Counts of proposals and actions are the recovery state store's sums of the journal, so a
proposal made in the TUI or by `bgmon propose` counts the same.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

from prometheus_client import generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from bgmon import __version__
from bgmon.atomic import write_atomic
from bgmon.board import Board
from bgmon.clip import clip
from bgmon.model import Badge
from bgmon.recovery.state import JournalUnreadable, StateStore
from bgmon.views.jsonout import local_host

LABEL_CAP = 200  # a label value longer than this is cut (names and paths are other people's text)
ACTION_KINDS = ("kill", "restart", "signal", "run", "mark")
PROPOSAL_SOURCES = ("claude", "rules")


def _label(value: object) -> str:
    text = "" if value is None else str(value)
    return clip(text, LABEL_CAP)


class JournalCounts:
    """Proposals by source and actions by kind and outcome: running sums the state store keeps
    of the journal (bgmon.recovery.state), so a scrape asks two small questions instead of
    reading the journal, and the totals, those of the whole journal, survive a restart."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._store: StateStore | None = None

    def refresh(self) -> tuple[dict[str, int], dict[tuple[str, str], int]]:
        if not self.path.exists():  # nothing recorded yet (and no database made for that)
            return {}, {}
        if self._store is None:
            self._store = StateStore(self.path)
        try:
            by_source, by_action = self._store.sums("proposals"), self._store.sums("actions")
        except JournalUnreadable:
            return {}, {}  # the same problem is reported where the journal is used
        proposals: Counter[str] = Counter()
        for source, n in by_source.items():
            proposals[source if source in PROPOSAL_SOURCES else "other"] += n
        actions: Counter[tuple[str, str]] = Counter()
        for key, n in by_action.items():
            kind, _, outcome = key.rpartition("/")
            actions[(kind if kind in ACTION_KINDS else "other", outcome)] += n
        return dict(proposals), dict(actions)


class BoardCollector(Collector):
    """Renders a Board (and the journal's counts) as metric families at each scrape."""

    def __init__(
        self,
        board: Board,
        journal: Path | None = None,
        host: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.board = board
        self.journal = JournalCounts(journal) if journal is not None else None
        self.host = host or local_host()
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        started = time.perf_counter()
        now = self.clock()
        tasks = self.board.tasks()
        yield _gauge("bgmon_info", "bgmon's version and the host it runs on (always 1).",
                     ["version", "host"], [((__version__, self.host), 1)])

        by_badge: Counter[tuple[str, str]] = Counter()
        hosts = {self.host}
        health = []
        idle = []
        for s in tasks:
            host = s.host or self.host
            hosts.add(host)
            badge = s.health.badge.value
            by_badge[(host, badge)] += 1
            ident = (_label(s.key), _label(s.id), _label(s.name), _label(s.group), s.source, host)
            health.append((ident + (badge,), 1))
            if s.last_progress is not None:
                idle.append((ident, max(0.0, now - s.last_progress)))
        yield _gauge("bgmon_tasks", "Tasks by health badge, per host.", ["host", "badge"],
                     [((h, b.value), by_badge[(h, b.value)]) for h in sorted(hosts) for b in Badge])
        task_labels = ["key", "id", "name", "group", "source", "host"]
        yield _gauge("bgmon_task_health",
                     "One series per task: its current badge in the `badge` label (value 1).",
                     [*task_labels, "badge"], health)
        yield _gauge("bgmon_task_seconds_since_progress",
                     "Seconds since the task's last progress (its output, CPU use, a progress or "
                     "step change), as its health judges it; a heartbeat alone is not progress.",
                     task_labels, idle)

        warnings = self.board.warnings()
        yield _gauge("bgmon_read_warnings", "Problems bgmon had reading tasks' files, per host.",
                     ["host"], [((h or self.host,), len(w)) for h, w in sorted(warnings.items())])

        if self.board.live:
            transitions, sweeps = self.board.counts()
            yield _counter("bgmon_transitions", "Badge changes seen since bgmon started.",
                           ["from", "to"], sorted(transitions.items()))
            yield _counter("bgmon_sweeps", "Safety sweeps (re-discovery of every task).", [],
                           [((), sweeps.count)])
            yield _counter("bgmon_sweep_seconds", "Wall time spent in safety sweeps.", [],
                           [((), sweeps.total)])
            yield _gauge("bgmon_sweep_duration_seconds", "Wall time of the last safety sweep.",
                         [], [((), sweeps.last)])
        if self.journal is not None:
            proposals, actions = self.journal.refresh()
            yield _counter("bgmon_proposals", "Recovery proposals in the journal, by source.",
                           ["source"], [((s,), proposals.get(s, 0)) for s in PROPOSAL_SOURCES]
                           + [((s,), n) for s, n in proposals.items() if s not in PROPOSAL_SOURCES])
            yield _counter("bgmon_actions", "Recovery actions run, by kind and outcome.",
                           ["kind", "outcome"], sorted(actions.items()))
        if self.board.remotes is not None:
            links = self.board.remotes()
            yield _gauge("bgmon_remote_connected", "1 while the remote host's stream is up.",
                         ["host"], [((name,), int(up)) for name, up, _ in links])
            yield _counter("bgmon_remote_reconnects", "Connections to the remote host lost.",
                           ["host"], [((name,), n) for name, _, n in links])
        yield _gauge("bgmon_scrape_duration_seconds", "Time this scrape took to render.", [],
                     [((), time.perf_counter() - started)])


def _gauge(name: str, doc: str, labels: list[str], samples) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=labels)
    for values, value in samples:
        family.add_metric(list(values), value)
    return family


def _counter(name: str, doc: str, labels: list[str], samples) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc, labels=labels)
    for values, value in samples:
        family.add_metric(list(values), value)
    return family


def registry_for(collector: BoardCollector) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


def exposition(collector: BoardCollector) -> bytes:
    return generate_latest(registry_for(collector))


def write_textfile(path: Path, collector: BoardCollector) -> None:
    """For node_exporter's textfile collector: the whole file or none of it (its temporary name
    does not end in .prom, so the collector never reads a half-written one)."""
    write_atomic(path, exposition(collector))


def parse_address(text: str) -> tuple[str, int]:
    """`HOST:PORT`, `[::1]:PORT` or `:PORT` (127.0.0.1) → (host, port); ValueError says why."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--metrics takes HOST:PORT (e.g. 127.0.0.1:9488), not {text!r}")
    host = host.strip("[]") or "127.0.0.1"
    return host, int(port)


def serve(address: str, collector: BoardCollector):
    """Start the metrics endpoint in a daemon thread; → the server (call `.shutdown()`).
    OSError (port in use, address not here) is the caller's to report."""
    from prometheus_client import start_http_server

    host, port = parse_address(address)
    server, _thread = start_http_server(port, addr=host, registry=registry_for(collector))
    return server
