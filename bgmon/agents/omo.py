"""oh-my-opencode (an OpenCode plugin): its background task list `ROOT/.opencode/background-tasks.json`,
one task per entry, read like a status file (`bgmon.formats.opencode`)."""

from __future__ import annotations

import os

import orjson

from bgmon.agents.base import Agent, Scan
from bgmon.formats import opencode
from bgmon.sources.files import read_regular
from bgmon.sources.found import TaskSpec

NAME = "omo"
TASKS_FILE = os.path.join(".opencode", "background-tasks.json")


def discover(scan: Scan) -> None:
    """The task list in each root: one task per entry (the file is small)."""
    found = scan.found
    for root in scan.roots():
        path = os.path.join(root, TASKS_FILE)
        found.looked.append(path)
        try:
            data = orjson.loads(read_regular(path, 1 << 20))
        except FileNotFoundError:
            continue
        except (OSError, orjson.JSONDecodeError) as exc:
            # Caught mid-write, or unreadable: known tasks keep their last good value.
            found.warnings.append(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}")
            found.keep.add(f"{NAME}:{root}:")
            continue
        found.watch.add(os.path.dirname(path))
        for entry in opencode.entries(data):
            task_id = entry["id"]
            found.specs.append(TaskSpec(
                key=f"{NAME}:{root}:{task_id}", source=NAME, id=task_id,
                name=str(entry.get("description") or task_id), path=path, group=root,
                status_file=path, fmt="none", entry=task_id,
            ))


AGENT = Agent(
    name=NAME,
    label="oh-my-opencode background tasks (ROOT/.opencode/background-tasks.json)",
    discover=discover,
    status_entry=opencode.extractor,
)
