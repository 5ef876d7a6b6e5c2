"""History: a 500,000-record recovery journal (quick: 50,000), about 150 MB of JSON lines.

The journal is written the way bgmon writes it (health transitions of 2,000 tasks, proposals,
decisions, results, marks), then, each in a child process:
1. Migration, once: the first `bgmon --follow --json` (first snapshot and RSS), then, with the
   database removed again, the first `bgmon report --json`, builds the state database.
2. `bgmon report --json` afterwards (5 runs; quick: 2), beside the same command on an empty history.
   Target: < 1 s; peak RSS the same as with an empty history.
3. `bgmon history TASK --json` for a task that is gone, by its name (5 runs; quick: 2): the
   store's indexes by key, id and name, and its worktree keys, answer it. Target: < 1 s.
4. First snapshot: `bgmon --follow --json` over 200 worktree tasks until every task's snapshot
   line is out (5 runs; quick: 2), beside an empty history; its RSS then, and 3 s later (quick: 1 s). Target: < 1 s;
   RSS unchanged by the history.
"""

from __future__ import annotations

import os
import random
import selectors
import signal
import subprocess
import time
from pathlib import Path

import common
import orjson
from common import MB, log

TARGET_S = 1.0
RUNS = 5
TASKS = 200
JOURNAL = Path(".agents") / "logs" / "background_monitoring.jsonl"
PATTERNS = ["stalled", "rate_limited", "disk_full", "oom", "auth", "network", None]


def write_history(path: Path, n: int, seed: int = 11) -> None:
    """`n` records of bgmon's own shapes, oldest first, spread over the last 30 days."""
    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.time() - 30 * 86400
    step = 30 * 86400 / n
    badges = {}
    proposals: list[tuple[str, str]] = []
    with open(path, "wb") as f:
        buf = []
        for i in range(n):
            ts = common._iso(t0 + i * step)
            task = f"worktree:/srv/repo/.worktrees/task-{rng.randrange(2000):04d}"
            tid = task.rsplit("-", 1)[1]
            roll = rng.random()
            if roll < 0.85:
                old = badges.get(task)
                new = rng.choice(["healthy", "struggling", "stuck", "failed", "completed"])
                badges[task] = new
                pat = rng.choice(PATTERNS) if new in ("struggling", "stuck", "failed") else None
                rec = {"kind": "health", "task": task, "task_id": tid, "from": old, "to": new,
                       "reasons": [{"rule": "stuck.silent", "detail": "no sign of life for 12m; "
                                    "last event Bash(make test) exited 2"}],
                       "patterns": [pat] if pat else []}
            elif roll < 0.90:
                pid = f"p_{i:08x}"
                proposals.append((pid, task))
                rec = {"kind": "proposal", "task": task, "task_id": tid, "patterns": ["stalled"],
                       "basis": {"badge": "stuck", "pid": 4242},
                       "proposal": {"id": pid, "task": task, "task_id": tid, "source": "rules",
                                    "model": None, "diagnosis": "the task is stalled",
                                    "confidence": 0.6, "actions": [{"kind": "mark", "note": "x"}],
                                    "refused": [], "created": ts}}
            elif roll < 0.94 and proposals:
                pid, ptask = rng.choice(proposals)
                rec = {"kind": "decision", "task": ptask, "task_id": tid, "proposal": pid,
                       "decision": rng.choice(["approved", "rejected"]), "reason": None, "by": "tui"}
            elif roll < 0.98 and proposals:
                pid, ptask = rng.choice(proposals)
                rec = {"kind": "result", "task": ptask, "task_id": tid, "proposal": pid,
                       "ok": True, "results": [{"kind": "restart", "ok": True, "effect": "restart"}]}
            else:
                rec = {"kind": "mark", "task": task, "task_id": tid, "note": rng.choice(["", "seen"])}
            buf.append(orjson.dumps({"v": 1, "ts": ts, **rec}))
            if len(buf) >= 10_000:
                f.write(b"\n".join(buf) + b"\n")
                buf.clear()
        if buf:
            f.write(b"\n".join(buf) + b"\n")


def report(root: Path, env: dict) -> common.Child:
    child = common.run_child(common.bgmon_argv("report", "--json", "--root", str(root)), env, root)
    orjson.loads(child.stdout)
    return child


GONE = "task-1500"  # in the journal, not among the workspace's tasks: found by name


def history_of(root: Path, env: dict) -> common.Child:
    return common.run_child(common.bgmon_argv("history", GONE, "--json", "--root", str(root),
                                              *common.WORKTREE_FLAGS), env, root)


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def first_snapshot(root: Path, env: dict, later: float) -> tuple[float, float, float]:
    """(seconds until every task's snapshot line, RSS MB then, RSS MB `later` s later)."""
    argv = common.bgmon_argv("--follow", "--json", *common.WORKTREE_FLAGS, str(root))
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, cwd=root, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        seen, buf = 0, b""
        deadline = time.monotonic() + 120
        while seen < TASKS:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"--follow showed {seen} of {TASKS} tasks")
            if sel.select(1.0):
                buf += os.read(proc.stdout.fileno(), 1 << 20)
                *lines, buf = buf.split(b"\n")
                seen += sum(1 for x in lines if x.strip())
        took = time.perf_counter() - start
        rss_first = rss_mb(proc.pid)
        time.sleep(later)
        return took, rss_first, rss_mb(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def spread(values: list[float], digits: int = 2) -> dict:
    return {"median": round(common.median(values), digits), "min": round(min(values), digits),
            "max": round(max(values), digits)}


def main() -> None:
    args = common.parse_args(__doc__)
    quick = args.quick
    n = 50_000 if quick else 500_000
    result: dict = {"bench": "history", "quick": quick, "machine": common.machine(), "records": n}
    with common.tempdir("history") as base:
        env = common.bench_env(base / "home")
        roots = {"empty": base / "empty", "history": base / "history"}
        for root in roots.values():
            common.make_worktrees(root, TASKS, 64 << 10, tail=64 << 10)
        write_history(roots["empty"] / JOURNAL, 10)
        log(f"writing a {n:,}-record journal")
        write_history(roots["history"] / JOURNAL, n)
        result["journal_mb"] = round((roots["history"] / JOURNAL).stat().st_size / MB, 1)
        common.settle()
        # First use: the live monitor builds the database before its first snapshot.
        first_use = first_snapshot(roots["history"], env, 0.0)
        for suffix in ("", "-wal", "-shm"):
            Path(str((roots["history"] / JOURNAL).with_suffix(".db")) + suffix).unlink(missing_ok=True)
        migrate = report(roots["history"], env)
        report(roots["empty"], env)
        db = (roots["history"] / JOURNAL).with_suffix(".db")
        result["migration"] = {"seconds": round(migrate.wall, 2),
                               "peak_rss_mb": round(migrate.maxrss / MB, 1),
                               "db_mb": round(db.stat().st_size / MB, 1),
                               "first_snapshot_s": round(first_use[0], 2),
                               "follow_rss_mb": round(first_use[1], 1)}
        log(f"migration: {migrate.wall:.2f}s, peak RSS {migrate.maxrss / MB:.0f} MB")
        reports: dict[str, list] = {"empty": [], "history": []}
        snaps: dict[str, list] = {"empty": [], "history": []}
        histories: dict[str, list] = {"empty": [], "history": []}
        for _ in range(2 if quick else RUNS):
            for name, root in roots.items():  # side by side, interleaved
                reports[name].append(report(root, env))
                histories[name].append(history_of(root, env))
                snaps[name].append(first_snapshot(root, env, 1.0 if quick else 3.0))
        for name in roots:
            result[name] = {
                "report_s": spread([c.wall for c in reports[name]]),
                "report_peak_rss_mb": spread([c.maxrss / MB for c in reports[name]], 1),
                "history_task_s": spread([c.wall for c in histories[name]]),
                "history_task_records": len(orjson.loads(histories[name][-1].stdout)),
                "first_snapshot_s": spread([s[0] for s in snaps[name]]),
                "follow_rss_mb": spread([s[1] for s in snaps[name]], 1),
                "follow_rss_3s_mb": spread([s[2] for s in snaps[name]], 1),
            }
            log(f"{name}: {result[name]}")
    h, e = result["history"], result["empty"]
    rss_ratio = h["follow_rss_3s_mb"]["median"] / e["follow_rss_3s_mb"]["median"]
    report_rss_ratio = h["report_peak_rss_mb"]["median"] / e["report_peak_rss_mb"]["median"]
    ok = (h["report_s"]["median"] < TARGET_S and h["first_snapshot_s"]["median"] < TARGET_S
          and h["history_task_s"]["median"] < TARGET_S and rss_ratio < 1.05 and report_rss_ratio < 1.05)
    result["ratios"] = {"follow_rss_history_vs_empty": round(rss_ratio, 3),
                        "report_rss_history_vs_empty": round(report_rss_ratio, 3)}
    result["target"] = {"seconds": TARGET_S, "rss_ratio": "< 1.05"}
    result["ok"] = ok
    common.emit(result)
    label = f"{n:,}-record history"
    rows = [
        (f"history: first snapshot (`--follow`, {TASKS} tasks) with a 500k-record journal",
         f"< {TARGET_S:.0f} s",
         f"{h['first_snapshot_s']['median']:.2f} s {common.verdict(h['first_snapshot_s']['median'] < TARGET_S)} "
         f"(empty history {e['first_snapshot_s']['median']:.2f} s; {label})"),
        ("history: `bgmon report` on a 500k-record journal", f"< {TARGET_S:.0f} s",
         f"{h['report_s']['median']:.2f} s {common.verdict(h['report_s']['median'] < TARGET_S)} "
         f"(empty {e['report_s']['median']:.2f} s; {label})"),
        ("history: `bgmon history TASK` (a gone task, by name) on a 500k-record journal",
         f"< {TARGET_S:.0f} s",
         f"{h['history_task_s']['median']:.2f} s {common.verdict(h['history_task_s']['median'] < TARGET_S)} "
         f"({h['history_task_s']['min']:.2f}–{h['history_task_s']['max']:.2f}; "
         f"{h['history_task_records']} records of {label}; empty {e['history_task_s']['median']:.2f} s)"),
        ("history: RSS with a 500k-record journal ÷ empty", "unchanged",
         f"--follow {rss_ratio:.2f}, report {report_rss_ratio:.2f} "
         f"{common.verdict(rss_ratio < 1.05 and report_rss_ratio < 1.05)} "
         f"({h['follow_rss_3s_mb']['median']:.0f} vs {e['follow_rss_3s_mb']['median']:.0f} MB)"),
        ("history: one-time migration of a 500k-record journal", "(information)",
         f"{result['migration']['seconds']:.1f} s, peak RSS {result['migration']['peak_rss_mb']:.0f} MB; "
         f"first snapshot then {result['migration']['first_snapshot_s']:.1f} s "
         f"({result['journal_mb']:.0f} MB journal → {result['migration']['db_mb']:.0f} MB database; {label})"),
    ]
    common.record(rows, quick, not args.no_record)


if __name__ == "__main__":
    main()
