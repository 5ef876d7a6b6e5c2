"""`bgmon run` under heavy output: a command printing many short lines, alone and supervised.

A Python child writes N lines (quick: 200,000; full: 1,000,000) to stdout. It runs alone (output
to /dev/null) and under `bgmon run -q` (output read, logged in the event log), alternately, 3
times each; the figure is the ratio of the medians. Also: the event log's size (capped at 64 MiB
plus its one rotation) and how many lines it kept. `bgmon run -- true` gives bgmon run's own
start-up cost. The issue measured 87 s against 0.5 s for 1M lines (174x) before the fix.
"""

from __future__ import annotations

import subprocess
import sys
import time

import common
from common import log

CHILD = ("import sys\nw = sys.stdout.write\n"
         "for i in range({n}): w(f'line {{i}} of the heavy output bench\\n')\n")


def timed(argv: list[str], env: dict[str, str], cwd) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   check=True, timeout=600)
    return time.perf_counter() - t0


def main() -> None:
    args = common.parse_args(__doc__)
    n = 200_000 if args.quick else 1_000_000
    code = CHILD.format(n=n)
    with common.tempdir("run") as base:
        env = common.bench_env(base / "home")
        alone, supervised, bare = [], [], []
        for i in range(3):
            alone.append(timed([sys.executable, "-c", code], env, base))
            supervised.append(timed(common.bgmon_argv("run", "-q", "--name", f"h{i}", "--",
                                                      sys.executable, "-c", code), env, base))
            bare.append(timed(common.bgmon_argv("run", "-q", "--name", f"t{i}", "--", "true"), env, base))
        logs = base / ".worktrees" / "h0" / "logs"
        size = sum(p.stat().st_size for p in logs.glob("events.jsonl*"))
        kept = sum(1 for p in logs.glob("events.jsonl*") for _ in p.open("rb"))
    a, s, b = common.median(alone), common.median(supervised), common.median(bare)
    ratio = s / a
    log(f"{n} lines: alone {a:.2f} s, bgmon run {s:.2f} s (ratio {ratio:.1f}); "
        f"bgmon run -- true {b:.2f} s; event log {size / common.MB:.1f} MB, {kept} lines")
    result = {"bench": "run", "lines": n, "alone_s": round(a, 3), "bgmon_run_s": round(s, 3),
              "ratio": round(ratio, 2), "bgmon_run_true_s": round(b, 3),
              "event_log_mb": round(size / common.MB, 1), "event_log_lines": kept}
    common.emit(result)
    common.record([(
        "`bgmon run` under heavy output: supervised ÷ alone (short lines)",
        "was 174 (87 s vs 0.5 s)",
        f"{ratio:.1f} ({s:.2f} s vs {a:.2f} s, {n:,} lines; bgmon run of `true`: {b:.2f} s; "
        f"event log {size / common.MB:.1f} MB)",
    )], args.quick, not args.no_record)


if __name__ == "__main__":
    main()
