"""Ingest: a full read of a large Claude Code transcript through bgmon's reader and adapter.

Two mixes: the usual one (over half the lines are hook/bash `progress` lines, cheap to parse)
and one without progress lines (every line a message, call or result: the adapter's worst case).

What the engine does with new bytes: `TailReader.read()` until caught up (decoding each line with
the Claude format's schema: only the fields the adapter reads are built), `formats.claude.parse`
on every line, `Activity.extend` on each line's events. Measured in MB/s beside the floor of the
same run: reading the same file in the same chunks and a full `orjson.loads` of each line. Target:
at least 0.6 of the floor's speed. Passes alternate (floor, bgmon, floor, …) and medians are
reported, with the cost split into reading+decoding, parsing and folding.
"""

from __future__ import annotations

import gc
import os
import time
from collections import deque
from pathlib import Path

import common
import orjson
from common import MB, log

from bgmon.config import Config, Reading
from bgmon.engine import LogFeed, Monitor, TaskRecord
from bgmon.engine.store import new_feed
from bgmon.formats import parser_for
from bgmon.sources.discover import TaskSpec

TARGET = 0.6  # of the floor's speed
MIXES = ("with progress lines", "without progress lines")


def write_transcript(path: Path, size: int, mix: str = MIXES[0]) -> int:
    chunk = common.block("claude", 4 * MB, seed=3)
    if mix == MIXES[1]:
        chunk = b"".join(line for line in chunk.splitlines(keepends=True) if b'"type":"progress"' not in line)
    written = 0
    with open(path, "wb") as fh:
        while written + len(chunk) <= size:
            fh.write(chunk)
            written += len(chunk)
    return written


def floor(path: Path, chunk: int) -> int:
    """orjson.loads on every line, in the same chunks the reader reads: the least any reader
    must do. Lines are split without copying chunks together and decoded at C speed, each
    object dropped at once (as fast as a Python program can do it)."""
    loads = orjson.loads
    n = 0
    rest = b""
    with open(path, "rb") as fh:
        while data := fh.read(chunk):
            lines = data.split(b"\n")
            if rest:
                lines[0] = rest + lines[0]
            rest = lines.pop()
            deque(map(loads, lines), maxlen=0)
            n += len(lines)
    return n


def _feed(path: Path) -> LogFeed:
    """The feed the engine opens for a Claude transcript (its reader decodes with the format's
    schema), positioned at the start."""
    return new_feed(str(path), "claude", Reading())


def bgmon_pass(path: Path, stage: str) -> int:
    """The layers alone: "read" (reader: read, split, decode), "parse" (+ the Claude adapter)."""
    reader = _feed(path).reader
    read = getattr(reader, "read_iter", reader.read)
    parse = parser_for("claude")
    n = 0
    while True:
        before = n
        for obj in read():
            n += 1
            if stage == "parse":
                parse(obj)
        if n == before and not reader.behind:
            break
    assert reader.stats.bad_json == 0 and reader.stats.too_long == 0, reader.stats
    return n


def engine_pass(path: Path) -> int:
    """What the engine does with new bytes, through its own code: `TaskStore.drain` (reader →
    adapter → `Activity.apply`) until the reader has caught up."""
    monitor = Monitor(Config(sources=(), git=False))
    spec = TaskSpec(key="claude:bench", source="claude", id="bench", name="bench", path=str(path),
                    group="bench", logs=(str(path),), fmt="claude")
    record = TaskRecord(spec=spec)
    feed = _feed(path)
    record.feeds[str(path)] = feed
    while True:
        monitor.store.drain(record, feed)
        if not feed.reader.behind:
            break
    assert record.activity.events_seen > 0
    return feed.reader.stats.lines


def timed(fn, *args) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds of this process, result)."""
    gc.collect()
    wall, cpu = time.perf_counter(), time.process_time()
    n = fn(*args)
    return time.perf_counter() - wall, time.process_time() - cpu, n


def run_mix(base: Path, size: int, rounds: int, mix: str) -> dict:
    names = ("floor", "read", "parse", "engine")
    wall: dict[str, list[float]] = {k: [] for k in names}
    cpu: dict[str, list[float]] = {k: [] for k in names}
    lines: dict[str, int] = {}
    path = base / "session.jsonl"
    log(f"writing a {size // MB} MB transcript ({mix})")
    size = write_transcript(path, size, mix)
    common.settle()
    floor(path, Reading().read_chunk)  # warm the page cache
    for r in range(rounds):
        for name in names:
            if name == "floor":
                w, c, n = timed(floor, path, Reading().read_chunk)
            elif name == "engine":
                w, c, n = timed(engine_pass, path)
            else:
                w, c, n = timed(bgmon_pass, path, name)
            wall[name].append(w)
            cpu[name].append(c)
            lines[name] = n
        log(f"{mix}, round {r + 1}/{rounds}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in cpu.items()))
    if len(set(lines.values())) != 1:
        raise SystemExit(f"line counts differ: {lines}")
    path.unlink()
    mb = size / MB
    med = {k: common.median(v) for k, v in cpu.items()}
    speed = {k: mb / v for k, v in med.items()}
    wall_speed = {k: mb / common.median(v) for k, v in wall.items()}
    # The ratio uses CPU time: other processes on a busy machine stretch wall time unevenly.
    ratios = [cpu["floor"][i] / cpu["engine"][i] for i in range(rounds)]
    return {
        "mix": mix, "file_mb": round(mb, 1), "lines": lines["floor"],
        "mb_per_s_cpu": {"floor_orjson": round(speed["floor"], 1), "bgmon": round(speed["engine"], 1)},
        "mb_per_s_wall": {"floor_orjson": round(wall_speed["floor"], 1),
                          "bgmon": round(wall_speed["engine"], 1)},
        "ratio": round(speed["engine"] / speed["floor"], 3),
        "ratio_per_round": [round(x, 3) for x in ratios],
        "ratio_wall": round(wall_speed["engine"] / wall_speed["floor"], 3),
        "stages_cpu_s": {  # medians; each layer's cost is the difference to the one below
            "floor": round(med["floor"], 3),
            "read_split_decode": round(med["read"], 3),
            "claude_parse": round(med["parse"] - med["read"], 3),
            "fold_and_engine": round(med["engine"] - med["parse"], 3),
        },
    }


def main() -> None:
    args = common.parse_args(__doc__)
    quick = args.quick
    size = (20 if quick else 200) * MB
    rounds = 3 if quick else 5
    with common.tempdir("ingest") as base:
        mixes = [run_mix(base, size, rounds, mix) for mix in MIXES]
    ok = all(m["ratio"] >= TARGET for m in mixes)
    result = {"bench": "ingest", "quick": quick, "machine": common.machine(), "rounds": rounds,
              "mixes": mixes, "target": {"min_ratio": TARGET}, "ok": ok}
    common.emit(result)
    rows = []
    for m in mixes:
        spread = f"{min(m['ratio_per_round']):.2f}–{max(m['ratio_per_round']):.2f}"
        label = ("ingest: full parse of a Claude transcript, bgmon / orjson floor" if m["mix"] == MIXES[0]
                 else "ingest: the same, transcript without progress lines")
        rows.append((label, f"≥ {TARGET}",
                     f"{m['ratio']:.3f} {common.verdict(m['ratio'] >= TARGET)} (rounds {spread}; "
                     f"{m['mb_per_s_cpu']['bgmon']:.0f} vs {m['mb_per_s_cpu']['floor_orjson']:.0f} MB/s, "
                     f"{m['file_mb']:.0f} MB)"))
    common.record(rows, quick, not args.no_record)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
