"""A deterministic sample workspace: the screenshots and the TUI's SVG snapshot test use it.

Every time (log `ts`, heartbeats, file mtimes) is an offset from a frozen `now`, and process
facts come from a fixed table, so a Monitor with `clock=lambda: now` judges it the same way on
every machine. Paths are under `base`; set HOME to `base` to show them as `~/…`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from bgmon.config import Config
from bgmon.engine import Monitor
from bgmon.model import ProcFacts
from bgmon.procs import ProcessTable

NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z
PROCS = {
    41001: ProcFacts(pid=41001, alive=True, cpu_seconds=812.4, cpu_active=True, rss=412 << 20,
                     children=(41002, 41003), name="python"),
    41010: ProcFacts(pid=41010, alive=True, cpu_seconds=95.0, cpu_active=False, rss=188 << 20, name="node"),
    41020: ProcFacts(pid=41020, alive=False, name="cargo"),
    41030: ProcFacts(pid=41030, alive=True, cpu_seconds=33.1, cpu_active=False, rss=96 << 20, name="claude"),
}


class SampleProcs(ProcessTable):
    """A process table that answers from `PROCS` (no psutil: the same on every machine)."""

    def look(self, pids, light=()):
        return {p: PROCS[p] for p in pids if p in PROCS}

    def agent_cwds(self):
        return {}


def _iso(ts: float) -> str:
    from bgmon.timefmt import iso

    return iso(ts) or ""


def _task(root: Path, name: str, now: float, age: float, status: dict, events: list[dict]) -> None:
    """One worktree task: status.json and logs/agent.jsonl, last touched `age` seconds ago."""
    d = root / ".worktrees" / name
    (d / "logs").mkdir(parents=True, exist_ok=True)
    fields = {"version": 1, "id": name, "name": name, "timestamp": _iso(now - 7200), **status}
    if "updatedAt" not in fields and fields.get("status") == "running":
        fields["updatedAt"] = _iso(now - age)
    (d / "status.json").write_text(json.dumps(fields, indent=2))
    log = d / "logs" / "agent.jsonl"
    n = len(events)
    lines = []
    for i, ev in enumerate(events):
        ev = {"ts": _iso(now - age - (n - 1 - i) * 20), **ev}
        lines.append(json.dumps(ev))
    log.write_text("\n".join(lines) + ("\n" if lines else ""))
    for path in (d / "status.json", log):
        os.utime(path, (now - age, now - age))


def _call(tool: str, arg: str, cid: str) -> dict:
    return {"type": "tool_call", "tool": tool, "call_id": cid, "input": {"command": arg}}


def _ok(cid: str, text: str = "ok") -> dict:
    return {"type": "tool_result", "call_id": cid, "ok": True, "text": text}


def _fail(cid: str, error: str) -> dict:
    return {"type": "tool_result", "call_id": cid, "ok": False, "error": error}


def build(base: Path, now: float = NOW) -> list[Path]:
    """Write the sample under `base` (two roots: work/shop and work/infra). Returns the roots."""
    shop, infra = base / "work" / "shop", base / "work" / "infra"
    _task(shop, "api-refactor", now, 4, {
        "status": "running", "pid": 41001, "progress": {"done": 3, "total": 7},
        "step": "porting the order handlers to async"}, [
        {"type": "step", "text": "porting the order handlers to async"},
        _call("Edit", "api/orders.py", "a1"), _ok("a1"),
        _call("Bash", "pytest tests/api -q", "a2"), _ok("a2", "42 passed in 3.1s"),
        {"type": "progress", "done": 3, "total": 7},
    ])
    trace = "E   AssertionError: expected 200, got 500\n" + "  at checkout_flow (tests/e2e/checkout.spec.ts:88)\n" * 4
    _task(shop, "flaky-tests", now, 25, {
        "status": "running", "pid": 41010, "progress": "5/12", "step": "stabilising the checkout e2e suite"}, [
        _call("Bash", "npm run e2e -- checkout", "f1"), _fail("f1", trace),
        _call("Bash", "npm run e2e -- checkout --retries 2", "f2"), _fail("f2", trace),
        _call("Bash", "npm run e2e -- checkout --headed", "f3"), _fail("f3", "Timeout 30000ms exceeded waiting for #pay"),
        _call("Bash", "npm run e2e -- checkout --debug", "f4"), _fail("f4", trace),
    ])
    loop = [e for i in range(6) for e in (_call("Read", "src/db/schema.sql", f"m{i}"), _ok(f"m{i}", "412 lines"))]
    _task(shop, "migrate-db", now, 40, {"status": "running", "step": "writing migration 0042"}, loop)
    _task(shop, "docs-site", now, 900, {
        "status": "failed", "exitCode": 1,
        "error": "npm ERR! Missing script: \"build:docs\""}, [
        _call("Bash", "npm run build:docs", "d1"), _fail("d1", "npm ERR! Missing script: \"build:docs\""),
    ])
    _task(shop, "release-notes", now, 1500, {"status": "completed", "progress": {"done": 5, "total": 5}}, [
        {"type": "message", "text": "Release notes for v2.4 written to CHANGELOG.md"},
    ])
    _task(shop, "search-index", now, 12, {
        "status": "running", "pid": 41030, "step": "coordinating 2 sub-agents"}, [
        {"type": "step", "text": "coordinating 2 sub-agents"},
    ])
    _task(shop, "crawler", now, 8, {
        "status": "running", "parent": "search-index", "progress": "880/1200", "step": "crawling /products"}, [
        _call("WebFetch", "https://shop.example/products?page=44", "c1"), _ok("c1", "200 OK"),
    ])
    _task(shop, "ranker", now, 30, {
        "status": "running", "parent": "search-index", "step": "tuning BM25 weights"}, [
        e for i in range(3) for e in (_call("Bash", "python rank.py --eval", f"r{i}"),
                                      _fail(f"r{i}", "ModuleNotFoundError: No module named 'rank_bm25'"))
    ])
    _task(infra, "nightly-build", now, 200, {
        "status": "running", "pid": 41020, "step": "cargo build --release",
        "command": ["cargo", "build", "--release"]}, [
        _call("Bash", "cargo build --release", "n1"),
    ])
    _task(infra, "terraform-plan", now, 1400, {"status": "running", "step": "waiting for the state lock"}, [
        _call("Bash", "terraform plan -lock-timeout=0", "t1"),
    ])
    return [shop, infra]


class SampleAdvisor:
    """Stands in for Claude in the screenshots: answers as bgmon does without an API key (the
    rules), with a fixed proposal id and time, so the picture is the same everywhere."""

    def propose(self, snapshot, catalogue, *, restarts: int = 0, model: str | None = None):
        from dataclasses import replace

        from bgmon.recovery import rules

        p = rules.propose(snapshot, catalogue, degraded_reason="no API key", restarts=restarts)
        return replace(p, id="p_5eed0042", created=_iso(NOW))

    def close(self) -> None:
        pass


def sample_recovery(base: Path):
    """A recovery service for the sample: its journal under `base`, proposals from the rules."""
    from bgmon.recovery.journal import Journal
    from bgmon.recovery.service import RecoveryService

    return RecoveryService(Journal(base / "journal.jsonl"), advisor=SampleAdvisor())


def sample_monitor(base: Path, now: float = NOW) -> Monitor:
    """Build the sample under `base` and judge it once with a frozen clock."""
    roots = build(base, now)
    config = Config(roots=tuple(str(r) for r in roots), sources=("worktrees",), git=False,
                    match_agents=False)
    monitor = Monitor(config, clock=lambda: now, procs=SampleProcs())
    monitor.sweep()
    monitor.look_procs()
    monitor.evaluate()
    return monitor


async def screenshots(base: Path, size: tuple[int, int] = (120, 40)) -> dict[str, str]:
    """SVGs of the main screen, the detail of a struggling task, the faults-only view, and the
    recovery panel with a rules proposal for the failed nightly build.

    HOME is pointed at `base` meanwhile, so paths read `~/work/…` whatever `base` is."""
    from bgmon.views.tui.app import BgmonApp

    old_home = os.environ.get("HOME")
    os.environ["HOME"] = str(base)
    try:
        monitor = sample_monitor(base)
        app = BgmonApp(monitor.config, monitor=monitor, live=False, clock=lambda: NOW,
                       recovery=sample_recovery(base))
        shots: dict[str, str] = {}

        def key_of(name: str) -> str:
            snap = monitor.find(name)
            if snap is None:
                raise LookupError(f"the sample has no task {name!r}")
            return snap.key

        async with app.run_test(size=size) as pilot:
            await pilot.pause()
            shots["main"] = app.export_screenshot(title="bgmon")
            node = app.sync.nodes[key_of("flaky-tests")]
            app.task_tree.move_cursor(node)
            await pilot.pause()
            shots["detail"] = app.export_screenshot(title="bgmon — detail")
            await pilot.press("f")
            await pilot.pause()
            shots["faults"] = app.export_screenshot(title="bgmon — faults only")
            await pilot.press("f")
            app.task_tree.move_cursor(app.sync.nodes[key_of("nightly-build")])
            await pilot.press("r")
            await app.workers.wait_for_complete()
            await pilot.pause()
            shots["recovery"] = app.export_screenshot(title="bgmon — recovery")
        return shots
    finally:
        if old_home is None:
            os.environ.pop("HOME", None)
        else:
            os.environ["HOME"] = old_home
