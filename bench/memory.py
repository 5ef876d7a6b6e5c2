"""Memory: peak RSS of `bgmon --once --json` over 1,000 tasks with 10 GB of logs in total.

Each task's log is 10 MB: a sparse file whose last 512 KB are real lines (more than the 256 KB
start-up back-scan reads). Run once for worktree tasks (bgmon event logs) and once for Claude
Code transcripts (bigger lines, more state per task). The peak RSS of the child comes from
wait4() for that child alone. Target: under 150 MB. Quick: 200 tasks (2 GB).
"""

from __future__ import annotations

import common
import orjson
from common import MB, log

TARGET_MB = 150.0
LOG_SIZE = 10 * MB
TAIL = 512 << 10


def main() -> None:
    args = common.parse_args(__doc__)
    quick = args.quick
    n = 200 if quick else 1000
    result: dict = {"bench": "memory", "quick": quick, "machine": common.machine(), "tasks": n,
                    "log_mb_each": LOG_SIZE // MB, "peak_rss_mb": {}, "seconds": {}}
    with common.tempdir("memory") as base:
        env = common.bench_env(base / "home")
        log(f"writing {n} worktree tasks and {n} Claude transcripts of {LOG_SIZE // MB} MB each")
        root = base / "root"
        common.make_worktrees(root, n, LOG_SIZE, tail=TAIL)
        claude = base / "claude"
        common.make_claude(claude, n, LOG_SIZE, tail=TAIL)
        apparent, allocated = common.disk_usage(root)
        result["logs_gb_per_run"] = round(apparent / 1024**3, 2)  # the Claude set is the same size
        result["on_disk_mb_per_run"] = round(allocated / MB)
        common.settle()
        for src, flags in (("worktree", [*common.WORKTREE_FLAGS, str(root)]),
                           ("claude", [*common.claude_flags(claude), str(base)])):
            child = common.run_child(common.bgmon_argv("--once", "--json", *flags), env, base / "home")
            found = len(orjson.loads(child.stdout)["tasks"])
            if found != n:
                raise SystemExit(f"{src}: expected {n} tasks, bgmon found {found}")
            result["peak_rss_mb"][src] = round(child.maxrss / MB, 1)
            result["seconds"][src] = round(child.wall, 2)
            log(f"{src}: peak RSS {child.maxrss / MB:.1f} MB in {child.wall:.2f}s")
    worst = max(result["peak_rss_mb"].values())
    result["target"] = {"peak_rss_mb": TARGET_MB}
    result["ok"] = worst < TARGET_MB
    common.emit(result)
    p = result["peak_rss_mb"]
    rows = [(f"memory: peak RSS of `--once`, {LOG_SIZE // MB} MB logs per task", f"< {TARGET_MB:.0f} MB",
             f"{worst:.0f} MB {common.verdict(worst < TARGET_MB)} (worktree {p['worktree']:.0f}, "
             f"Claude {p['claude']:.0f}; {n:,} tasks, {result['logs_gb_per_run']:.0f} GB of logs)")]
    common.record(rows, quick, not args.no_record)


if __name__ == "__main__":
    main()
