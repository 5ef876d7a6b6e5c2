"""Codex sub-agent rollouts nest under the session that started them.

A spawned thread names its parent (`source: {subagent: {thread_spawn: {parent_thread_id}}}`);
Codex 0.80's review and compaction sub-agents say only `source: {subagent: "review"}`. Those nest
under the Codex session of the same cwd whose span (start to newest event) holds their start;
of several, the one that started nearest before it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from bgmon.activity import Activity
from bgmon.config import Config
from bgmon.engine import Monitor, collect
from bgmon.engine.family import Member, families
from bgmon.formats.codex import parse
from bgmon.model import EventKind
from tests.conftest import CORPUS, bgmon_cmd

FIXTURE = Path(__file__).parent / "fixtures" / "codex-review"
PARENT = "019be37a-1c00-70c0-8e0e-51985de40001"
REVIEW = "019be37c-2706-70c0-8e0e-51985de40002"
REAL_REVIEW = CORPUS / "cchistory" / "mock_data" / ".codex" / "sessions" / "2026" / "01" / "22" / (
    "rollout-2026-01-22T10-15-23-019be37c-2706-70c0-8e0e-51985de49079.jsonl")
FOREVER = 100 * 365 * 86400.0


def meta(source, id_="child", **extra) -> dict:
    return {"timestamp": "2026-01-22T02:15:23.181Z", "type": "session_meta",
            "payload": {"id": id_, "cwd": "/w", "source": source, **extra}}


def codex_config(home: Path, root: Path) -> Config:
    return Config(roots=(str(root),), sources=("codex",), dirs=(("codex", str(home)),), git=False,
                  since=FOREVER, match_agents=False)


def day_dir(home: Path) -> Path:
    day = home / "sessions" / "2026" / "01" / "22"
    day.mkdir(parents=True, exist_ok=True)
    return day


def by_session(monitor) -> dict:
    return {s.key.removeprefix("codex:"): s for s in monitor.snapshots()}


# -- what a rollout's first line says ------------------------------------------------------


def test_session_meta_says_which_sub_agent_and_whose():
    (review,) = parse(meta({"subagent": "review"}))
    assert (review.kind, review.tool, review.call_id) == (EventKind.META, "review", None)
    (spawned,) = parse(meta({"subagent": {"thread_spawn": {"parent_thread_id": "root-1", "depth": 1}}}))
    assert (spawned.tool, spawned.call_id) == ("thread_spawn", "root-1")
    (other,) = parse(meta({"subagent": {"other": "guardian"}}))
    assert (other.tool, other.call_id) == ("guardian", None)
    for source in ("cli", "vscode", "exec", {"mcp": 1}, None, {"subagent": ""}, {"subagent": 3}):
        (ev,) = parse(meta(source))
        assert (ev.tool, ev.call_id) == (None, None), source


def test_a_forked_rollout_keeps_its_own_first_facts():
    """A spawned thread's rollout goes on with its parent's history, session_meta included."""
    act = Activity()
    act.extend(parse(meta({"subagent": {"thread_spawn": {"parent_thread_id": "root"}}}, id_="child")))
    act.extend(parse(meta("vscode", id_="root")))
    assert (act.session, act.subagent, act.parent_session) == ("child", "thread_spawn", "root")


# -- nesting as a pure function --------------------------------------------------------------


def member(id_, start, sub=False, place="/w", ref=None):
    return Member(group="codex", id=id_[:4], parent=None, parent_ref=ref, session=id_,
                  subagent=sub, place=place, started_at=start)


def test_a_sub_agent_nests_under_the_session_whose_span_holds_its_start():
    members = {
        "early": member("early-long", 100.0), "late": member("late-short", 300.0),
        "ended": member("ended-before", 380.0), "elsewhere": member("other-place", 390.0, place="/x"),
        "after": member("after-it", 450.0), "sub": member("sub-review", 400.0, sub=True),
    }
    ends = {"early": 900.0, "late": 500.0, "ended": 394.0, "elsewhere": 900.0, "after": 900.0, "sub": 420.0}
    # Both early and late hold 400: the one that started nearest before it wins.
    assert families(members, ends.get).parents["sub"] == "late"
    ends["late"] = 396.0  # within SPAWN_SLACK: it wrote that it starts the review, then nothing
    assert families(members, ends.get).parents["sub"] == "late"
    ends["late"] = 394.0  # late ended before the review began: early is the only one holding it
    assert families(members, ends.get).parents["sub"] == "early"
    ends["early"] = 394.0
    assert families(members, ends.get).parents["sub"] is None  # nobody holds it: at the top
    assert families(members).parents["sub"] is None  # no span known, no guess


def test_a_named_parent_wins_and_is_found_by_its_full_session_id():
    members = {"root": member("root-session-id", 100.0), "near": member("near", 390.0),
               "kid": member("kid", 400.0, sub=True, ref="root-session-id")}
    assert families(members, {"root": 500.0, "near": 500.0}.get).parents["kid"] == "root"
    gone = {**members, "kid": member("kid", 400.0, sub=True, ref="not-here")}
    assert families(gone, {"root": 500.0, "near": 500.0}.get).parents["kid"] == "near"


# -- the engine over real files ------------------------------------------------------------


def test_the_review_sub_agent_nests_in_once_output(tmp_path, isolated_home):
    home = tmp_path / "codex"
    for f in FIXTURE.glob("rollout-*.jsonl"):
        shutil.copy(f, day_dir(home))
    out = subprocess.run(
        bgmon_cmd("--once", "--json", "--since", "36500d", "--no-git", "--no-claude", "--no-gemini",
                  "--no-opencode", "--no-copilot", "--no-omo", "--no-worktrees",
                  "--codex-dir", str(home), str(tmp_path)),
        capture_output=True, text=True, timeout=60, env={**os.environ, "NO_COLOR": "1"})
    assert out.returncode == 0, out.stderr
    tasks = {t["key"].removeprefix("codex:"): t for t in json.loads(out.stdout)["tasks"]}
    assert tasks[REVIEW]["parent"] == f"codex:{PARENT}"
    assert tasks[PARENT]["parent"] is None
    assert tasks[REVIEW]["name"] == "review sub-agent"
    text = subprocess.run(
        bgmon_cmd("--once", "--since", "36500d", "--no-git", "--no-claude", "--no-gemini",
                  "--no-opencode", "--no-copilot", "--no-omo", "--no-worktrees",
                  "--codex-dir", str(home), str(tmp_path)),
        capture_output=True, text=True, timeout=60, env={**os.environ, "NO_COLOR": "1"}).stdout
    lines = text.splitlines()
    parent_line = next(i for i, line in enumerate(lines) if "#019be37a" in line)
    review_line = next(i for i, line in enumerate(lines) if "review sub-agent" in line)
    assert review_line == parent_line + 1
    indent = len(lines[review_line]) - len(lines[review_line].lstrip())
    assert indent > len(lines[parent_line]) - len(lines[parent_line].lstrip())


def test_a_live_sub_agent_nests_once_its_parent_writes_past_its_start(tmp_path):
    """The review's file can appear before its parent writes a line after the review began."""
    home = tmp_path / "codex"
    day = day_dir(home)
    parent_lines = (FIXTURE / f"rollout-2026-01-22T10-10-02-{PARENT}.jsonl").read_text().splitlines(True)
    before = [line for line in parent_lines if "review_mode" not in line and "Review finished" not in line]
    parent_file = day / f"rollout-2026-01-22T10-10-02-{PARENT}.jsonl"
    parent_file.write_text("".join(before))
    shutil.copy(FIXTURE / f"rollout-2026-01-22T10-15-23-{REVIEW}.jsonl", day)
    m = Monitor(codex_config(home, tmp_path))
    m.sweep()
    m.evaluate()
    assert by_session(m)[REVIEW].parent is None  # the parent's last line is from before it
    with parent_file.open("a") as f:
        f.write(next(line for line in parent_lines if "entered_review_mode" in line))
    m.sweep()
    m.evaluate()
    assert by_session(m)[REVIEW].parent == f"codex:{PARENT}"


@pytest.mark.skipif(not REAL_REVIEW.is_file(), reason="../shared/corpus is not here")
def test_the_real_0_80_review_rollout_nests_under_its_session(tmp_path):
    """The corpus's review sub-agent, beside a session of the same cwd that was running."""
    home = tmp_path / "codex"
    day = day_dir(home)
    shutil.copy(REAL_REVIEW, day)
    m = collect(codex_config(home, tmp_path))
    (real,) = m.snapshots()
    assert real.parent is None and real.name == "review sub-agent"  # nobody to nest under
    first = json.loads(REAL_REVIEW.read_text().splitlines()[0])["payload"]
    lines = [line.replace("/home/dev/log-query-validator", first["cwd"])
             for line in (FIXTURE / f"rollout-2026-01-22T10-10-02-{PARENT}.jsonl").read_text().splitlines(True)]
    (day / f"rollout-2026-01-22T10-10-02-{PARENT}.jsonl").write_text("".join(lines))
    m = collect(codex_config(home, tmp_path))
    snaps = by_session(m)
    assert snaps[first["id"]].parent == f"codex:{PARENT}"
    assert snaps[PARENT].parent is None


def test_a_failed_compaction_sub_agent_does_not_fail_its_session(tmp_path):
    """Codex's compaction sub-agent is a helper, as Claude's agent-acompact is; a review is work."""
    home = tmp_path / "codex"
    day = day_dir(home)
    parent = (FIXTURE / f"rollout-2026-01-22T10-10-02-{PARENT}.jsonl").read_text()
    (day / f"rollout-2026-01-22T10-10-02-{PARENT}.jsonl").write_text(parent)
    review = (FIXTURE / f"rollout-2026-01-22T10-15-23-{REVIEW}.jsonl").read_text().splitlines(True)
    failed = json.dumps({"timestamp": "2026-01-22T02:15:47.990Z", "type": "event_msg",
                         "payload": {"type": "error", "message": "stream disconnected before completion"}}) + "\n"
    for kind, badge in (("compact", "completed"), ("review", "failed")):
        lines = [review[0].replace('"subagent": "review"', f'"subagent": "{kind}"'), *review[1:], failed]
        (day / f"rollout-2026-01-22T10-15-23-{REVIEW}.jsonl").write_text("".join(lines))
        snaps = by_session(collect(codex_config(home, tmp_path)))
        assert snaps[REVIEW].parent == f"codex:{PARENT}" and snaps[REVIEW].health.badge.value == "failed"
        assert snaps[PARENT].health.badge.value == badge, (kind, snaps[PARENT].health)
        if badge == "failed":
            assert "child review sub-agent is failed" in snaps[PARENT].health.summary


def test_a_resumed_session_in_an_old_day_folder_is_found(tmp_path):
    """`codex resume` appends to the rollout where the session began, in the folder of the day
    it began: a session started long ago and written to now is live, whatever its folder's date."""
    home = tmp_path / "codex"
    rollout = day_dir(home) / f"rollout-2026-01-22T10-15-23-{PARENT}.jsonl"
    rollout.write_text(json.dumps(meta("cli", id_=PARENT)) + "\n")  # mtime: now
    config = Config(roots=(str(tmp_path),), sources=("codex",), dirs=(("codex", str(home)),),
                    git=False, match_agents=False)  # the default --since (a day)
    assert PARENT in by_session(collect(config))
    old = day_dir(home) / f"rollout-2026-01-22T09-00-00-{REVIEW}.jsonl"
    old.write_text(json.dumps(meta("cli", id_=REVIEW)) + "\n")
    os.utime(old, (1_769_000_000, 1_769_000_000))  # untouched since January: not shown
    assert REVIEW not in by_session(collect(config))
