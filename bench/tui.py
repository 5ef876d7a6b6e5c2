"""TUI: the live app (`BgmonApp`, live engine on) under `App.run_test(size=(120, 40))`.

1. First full screen: from starting a fresh Python process (so bgmon's and Textual's imports
   count) over 1,000 quiet worktree tasks (quick: 200) until the engine's first look is in the
   tree (every task has its row) and the screen has been painted; median of 3 (the child prints
   one line then, the parent stamps its arrival). Target < 1 s. For information, the same from
   constructing the app in an already warm process.
2. Batches of 100 badge changes: the changes enter where the engine's do (`app.emit`, which
   posts one coalesced message), and the clock stops when all 100 rows carry the new badge and
   the screen update is painted. Half the batches turn 100 tasks struggling, half heal them.
   Target < 50 ms per batch. The re-sort that follows a second later (one rebuild of the tree,
   if the order under the sort changed) is timed on its own.
3. End to end, for information: three failing results appended to 100 task logs at once, until
   all 100 rows show struggling (file watch, engine, UI).
4. At scale (issue 11), the same three over 5,000 and 10,000 tasks (quick: 300 and 600), side by
   side in the same run. No targets of their own: the figures say how the app grows.

The screen is painted by calling the screen's update directly (what `Pilot.pause` does), not
by waiting for the next frame: the figures exclude Textual's frame pacing (≤ 1/60 s).
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from dataclasses import replace
from pathlib import Path

import common
from common import log

FIRST_TARGET_S = 1.0
BATCH_TARGET_MS = 50.0
BATCH = 100
SCALE = {True: (300, 600), False: (5000, 10000)}  # quick, full


async def until(predicate, timeout: float, step: float = 0.002) -> bool:
    deadline = time.perf_counter() + timeout
    while not predicate():
        if time.perf_counter() > deadline:
            return False
        await asyncio.sleep(step)
    return True


def paint(app) -> None:
    """Lay out and render what is dirty now (as `Pilot.pause` does at its end)."""
    app.screen._on_timer_update()


async def first_screen_child(root: Path, n: int) -> None:
    """In a fresh process: imports, the app, the first painted screen; then one line."""
    import sys

    from bgmon.config import Config
    from bgmon.views.tui.app import BgmonApp

    config = Config(roots=(str(root),), sources=("worktrees", "omo"), git=False)
    app = BgmonApp(config)
    async with app.run_test(size=(120, 40)):
        if not await until(lambda: app.loaded and len(app.sync.nodes) == n, timeout=120):
            raise SystemExit(f"the tree did not fill: {len(app.sync.nodes)} of {n} rows")
        paint(app)
        sys.stdout.write("painted\n")
        sys.stdout.flush()


def first_screen_cold(root: Path, n: int, env: dict) -> float:
    """Seconds from spawning `python bench/tui.py --first-screen-child` to its line."""
    import subprocess
    import sys

    t0 = time.perf_counter()
    child = subprocess.Popen([sys.executable, __file__, "--first-screen-child", str(root), "--tasks", str(n)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert child.stdout is not None
    line = child.stdout.readline()
    took = time.perf_counter() - t0
    _, err = child.communicate(timeout=60)
    if line.strip() != b"painted":
        raise SystemExit(f"first-screen child failed: {err.decode(errors='replace')[-2000:]}")
    return took


async def measure(root: Path, n: int, batches: int) -> dict:
    from bgmon.config import Config
    from bgmon.engine import Change
    from bgmon.model import Badge, Health, Reason, TaskSnapshot
    from bgmon.views.tui.app import BgmonApp

    config = Config(roots=(str(root),), sources=("worktrees", "omo"), git=False)
    out: dict = {}
    t0 = time.perf_counter()
    app = BgmonApp(config)
    async with app.run_test(size=(120, 40)) as pilot:
        ok = await until(lambda: app.loaded and len(app.sync.nodes) == n, timeout=60)
        if not ok:
            raise SystemExit(f"the tree did not fill: {len(app.sync.nodes)} of {n} rows")
        paint(app)
        out["first_screen_s"] = time.perf_counter() - t0
        first = app.task_tree.get_node_at_line(1)
        if first is None or not isinstance(first.data, TaskSnapshot):
            raise SystemExit("no task row on the first screen")
        await pilot.pause()

        # -- badge batches through app.emit ----------------------------------------------------
        rng = random.Random(9)
        keys = sorted(app.sync.snaps)
        sick = Health(Badge.STRUGGLING, (Reason(
            "struggling.streak", "3 failed tool calls in a row (Bash: exit 1) [threshold 3]"),))
        resorts: list[float] = []
        real_check = app.check_order

        def timed_check() -> None:
            started = time.perf_counter()
            real_check()
            resorts.append(time.perf_counter() - started)

        app.check_order = timed_check  # the app's timer calls it by attribute
        batch_ms: list[float] = []
        chosen: list[str] = []
        for b in range(batches):
            if b % 2 == 0:
                chosen = rng.sample(keys, BATCH)
                target = Badge.STRUGGLING
            else:
                target = Badge.HEALTHY
            changes = []
            for key in chosen:
                snap = app.sync.snaps[key]
                health = sick if target is Badge.STRUGGLING else Health(
                    Badge.HEALTHY, (Reason("active", "last sign of life 2s ago (log append)"),))
                changes.append(Change("health", key, replace(snap, health=health), snap.health))
            before = len(resorts)

            def shown(keys=chosen, target=target) -> bool:
                nodes = app.sync.nodes
                return all(nodes[k].data.health.badge is target for k in keys)

            started = time.perf_counter()
            app.emit(changes)
            if not await until(shown, timeout=10, step=0):
                raise SystemExit(f"batch {b}: the badges did not change")
            paint(app)
            batch_ms.append((time.perf_counter() - started) * 1000)
            # Let the re-sort (ORDER_CHECK later) happen before the next batch.
            await until(lambda before=before: len(resorts) > before, timeout=10)
            await pilot.pause()
        out["batch_ms"] = batch_ms
        out["resort_ms"] = [r * 1000 for r in resorts]
        app.check_order = real_check

        # -- end to end: appends to 100 logs ----------------------------------------------------
        healthy = [k for k in keys if app.sync.snaps[k].health.badge is Badge.HEALTHY]
        picked = rng.sample(healthy, BATCH)
        data = common.failing_lines("e2e")
        started = time.perf_counter()
        for key in picked:
            path = Path(app.sync.snaps[key].path) / "logs" / "events.jsonl"
            with open(path, "ab") as fh:
                fh.write(data)
        seen = await until(lambda: all(app.sync.nodes[k].data.health.badge is Badge.STRUGGLING
                                       for k in picked if k in app.sync.nodes), timeout=20)
        paint(app)
        out["e2e_ms"] = (time.perf_counter() - started) * 1000 if seen else None
        out["rows"] = len(app.sync.nodes)
    return out


def main() -> None:
    args = common.parse_args(__doc__, first_screen_child=(str, "", "internal: a fresh process's first screen"),
                             tasks=(int, 0, "number of tasks (default 1,000; quick 200)"))
    if args.first_screen_child:
        asyncio.run(first_screen_child(Path(args.first_screen_child), args.tasks))
        return
    quick = args.quick
    n = args.tasks or (200 if quick else 1000)
    batches = 6 if quick else 10
    scale = () if args.tasks else SCALE[quick]
    runs = {size: run_size(size, batches) for size in (n, *scale)}
    cold, got = runs[n]
    first = common.median(cold)
    warm = got["first_screen_s"]
    med, worst = common.median(got["batch_ms"]), max(got["batch_ms"])
    resort = common.median(got["resort_ms"]) if got["resort_ms"] else None
    ok_first, ok_batch = first < FIRST_TARGET_S, worst < BATCH_TARGET_MS
    result = {
        "bench": "tui", "quick": quick, "machine": common.machine(), "tasks": n, "size": [120, 40],
        "first_screen_s": round(first, 3), "first_screen_all_s": [round(x, 3) for x in cold],
        "first_screen_warm_process_s": round(warm, 3),
        "batch_of_100_ms": {"median": round(med, 1), "max": round(worst, 1),
                            "all": [round(x, 1) for x in got["batch_ms"]]},
        "resort_ms": {"median": round(resort, 1) if resort else None,
                      "all": [round(x, 1) for x in got["resort_ms"]]},
        "e2e_100_appends_ms": round(got["e2e_ms"], 1) if got["e2e_ms"] else None,
        "target": {"first_screen_s": FIRST_TARGET_S, "batch_ms": BATCH_TARGET_MS},
        "ok": ok_first and ok_batch,
    }
    result["scale"] = [scale_result(size, *runs[size]) for size in scale]
    common.emit(result)
    note = f"({n:,} tasks, 120×40)"
    rows = [
        ("TUI: first full screen (live engine)", f"< {FIRST_TARGET_S:.0f} s",
         f"{first:.2f} s {common.verdict(ok_first)} (fresh process, imports included; median of 3, "
         f"{min(cold):.2f}–{max(cold):.2f} s; {warm:.2f} s in a warm process) {note}"),
        ("TUI: batch of 100 badge changes shown", f"< {BATCH_TARGET_MS:.0f} ms",
         f"max {worst:.0f} ms {common.verdict(ok_batch)} (median {med:.0f} ms, {len(got['batch_ms'])} batches; "
         f"{n:,} tasks, 120×40)"),
        ("TUI: re-sort after a batch (rows moved into place)", "—",
         f"{resort:.0f} ms median {note}" if resort is not None else "none needed"),
        ("TUI: 100 logs appended → 100 rows struggling (end to end)", "—",
         f"{got['e2e_ms']:.0f} ms {note}" if got["e2e_ms"] else "not seen within 20 s"),
    ]
    if scale:
        rows += scale_rows(result["scale"])
    common.record(rows, quick, not args.no_record)


def run_size(n: int, batches: int) -> tuple[list[float], dict]:
    """First screen in 3 fresh processes, then batches, re-sorts and end to end in one app."""
    with common.tempdir("tui") as base:
        env = common.bench_env(base / "home")
        os.environ.update({k: env[k] for k in ("HOME", "XDG_CONFIG_HOME", "CLAUDE_CONFIG_DIR", "CODEX_HOME")})
        root = base / "root"
        log(f"writing {n} tasks")
        common.make_quiet_worktrees(root, n)
        log("first screen in fresh processes (imports included)")
        common.settle()
        cold = [first_screen_cold(root, n, env) for _ in range(3)]
        log("running the app")
        return cold, asyncio.run(measure(root, n, batches))


def scale_result(n: int, cold: list[float], got: dict) -> dict:
    return {"tasks": n, "first_screen_s": round(common.median(cold), 3),
            "first_screen_all_s": [round(x, 3) for x in cold],
            "batch_of_100_ms": {"median": round(common.median(got["batch_ms"]), 1),
                                "max": round(max(got["batch_ms"]), 1)},
            "resort_ms_median": round(common.median(got["resort_ms"]), 1) if got["resort_ms"] else None,
            "e2e_100_appends_ms": round(got["e2e_ms"], 1) if got["e2e_ms"] else None}


def scale_rows(scale: list[dict]) -> list[tuple[str, str, str]]:
    """One row per figure, both sizes side by side (as bench/scale.py writes its rows)."""
    sizes = " / ".join(f"{s['tasks']:,}" for s in scale)

    def both(fmt) -> str:
        return " / ".join(fmt(s) for s in scale)

    def ms(value: float | None) -> str:
        return f"{value:.0f}" if value else "—"

    first = both(lambda s: f"{s['first_screen_s']:.2f}")
    spread = both(lambda s: f"{min(s['first_screen_all_s']):.2f}–{max(s['first_screen_all_s']):.2f}")
    return [
        ("TUI at scale: first full screen (fresh process)", "—",
         f"{first} s ({sizes} tasks; median of 3, {spread} s)"),
        ("TUI at scale: batch of 100 badge changes shown", "—",
         f"max {both(lambda s: ms(s['batch_of_100_ms']['max']))} ms (median "
         f"{both(lambda s: ms(s['batch_of_100_ms']['median']))} ms; {sizes} tasks)"),
        ("TUI at scale: re-sort after a batch (rows moved into place)", "—",
         f"{both(lambda s: ms(s['resort_ms_median']))} ms median ({sizes} tasks)"),
        ("TUI at scale: 100 logs appended → 100 rows struggling", "—",
         f"{both(lambda s: ms(s['e2e_100_appends_ms']))} ms ({sizes} tasks)"),
    ]


if __name__ == "__main__":
    main()
