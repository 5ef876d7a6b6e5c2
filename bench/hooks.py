"""Hook recorder: how long an agent waits for `bgmon hooks`' command on each lifecycle event.

Runs the exact commands `bgmon hooks install claude` and `bgmon hooks install codex` write (the
interpreter with -I -S and bgmon/hooks/record.py) as a fresh process per event, as the agents
do, feeding each its agent's payload on stdin (Claude Code's PreToolUse, Codex's
PermissionRequest); and, beside them, the same interpreter doing nothing (`-I -S -c pass`), the
floor any Python hook pays. Reports p50/p95 wall time of each (spawn to exit), interleaved so
that machine noise hits them alike. 200 events each (quick: 30).
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


SESSION = "0199aaaa-bbbb-cccc-dddd-eeeeffff0000"
PAYLOADS = {
    "claude": {"session_id": SESSION, "transcript_path": "/tmp/t.jsonl", "cwd": "/work/app",
               "permission_mode": "default", "hook_event_name": "PreToolUse", "tool_name": "Bash",
               "tool_input": {"command": "npm test " + "x" * 2000}, "tool_use_id": "toolu_01"},
    "codex": {"session_id": SESSION, "turn_id": "019d036e-3164-72c3-a170-98925564c4fc", "cwd": "/work/app",
              "transcript_path": "/tmp/rollout.jsonl", "model": "gpt-5.5", "permission_mode": "default",
              "hook_event_name": "PermissionRequest", "tool_name": "Bash",
              "tool_input": {"command": "npm test " + "x" * 2000, "description": "run the tests"}},
}


def main() -> None:
    args = common.parse_args(__doc__)
    n = 30 if args.quick else 200
    runs = {agent: (command(agent), json.dumps(payload).encode()) for agent, payload in PAYLOADS.items()}
    runs["bare"] = ([sys.executable, "-I", "-S", "-c", "pass"], runs["claude"][1])
    times: dict[str, list[float]] = {name: [] for name in runs}
    with common.tempdir("hooks") as base:
        env = {"PATH": "/usr/bin:/bin", "HOME": str(base), "BGMON_STATE_DIR": str(base / "state")}
        timed(*runs["claude"], env)  # warm the page cache
        order = list(runs)
        for i in range(n):
            for name in order[i % len(order):] + order[: i % len(order)]:  # each goes first in turn
                times[name].append(timed(*runs[name], env))
        written = {agent: len((base / "state" / "hooks" / agent / f"{SESSION}.jsonl").read_text().splitlines())
                   for agent in PAYLOADS}
    p50 = {name: common.median(t) for name, t in times.items()}
    p95 = {name: common.percentile(t, 95) for name, t in times.items()}
    for name in runs:
        log(f"{name}: p50 {p50[name]:.1f} ms p95 {p95[name]:.1f} ms")
    worst = max(p95[agent] for agent in PAYLOADS)
    result = {"bench": "hooks", "events": n, "lines_written": written,
              **{f"{name}_p50_ms": round(p50[name], 1) for name in runs},
              **{f"{name}_p95_ms": round(p95[name], 1) for name in runs},
              "ratio_p50": round(max(p50[a] for a in PAYLOADS) / p50["bare"], 2),
              "target_p95_ms": TARGET_MS, "ok": worst < TARGET_MS}
    common.emit(result)
    common.record([(
        "hooks: recorder per event (spawn to exit), p95",
        f"< {TARGET_MS:.0f} ms",
        f"{worst:.0f} ms {common.verdict(worst < TARGET_MS)} (Claude p95 {p95['claude']:.0f} ms, p50 "
        f"{p50['claude']:.0f} ms; Codex p95 {p95['codex']:.0f} ms, p50 {p50['codex']:.0f} ms; a bare "
        f"`python -I -S` {p50['bare']:.0f} ms; {n} events each)",
    )], args.quick, not args.no_record)


if __name__ == "__main__":
    main()
