"""bgmon: a terminal monitor for background agents and long-running commands."""

__version__ = "0.1.0"
