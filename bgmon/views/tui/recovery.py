"""The recovery side panel: `r` asks for a proposal, `a` confirms and runs it, `x` rejects it.

Everything that touches the service (the API, the journal, processes) runs in thread workers,
which report back with messages; the UI thread only renders. A request carries its own cancel
event: `esc` sets it and closes the panel, and a late answer is dropped (the service records
nothing for a cancelled request).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from rich.console import Group, RenderableType
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.message import Message
from textual.widget import Widget
from textual.widgets import Input, LoadingIndicator, Static

from bgmon.model import TaskSnapshot
from bgmon.recovery.journal import PENDING
from bgmon.recovery.proposal import Proposal
from bgmon.recovery.redact import redact
from bgmon.recovery.service import ACTION_FAILED, DONE, Outcome, RecoveryService, SnapshotLookup
from bgmon.views.tui.confirm import ConfirmScreen
from bgmon.views.tui.fmt import one_line
from bgmon.views.tui.recovery_text import outcome_text, proposal_text

RAN = (DONE, ACTION_FAILED)  # outcomes in which actions really ran


def _error(exc: BaseException) -> str:
    return redact(one_line(f"{type(exc).__name__}: {exc}", 300))


class ReasonInput(Input):
    """The optional one-line reason for a rejection; enter rejects, esc goes back."""

    BINDINGS = [Binding("escape", "back", "Back", show=False)]

    def action_back(self) -> None:
        self.query_ancestor(RecoveryPanel).cancel_reason()


class RecoveryPanel(VerticalScroll):
    class ProposalReady(Message):
        def __init__(self, cancel: threading.Event, proposal: Proposal, lines: list[str],
                     state: str | None) -> None:
            super().__init__()
            self.cancel, self.proposal, self.lines, self.state = cancel, proposal, lines, state

    class RequestFailed(Message):
        def __init__(self, cancel: threading.Event, error: str) -> None:
            super().__init__()
            self.cancel, self.error = cancel, error

    class ConfirmNeeded(Message):
        def __init__(self, proposal: Proposal, lines: list[str]) -> None:
            super().__init__()
            self.proposal, self.lines = proposal, lines

    class Progress(Message):
        def __init__(self, proposal: Proposal, text: str) -> None:
            super().__init__()
            self.proposal, self.text = proposal, text

    class Decided(Message):
        """An approval or rejection came back (bubbles up: the app shows it in the detail)."""

        def __init__(self, proposal: Proposal, outcome: Outcome, state: str | None) -> None:
            super().__init__()
            self.proposal, self.outcome, self.state = proposal, outcome, state

    def __init__(self, service: RecoveryService | None, lookup: SnapshotLookup, **kwargs) -> None:
        super().__init__(**kwargs)
        self.service = service
        self.lookup = lookup
        self.task_key: str | None = None
        self.task_name = ""
        self.cancel: threading.Event | None = None  # set while a request is out
        self.proposal: Proposal | None = None
        self.lines: list[str] = []
        self.state: str | None = None
        self.outcome: Outcome | None = None
        self.note: str | None = None
        self.error: str | None = None
        self.acting = False  # an approval or rejection is under way (prompt included)
        self.working = False  # … and is running now (spinner)
        self.waiting: str | None = None  # what the running action waits for (a backoff)
        self._focus_before: Callable[[], object] | None = None

    def compose(self) -> ComposeResult:
        yield LoadingIndicator(id="recovery-spin")
        yield Static(id="recovery-body")
        yield ReasonInput(placeholder="reason (optional): enter rejects, esc goes back", id="recovery-reason")

    def on_mount(self) -> None:
        self.display = False
        self.query_one("#recovery-reason").display = False
        self.query_one("#recovery-spin").display = False

    @property
    def loading_proposal(self) -> bool:
        return self.cancel is not None

    # -- requests --------------------------------------------------------------------------------

    def request(self, snap: TaskSnapshot) -> None:
        self.close()
        self.task_key, self.task_name = snap.key, snap.name
        self.cancel = threading.Event()
        self.display = True
        self._redraw()
        self._ask(snap, self.cancel)

    @work(thread=True, exclusive=True, group="recovery", exit_on_error=False)
    def _ask(self, snap: TaskSnapshot, cancel: threading.Event) -> None:
        """The API call itself runs in a daemon thread that this worker waits on, so a cancel
        frees the worker at once: quitting bgmon never waits for a slow API (the executor's
        threads are joined at exit; the SDK call cannot be interrupted)."""
        result: list[Message] = []
        done = threading.Event()

        def call() -> None:
            assert self.service is not None
            try:
                proposal = self.service.request_proposal(snap, cancel=cancel)
                if proposal is not None and not cancel.is_set():
                    result.append(self.ProposalReady(
                        cancel, proposal, self.service.preview(proposal), self.service.state(proposal.id)
                    ))
            except Exception as exc:  # shown in the panel; the app keeps running
                result.append(self.RequestFailed(cancel, _error(exc)))
            finally:
                done.set()

        threading.Thread(target=call, name="bgmon-propose", daemon=True).start()
        while not done.wait(0.1):
            if cancel.is_set():
                return  # the call finishes (or dies with bgmon) on its own; nothing is recorded
        if result and not cancel.is_set():
            self.post_message(result[0])

    @on(ProposalReady)
    def _ready(self, msg: ProposalReady) -> None:
        if msg.cancel is not self.cancel or msg.cancel.is_set():
            return  # cancelled, or superseded by a newer request
        self.cancel = None
        self.proposal, self.lines, self.state = msg.proposal, msg.lines, msg.state
        self._redraw()

    @on(RequestFailed)
    def _failed(self, msg: RequestFailed) -> None:
        if msg.cancel is not self.cancel or msg.cancel.is_set():
            return
        self.cancel = None
        self.error = f"could not get a proposal: {msg.error}"
        self._redraw()

    def stop(self) -> None:
        """Cancel a request that is out (its answer is dropped; nothing is recorded)."""
        if self.cancel is not None:
            self.cancel.set()
            self.workers.cancel_group(self, "recovery")
        self.cancel = None

    def close(self) -> None:
        """Cancel a request that is out, and clear and hide the panel."""
        self.stop()
        self.task_key, self.task_name = None, ""
        self.proposal, self.lines, self.state = None, [], None
        self.outcome = self.note = self.error = None
        self.acting = self.working = False
        self.cancel_reason()
        self.display = False

    # -- approve -----------------------------------------------------------------------------

    def _ready_for_decision(self, verb: str) -> Proposal | None:
        if self.proposal is None:
            if self.loading_proposal:
                self.notify(f"Nothing to {verb} yet: the proposal is still coming (esc cancels).")
            else:
                self.notify(f"No proposal to {verb}: select a task and press r first.")
            return None
        if self.acting:
            self.notify(f"An approval or rejection of {self.proposal.id} is still running.")
            return None
        return self.proposal

    def approve(self) -> None:
        proposal = self._ready_for_decision("approve")
        if proposal is not None:
            self.acting = True
            self._prepare(proposal)

    @work(thread=True, group="recovery-act", exit_on_error=False)
    def _prepare(self, proposal: Proposal) -> None:
        """Pending: ask first, with the effect as it is now. Not pending: the service says why
        nothing happens (already executed, rejected, superseded) and does nothing."""
        assert self.service is not None
        try:
            if self.service.state(proposal.id) == PENDING:
                self.post_message(self.ConfirmNeeded(proposal, self.service.preview(proposal)))
                return
            outcome = self._approve_now(proposal)
            state = self.service.state(proposal.id)
        except Exception as exc:
            outcome, state = Outcome(proposal.id, "error", f"approval failed: {_error(exc)}"), None
        self.post_message(self.Decided(proposal, outcome, state))

    def _approve_now(self, proposal: Proposal) -> Outcome:
        """Approve from a worker thread; what a long step waits for (a restart's backoff) is
        shown in the panel meanwhile, as `bgmon approve` prints it."""
        assert self.service is not None

        def announce(text: str) -> None:
            self.post_message(self.Progress(proposal, text))

        # A remote host's service approves through `bgmon approve` over its link and has no
        # local executor: the host's own output says what it waited for.
        executor = getattr(self.service, "executor", None)
        if executor is not None:
            executor.announce = announce
        return self.service.approve(proposal.id, self.lookup, by="tui")

    @on(ConfirmNeeded)
    def _confirm(self, msg: ConfirmNeeded) -> None:
        if self.proposal is not msg.proposal:
            return  # the panel moved on meanwhile

        def answered(yes: bool | None) -> None:
            if yes and self.proposal is msg.proposal:
                self.working = True
                self._redraw()
                self._run(msg.proposal)
            else:
                self.acting = False

        self.app.push_screen(ConfirmScreen(msg.proposal, self.task_name, msg.lines), answered)

    @work(thread=True, group="recovery-act", exit_on_error=False)
    def _run(self, proposal: Proposal) -> None:
        assert self.service is not None
        try:
            outcome = self._approve_now(proposal)
            state = self.service.state(proposal.id)
        except Exception as exc:
            outcome, state = Outcome(proposal.id, "error", f"approval failed: {_error(exc)}"), None
        self.post_message(self.Decided(proposal, outcome, state))

    # -- reject ------------------------------------------------------------------------------

    def reject(self) -> None:
        proposal = self._ready_for_decision("reject")
        if proposal is None:
            return
        if self.state != PENDING:  # the service says why it cannot be rejected
            self.acting = True
            self._reject(proposal, None)
            return
        box = self.query_one("#recovery-reason", Input)
        focused = self.app.focused
        self._focus_before = (lambda: focused.focus()) if isinstance(focused, Widget) else None
        box.value = ""
        box.display = True
        box.focus()
        self.scroll_end(animate=False)

    def cancel_reason(self) -> None:
        box = self.query_one("#recovery-reason", Input)
        if not box.display:
            return
        box.display = False
        restore, self._focus_before = self._focus_before, None
        if restore is not None:
            restore()

    @on(Input.Submitted, "#recovery-reason")
    def _reason(self, event: Input.Submitted) -> None:
        event.stop()
        proposal = self.proposal
        self.cancel_reason()
        if proposal is None or self.acting:
            return
        self.acting = self.working = True
        self._redraw()
        self._reject(proposal, event.value.strip() or None)

    @work(thread=True, group="recovery-act", exit_on_error=False)
    def _reject(self, proposal: Proposal, reason: str | None) -> None:
        assert self.service is not None
        try:
            outcome = self.service.reject(proposal.id, reason, by="tui")
            state = self.service.state(proposal.id)
        except Exception as exc:
            outcome, state = Outcome(proposal.id, "error", f"rejection failed: {_error(exc)}"), None
        self.post_message(self.Decided(proposal, outcome, state))

    @on(Progress)
    def _progress(self, msg: Progress) -> None:
        if self.proposal is msg.proposal and self.working:
            self.waiting = msg.text
            self._redraw()

    @on(Decided)
    def _decided(self, msg: Decided) -> None:
        if self.proposal is None or self.proposal.id != msg.proposal.id:
            return  # bubbles on: the app still shows the result in the task's detail
        self.acting = self.working = False
        self.waiting = None
        self.state = msg.state or self.state
        if msg.outcome.status in RAN:
            self.outcome, self.note = msg.outcome, None
        else:
            self.note = msg.outcome.message
        self._redraw()

    # -- drawing -----------------------------------------------------------------------------

    def _redraw(self) -> None:
        spin = self.query_one("#recovery-spin", LoadingIndicator)
        spin.display = self.loading_proposal or self.working
        self.query_one("#recovery-body", Static).update(self.body())

    def body(self) -> RenderableType:
        parts: list[RenderableType] = []
        if self.proposal is None:
            parts.append(Text.assemble(("Recovery · ", "bold"), (self.task_name, "bold")))
            if self.loading_proposal:
                parts.append(Text("Asking for a proposal… esc cancels.", style="dim"))
            if self.error:
                parts.append(Text(self.error, style="bold red"))
                parts.append(Text("\nr asks again · esc closes", style="dim"))
            return Group(*parts)
        parts += proposal_text(self.task_name, self.proposal, self.lines, self.state)
        if self.outcome is not None:
            parts.append(Text(""))
            parts += outcome_text(self.outcome)
        if self.working:
            parts.append(Text(f"\n{self.waiting or 'Working…'}", style="bold"))
        if self.note:
            parts.append(Text(f"\n{self.note}", style="bold"))
        hint = "a approve · x reject · esc close" if self.state == PENDING else "r ask again · esc close"
        parts.append(Text(f"\n{hint}", style="dim"))
        return Group(*parts)

    def plain(self, width: int = 60) -> str:
        """What the panel shows, as plain text (for tests)."""
        import io

        from rich.console import Console

        console = Console(width=width, record=True, file=io.StringIO(), color_system=None)
        console.print(self.body())
        return console.export_text()
