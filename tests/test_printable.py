"""Control characters in task data never reach a terminal: one boundary for every view.

A task's name, step, error, note, log text, and a model's diagnosis are other people's text.
ESC/OSC/CSI sequences in them would otherwise write the clipboard (OSC 52), retitle the
window, or clear the screen the moment bgmon shows them.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import re
import subprocess
import tempfile
import time
from pathlib import Path

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bgmon.config import Config
from bgmon.engine import collect
from bgmon.engine.evaluate import Change
from bgmon.printable import PrintableStream, contained, json_printable, printable, single_line
from bgmon.recovery.cli import add_parsers, run_command
from bgmon.views import jsonout, text
from bgmon.views.order import arrange
from bgmon.views.tui.tree import task_label as tree_label
from tests.conftest import append_lines, bgmon_cmd, write_json

# Every character that must never reach a terminal raw: C0 but newline and tab, DEL, C1, and
# the Unicode controls that reorder or break lines (bidi overrides and isolates, LS, PS).
CONTROLS = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]"
)
EVIL = "\x1b]52;c;aGFjaw==\x07\x1b[2J\x1b]0;pwned\x07\x9b31m\r\x08\x00\x7f\u202eevil"

control_char = st.sampled_from(
    [chr(c) for c in (*range(0x00, 0x20), *range(0x7F, 0xA0))]
    + ["\u061c", "\u200e", "\u200f", "\u2028", "\u2029", "\u202a", "\u202e", "\u2066", "\u2069"]
)
FORGED = "[07:00] FORGED ✓ healthy"
# A line break (every kind str.splitlines knows) or a tab, then a line that impersonates a task.
LINE_BREAKS = ["\n", "\r", "\r\n", "\t", "\x0b", "\x0c", "\x1c", "\x85", "\u2028", "\u2029"]
forged = st.sampled_from(LINE_BREAKS).map(lambda brk: brk + FORGED)
hostile = st.lists(st.one_of(control_char, st.text(max_size=6), forged), min_size=1, max_size=12).map("".join)


SGR = re.compile("\x1b\\[[0-9;]*m")  # Rich's own colours on a terminal


def raw_controls(out: str) -> list[str]:
    return sorted(set(CONTROLS.findall(SGR.sub("", out))))


def test_printable_makes_every_control_visible_and_keeps_the_rest():
    shown = printable("a\x1b[2Jb\tc\nd\x9be\u202ef\x00")
    assert raw_controls(shown) == []
    assert shown == "a␛[2Jb\tc\nd\ufffde\ufffdf␀"
    assert printable("plain ✓ text 日本") == "plain ✓ text 日本"


@given(st.text())
def test_printable_leaves_no_control(s):
    assert raw_controls(printable(s)) == []


def test_json_keeps_the_data_and_escapes_what_orjson_leaves_raw():
    data = orjson.dumps({"name": EVIL, "ok": "✓ 日本"})
    safe = json_printable(data)
    assert raw_controls(safe.decode()) == []
    assert orjson.loads(safe) == {"name": EVIL, "ok": "✓ 日本"}


@given(hostile)
def test_json_escape_round_trips(s):
    safe = json_printable(orjson.dumps([s, {"k": s}]))
    assert raw_controls(safe.decode()) == []
    assert orjson.loads(safe) == [s, {"k": s}]


def test_plain_stream_filters_what_is_written():
    buf = io.StringIO()
    print("task " + EVIL, file=PrintableStream(buf))
    assert raw_controls(buf.getvalue()) == [] and buf.getvalue().endswith("evil\n")


def test_once_text_shows_escape_sequences_inert(ws, isolated_home):
    ws.task("evil", name="n" + EVIL, step="s" + EVIL, status="failed", error="e" + EVIL)
    ws.log("evil", {"ts": time.time(), "type": "step", "text": "step" + EVIL})
    env = {**os.environ, "HOME": str(isolated_home), "XDG_CONFIG_HOME": str(isolated_home / ".config")}
    p = subprocess.run(bgmon_cmd("--once", "--no-git", "--no-claude", "--no-codex", str(ws.root)),
                       capture_output=True, text=True, timeout=60, env=env)
    assert p.returncode == 1, p.stderr
    assert "␛]52;c;aGFjaw==" in p.stdout  # shown, inert
    assert raw_controls(p.stdout) == [] and raw_controls(p.stderr) == []


def test_a_newline_in_a_task_name_cannot_forge_a_once_line(ws, isolated_home):
    ws.task("evil", name=f"evil\n{FORGED}", step=f"s\r\n{FORGED}\tx", status="failed",
            error=f"e\n{FORGED}")
    env = {**os.environ, "HOME": str(isolated_home), "XDG_CONFIG_HOME": str(isolated_home / ".config")}
    p = subprocess.run(bgmon_cmd("--once", "--no-git", "--no-claude", "--no-codex", str(ws.root)),
                       capture_output=True, text=True, timeout=60, env=env)
    assert p.returncode == 1, p.stderr
    assert forged_lines(p.stdout) == [], p.stdout
    assert "evil⏎[07:00] FORGED" in p.stdout  # shown, on the task's own line
    assert "\t" not in p.stdout and "\r" not in p.stdout


def forged_lines(out: str) -> list[str]:
    """Output lines that begin (after indentation) with text a task wrote, or carry its tab."""
    return [line for line in out.splitlines()
            if line.lstrip().startswith("[07:00] FORGED") or "\t" in line]


def test_single_line_shows_every_line_break_and_contained_fences_a_body():
    assert single_line("a\nb\tc\rd\u2028e\x85f\x1b") == "a⏎b␉c␍d⏎e⏎f␛"
    assert contained(f"why:\n{FORGED}\tx", "  │ ", first="  diagnosis: ") == [
        "  diagnosis: why:", f"  │ {FORGED}␉x"]


# --- the property over every view -------------------------------------------------------------


def _workspace(root: Path, texts: list[str]) -> None:
    """One failing task whose every text field, and its log, carries the hostile strings."""
    now = time.time()
    for i, s in enumerate(texts):
        d = root / ".worktrees" / f"t{i}"
        write_json(d / "status.json", {
            "status": "failed", "name": f"t{i}{s}", "step": s, "error": f"boom {s}",
            "updatedAt": now, "note": s, "command": ["sleep", s or "1"],
        })
        append_lines(d / "logs" / "events.jsonl",
                     {"ts": now, "type": "step", "text": s},
                     {"ts": now, "type": "tool_call", "tool": f"Bash{s}", "call_id": "c", "input": {"x": s}},
                     {"ts": now, "type": "tool_result", "call_id": "c", "ok": False, "error": s},
                     {"ts": now, "type": "error", "text": f"fatal: {s}"})


def _config(root: Path) -> Config:
    return Config(roots=(str(root),), sources=("worktrees",), git=False, cpu_sample=0.01)


def _recovery(root: Path, monitor, *argv: str) -> str:
    p = argparse.ArgumentParser(prog="bgmon")
    add_parsers(p.add_subparsers(dest="command"))
    out, err = io.StringIO(), io.StringIO()
    run_command(p.parse_args([*argv, "--journal", str(root / "journal.jsonl")]), monitor.find,
                out=out, err=err, stdin=io.StringIO())
    return out.getvalue() + err.getvalue()


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(hostile, min_size=1, max_size=3))
def test_no_control_character_from_task_data_reaches_text_json_propose_history(texts):
    os.environ.pop("ANTHROPIC_API_KEY", None)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        _workspace(root, texts)
        monitor = collect(_config(root))
        snaps = [s for _, rows in arrange(monitor.snapshots()) for _, s in rows]
        assert len(snaps) == len(texts)
        for force_terminal in (False, True):  # plain, and with colour as on a terminal
            buf = io.StringIO()
            text.render(snaps, monitor.warnings(), [str(root)], buf, time.time(), force_terminal=force_terminal)
            assert raw_controls(buf.getvalue()) == [], buf.getvalue()
            assert forged_lines(buf.getvalue()) == [], buf.getvalue()
        follow = io.StringIO()  # --follow text: the tasks as they are, then each change
        printer = text.ChangePrinter(follow)
        printer.print_changes([Change("added", s.key, s) for s in snaps], time.time())
        printer.print_changes([Change("removed", s.key) for s in snaps], time.time())
        assert raw_controls(follow.getvalue()) == [] and forged_lines(follow.getvalue()) == [], follow.getvalue()
        for s in snaps:  # the TUI tree's row stays one line (its line filter, tested below,
            row = tree_label(s, time.time(), 200).plain  # makes the other controls visible)
            assert len(row.splitlines()) == 1 and "\t" not in row, repr(row)
        doc = jsonout.document(snaps, time.time(), monitor.warnings())
        assert raw_controls(doc.decode()) == []
        assert {t["name"] for t in orjson.loads(doc)["tasks"]} == {f"t{i}{s}" for i, s in enumerate(texts)}
        for s in snaps:
            out = _recovery(root, monitor, "propose", s.id, "--rules")
            assert "Proposal" in out
            assert raw_controls(out) == [] and forged_lines(out) == [], out
        for argv in (("history",), ("report",), ("history", "--json")):
            out = _recovery(root, monitor, *argv)
            assert raw_controls(out) == [] and forged_lines(out) == [], out


async def _tui_screens(root: Path) -> list[str]:
    from bgmon.views.tui.app import BgmonApp

    monitor = collect(_config(root))
    app = BgmonApp(monitor.config, monitor=monitor, live=False)
    screens = []
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        for _ in monitor.snapshots():  # each task's row and its detail panel
            screens.append(app.export_screenshot())
            await pilot.press("down")
            await pilot.pause()
        await pilot.press("r")  # the recovery panel: the rules' proposal for the selected task
        for _ in range(50):
            await pilot.pause(0.1)
            if app.panel.proposal is not None:
                break
        screens.append(app.export_screenshot())
    return screens


@settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(hostile, min_size=1, max_size=3))
def test_no_control_character_from_task_data_reaches_the_tui(texts):
    os.environ.pop("ANTHROPIC_API_KEY", None)
    home = os.environ.get("HOME")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        os.environ["HOME"] = tmp  # the journal and any ~ paths stay inside the example
        _workspace(root, texts)
        try:
            screens = asyncio.run(_tui_screens(root))
        finally:
            if home is not None:
                os.environ["HOME"] = home
        assert screens
        for svg in screens:
            assert raw_controls(svg) == []
