"""Start-up finds the newest to-do list even when it lies before the lines it folds.

Start-up folds a log's last 100-200 lines; a long session's to-do list (Claude's TodoWrite or
task board, Codex's update_plan) is often older. A bounded backward search brings it back.
Real files in temp dirs, shaped like Claude Code 2.0-2.1 and Codex 0.12x lines.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from bgmon.config import Config, Reading
from bgmon.engine import collect
from bgmon.model import Progress
from bgmon.sources.tail import TailReader

FOREVER = 100 * 365 * 86400.0
CWD = "/home/dev/shop"
SESSION = "5f0c2a7e-61b4-4a55-9d3e-0a6c1d2b7e11"


def write(path: Path, lines: list[dict]) -> Path:
    """Compact JSON, as Claude Code and Codex write it (the search's marks rely on that)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines))
    return path


def ts(i: int) -> str:
    return f"2026-02-12T{10 + i // 3600:02d}:{i // 60 % 60:02d}:{i % 60:02d}.000Z"


def claude_line(i: int, kind: str, content, **extra) -> dict:
    return {"parentUuid": None, "isSidechain": False, "userType": "external", "cwd": CWD,
            "sessionId": SESSION, "version": "2.0.76", "gitBranch": "main", "type": kind,
            "message": {"role": "assistant" if kind == "assistant" else "user", "content": content},
            "uuid": f"u{i}", "timestamp": ts(i), **extra}


def claude_tool(i: int, name: str, inp: dict) -> list[dict]:
    tid = f"toolu_{i:08d}"
    return [
        claude_line(i, "assistant", [{"type": "tool_use", "id": tid, "name": name, "input": inp}]),
        claude_line(i, "user", [{"tool_use_id": tid, "type": "tool_result", "content": f"ok {i}"}],
                    toolUseResult={"stdout": f"ok {i}", "stderr": "", "interrupted": False}),
    ]


def work(start: int, n: int) -> list[dict]:
    """`n` Bash calls and their results: what fills the window after the list was written."""
    out: list[dict] = []
    for i in range(start, start + n):
        out += claude_tool(i, "Bash", {"command": f"pytest -k case_{i}", "description": "run a test"})
    return out


def todos(*statuses: str) -> list[dict]:
    return [{"content": f"Step {k}", "activeForm": f"Doing step {k}", "status": st}
            for k, st in enumerate(statuses, 1)]


def claude_config(home: Path, root: Path, **reading) -> Config:
    return Config(roots=(str(root),), sources=("claude",), dirs=(("claude", str(home)),), git=False,
                  since=FOREVER, match_agents=False, cpu_sample=0,
                  reading=replace(Reading(), **reading))


def session_file(tmp_path: Path) -> Path:
    return tmp_path / "claude" / "projects" / "-home-dev-shop" / f"{SESSION}.jsonl"


def only(monitor):
    (snap,) = monitor.snapshots()
    return snap


def test_a_todowrite_list_long_before_the_window_gives_progress_and_step(tmp_path):
    lines = [claude_line(0, "user", "build the checkout page")]
    lines += claude_tool(1, "TodoWrite", {"todos": todos("completed", "completed", "pending")})
    lines += work(2, 40)
    lines += claude_tool(50, "TodoWrite", {"todos": todos("completed", "completed", "in_progress", "pending")})
    lines += work(51, 400)  # 800 lines: far beyond the 200-line window
    write(session_file(tmp_path), lines)
    snap = only(collect(claude_config(tmp_path / "claude", tmp_path)))
    assert snap.progress == Progress(2, 4)  # the newest list, not the first
    assert snap.step == "Doing step 3"
    # Without the search (its bytes set to 0) the list is not seen: what the test guards.
    blind = only(collect(claude_config(tmp_path / "claude", tmp_path, checklist_search=0)))
    assert blind.progress is None and blind.step is None


def test_the_task_board_is_rebuilt_from_items_before_the_window(tmp_path):
    """Claude 2.1.16+: TaskCreate's results add items, TaskUpdate calls change them."""
    lines = [claude_line(0, "user", "ship it")]
    for k, subject in enumerate(("Write the migration", "Backfill", "Switch reads"), 1):
        tid = f"toolu_create{k}"
        lines += [
            claude_line(k, "assistant", [{"type": "tool_use", "id": tid, "name": "TaskCreate",
                                          "input": {"subject": subject, "description": subject}}]),
            claude_line(k, "user", [{"tool_use_id": tid, "type": "tool_result", "content": f"Task #{k} created"}],
                        toolUseResult={"task": {"id": str(k), "subject": subject}}),
        ]
    lines += claude_tool(10, "TaskUpdate", {"taskId": "1", "status": "completed"})
    lines += claude_tool(11, "TaskUpdate", {"taskId": "2", "status": "in_progress", "activeForm": "Backfilling"})
    lines += work(12, 300)
    write(session_file(tmp_path), lines)
    snap = only(collect(claude_config(tmp_path / "claude", tmp_path)))
    assert snap.progress == Progress(1, 3)
    assert snap.step == "Backfilling"


def test_codex_update_plan_before_the_window(tmp_path):
    day = tmp_path / "codex" / "sessions" / "2026" / "03" / "13"
    sid = "019ce4fd-8290-7501-afc4-0e9486733614"

    def env(i, kind, **payload):
        return {"timestamp": ts(i), "type": kind, "payload": payload}

    lines = [env(0, "session_meta", id=sid, timestamp=ts(0), cwd=CWD, originator="codex_cli_rs",
                 cli_version="0.121.0", source="cli"),
             env(1, "event_msg", type="task_started", turn_id="t1")]
    plan = {"plan": [{"step": "Read the API", "status": "completed"},
                     {"step": "Fix streaming", "status": "in_progress"},
                     {"step": "Add a test", "status": "pending"}]}
    lines.append(env(2, "response_item", type="function_call", name="update_plan",
                     arguments=json.dumps(plan), call_id="call_plan"))
    lines.append(env(2, "response_item", type="function_call_output", call_id="call_plan", output="Plan updated"))
    for i in range(3, 300):
        lines.append(env(i, "response_item", type="function_call", name="exec_command",
                         arguments=json.dumps({"cmd": f"rg -n stream src/{i}.ts"}), call_id=f"c{i}"))
        lines.append(env(i, "response_item", type="function_call_output", call_id=f"c{i}",
                         output=f"Chunk ID: {i}\nWall time: 0.1 seconds\nProcess exited with code 0\nOutput:\nx"))
    write(day / f"rollout-2026-03-13T10-19-05-{sid}.jsonl", lines)
    config = Config(roots=(str(tmp_path),), sources=("codex",), dirs=(("codex", str(tmp_path / "codex")),),
                    git=False, since=FOREVER, match_agents=False, cpu_sample=0)
    snap = only(collect(config))
    assert snap.progress == Progress(1, 3)
    assert snap.step == "Fix streaming"


def test_the_search_is_bounded_per_log_and_per_sweep(tmp_path):
    lines = [claude_line(0, "user", "go")]
    lines += claude_tool(1, "TodoWrite", {"todos": todos("in_progress", "pending")})
    lines += work(2, 600)
    path = write(session_file(tmp_path), lines)
    reader = TailReader(str(path))
    reader.prime(256 << 10, 200)
    before_window = reader.window_start
    assert before_window > 100_000
    home, root = tmp_path / "claude", tmp_path
    # The list lies about `before_window` bytes back: a smaller per-log bound misses it…
    assert only(collect(claude_config(home, root, checklist_search=before_window // 2))).progress is None
    # … as does a spent budget for the sweep…
    assert only(collect(claude_config(home, root, checklist_budget=before_window // 2))).progress is None
    # … and the default bounds find it.
    assert only(collect(claude_config(home, root))).progress == Progress(0, 2)


def test_search_back_offers_marked_lines_newest_first_across_blocks(tmp_path):
    """A line that straddles the 1 MB read blocks is whole when offered; nothing past the
    wanted line is read; a broken marked line is skipped."""
    lines = [{"n": i, "mark": "nothing__", "pad": "x" * 1000} for i in range(2500)]  # ~2.5 MB
    text = [json.dumps(line) + "\n" for line in lines]
    end = sum(map(len, text)) + len('{"broken TodoWrite\n')
    boundary, start = end - (1 << 20), 0
    straddling = next(i for i, t in enumerate(text) if (start := start + len(t)) > boundary)
    assert straddling > 1000
    for i in (3, straddling, 2400):
        lines[i]["mark"] = "TodoWrite"
    path = tmp_path / "log.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines) + '{"broken TodoWrite\n')
    assert path.stat().st_size == end
    reader = TailReader(str(path))
    seen: list[int] = []
    read = reader.search_back(end, 10 << 20, (b"TodoWrite",), lambda obj: seen.append(obj["n"]) or False)
    assert seen == [2400, straddling, 3] and read == end
    seen.clear()
    read = reader.search_back(end, 10 << 20, (b"TodoWrite",),
                              lambda obj: seen.append(obj["n"]) or obj["n"] == straddling)
    assert seen == [2400, straddling] and read < end  # stopped: the first blocks were never read
    seen.clear()
    reader.search_back(end, 50_000, (b"TodoWrite",), lambda obj: seen.append(obj["n"]) or False)
    assert seen == []  # the newest marked line is ~100 KB back: beyond this bound


def test_the_budget_goes_to_the_newest_logs_first(tmp_path):
    """Two long sessions whose lists lie far back; the budget covers one search: the session
    written last (the live one) gets it, whatever order discovery found them in."""
    import os

    project = tmp_path / "claude" / "projects" / "-home-dev-shop"
    paths = []
    for n, sid in enumerate(("0aaaaaaa-0000-4000-8000-000000000000", "fbbbbbbb-0000-4000-8000-000000000000")):
        lines = [claude_line(0, "user", "go")]
        lines += claude_tool(1, "TodoWrite", {"todos": todos(*(["completed"] * n), "in_progress")})
        lines += work(2, 600)
        paths.append(write(project / f"{sid}.jsonl", [{**line, "sessionId": sid} for line in lines]))
    # One search reads a log back to its top, where the list is: less than the whole file;
    # what is left then is the start-up window's bytes, far too few for the second search.
    one_search = paths[0].stat().st_size
    for newer in (0, 1):
        old = paths[1 - newer].stat().st_mtime
        os.utime(paths[newer], (old + 60, old + 60))
        snaps = {s.key.removeprefix("claude:")[:8]: s for s in
                 collect(claude_config(tmp_path / "claude", tmp_path, checklist_budget=one_search)).snapshots()}
        got = {key: s.progress for key, s in snaps.items()}
        assert got[paths[newer].stem[:8]] is not None, (newer, got)
        assert got[paths[1 - newer].stem[:8]] is None, (newer, got)
