"""`bgmon`: the live TUI. The engine runs in a worker (its Monitor calls in a thread); the UI
thread only merges the changes it reports and repaints what they touch. The recovery panel
(`r`/`a`/`x`) shares one `RecoveryService` with the engine, which journals badge changes."""

from __future__ import annotations

import gc
import threading
from collections.abc import Callable, Iterable, Sequence

from textual import on
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.command import DiscoveryHit, Hits
from textual.containers import Horizontal, Vertical
from textual.filter import LineFilter
from textual.notifications import SeverityLevel
from textual.screen import Screen
from textual.system_commands import SystemCommandsProvider
from textual.widgets import Footer, Header, Input, Static, Tree
from textual.worker import Worker, WorkerState

from bgmon.board import Board
from bgmon.cli import EXIT_OK
from bgmon.config import Config
from bgmon.engine import Change, Monitor
from bgmon.live import LiveEngine
from bgmon.model import TaskSnapshot
from bgmon.notify.notifier import Notifier
from bgmon.recovery.auto import AutoRecovery
from bgmon.recovery.service import RecoveryService
from bgmon.remote.fleet import Fleet
from bgmon.remote.recovery import RemoteRecovery, RoutedRecovery
from bgmon.views.jsonout import split_remote_key
from bgmon.views.order import SORTS, counts
from bgmon.views.tui.alerts import tui_notifier
from bgmon.views.tui.detail import DetailPanel, render_group, render_task
from bgmon.views.tui.fmt import age
from bgmon.views.tui.help import HelpScreen
from bgmon.views.tui.messages import TasksChanged
from bgmon.views.tui.printable import PrintableLines
from bgmon.views.tui.recovery import RAN, RecoveryPanel
from bgmon.views.tui.recovery_text import last_recovery
from bgmon.views.tui.sync import TreeSync
from bgmon.views.tui.texts import empty_text, status_text, summary
from bgmon.views.tui.tree import GroupRow, Row, TaskTree

AGE_CHECK = 60  # ticks (seconds) between looks for tasks that aged out of the default view
ORDER_CHECK = 1.0  # seconds: re-sorting after a badge change waits this long …
ACTIVITY_ORDER_CHECK = 5.0  # … and under the activity sort (everything moves), this long


class InOrderCommands(SystemCommandsProvider):
    """The palette's commands in the order the app gives them (Textual's provider sorts them by
    name, which mixes its own entries in among bgmon's)."""

    async def discover(self) -> Hits:
        for name, help_text, callback, discover in self.app.get_system_commands(self.screen):
            if discover:
                yield DiscoveryHit(name, callback, help=help_text)


class BgmonApp(App[int]):
    CSS_PATH = "bgmon.tcss"
    TITLE = "bgmon"
    COMMANDS = {InOrderCommands}
    BINDINGS = [
        # Short words: at 80 columns every key up to q must fit in the footer.
        Binding("slash", "filter", "Filter"),
        Binding("f", "faults", "Faults"),
        Binding("s", "sort", "Sort"),
        Binding("r", "recover", "Recover"),
        Binding("a", "approve", "Approve"),
        Binding("x", "reject", "Reject"),
        Binding("c", "acknowledge", "Ack"),
        Binding("question_mark", "help", "Help"),
        Binding("q", "quit", "Quit"),
        Binding("escape", "close_or_clear", "Close / clear", show=False),
        # Ctrl-C quits, as in every terminal program (docs/demo.md); Textual would only hint.
        Binding("ctrl+c", "quit", "Quit", show=False, priority=True),
    ]

    def __init__(
        self,
        config: Config,
        monitor: Monitor | None = None,
        live: bool = True,
        clock: Callable[[], float] | None = None,
        recovery: RecoveryService | None = None,
        board: Board | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.board = board  # the metrics endpoint's (--metrics), kept current by emit
        self.monitor = monitor if monitor is not None else Monitor(config)
        self.live = live
        self.clock = clock or self.monitor.clock
        self.loaded = False  # the engine's first look has arrived
        self.looked: list[str] = []
        self.local_warnings: list[str] = []  # this machine's, as the engine last said
        self.read_warnings: list[str] = []  # those, then each remote host's (labelled)
        self.selected: str | None = None  # task key or group key under the cursor
        self.engine: LiveEngine | None = None
        self.auto: AutoRecovery | None = None
        self.notifier: Notifier | None = None
        self._lock = threading.Lock()
        self._pending: dict[str, Change] = {}
        self._meta: tuple[list[str], list[str]] | None = None
        self._order_due = False
        self._restarts = 0
        self._panel_ages: tuple[str, ...] = ()  # the ages the detail panel shows
        self.task_tree = TaskTree(self.clock, id="tree")
        self.sync = TreeSync(self.task_tree)
        self.sync.age_out = config.age_out
        self._ticks = 0
        self.recovery_error: str | None = None
        self.recovery = recovery if recovery is not None else self._service()
        self.recovered: dict[str, RecoveryPanel.Decided] = {}  # task key → its last approval that ran
        self.fleet: Fleet | None = None  # the remote hosts' links (--remote), started on mount
        self.panel = RecoveryPanel(self._panel_service(), self.snapshot_for, id="recovery")

    def get_line_filters(self) -> Sequence[LineFilter]:
        """Textual's filters plus the printable boundary: every widget's every line (tree,
        detail, recovery panel, modals, notifications) reaches the terminal without a control
        character from task or model text."""
        return [*super().get_line_filters(), self._printable]

    _printable = PrintableLines()

    def _panel_service(self):
        """The local service; with remote hosts, one that sends their tasks' recovery there."""
        if not self.config.remotes:
            return self.recovery
        remotes = {spec.name: RemoteRecovery(spec) for spec in self.config.remotes}
        return RoutedRecovery(self.recovery, remotes)

    def _service(self) -> RecoveryService | None:
        """The recovery service for the watched root; None (recovery off, the monitor works on)
        when its journal or patterns cannot be loaded."""
        try:
            return RecoveryService.from_config(self.config)
        except (OSError, ValueError) as exc:
            self.recovery_error = str(exc)
            return None

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="main"):
            with Vertical(id="left"):
                yield Input(placeholder="filter by name, id, step or group — esc clears", id="filter")
                yield Static(id="status")
                yield self.task_tree
            with Vertical(id="right"):
                yield DetailPanel(id="detail")
                yield self.panel
        yield Static(id="empty")
        # Compact, and ctrl+p (in `?`) left out: at 80 columns every key up to q fits.
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self.query_one("#filter").display = False
        self.task_tree.focus()
        if self.live:
            self.start_engine()
            if self.config.remotes:
                self.fleet = Fleet(self.config.remotes, self.emit_remote, board=self.board)
                self.fleet.start()
        else:
            self.receive([Change("added", s.key, s) for s in self.monitor.snapshots()], self._look())
        self._show_state()
        self.set_interval(1.0, self.tick)

    # -- the engine (worker thread side) ----------------------------------------------------

    def start_engine(self) -> None:
        if self.auto is None and self.recovery is not None and self.config.auto_recover:
            # One for the app's life: its attempt counters outlive an engine restart.
            self.auto = AutoRecovery(self.recovery)
        if self.notifier is None:  # one for the app's life too: it remembers what was said
            self.notifier = tui_notifier(self, self.config)
        sweeps = self.board.sweeps if self.board is not None else None
        self.engine = LiveEngine(self.monitor, self.emit, recorder=self.recovery, auto=self.auto,
                                 sweeps=sweeps, notifier=self.notifier)
        self.run_worker(self.engine.run(), name="engine", group="engine", exclusive=True, exit_on_error=False)

    def emit(self, changes: list[Change]) -> None:
        """Called by the engine from its worker thread: merge, then nudge the UI (coalesced)."""
        meta = self._look()
        if self.board is not None:
            self.board.apply(changes)
            self.board.set_warnings(meta[1])
        with self._lock:
            for change in changes:
                self._pending[change.key] = change  # the latest word on a task wins
            self._meta = meta
        self.post_message(TasksChanged())

    def emit_remote(self, changes: list[Change]) -> None:
        """Called by a remote host's link from its thread: like `emit`, without this machine's
        reading warnings (another thread's to read)."""
        with self._lock:
            for change in changes:
                self._pending[change.key] = change
        self.post_message(TasksChanged())

    def _look(self) -> tuple[list[str], list[str]]:
        watch = self.engine.warnings if self.engine is not None else []  # e.g. no inotify
        return list(self.monitor.found.looked), watch + self.monitor.warnings()

    def on_unmount(self) -> None:
        if self.engine is not None:
            self.engine.stop()
        if self.fleet is not None:
            self.fleet.stop()
        if self.notifier is not None:
            self.notifier.close(wait=1.0)
        self.panel.stop()  # a request still out is cancelled: its answer is dropped
        if self.recovery is not None:
            self.recovery.close()

    def snapshot_for(self, ref: str) -> TaskSnapshot | None:
        """The latest snapshot of a task by key or id; called from worker threads (the approval
        checks the live pid against it), so it reads a copy (`dict.copy` is atomic)."""
        snaps = self.sync.snaps.copy()
        return snaps.get(ref) or next((s for s in snaps.values() if s.id == ref), None)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """The one error handler: say what failed, keep the app up, restart the engine."""
        worker = event.worker
        if event.state is not WorkerState.ERROR:
            return
        err = worker.error
        again = worker.name == "engine" and self.live
        delay = min(30, 2 ** min(self._restarts + 1, 5))
        tail = f" Restarting in {delay}s." if again else ""
        self.notify(f"{worker.name} stopped: {type(err).__name__}: {err}.{tail}",
                    title="bgmon", severity="error", timeout=10)
        if again:
            self._restarts += 1
            self.set_timer(delay, self.start_engine)

    # -- changes (UI thread) -------------------------------------------------------------------

    def on_tasks_changed(self, _: TasksChanged) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
            meta, self._meta = self._meta, None
        self.receive(pending.values(), meta)

    def receive(self, changes: Iterable[Change], meta: tuple[list[str], list[str]] | None) -> None:
        first = not self.loaded
        self.loaded = True
        if meta is not None:
            self.looked, self.local_warnings = meta
        # A remote host's warnings and link problems join this machine's (a link reports a
        # change of them as an empty batch).
        merged = self.local_warnings + (self.fleet.warnings() if self.fleet is not None else [])
        warned, self.read_warnings = merged != self.read_warnings, merged
        with self.batch_update():
            done = self.sync.apply(changes, rebuild=first)
            self.sync.count()
            if done.reorder and not self._order_due:
                self._order_due = True
                wait = ACTIVITY_ORDER_CHECK if self.sync.sort == "activity" else ORDER_CHECK
                self.set_timer(wait, self.check_order)
            if first or self.selected is None:
                self.cursor_to_first_task()
            elif done.rebuilt or self.sync.node_for(self.selected) is None:
                self.restore_cursor()
            elif self.selected in done.touched or (warned and self.selected not in self.sync.snaps):
                self.show_selected()  # a task that changed, or a group's list of warnings
            self._show_state()
        if first:
            # Everything loaded so far lives as long as the app: move it out of the collector's
            # reach, so a full collection later does not walk thousands of nodes and snapshots
            # in the middle of a keypress (seen as ~100 ms spikes with 1,000 tasks in bench/).
            gc.freeze()

    def check_order(self) -> None:
        """After badges moved: re-sort, but only if the order under the sort really changed."""
        self._order_due = False
        with self.batch_update():
            if self.sync.resort():
                self.restore_cursor()
                self._show_state()

    def rebuild(self) -> None:
        with self.batch_update():
            self.sync.rebuild()
            self.restore_cursor()
            self._show_state()

    # -- cursor and detail ---------------------------------------------------------------------

    def cursor_to_first_task(self) -> None:
        groups = self.task_tree.root.children
        if not groups:
            self.show_selected()
            return
        first = groups[0].children[0] if groups[0].children else groups[0]
        self.task_tree.get_node_at_line(0)  # lay the lines out now, so the node has its line
        self.task_tree.move_cursor(first)
        self.show_selected(first)

    def restore_cursor(self) -> None:
        node = self.sync.node_for(self.selected)
        self.task_tree.get_node_at_line(0)
        if node is not None and node.line >= 0:
            self.task_tree.move_cursor(node)
        elif self.task_tree.cursor_line >= self.task_tree.last_line:
            self.task_tree.cursor_line = self.task_tree.last_line
        self.show_selected(self.task_tree.cursor_node if node is None else node)

    @on(Tree.NodeHighlighted)
    def _highlighted(self, event: Tree.NodeHighlighted) -> None:
        self.show_selected(event.node)

    @on(Tree.NodeCollapsed)
    def _collapsed(self, event: Tree.NodeCollapsed) -> None:
        if event.node.data is not None:
            self.sync.collapsed.add(event.node.data.key)

    @on(Tree.NodeExpanded)
    def _expanded(self, event: Tree.NodeExpanded) -> None:
        if event.node.data is not None:
            self.sync.collapsed.discard(event.node.data.key)

    def show_selected(self, node=None) -> None:
        if node is not None:
            self.selected = node.data.key if node.data is not None else None
        panels = self.query(DetailPanel)
        if not panels:
            return  # shutting down
        detail = panels.first()
        data: Row | None = None
        if self.selected is not None:
            found = self.sync.node_for(self.selected)
            data = found.data if found is not None else None
        if isinstance(data, TaskSnapshot):
            snap = self.sync.snaps.get(data.key, data)
            self._panel_ages = self._ages_of(snap)
            done = self.recovered.get(snap.key)
            extra = last_recovery(done.proposal, done.outcome) if done is not None else None
            detail.show(render_task(snap, self.clock(), recovery=extra))
        elif isinstance(data, GroupRow):
            detail.show(render_group(data, self.read_warnings))
        elif self.sync.snaps:
            detail.show("No task matches the filter." if not self.sync.nodes else "Select a task.")

    def tick(self) -> None:
        """Once a second: ages move on. Repaint the visible rows and the panel whose ages did."""
        self.task_tree.refresh_visible()
        snap = self.sync.snaps.get(self.selected or "")
        if snap is not None and self._ages_of(snap) != self._panel_ages:
            self.show_selected()
        self._ticks += 1
        if self.sync.age_out and self._ticks % AGE_CHECK == 0 and self.sync.wanted() != set(self.sync.nodes):
            self.rebuild()  # a finished task just aged out of the default view

    def _ages_of(self, snap: TaskSnapshot) -> tuple[str, ...]:
        now = self.clock()
        return tuple(age(now, ts) for ts in (snap.last_activity, *(e.ts for e in snap.recent)))

    def _show_state(self) -> None:
        aged = self.sync.aged()
        snaps = [s for k, s in self.sync.snaps.items() if k not in aged]
        self.sub_title = summary(counts(snaps), len(snaps))
        empty = self.query_one("#empty", Static)
        nothing = not self.sync.snaps  # all aged out still shows the tree's "0 of N shown"
        empty.display = nothing
        self.query_one("#main").display = not nothing
        if nothing:
            empty.update(empty_text(self.loaded, self.looked, self.config, self.read_warnings))
        status = self.query_one("#status", Static)
        status.update(status_text(self.sync, len(self.read_warnings)))

    # -- actions -----------------------------------------------------------------------------

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.display = True
        box.focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        if event.value != self.sync.text:
            self.sync.text = event.value
            self.rebuild()

    @on(Input.Submitted, "#filter")
    def _filter_done(self, event: Input.Submitted) -> None:
        if not event.value:
            event.input.display = False
        self.task_tree.focus()

    def action_clear_filter(self) -> None:
        box = self.query_one("#filter", Input)
        had = bool(box.value) or box.display
        box.value = ""
        box.display = False
        self.task_tree.focus()
        if had and self.sync.text:
            self.sync.text = ""
            self.rebuild()

    def action_close_or_clear(self) -> None:
        """esc (not named `back`: that is Textual's own App action): clears the filter while typing in it; else closes the recovery panel (cancelling
        a request that is out); else clears the filter."""
        if self.panel.display and not self.query_one("#filter", Input).has_focus:
            self.panel.close()
            self.query_one("#main").remove_class("recovering")
            self.task_tree.focus()
        else:
            self.action_clear_filter()

    def _recovery_ready(self) -> bool:
        if len(self.screen_stack) > 1:
            return False  # a prompt or the help is open
        remote = split_remote_key(self.selected or "") is not None
        if self.recovery is None and not remote:
            self.notify(f"Recovery is off: {self.recovery_error or 'no journal'}.", severity="warning",
                        markup=False)
            return False
        return True

    def action_recover(self) -> None:
        if not self._recovery_ready():
            return
        snap = self.sync.snaps.get(self.selected or "")
        if snap is None:
            self.notify("Select a task first (recovery works on one task).")
            return
        if self.panel.acting:
            self.notify("An approval or rejection is still running; wait for its result.")
            return
        self.query_one("#main").add_class("recovering")
        self.panel.request(snap)

    def action_approve(self) -> None:
        if self._recovery_ready():
            self.panel.approve()

    def action_reject(self) -> None:
        if self._recovery_ready():
            self.panel.reject()

    def action_acknowledge(self) -> None:
        """`c`: the selected task's fault is seen; it stops counting (header, exit status,
        notifications) until its badge changes. Written in a worker: the store fsyncs."""
        snap = self.sync.snaps.get(self.selected or "")
        if snap is None or not snap.health.badge.is_fault or snap.ack is not None:
            self.notify("Select a struggling, stuck or failed task that is not acknowledged yet.")
            return
        if self.recovery is None:
            self.notify(f"Cannot acknowledge: {self.recovery_error or 'no journal'}.",
                        severity="warning", markup=False)
            return
        service = self.recovery

        def write() -> None:
            try:
                service.acknowledge(snap)
            except OSError as exc:
                self.call_from_thread(self.notify, f"Not acknowledged: {exc}", severity="error",
                                      markup=False)
                return
            self.call_from_thread(self.notify, f"{snap.name}: {snap.health.badge.value}, "
                                  "acknowledged until its badge changes.", markup=False)

        self.run_worker(write, name="ack", thread=True, exit_on_error=False)

    @on(RecoveryPanel.Decided)
    def _decided(self, msg: RecoveryPanel.Decided) -> None:
        outcome = msg.outcome
        severity: SeverityLevel = "information" if outcome.ok else "error"
        self.notify(outcome.message, title=f"{msg.proposal.id} · {outcome.status}", severity=severity,
                    markup=False)
        if outcome.status in RAN:
            self.recovered[msg.proposal.task] = msg
            if self.selected == msg.proposal.task:
                self.show_selected()

    def action_faults(self) -> None:
        self.sync.faults_only = not self.sync.faults_only
        self.rebuild()

    def action_sort(self) -> None:
        self.sync.sort = SORTS[(SORTS.index(self.sync.sort) + 1) % len(SORTS)]
        self.rebuild()

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_expand_all(self) -> None:
        self.sync.collapsed.clear()
        self.task_tree.root.expand_all()

    def action_collapse_all(self) -> None:
        for node in self.sync.groups.values():
            node.collapse()

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """bgmon's own commands first; Textual's (theme, screenshot, keys…) after them."""
        yield SystemCommand("Filter tasks", "Type to filter by name, id, step or group  (key: /)", self.action_filter)
        yield SystemCommand("Clear the filter", "Show every task again  (key: esc)", self.action_clear_filter)
        yield SystemCommand("Faults only", "Show only struggling, stuck, failed and waiting tasks, or all again  (key: f)",
                            self.action_faults)
        yield SystemCommand("Cycle sort", "Badge severity → last activity → name  (key: s)", self.action_sort)
        yield SystemCommand("Help", "Keys and what each badge means  (key: ?)", self.action_help)
        yield SystemCommand("Recovery: propose a fix",
                            "Diagnose the selected task and propose actions  (key: r)", self.action_recover)
        yield SystemCommand("Recovery: approve", "Confirm, then run the proposal's actions  (key: a)",
                            self.action_approve)
        yield SystemCommand("Recovery: reject", "Reject the proposal, with an optional reason  (key: x)",
                            self.action_reject)
        yield SystemCommand("Acknowledge the fault", "It stops counting until its badge changes  (key: c)",
                            self.action_acknowledge)
        yield SystemCommand("Recovery: close the panel", "Cancel a request and close the panel  (key: esc)",
                            self.action_close_or_clear)
        yield SystemCommand("Expand all", "Open every group and task", self.action_expand_all)
        yield SystemCommand("Collapse all", "Fold every group", self.action_collapse_all)
        yield from super().get_system_commands(screen)



def run_tui(config: Config, board: Board | None = None) -> int:
    BgmonApp(config, board=board).run()
    return EXIT_OK
