"""Start-up: `bgmon --once --json` scales with tasks, not with log bytes.

Workspaces of N worktree tasks (bgmon event logs) and of N Claude Code transcripts, each log
1 MB of real lines or 100 MB (a sparse file whose last 1 MB is real lines). Every run is a fresh
`python -m bgmon` process; runs of all workspaces are interleaved so that machine noise hits them
alike. Reports medians, the ratio big/small logs (target ≤ 1.1), the marginal time per task
(over an empty workspace), the child's peak RSS, and how many bytes one `collect()` reads per
task (from /proc/self/io, in this process).
"""

from __future__ import annotations

import os
from pathlib import Path

import common
import orjson
from common import MB, log

RATIO_TARGET = 1.1  # issue 11


def _link_subset(src: list[Path], dst_dir_of, k: int) -> None:
    """A smaller workspace made of symlinks to the first `k` tasks of a bigger one."""
    for path in src[:k]:
        dst = dst_dir_of(path)
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(path, dst)


def build(base: Path, counts: list[int], sizes: dict[str, int]) -> dict[tuple[str, int, str], list[str]]:
    """Every workspace once; the smaller counts link into the biggest. → argv per config."""
    big_n = max(counts)
    configs: dict[tuple[str, int, str], list[str]] = {}
    for label, size in sizes.items():
        log(f"writing {big_n} worktree tasks with {label} logs")
        wt = base / f"wt-{label}-{big_n}"
        dirs = common.make_worktrees(wt, big_n, size)
        log(f"writing {big_n} Claude transcripts of {label}")
        cl = base / f"claude-{label}-{big_n}"
        files = common.make_claude(cl, big_n, size)
        for n in counts:
            wroot, croot = wt, cl
            if n != big_n:
                wroot = base / f"wt-{label}-{n}"
                _link_subset(dirs, lambda p, r=wroot: r / ".worktrees" / p.name, n)
                croot = base / f"claude-{label}-{n}"
                _link_subset(files, lambda p, r=croot: r / "projects" / p.parent.name / p.name, n)
            configs[("worktree", n, label)] = [*common.WORKTREE_FLAGS, str(wroot)]
            configs[("claude", n, label)] = [*common.claude_flags(croot), str(base)]
    empty = base / "empty"
    (empty / "claude").mkdir(parents=True)
    configs[("worktree", 0, "-")] = [*common.WORKTREE_FLAGS, str(empty)]
    configs[("claude", 0, "-")] = [*common.claude_flags(empty / "claude"), str(empty)]
    return configs


def read_bytes_per_task(args: list[str], n: int) -> float | None:
    """Bytes one in-process `collect()` reads from files, per task (Linux /proc/self/io)."""
    try:
        from bgmon.cli import build_parser, resolve_config
        from bgmon.engine import collect
    except ImportError:
        return None

    def rchar() -> int | None:
        try:
            with open("/proc/self/io") as fh:
                for line in fh:
                    if line.startswith("rchar:"):
                        return int(line.split()[1])
        except OSError:
            return None
        return None

    config, _ = resolve_config(build_parser().parse_args(["--once", "--json", *args]))
    before = rchar()
    monitor = collect(config)
    after = rchar()
    if before is None or after is None or len(monitor.tasks) != n:
        return None
    return (after - before) / n


def main() -> None:
    args = common.parse_args(__doc__, runs=(int, 0, "runs per workspace (default 5, quick 3)"))
    quick = args.quick
    counts = [20, 100] if quick else [100, 1000]
    runs = args.runs or (3 if quick else 5)
    sizes = {"1MB": MB, "100MB": 100 * MB}
    with common.tempdir("startup") as base:
        home = base / "home"
        env = common.bench_env(home)
        configs = build(base, counts, sizes)
        apparent, allocated = common.disk_usage(base)
        log(f"workspaces: {apparent / MB / 1024:.1f} GB of logs, {allocated / MB:.0f} MB on disk")
        common.settle()
        times: dict[tuple, list[float]] = {k: [] for k in configs}
        rss: dict[tuple, int] = {k: 0 for k in configs}
        n_tasks: dict[tuple, int] = {}
        for r in range(runs + 1):  # run 0 warms the caches and is not counted
            for key, argv in configs.items():
                child = common.run_child(common.bgmon_argv("--once", "--json", *argv), env, home)
                doc = orjson.loads(child.stdout)
                n_tasks[key] = len(doc["tasks"])
                if r:
                    times[key].append(child.wall)
                    rss[key] = max(rss[key], child.maxrss)
            log(f"run {r}/{runs} done")
        for key, n in n_tasks.items():
            if n != key[1]:
                raise SystemExit(f"{key}: expected {key[1]} tasks, bgmon found {n}")
        per_byte = {
            src: read_bytes_per_task(configs[(src, max(counts), "100MB")], max(counts))
            for src in ("worktree", "claude")
        }

    med = {k: common.median(v) for k, v in times.items()}
    result: dict = {"bench": "startup", "quick": quick, "machine": common.machine(), "runs": runs,
                    "tasks": counts, "log_sizes": list(sizes), "median_s": {}, "ratio_big_small": {},
                    "per_task_ms": {}, "peak_rss_mb": {}, "read_kb_per_task": {}}
    for src in ("worktree", "claude"):
        base_s = med[(src, 0, "-")]
        result["median_s"][src] = {"empty": round(base_s, 3)}
        for n in counts:
            small, big = med[(src, n, "1MB")], med[(src, n, "100MB")]
            result["median_s"][src][str(n)] = {"1MB": round(small, 3), "100MB": round(big, 3)}
            result["ratio_big_small"].setdefault(src, {})[str(n)] = round(big / small, 3)
        n = max(counts)
        marginal = (med[(src, n, "1MB")] + med[(src, n, "100MB")]) / 2 - base_s
        result["per_task_ms"][src] = {"marginal": round(marginal / n * 1000, 3),
                                      "total": round(med[(src, n, "100MB")] / n * 1000, 3)}
        result["peak_rss_mb"][src] = round(max(v for k, v in rss.items() if k[0] == src) / MB, 1)
        b = per_byte[src]
        result["read_kb_per_task"][src] = round(b / 1024, 1) if b is not None else None
    worst = max(r for by_n in result["ratio_big_small"].values() for r in by_n.values())
    result["max_ratio"] = worst
    result["target"] = {"max_ratio": RATIO_TARGET}
    result["ok"] = worst <= RATIO_TARGET
    common.emit(result)

    n = max(counts)
    note = f"({n:,} tasks, median of {runs})"
    rows = [("startup: 100 MB / 1 MB logs, worst ratio", f"≤ {RATIO_TARGET}",
             f"{worst:.2f} {common.verdict(worst <= RATIO_TARGET)} ({n:,} tasks)")]
    for src, title in (("worktree", "worktree tasks"), ("claude", "Claude transcripts")):
        m = result["median_s"][src][str(n)]
        rows.append((f"startup: `--once --json`, {title}, 1 MB → 100 MB logs", "(ratio above)",
                     f"{m['1MB']:.2f} s → {m['100MB']:.2f} s {note}"))
    pt = result["per_task_ms"]
    rows.append(("startup: time per task (marginal over empty)", "—",
                 f"{pt['worktree']['marginal']:.2f} ms worktree, {pt['claude']['marginal']:.2f} ms Claude"))
    rk = result["read_kb_per_task"]
    rows.append(("startup: bytes read per task (100 MB logs)", "≈ 256 KB back-scan",
                 f"{rk['worktree']} KB worktree, {rk['claude']} KB Claude"))
    common.record(rows, quick, not args.no_record)


if __name__ == "__main__":
    main()
