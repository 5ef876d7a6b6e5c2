"""Where tasks live: each registered agent's discovery (bgmon.agents), switched on and off by the
configuration, in one pass.

Discovery only lists files and stats them; it never reads logs (bar a head line where a file's
session id is inside it). Each found task is a `TaskSpec`.
"""

from __future__ import annotations

from bgmon.agents import REGISTRY
from bgmon.agents.base import Scan
from bgmon.agents.worktrees import GitWorktrees, named_logs, worktree_logs
from bgmon.config import Config
from bgmon.sources.found import Found, TaskSpec

__all__ = ["Found", "GitWorktrees", "TaskSpec", "discover", "named_logs", "worktree_logs"]


def discover(config: Config, now: float, git: GitWorktrees | None = None) -> Found:
    found = Found()
    for agent in REGISTRY:
        if config.enabled(agent.name):
            agent.discover(Scan(config, now, found, config.home(agent.name), git))
    return found
