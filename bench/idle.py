"""Idle: what `bgmon --follow --json` costs while 1,000 quiet tasks are watched.

After the snapshot lines (and a few seconds to settle), the child's CPU time (all threads, from
psutil) is sampled over 30 s (quick: 10 s with 200 tasks) and its RSS is polled. Targets: under
1% of one core, under 150 MB. A quiet workspace must also produce no output lines.
"""

from __future__ import annotations

import time

import common
import psutil
from common import MB, log

TARGET_CPU_PCT = 1.0
TARGET_RSS_MB = 150.0


def main() -> None:
    args = common.parse_args(__doc__)
    quick = args.quick
    n = 200 if quick else 1000
    window = 10.0 if quick else 30.0
    settle = 3.0
    with common.tempdir("idle") as base:
        env = common.bench_env(base / "home")
        root = base / "root"
        log(f"writing {n} tasks")
        common.make_quiet_worktrees(root, n)
        follow = common.Follow([*common.WORKTREE_FLAGS, str(root)], env)
        try:
            follow.snapshots(n, timeout=180)
            proc = psutil.Process(follow.proc.pid)
            time.sleep(settle)
            follow.drain()
            log(f"measuring {window:.0f}s of idle")
            c0 = proc.cpu_times()
            t0 = time.perf_counter()
            peak = rss = proc.memory_info().rss
            while (left := t0 + window - time.perf_counter()) > 0:
                time.sleep(min(0.5, left))
                rss = proc.memory_info().rss
                peak = max(peak, rss)
            c1 = proc.cpu_times()
            elapsed = time.perf_counter() - t0
            threads = proc.num_threads()
            chatter = follow.drain()
        finally:
            err = follow.stop()
        if follow.proc.returncode != 0:
            raise SystemExit(f"bgmon --follow exited {follow.proc.returncode}\n{err}")

    used = (c1.user - c0.user) + (c1.system - c0.system)
    cpu_pct = used / elapsed * 100
    ok_cpu, ok_rss = cpu_pct < TARGET_CPU_PCT, peak / MB < TARGET_RSS_MB
    result = {
        "bench": "idle", "quick": quick, "machine": common.machine(), "tasks": n,
        "window_s": round(elapsed, 1),
        "cpu_pct_of_core": round(cpu_pct, 3),
        "cpu_s": {"user": round(c1.user - c0.user, 3), "system": round(c1.system - c0.system, 3)},
        "rss_mb": {"end": round(rss / MB, 1), "peak": round(peak / MB, 1)},
        "threads": threads, "lines_while_idle": len(chatter),
        "target": {"cpu_pct": TARGET_CPU_PCT, "rss_mb": TARGET_RSS_MB},
        "ok": ok_cpu and ok_rss and not chatter,
    }
    common.emit(result)
    note = f"({n:,} tasks, {elapsed:.0f} s)"
    rows = [
        ("idle `--follow`: CPU of one core", f"< {TARGET_CPU_PCT:.0f}%",
         f"{cpu_pct:.2f}% {common.verdict(ok_cpu)} {note}"),
        ("idle `--follow`: RSS (peak)", f"< {TARGET_RSS_MB:.0f} MB",
         f"{peak / MB:.0f} MB {common.verdict(ok_rss)} {note}"),
    ]
    common.record(rows, quick, not args.no_record)


if __name__ == "__main__":
    main()
