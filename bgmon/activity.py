"""Folding events into what health needs to know: a bounded summary of a task's recent work.

Memory per task is bounded whatever the log size: a window of recent events and results, the
current streak counters, and the calls still waiting for their result.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import orjson

from bgmon.model import EXITED, Event, EventKind, Progress

# The events a snapshot shows (the detail panel, recovery's context). Each one kept is an Event
# per task: a longer window costs ~3 KB a task and nothing reads past this one.
RECENT_EVENTS = 20
# Tools whose whole point is to be called again with the same input (polling a background
# command's output): repeating them is waiting, not a loop.
POLLING_TOOLS = frozenset({"TaskOutput", "BashOutput", "write_stdin", "AgentOutputTool"})
RESULT_WINDOW = 10
ERROR_WINDOW = 64  # error moments kept for the rate ("14 errors in the last 60s")
# What the task itself did: output, calls, results, steps. Heartbeats, session facts and the
# lines `bgmon run` writes about the command (source "bgmon") prove life, not progress.
PROGRESS_KINDS = frozenset({
    EventKind.TOOL_CALL, EventKind.TOOL_RESULT, EventKind.PROGRESS, EventKind.STEP,
    EventKind.MESSAGE, EventKind.ERROR, EventKind.TURN_START, EventKind.TURN_END,
    EventKind.TURN_ABORTED, EventKind.API_ERROR, EventKind.BG_START, EventKind.BG_END,
    EventKind.TASK_ITEM,
})
# Of those, what shows the task is past a waiting prompt (an error does not answer one).
_ANSWERS = PROGRESS_KINDS - {EventKind.ERROR, EventKind.API_ERROR}
SUPERVISOR = "bgmon"
# Turn ends the harness writes after a turn's last line (Claude's turn_duration and stop hook
# summary): they close whatever turn is open, and a turn that ended on an API error still
# ended on it.
HARNESS_ENDS = frozenset({"turn_duration", "stop_hook_summary"})
_PENDING_CAP = 256
_BIG = 1 << 53  # a larger count is junk
_META = EventKind.META
_TOOL_RESULT = EventKind.TOOL_RESULT
_HEARTBEAT = EventKind.HEARTBEAT


@dataclass(frozen=True, slots=True)
class ActivitySummary:
    """An immutable copy of an `Activity` for the pure health rules."""

    fail_streak: int = 0
    results: tuple[bool, ...] = ()  # last results, oldest first (True = ok)
    last_failure: Event | None = None
    loop_count: int = 0
    loop_call: Event | None = None
    pending: tuple[Event, ...] = ()  # calls with no result yet, oldest first
    turn: str | None = None  # running | ended | aborted | api_error
    turn_at: float | None = None
    turn_text: str | None = None
    last_event_at: float | None = None
    background: int = 0  # background commands started and not finished
    last_progress_at: float | None = None  # newest event of the task's own work (PROGRESS_KINDS)
    untimed_progress: bool = False  # the newest such event had no time: its file's mtime stands in
    error_streak: int = 0  # error events since the last success
    error_times: tuple[float, ...] = ()  # moments of the streak's errors, oldest first (bounded)
    last_error: Event | None = None
    waiting: Event | None = None  # a WAITING event not yet answered


class Activity:
    # One per task, 10,000 at once: slots, and small containers (a plain dict is a third of an
    # OrderedDict or an empty set, a list of 20 a third of a deque, which always holds a block
    # of 64) keep it near 1 KB beside its events (bench/scale.py's RSS).
    __slots__ = (
        "recent", "results", "fail_streak", "last_failure", "_last_call", "loop_count",
        "loop_call", "pending", "settled", "background", "board", "progress", "step", "turn",
        "turn_at", "turn_text", "cwd", "session", "started_at", "subagent", "parent_session",
        "last_event_at", "last_progress_at", "untimed_progress", "error_streak", "error_times",
        "last_error", "waiting", "signal_turn", "events_seen",
    )

    def __init__(self) -> None:
        self.recent: list[Event] = []  # the last RECENT_EVENTS, oldest first (see _trim)
        self.results: list[bool] = []  # the last RESULT_WINDOW, oldest first
        self.fail_streak = 0
        self.last_failure: Event | None = None
        self._last_call: tuple[str | None, str | None] | None = None
        self.loop_count = 0
        self.loop_call: Event | None = None
        self.pending: dict[str, Event] = {}  # oldest first (insertion order)
        # Calls already given a verdict: a second form of the same result (Codex writes a
        # command's end both as its output and as an `item_completed` event) counts once.
        self.settled: dict[str, None] = {}
        self.background: dict[str, None] = {}  # call ids (a set is 216 bytes empty)
        # Claude 2.1.16+ task board (TaskCreate/TaskUpdate): item id → [status, title].
        self.board: dict[str, list] = {}
        self.progress: Progress | None = None
        self.step: str | None = None
        self.turn: str | None = None
        self.turn_at: float | None = None
        self.turn_text: str | None = None
        self.cwd: str | None = None
        # The session as its first META line says (a forked sub-agent's rollout goes on with its
        # parent's lines, META included: those are not its own facts).
        self.session: str | None = None
        self.started_at: float | None = None
        self.subagent: str | None = None  # a sub-agent's kind ("review"); None for a session
        self.parent_session: str | None = None  # the parent's session id, when it is named
        self.last_event_at: float | None = None
        self.last_progress_at: float | None = None
        self.untimed_progress = False
        self.error_streak = 0
        self.error_times: list[float] = []  # the last ERROR_WINDOW, oldest first
        self.last_error: Event | None = None
        self.waiting: Event | None = None
        # The agent's own word on its turn (hook events, its state file): (state, time, text).
        self.signal_turn: tuple[str, float | None, str | None] | None = None
        self.events_seen = 0

    def apply(self, ev: Event) -> None:
        self.extend((ev,))

    def extend(self, events: Iterable[Event]) -> None:
        """Fold events in order. The engine passes each line's events at once: this runs for
        every line of a transcript, and a call per event costs more than the loop."""
        # Counters and the newest time are kept in locals and stored once (no handler reads
        # them); `finally` stores them even if a handler fails half-way.
        recent = self.recent
        seen = self.events_seen
        last = self.last_event_at
        try:
            for ev in events:
                seen += 1
                ts = ev.ts
                if ts is not None and (last is None or ts > last):
                    last = ts
                kind = ev.kind
                if kind is _META:
                    # Session facts, on nearly every transcript line: the shortest path. They
                    # prove life (above) but are neither progress nor part of the window.
                    if ev.cwd:
                        self.cwd = ev.cwd
                    if self.session is None and ev.text:
                        self._session(ev)
                    continue
                if kind is _TOOL_RESULT:
                    ev = self._name_result(ev)
                if kind in PROGRESS_KINDS and ev.source != SUPERVISOR:
                    if ts is not None and self.waiting is None:
                        # _progressed's usual case, inline: a timed event, nobody asked.
                        if self.last_progress_at is None or ts >= self.last_progress_at:
                            self.last_progress_at = ts
                            self.untimed_progress = False
                    else:
                        self._progressed(ev)
                handler = _HANDLERS.get(kind)
                if handler is not None:
                    handler(self, ev)
                # Heartbeats prove life (last_event_at) but would crowd real events out of the
                # window.
                if kind is not _HEARTBEAT:
                    recent.append(ev)
        finally:
            self.events_seen = seen
            self.last_event_at = last
            if len(recent) > RECENT_EVENTS:
                _trim(recent)

    def _name_result(self, ev: Event) -> Event:
        """Results rarely name their tool; the call they answer does. Resolve it once here."""
        if not ev.call_id:
            return ev
        # An interim report (ok is None) leaves the call pending; a verdict settles it.
        call = self.pending.get(ev.call_id) if ev.ok is None else self.pending.pop(ev.call_id, None)
        if call is None or (ev.tool is not None and ev.input is not None):
            return ev
        # A direct constructor call: dataclasses.replace is several times slower on this path.
        return Event(
            # The call's own id string: the result's copy is freed (one fewer per call kept).
            ev.kind, ev.ts, ev.tool or call.tool, call.call_id, ev.input or call.input,
            ev.ok, ev.error, ev.done, ev.total, ev.text, ev.cwd, ev.source, ev.pattern,
        )

    def signal(self, ev: Event) -> None:
        """An event the agent itself reported about its state (a hook, its state file). Its turn
        state is kept beside the one the lines suggest and wins unless a line is newer (a
        text-only line is only a guess at a turn end; a permission prompt is not in the lines
        at all). Other kinds are applied as usual."""
        state = _SIGNAL_TURNS.get(ev.kind)
        if state is None:
            self.apply(ev)
            return
        self.events_seen += 1
        if ev.ts is not None and (self.last_event_at is None or ev.ts > self.last_event_at):
            self.last_event_at = ev.ts
        self._progressed(ev)
        waiting = self.waiting
        if waiting is not None and (ev.ts is None or waiting.ts is None or ev.ts > waiting.ts):
            self.waiting = None  # running again, or the turn is over: nobody is asked any more
        self.signal_turn = (state, ev.ts, ev.text)
        self.recent.append(ev)
        _trim(self.recent)

    def signals(self, events: Iterable[Event]) -> None:
        for ev in events:
            self.signal(ev)

    def _progressed(self, ev: Event) -> None:
        if ev.ts is None:
            self.untimed_progress = True
        elif self.last_progress_at is None or ev.ts >= self.last_progress_at:
            self.last_progress_at = ev.ts
            self.untimed_progress = False
        waiting = self.waiting
        if (waiting is not None and ev.kind in _ANSWERS
                and (ev.ts is None or waiting.ts is None or ev.ts > waiting.ts)):
            self.waiting = None  # it moved on: the person answered

    def _succeeded(self) -> None:
        self.error_streak = 0
        self.error_times.clear()

    # -- per kind -------------------------------------------------------------------------

    def _tool_call(self, ev: Event) -> None:
        sig = (ev.tool, ev.input)
        if ev.tool in POLLING_TOOLS:
            pass  # neither counts towards a loop nor breaks one
        elif sig == self._last_call:
            self.loop_count += 1
        else:
            self._last_call = sig
            self.loop_count = 1
            self.loop_call = ev
        if ev.call_id:
            self.pending[ev.call_id] = ev
            _cap_oldest(self.pending)
        self._turn("running", ev)

    def _tool_result(self, ev: Event) -> None:
        if ev.ok is None:
            return  # an interim report (e.g. "still running"); not a result
        if ev.call_id:
            if ev.call_id in self.settled:
                return
            self.settled[ev.call_id] = None
            _cap_oldest(self.settled)
        results = self.results
        results.append(ev.ok)
        if len(results) > RESULT_WINDOW:
            del results[0]
        if ev.tool in POLLING_TOOLS and ev.text and ev.text.startswith(EXITED):
            self._session_exited(ev)
        if ev.ok:
            self.fail_streak = 0
            self._succeeded()
        else:
            self.fail_streak += 1
            self.last_failure = ev

    def _session_exited(self, ev: Event) -> None:
        """A poll of a background session (Codex's write_stdin) found its process exited:
        the session named in the poll's input is over (no other line may say so)."""
        try:
            args = orjson.loads(ev.input) if ev.input and ev.input.startswith("{") else None
        except orjson.JSONDecodeError:
            return
        session = args.get("session_id") if isinstance(args, dict) else None
        if isinstance(session, int | str) and not isinstance(session, bool):
            self.background.pop(str(session), None)

    def _progress(self, ev: Event) -> None:
        if ev.done is not None and ev.total is not None and 0 <= ev.total < _BIG and ev.done < _BIG:
            new = Progress(max(0, ev.done), ev.total)
            if new != self.progress:
                self.loop_count = 0  # progress moved: repeating a call is not a loop
                self._last_call = None
                if self.progress is not None and new.done > self.progress.done:
                    self._succeeded()
            self.progress = new
        if ev.text:
            self.step = ev.text

    def _step(self, ev: Event) -> None:
        if ev.text is not None:
            self.step = ev.text or None  # an empty step: nothing is in progress now

    def _turn_start(self, ev: Event) -> None:
        self._turn("running", ev)
        self._last_call = None
        self.loop_count = 0

    def _turn_end(self, ev: Event) -> None:
        if self.turn == "api_error" and ev.text in HARNESS_ENDS:
            return
        self._turn("ended", ev)

    def _turn_aborted(self, ev: Event) -> None:
        self._turn("aborted", ev)

    def _api_error(self, ev: Event) -> None:
        self._turn("api_error", ev)
        self._error(ev)

    def _error(self, ev: Event) -> None:
        """An error line (bgmon run's classified output, an API retry) counts as a failure."""
        self.error_streak += 1
        self.last_error = ev
        if ev.ts is not None:
            self.error_times.append(ev.ts)
            if len(self.error_times) > ERROR_WINDOW:
                del self.error_times[0]

    def _waiting(self, ev: Event) -> None:
        self.waiting = ev

    def _resumed(self, ev: Event) -> None:
        self.waiting = None

    def _bg_start(self, ev: Event) -> None:
        if ev.call_id:
            self.background[ev.call_id] = None

    def _bg_end(self, ev: Event) -> None:
        if ev.call_id:
            self.background.pop(ev.call_id, None)

    def _task_item(self, ev: Event) -> None:
        """The task board gives progress as a to-do list does: completed of all live items,
        and the in-progress item's title as the step."""
        if not ev.call_id:
            return
        if ev.input == "deleted":
            self.board.pop(ev.call_id, None)
        else:
            item = self.board.setdefault(ev.call_id, ["pending", None])
            if ev.input:
                item[0] = ev.input
            if ev.text:
                item[1] = ev.text
        if len(self.board) > _PENDING_CAP:
            self.board.pop(next(iter(self.board)))
        items = self.board.values()
        self._progress(Event(
            EventKind.PROGRESS, ts=ev.ts, done=sum(1 for st, _ in items if st == "completed"),
            total=len(self.board),
        ))
        # The in-progress item's title; none in progress now: the old step is over.
        self.step = next((t for st, t in items if st == "in_progress" and t), None)

    def older_checklist(self, events: Iterable[Event]) -> None:
        """To-do list events from before every line folded so far (start-up's backward search
        for the newest list, when those lines held none): progress, step and task board as they
        stood then. Nothing else is touched: those lines are older than all the rest."""
        then = Activity()
        then.extend(events)
        self.progress, self.board = then.progress, then.board
        if self.step is None:
            self.step = then.step

    def _session(self, ev: Event) -> None:
        """The first META that names the session: who it is, when it began, whose sub-agent."""
        self.session, self.started_at = ev.text, ev.ts
        self.subagent, self.parent_session = ev.tool, ev.call_id

    def _turn(self, state: str, ev: Event) -> None:
        self.turn = state
        self.turn_at = ev.ts
        # For an ended turn the adapter says why it thinks so (e.g. "text_only": a guess).
        self.turn_text = ev.text if state != "running" else None

    def current_turn(self) -> tuple[str | None, float | None, str | None]:
        """(state, since, why) of the turn: the agent's own word unless a line is newer."""
        sig = self.signal_turn
        if sig is not None and (sig[1] is None or self.turn_at is None or sig[1] >= self.turn_at):
            return sig
        return self.turn, self.turn_at, self.turn_text

    def summary(self) -> ActivitySummary:
        turn, turn_at, turn_text = self.current_turn()
        return ActivitySummary(
            fail_streak=self.fail_streak,
            results=tuple(self.results),
            last_failure=self.last_failure,
            loop_count=self.loop_count,
            loop_call=self.loop_call,
            pending=tuple(self.pending.values()),
            turn=turn,
            turn_at=turn_at,
            turn_text=turn_text,
            last_event_at=self.last_event_at,
            background=len(self.background),
            last_progress_at=self.last_progress_at,
            untimed_progress=self.untimed_progress,
            error_streak=self.error_streak,
            error_times=tuple(self.error_times),
            last_error=self.last_error,
            waiting=self.waiting,
        )


def _trim(recent: list[Event]) -> None:
    """Keep the window's last RECENT_EVENTS. Trimmed once per batch of events (a line's), not
    per event: a list has no maxlen, and a deque would cost its 64-slot block per task."""
    del recent[:-RECENT_EVENTS]


def _cap_oldest(calls: dict) -> None:
    """Forget the oldest call past the cap (dicts keep insertion order)."""
    if len(calls) > _PENDING_CAP:
        del calls[next(iter(calls))]


_HANDLERS = {
    EventKind.TOOL_CALL: Activity._tool_call,
    EventKind.TOOL_RESULT: Activity._tool_result,
    EventKind.PROGRESS: Activity._progress,
    EventKind.STEP: Activity._step,
    EventKind.TURN_START: Activity._turn_start,
    EventKind.TURN_END: Activity._turn_end,
    EventKind.TURN_ABORTED: Activity._turn_aborted,
    EventKind.API_ERROR: Activity._api_error,
    EventKind.ERROR: Activity._error,
    EventKind.WAITING: Activity._waiting,
    EventKind.RESUMED: Activity._resumed,
    EventKind.BG_START: Activity._bg_start,
    EventKind.BG_END: Activity._bg_end,
    EventKind.TASK_ITEM: Activity._task_item,
}

# What an agent's own report says about its turn (Activity.signal).
_SIGNAL_TURNS = {
    EventKind.TURN_START: "running",
    EventKind.RESUMED: "running",
    EventKind.TURN_END: "ended",
    EventKind.TURN_ABORTED: "aborted",
    EventKind.API_ERROR: "api_error",
}
