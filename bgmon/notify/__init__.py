"""Notifications on badge changes: a pure policy decides what to say and when (policy.py),
the message is built once (message.py), sinks at the edge deliver it (sinks.py), and the
notifier (notifier.py) connects the live engine's changes to all three."""
