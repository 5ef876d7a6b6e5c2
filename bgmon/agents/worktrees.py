"""bgmon's own tasks: `ROOT/.worktrees/*/status.json` (and every worktree git lists), each with
its logs in bgmon's native event lines (or any agent's transcript lines, sniffed)."""

from __future__ import annotations

import os
import subprocess
import time

from bgmon.agents.base import Agent, LineFormat, Scan
from bgmon.formats.native import parse as parse_native
from bgmon.sources.found import Found, TaskSpec, is_dir, scandir

STATUS_FILE = "status.json"
LOG_DIRS = (".agents/logs", "logs")


class GitWorktrees:
    """`git worktree list --porcelain` per root, cached: it is a subprocess, not a stat."""

    def __init__(self, ttl: float = 30.0) -> None:
        self.ttl = ttl
        self._cache: dict[str, tuple[float, list[str]]] = {}

    def list(self, root: str) -> list[str]:
        hit = self._cache.get(root)
        now = time.monotonic()
        if hit and now - hit[0] < self.ttl:
            return hit[1]
        paths: list[str] = []
        if os.path.exists(os.path.join(root, ".git")):
            try:
                out = subprocess.run(
                    ["git", "-C", root, "worktree", "list", "--porcelain"],
                    capture_output=True, text=True, timeout=5, check=False,
                ).stdout
                paths = [line[9:] for line in out.splitlines() if line.startswith("worktree ")]
            except (OSError, subprocess.SubprocessError):
                paths = []
        self._cache[root] = (now, paths)
        return paths


def _confined(path: str, dirs: list[str]) -> bool:
    real = os.path.realpath(path)
    return any(real == d or real.startswith(d.rstrip(os.sep) + os.sep) for d in dirs)


def named_logs(task_dir: str, fields: dict | None,
               log_dirs: tuple[str, ...] = ()) -> tuple[list[str], list[str]]:
    """The logs a task's `log` field names → (inside the task's directory or a configured
    `log_dirs`, the rest). A status file can name any path: a private file elsewhere must not be
    read, shown and sent to the API because a task said so (symlinks are resolved)."""
    log = fields.get("log") if isinstance(fields, dict) else None
    if isinstance(log, str):
        log = [log]
    if not isinstance(log, list):
        return [], []
    paths = [os.path.normpath(os.path.join(task_dir, os.path.expanduser(p))) for p in log
             if isinstance(p, str) and p.strip() and "\0" not in p]
    dirs = [os.path.realpath(d) for d in (task_dir, *(os.path.expanduser(d) for d in log_dirs))]
    inside = [p for p in paths if _confined(p, dirs)]
    return inside, [p for p in paths if p not in inside]


def worktree_logs(task_dir: str, fields: dict | None, log_dirs: tuple[str, ...] = ()) -> list[str]:
    """A worktree task's logs: its `log` field (confined, `named_logs`), else every *.jsonl in
    .agents/logs/ and logs/."""
    inside, outside = named_logs(task_dir, fields, log_dirs)
    if inside or outside:
        return inside
    out = []
    for sub in LOG_DIRS:
        d = os.path.join(task_dir, sub)
        try:
            names = sorted(n for n in os.listdir(d) if n.endswith(".jsonl"))
        except OSError:
            continue
        # bgmon's own journal lives in .agents/logs too; it is not a task log.
        out += [os.path.join(d, n) for n in names if n != "background_monitoring.jsonl"]
    return out


def _spec(task_dir: str, root: str) -> TaskSpec:
    name = os.path.basename(task_dir.rstrip(os.sep)) or task_dir
    return TaskSpec(
        key=f"worktree:{task_dir}", source="worktree", id=name, name=name, path=task_dir,
        group=root, status_file=os.path.join(task_dir, STATUS_FILE),
    )


def discover(scan: Scan) -> None:
    found: Found = scan.found
    git = scan.git if isinstance(scan.git, GitWorktrees) and scan.config.git else None
    for raw_root, root in zip(scan.config.roots, scan.roots(), strict=True):
        if not os.path.isdir(root):
            found.warnings.append(f"root {raw_root} is not a directory")
            continue
        found.looked.append(os.path.join(root, ".worktrees", "*", STATUS_FILE))
        found.watch.add(root)
        wt_dir = os.path.join(root, ".worktrees")
        entries = scandir(wt_dir, found)
        if entries:
            found.watch.add(wt_dir)
        candidates = [e.path for e in entries if is_dir(e)]
        if git is not None:
            candidates += [p for p in git.list(root) if os.path.abspath(p) != root]
        seen = set()
        for task_dir in candidates:
            task_dir = os.path.abspath(task_dir)
            if task_dir in seen:
                continue
            seen.add(task_dir)
            found.watch.add(task_dir)
            if os.path.isfile(os.path.join(task_dir, STATUS_FILE)):
                found.specs.append(_spec(task_dir, root))
                for sub in LOG_DIRS:
                    if os.path.isdir(os.path.join(task_dir, sub)):
                        found.watch.add(os.path.join(task_dir, sub))


AGENT = Agent(
    name="worktrees",
    label="worktree tasks (ROOT/.worktrees/*/status.json, bgmon's own event lines)",
    discover=discover,
    formats=(LineFormat("native", parse_native),),
    source="worktree",
)
