"""Messages between the engine's worker thread and the UI.

`TasksChanged` carries no payload: the engine thread merges its changes into the app's pending
buffer (under a lock) and posts one of these. A burst of posts collapses into one delivery
(`can_replace`), and that delivery drains everything pending at once.
"""

from __future__ import annotations

from textual.message import Message


class TasksChanged(Message):
    """The pending change buffer has something new."""

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, TasksChanged)
