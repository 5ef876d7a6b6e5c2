"""The engine: one Monitor behind every view.

  store.py     the task store: each task's readers and feeds, and what its files said
  family.py    who nests under whom, and roll-up (pure functions)
  evaluate.py  observations → verdicts → the changes a view must show (and its caches' rules)
  snapshot.py  one task's record and verdict → the `TaskSnapshot` views render
  monitor.py   the Monitor that drives them (sweep, file events, process looks, evaluate)
"""

from bgmon.engine.evaluate import Change
from bgmon.engine.monitor import Monitor, collect, first_load
from bgmon.engine.snapshot import parse_progress
from bgmon.engine.store import LogFeed, TaskRecord

__all__ = ["Change", "LogFeed", "Monitor", "TaskRecord", "collect", "first_load", "parse_progress"]
