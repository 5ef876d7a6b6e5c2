"""Every remote host at once: one `RemoteLink` (one engine, over there) per host."""

from __future__ import annotations

import time
from collections.abc import Callable

from bgmon.board import Board
from bgmon.engine import Change
from bgmon.model import TaskSnapshot
from bgmon.remote.link import RemoteLink
from bgmon.remote.spec import RemoteSpec

ONCE_TIMEOUT = 60.0  # --once: a host that has not sent its full picture by then shows unknown


class Fleet:
    """The links to every remote host. Their changes go to `emit` (from the links' threads)
    and, when given, into `board` with each host's warnings (the metrics read it)."""

    def __init__(self, specs: tuple[RemoteSpec, ...], emit: Callable[[list[Change]], None],
                 *, board: Board | None = None, once: bool = False) -> None:
        self.emit = emit
        self.board = board
        self.links = [RemoteLink(spec, self._emitter(spec.name), once=once) for spec in specs]
        if board is not None:
            board.remotes = self.stats

    def _emitter(self, name: str) -> Callable[[list[Change]], None]:
        def emit(changes: list[Change]) -> None:
            if self.board is not None:
                link = next(x for x in self.links if x.spec.name == name)
                self.board.apply(changes)
                self.board.set_warnings(link.all_warnings(), host=name)
            self.emit(changes)

        return emit

    def start(self) -> None:
        for link in self.links:
            link.start()

    def stop(self) -> None:
        for link in self.links:
            link.stop()

    def stats(self) -> list[tuple[str, bool, int]]:
        """(name, connected, reconnects) per host, for the metrics."""
        return [(link.spec.name, link.connected, link.reconnects) for link in self.links]

    def spec_for(self, host: str) -> RemoteSpec | None:
        return next((link.spec for link in self.links if link.spec.name == host), None)

    def look(self, timeout: float = ONCE_TIMEOUT) -> tuple[list[TaskSnapshot], list[str]]:
        """--once: every host's full picture (started with `once=True`), or its unknown row."""
        deadline = time.monotonic() + timeout
        for link in self.links:
            if not link.synced.wait(max(0.0, deadline - time.monotonic())):
                link.stop()
                link.fail(f"no full picture within {timeout:.0f}s")
        self.stop()
        snaps = [s for link in self.links for s in link.all_tasks()]
        return snaps, self.warnings()

    def warnings(self) -> list[str]:
        """Every host's warnings and link problems, each labelled with its host: what the views
        list beside this machine's reading warnings."""
        return [w for said in self.warnings_by_host().values() for w in said]

    def warnings_by_host(self) -> dict[str, list[str]]:
        """The same per host (the metrics count them per host)."""
        return {link.spec.name: link.all_warnings() for link in self.links}


def noop(_: list[Change]) -> None:
    """An emit for one look: the tasks are read from the links at the end."""

