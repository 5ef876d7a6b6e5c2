"""Shared by every bench: synthetic workspaces, child processes, the machine, the results table.

Logs are generated, never copied from real sessions: a block of realistic lines is built once
(bgmon's own event format, or Claude Code transcript lines of the same shape and size mix as
real transcripts) and written as often as needed. A "big" log is a sparse file whose last part
holds real lines: its size is real to every stat and seek, but only its tail costs disk. That is
a fair test of "reads only the end": a reader that reads from the start pays for every byte.

Every bench prints ONE JSON object on stdout (progress goes to stderr) and records its figures
in bench/README.md's results table (quick runs in the quick column, full runs in the full one).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import random
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
README = BENCH_DIR / "README.md"
MB = 1 << 20

# -- command line, output -------------------------------------------------------------------


def parse_args(doc: str | None, **extra: tuple[type, object, str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(doc or "").strip().splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small, fast variant (CI runs this)")
    p.add_argument("--no-record", action="store_true", help="do not update bench/README.md")
    for name, (kind, default, help_text) in extra.items():
        p.add_argument(f"--{name.replace('_', '-')}", type=kind, default=default, help=help_text)
    return p.parse_args()


def log(message: str) -> None:
    """Progress for people; stdout carries only the result object."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def emit(result: dict) -> None:
    sys.stdout.write(json.dumps(result, sort_keys=False) + "\n")
    sys.stdout.flush()


def median(values: list[float]) -> float:
    return statistics.median(values)


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(p / 100 * len(ordered) + 0.5 - 1e-9)))
    return ordered[rank - 1]


# -- the machine ----------------------------------------------------------------------------


def machine() -> dict:
    cpu = platform.processor() or "?"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "load1": round(load, 2) if load is not None else None,
    }


def machine_text(m: dict) -> str:
    return f"{m['nproc']}× {m['cpu']}, Python {m['python']}"


# -- temp dirs and environment --------------------------------------------------------------


@contextlib.contextmanager
def tempdir(name: str) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=f"bgmon-bench-{name}-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def bench_env(home: Path) -> dict[str, str]:
    """The child sees no user config and no real agent folders."""
    for sub in (".config", ".claude", ".codex"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        CLAUDE_CONFIG_DIR=str(home / ".claude"),
        CODEX_HOME=str(home / ".codex"),
        PYTHONDONTWRITEBYTECODE="1",
    )
    env.pop("BGMON_MODEL", None)
    return env


def bgmon_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "bgmon", *args]


WORKTREE_FLAGS = ("--no-git", "--no-claude", "--no-codex")


def claude_flags(claude_dir: Path) -> tuple[str, ...]:
    return ("--no-worktrees", "--no-git", "--no-codex", "--claude-dir", str(claude_dir))


@dataclass
class Child:
    wall: float  # seconds
    maxrss: int  # bytes (peak resident set of the child itself)
    cpu: float  # user + system seconds
    code: int
    stdout: bytes


def run_child(argv: list[str], env: dict[str, str], cwd: Path) -> Child:
    """Run to completion; peak RSS and CPU come from wait4() for this child alone."""
    out = cwd / "child.out"
    err = cwd / "child.err"
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, str(out), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644),
        (os.POSIX_SPAWN_OPEN, 2, str(err), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644),
    ]
    start = time.perf_counter()
    pid = os.posix_spawn(argv[0], argv, env, file_actions=actions)
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    stdout = out.read_bytes()
    if code not in (0, 1):  # 1 = "something is struggling" for --once; not a crash
        sys.stderr.write(err.read_text(errors="replace"))
        raise RuntimeError(f"{' '.join(argv)} exited {code}")
    rss = usage.ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    return Child(wall, rss, usage.ru_utime + usage.ru_stime, code, stdout)


# -- synthetic lines ------------------------------------------------------------------------

_WORDS = (
    "the", "a", "test", "build", "module", "config", "cache", "worker", "queue", "handler",
    "request", "response", "parse", "render", "index", "schema", "migration", "table", "column", "value",
    "error", "warning", "retry", "timeout", "socket", "connect", "assert", "expected", "actual", "fixture",
    "session", "token", "buffer", "stream", "chunk", "line", "file", "path", "folder", "update",
    "create", "delete", "select", "insert", "merge", "branch", "commit", "review", "deploy", "release",
    "version", "check", "lint", "format", "type", "import", "export", "class", "function", "method",
    "return", "yield", "async", "await",
)
_FILES = ["src/app.py", "src/db/models.py", "lib/parse.ts", "tests/test_api.py", "README.md",
          "src/cache.rs", "web/index.tsx", "Makefile", "pkg/server/handler.go", "docs/usage.md"]


def _text(rng: random.Random, n_words: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(n_words))


def _output(rng: random.Random, size: int) -> str:
    """Tool output of roughly `size` characters, in lines."""
    lines, total = [], 0
    while total < size:
        line = f"{rng.choice(_FILES)}:{rng.randint(1, 900)}: {_text(rng, rng.randint(4, 14))}"
        lines.append(line)
        total += len(line) + 1
    return "\n".join(lines)[:size]


def _uuid(rng: random.Random) -> str:
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:]}"


def _iso(ts: float) -> str:
    d = dt.datetime.fromtimestamp(ts, dt.UTC)
    return d.strftime("%Y-%m-%dT%H:%M:%S.") + f"{d.microsecond // 1000:03d}Z"


def _tool_call(rng: random.Random) -> tuple[str, dict]:
    kind = rng.randrange(4)
    if kind == 0:
        return "Bash", {"command": f"pytest -x {rng.choice(_FILES)} -k {rng.choice(_WORDS)}",
                        "description": _text(rng, 5)}
    if kind == 1:
        return "Read", {"file_path": f"/work/repo/{rng.choice(_FILES)}"}
    if kind == 2:
        return "Edit", {"file_path": f"/work/repo/{rng.choice(_FILES)}",
                        "old_string": _text(rng, rng.randint(5, 40)),
                        "new_string": _text(rng, rng.randint(5, 40))}
    return "Grep", {"pattern": rng.choice(_WORDS), "path": "/work/repo"}


def native_lines(rng: random.Random, n_cycles: int) -> list[dict]:
    """bgmon's own event lines (docs/formats.md), as a healthy `bgmon run` task writes them."""
    out: list[dict] = []
    done = 0
    for i in range(n_cycles):
        if i % 8 == 0:
            out.append({"type": "step", "text": _text(rng, rng.randint(3, 8))})
        tool, inp = _tool_call(rng)
        cid = f"c{rng.getrandbits(40):x}"
        out.append({"type": "tool_call", "tool": tool, "call_id": cid, "input": inp})
        for _ in range(rng.randint(0, 2)):
            out.append({"type": "message", "stream": "stdout", "text": _output(rng, rng.randint(40, 300))})
        out.append({"type": "tool_result", "call_id": cid, "ok": True})
        if i % 5 == 4:
            done += 1
            out.append({"type": "progress", "done": done % 50, "total": 50})
        if i % 7 == 6:
            out.append({"type": "heartbeat"})
    return out


SESSION_MARK = "00000000-5e55-4000-a000-000000000000"  # replaced by each file's session id
CWD_MARK = "/bench/project-placeholder"


def claude_lines(rng: random.Random, n_cycles: int) -> list[dict]:
    """Claude Code transcript lines with the envelope, line types and size mix of real ones:
    mostly hook/bash progress lines, tool calls, results with long output (twice: content and
    toolUseResult), some text and thinking, now and then a prompt and a turn end."""
    out: list[dict] = []
    parent: str | None = None

    def line(kind: str, **body: object) -> dict:
        nonlocal parent
        uid = _uuid(rng)
        obj = {"parentUuid": parent, "isSidechain": False, "userType": "external", "cwd": CWD_MARK,
               "sessionId": SESSION_MARK, "version": "2.1.39", "gitBranch": "bench-branch",
               "slug": "synthetic-bench-session", "type": kind, **body, "uuid": uid}
        parent = uid
        out.append(obj)
        return obj

    def assistant(content: list[dict], stop: str | None = None) -> None:
        line("assistant", requestId=f"req_{rng.getrandbits(80):x}", message={
            "model": "claude-opus-4-6", "id": f"msg_{rng.getrandbits(96):x}", "type": "message",
            "role": "assistant", "content": content, "stop_reason": stop, "stop_sequence": None,
            "usage": {"input_tokens": rng.randint(1, 9), "cache_creation_input_tokens": rng.randint(0, 9000),
                      "cache_read_input_tokens": rng.randint(0, 90000), "output_tokens": rng.randint(1, 900),
                      "service_tier": "standard"}})

    def hook(event: str, tool_id: str) -> None:
        line("progress", data={"type": "hook_progress", "hookEvent": event, "hookName": f"{event}:Bash",
                               "command": "$HOME/.claude/hooks/notify.sh"},
             parentToolUseID=tool_id, toolUseID=tool_id)

    for i in range(n_cycles):
        if i % 12 == 0:
            line("user", message={"role": "user", "content": _text(rng, rng.randint(10, 80))},
                 todos=[], permissionMode="default")
        if rng.random() < 0.15:
            assistant([{"type": "thinking", "thinking": _text(rng, rng.randint(30, 150)), "signature": "sig"}])
        if rng.random() < 0.5:
            assistant([{"type": "text", "text": _text(rng, rng.randint(10, 90))}])
        tool, inp = _tool_call(rng)
        tid = f"toolu_{rng.getrandbits(110):x}"
        assistant([{"type": "tool_use", "id": tid, "name": tool, "input": inp, "caller": {"type": "direct"}}])
        for _ in range(rng.randint(2, 6)):
            hook(rng.choice(("PreToolUse", "PostToolUse")), tid)
        if tool == "Bash":
            for k in range(rng.randint(1, 4)):
                text = _output(rng, rng.randint(100, 700))
                line("progress", data={"type": "bash_progress", "output": text, "fullOutput": text,
                                       "elapsedTimeSeconds": k + 1, "totalLines": text.count("\n") + 1,
                                       "timeoutMs": 120000},
                     toolUseID=f"bash-progress-{k}", parentToolUseID=tid)
        result = _output(rng, int(rng.expovariate(1 / 2500)) + 50)
        line("user", message={"role": "user", "content": [
            {"tool_use_id": tid, "type": "tool_result", "content": result, "is_error": False}]},
            toolUseResult={"stdout": result, "stderr": "", "interrupted": False, "isImage": False})
        if i % 12 == 11:
            assistant([{"type": "text", "text": _text(rng, rng.randint(10, 60))}], stop="end_turn")
            line("system", subtype="turn_duration", durationMs=rng.randint(2000, 90000), isMeta=False)
        if i % 40 == 39:
            line("file-history-snapshot", messageId=_uuid(rng), isSnapshotUpdate=False,
                 snapshot={"messageId": _uuid(rng), "trackedFileBackups": {}, "timestamp": None})
    return out


def block(fmt: str, size: int, seed: int = 1, end: float | None = None, spacing: float = 0.25) -> bytes:
    """About `size` bytes (never more) of complete lines whose timestamps end at `end`."""
    rng = random.Random(seed)
    make = claude_lines if fmt == "claude" else native_lines
    objs: list[dict] = []
    approx = 0
    stamp = 39 if fmt == "claude" else 21  # the timestamp field added below
    while approx < size + (64 << 10):
        more = make(rng, 50)
        objs += more
        approx += sum(len(orjson.dumps(o)) + stamp for o in more)
    end = time.time() if end is None else end
    lines = []
    total = 0
    n = len(objs)
    for i, obj in enumerate(objs):
        ts = end - (n - 1 - i) * spacing
        if fmt == "claude":
            obj["timestamp"] = _iso(ts)
        else:
            obj = {"ts": round(ts, 3), **obj}
        lines.append(orjson.dumps(obj) + b"\n")
    # Keep the newest lines that fit.
    kept: list[bytes] = []
    for line in reversed(lines):
        if total + len(line) > size:
            break
        kept.append(line)
        total += len(line)
    kept.reverse()
    return b"".join(kept)


def write_log(path: Path, size: int, data: bytes) -> None:
    """A log of `size` bytes that ends with `data`; what comes before it is a hole (sparse)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        if size > len(data):
            os.ftruncate(fd, size - len(data))
            os.lseek(fd, 0, os.SEEK_END)
        os.write(fd, data)
    finally:
        os.close(fd)


# -- workspaces -----------------------------------------------------------------------------


def write_status(task_dir: Path, **fields: object) -> None:
    task_dir.mkdir(parents=True, exist_ok=True)
    fields.setdefault("status", "running")
    fields.setdefault("updatedAt", _iso(time.time()))
    tmp = task_dir / "status.json.tmp"
    tmp.write_bytes(orjson.dumps(fields))
    os.replace(tmp, task_dir / "status.json")


def make_worktrees(root: Path, n: int, log_size: int, tail: int = MB, start: int = 0) -> list[Path]:
    """ROOT/.worktrees/task-NNNN/{status.json, logs/events.jsonl}: running, healthy, no pid
    (a pid would make `--once` wait for its second CPU sample)."""
    data = block("native", min(tail, log_size))
    dirs = []
    now = _iso(time.time())
    for i in range(start, start + n):
        d = root / ".worktrees" / f"task-{i:04d}"
        write_status(d, id=f"bg_{i:06x}", name=f"task-{i:04d}", timestamp=now, updatedAt=now,
                     progress={"done": i % 5, "total": 5}, step="working")
        write_log(d / "logs" / "events.jsonl", log_size, data)
        dirs.append(d)
    return dirs


def make_claude(claude_dir: Path, n: int, log_size: int, tail: int = MB, projects: int = 10) -> list[Path]:
    """CLAUDE_DIR/projects/<project>/<session>.jsonl: `n` sessions over a few projects."""
    rng = random.Random(7)
    files = []
    per_project = [block("claude", min(tail, log_size), seed=100 + p) for p in range(projects)]
    for i in range(n):
        p = i % projects
        cwd = f"/work/bench/project-{p:02d}"
        proj = claude_dir / "projects" / cwd.replace("/", "-")
        session = _uuid(rng)
        data = per_project[p].replace(SESSION_MARK.encode(), session.encode())
        data = data.replace(CWD_MARK.encode(), cwd.encode())
        path = proj / f"{session}.jsonl"
        write_log(path, log_size, data)
        files.append(path)
    return files


def disk_usage(path: Path) -> tuple[int, int]:
    """(apparent bytes, allocated bytes) of every file under `path`."""
    apparent = allocated = 0
    for dirpath, _, names in os.walk(path):
        for name in names:
            st = os.lstat(os.path.join(dirpath, name))
            apparent += st.st_size
            allocated += st.st_blocks * 512
    return apparent, allocated


def settle() -> None:
    """Flush what we just wrote, so write-back does not run during a measurement."""
    os.sync()
    time.sleep(0.2)


# -- the results table in bench/README.md ---------------------------------------------------

START = "<!-- results:start -->"
END = "<!-- results:end -->"
HEADER = ("figure", "target", "quick", "full", "machine (full run)", "date (full run)")


def _parse_table(text: str) -> list[list[str]]:
    rows = []
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("|") or re.match(r"^\|\s*-", line):
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells and cells[0] != HEADER[0]:
            rows.append((cells + [""] * len(HEADER))[: len(HEADER)])
    return rows


def record(rows: list[tuple[str, str, str]], quick: bool, enabled: bool = True) -> None:
    """Put (figure, target, measured) rows in the README table: the quick or the full column.
    Rows keep their place; new figures are added at the end."""
    if not enabled or not README.exists():
        return
    text = README.read_text()
    if START not in text or END not in text:
        return
    head, rest = text.split(START, 1)
    body, tail = rest.split(END, 1)
    table = _parse_table(body)
    index = {r[0]: r for r in table}
    today = dt.date.today().isoformat()
    m = machine_text(machine())
    for figure, target, value in rows:
        row = index.get(figure)
        if row is None:
            row = [figure, target, "", "", "", ""]
            table.append(row)
            index[figure] = row
        row[1] = target
        if quick:
            row[2] = value
        else:
            row[3], row[4], row[5] = value, m, today
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in r) + " |" for r in table]
    README.write_text(f"{head}{START}\n" + "\n".join(lines) + f"\n{END}{tail}")


def verdict(ok: bool) -> str:
    return "✓" if ok else "✗ (missed)"


# -- a running `bgmon --follow --json` ------------------------------------------------------


class Follow:
    """`bgmon --follow --json` as a child process; a thread stamps each line as it arrives."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        import queue
        import subprocess
        import threading

        self.lines: queue.Queue[tuple[float, dict]] = queue.Queue()
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            bgmon_argv("--follow", "--json", *args),
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            now = time.perf_counter()
            try:
                obj = orjson.loads(raw)
            except orjson.JSONDecodeError:
                obj = {"event": "bad-line", "raw": raw[:200].decode(errors="replace")}
            self.lines.put((now, obj))

    def next(self, timeout: float) -> tuple[float, dict] | None:
        import queue

        try:
            return self.lines.get(timeout=max(0.0, timeout))
        except queue.Empty:
            return None

    def snapshots(self, n: int, timeout: float) -> dict[str, dict]:
        """Wait for `n` snapshot lines; → task name → task object."""
        tasks: dict[str, dict] = {}
        deadline = time.perf_counter() + timeout
        while len(tasks) < n:
            got = self.next(deadline - time.perf_counter())
            if got is None:
                err = self.stop()
                raise SystemExit(f"only {len(tasks)} of {n} snapshot lines in {timeout:.0f}s\n{err}")
            if got[1].get("event") == "snapshot":
                task = got[1]["task"]
                tasks[task["name"]] = task
        self.ready = time.perf_counter()
        return tasks

    def drain(self) -> list[dict]:
        out = []
        while (got := self.next(0)) is not None:
            out.append(got[1])
        return out

    def stop(self) -> str:
        """SIGINT, as a person would; → stderr text. Raises if the child does not exit."""
        import signal
        import subprocess

        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise RuntimeError("bgmon --follow did not exit on SIGINT within 10 s") from None
        assert self.proc.stderr is not None
        return self.proc.stderr.read().decode(errors="replace")


def make_quiet_worktrees(root: Path, n: int, lines: int = 30) -> list[Path]:
    """`n` healthy running tasks with small logs of successful tool calls (heartbeat now)."""
    data = block("native", 100 * lines, seed=11)
    dirs = []
    now = _iso(time.time())
    for i in range(n):
        d = root / ".worktrees" / f"task-{i:04d}"
        write_status(d, id=f"bg_{i:06x}", name=f"task-{i:04d}", timestamp=now, updatedAt=now)
        write_log(d / "logs" / "events.jsonl", len(data), data)
        dirs.append(d)
    return dirs


def failing_lines(tag: str, n: int = 3) -> bytes:
    now = time.time()
    return b"".join(
        orjson.dumps({"ts": now, "type": "tool_result", "call_id": f"{tag}-{k}", "ok": False,
                      "error": "exit 1: 3 tests failed"}) + b"\n"
        for k in range(n)
    )
