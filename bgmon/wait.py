"""`bgmon wait TASK... --until STATE`: block on the live engine until the tasks get there.

`outcome` is pure (snapshots in, a verdict out); `wait` runs the live engine without a screen
and asks it after every pass. The exit codes are cli.py's.

| --until | reached (exit 0) when every task is … | a fault instead (exit 1) |
|---|---|---|
| completed | completed | a task failed or stuck |
| healthy | healthy | a task failed or stuck |
| waiting | waiting for input | a task failed or stuck |
| settled | done for now: completed, waiting, failed or stuck | settled, but a task failed or stuck |
| fault | (any one task) struggling, stuck or failed | every task completed without one |

Struggling is not a fault here: a task that struggles may recover, and `--timeout` bounds the
wait. An acknowledged fault (`bgmon ack`) counts as no fault. A task that goes away is a fault.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bgmon.model import TaskSnapshot

TARGETS = ("completed", "healthy", "settled", "fault", "waiting")
_BLOCKING = frozenset({"failed", "stuck"})  # a task that will not get anywhere on its own
_SETTLED = frozenset({"completed", "waiting", "failed", "stuck"})


@dataclass(frozen=True, slots=True)
class Outcome:
    reached: bool  # True: exit 0; False: a fault instead (exit 1)
    why: str  # one line for the person


def _fault(s: TaskSnapshot) -> bool:
    return s.health.badge.value in _BLOCKING and s.ack is None


def _says(s: TaskSnapshot) -> str:
    badge = s.health.badge.value
    why = f": {s.health.summary}" if s.health.summary and badge != "healthy" else ""
    return f"{s.name} is {badge}{why}"


def outcome(target: str, snaps: Sequence[TaskSnapshot | None], refs: Sequence[str]) -> Outcome | None:
    """The verdict for `snaps` (None where a task went away), or None: keep waiting."""
    gone = [ref for ref, s in zip(refs, snaps, strict=True) if s is None]
    if gone:
        return Outcome(False, f"{', '.join(gone)}: no longer found")
    tasks = [s for s in snaps if s is not None]
    badges = [s.health.badge.value for s in tasks]
    if target == "fault":
        hit = next((s for s in tasks if s.needs_attention), None)
        if hit is not None:
            return Outcome(True, _says(hit))
        if all(b == "completed" for b in badges):
            return Outcome(False, "every task completed without a fault")
        return None
    if target == "settled":
        if not all(b in _SETTLED for b in badges):
            return None
        faulty = next((s for s in tasks if _fault(s)), None)
        return Outcome(False, _says(faulty)) if faulty else Outcome(True, "every task is settled")
    faulty = next((s for s in tasks if _fault(s)), None)
    if faulty is not None:
        return Outcome(False, _says(faulty))
    if all(b == target for b in badges):
        return Outcome(True, f"every task is {target}")
    return None


@dataclass(frozen=True, slots=True)
class Result:
    outcome: Outcome | None  # None: timed out or interrupted
    timed_out: bool
    snaps: tuple[TaskSnapshot, ...]  # the tasks as they were at the end
    problems: tuple[str, ...] = ()  # TASKs that matched no single task at the first look


def wait(config, refs: Sequence[str], target: str, timeout: float | None) -> Result:
    """Run the live engine until `outcome` has a verdict, `timeout` passes, or a signal."""
    from bgmon.engine import Monitor
    from bgmon.live import run_live
    from bgmon.resolve import AmbiguousTask, resolve_task

    monitor = Monitor(config)
    keys: list[str] = []
    state: dict = {"outcome": None, "problems": (), "snaps": ()}

    def emit(changes) -> None:
        if not keys:
            snaps, problems = monitor.snapshots(), []
            for ref in refs:
                try:
                    found = resolve_task(ref, snaps)
                except AmbiguousTask as exc:
                    problems.append(str(exc))
                    continue
                if found is None:
                    problems.append(f"no task matches {ref!r} (a key, id or name as --once shows)")
                else:
                    keys.append(found.key)
            if problems:
                state["problems"] = tuple(problems)
                return
        current = [monitor.find(key) for key in keys]  # None where a task went away
        state["snaps"] = tuple(s for s in current if s is not None)
        state["outcome"] = outcome(target, current, refs)

    def done() -> bool:
        return bool(state["problems"]) or state["outcome"] is not None

    timed_out = run_live(config, monitor, emit, done=done, timeout=timeout, journal=False)
    return Result(state["outcome"], timed_out, state["snaps"], state["problems"])
