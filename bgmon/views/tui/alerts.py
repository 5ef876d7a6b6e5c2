"""Notifications inside the TUI: a toast for every batch, and the terminal sink ([notify]
terminal: bell, OSC 9, OSC 777) written through Textual's driver, so its bytes reach the
person's terminal (over ssh too) between frames instead of tearing one."""

from __future__ import annotations

from textual.app import App

from bgmon.config import Config
from bgmon.notify import message
from bgmon.notify.notifier import Notifier, notifier_for
from bgmon.notify.policy import Batch


class ToastSink:
    name = "screen"

    def __init__(self, app: App) -> None:
        self.app = app

    def send(self, batch: Batch) -> None:
        severity = "error" if batch.alerts[0].severity >= 4 else "warning"
        self.app.call_from_thread(self.app.notify, message.body(batch), title=message.title(batch),
                                  severity=severity, timeout=10, markup=False)


def tui_notifier(app: App, config: Config) -> Notifier:
    def write_terminal(text: str) -> None:
        app.call_from_thread(_write, app, text)

    def report(text: str) -> None:
        app.call_from_thread(app.notify, text, title="bgmon", severity="error", markup=False)

    notifier = notifier_for(config, extra=[ToastSink(app)], terminal=write_terminal, report=report)
    assert notifier is not None  # the toast is always there
    return notifier


def _write(app: App, text: str) -> None:
    driver = app._driver  # Textual's own bell() writes this way
    if driver is not None:
        driver.write(text)
        driver.flush()
