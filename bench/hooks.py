"""Hook recorder: how long an agent waits for `bgmon hooks`' command on each lifecycle event.

Runs the exact command `bgmon hooks install claude` writes (the interpreter with -I -S and
bgmon/hooks/record.py) as a fresh process per event, as Claude Code does, feeding it a
PreToolUse payload on stdin; and, beside it, the same interpreter doing nothing (`-I -S -c
pass`), the floor any Python hook pays. Reports p50/p95 wall time of both (spawn to exit),
interleaved so that machine noise hits them alike. 200 events (quick: 30).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import common
from common import log

from bgmon.hooks.install import command

TARGET_MS = 50.0


def timed(argv: list[str], payload: bytes, env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, input=payload, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   env=env, check=False)
    return (time.perf_counter() - t0) * 1000


def main() -> None:
    args = common.parse_args(__doc__)
    n = 30 if args.quick else 200
    payload = json.dumps({
        "session_id": "0199aaaa-bbbb-cccc-dddd-eeeeffff0000", "transcript_path": "/tmp/t.jsonl",
        "cwd": "/work/app", "permission_mode": "default", "hook_event_name": "PreToolUse",
        "tool_name": "Bash", "tool_input": {"command": "npm test " + "x" * 2000}, "tool_use_id": "toolu_01",
    }).encode()
    recorder, floor = command("claude"), [sys.executable, "-I", "-S", "-c", "pass"]
    with common.tempdir("hooks") as base:
        env = {"PATH": "/usr/bin:/bin", "HOME": str(base), "BGMON_STATE_DIR": str(base / "state")}
        timed(recorder, payload, env)  # warm the page cache
        rec, bare = [], []
        for i in range(n):
            for argv, out in ((recorder, rec), (floor, bare)) if i % 2 else ((floor, bare), (recorder, rec)):
                out.append(timed(argv, payload, env))
        lines = (base / "state" / "hooks" / "claude" / "0199aaaa-bbbb-cccc-dddd-eeeeffff0000.jsonl")
        written = len(lines.read_text().splitlines())
    p50, p95 = common.median(rec), common.percentile(rec, 95)
    b50, b95 = common.median(bare), common.percentile(bare, 95)
    log(f"recorder p50 {p50:.1f} ms p95 {p95:.1f} ms; bare interpreter p50 {b50:.1f} ms p95 {b95:.1f} ms")
    result = {"bench": "hooks", "events": n, "lines_written": written, "recorder_p50_ms": round(p50, 1),
              "recorder_p95_ms": round(p95, 1), "bare_python_p50_ms": round(b50, 1),
              "bare_python_p95_ms": round(b95, 1), "ratio_p50": round(p50 / b50, 2),
              "target_p95_ms": TARGET_MS, "ok": p95 < TARGET_MS}
    common.emit(result)
    common.record([(
        "hooks: recorder per event (spawn to exit), p95",
        f"< {TARGET_MS:.0f} ms",
        f"{p95:.0f} ms {common.verdict(p95 < TARGET_MS)} (p50 {p50:.0f} ms; a bare `python -I -S` "
        f"{b50:.0f} ms; {n} events)",
    )], args.quick, not args.no_record)


if __name__ == "__main__":
    main()
