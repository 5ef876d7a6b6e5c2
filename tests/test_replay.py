"""`bgmon replay LOG...`: the rules over recorded logs on the logs' own clock. The fixtures in
tests/fixtures/replay are small logs modelled on real ones (Claude Code 2.1.39, Codex 0.98 and
0.121, bgmon run); each timeline below is what a person watching at the time should have seen."""

from __future__ import annotations

import subprocess
from pathlib import Path

import orjson
import pytest

from bgmon.config import Thresholds
from bgmon.replay import replay
from tests.conftest import CORPUS, bgmon_cmd

FIXTURES = Path(__file__).parent / "fixtures" / "replay"


def timeline(name: str) -> list[tuple[str, str]]:
    r = replay(str(FIXTURES / name), Thresholds())
    return [(c.health.badge.value, c.health.reasons[0].rule) for c in r.changes]


def test_a_refused_connection_struggles_then_idles_into_stuck():
    assert timeline("bgmon-run-refused.jsonl") == [
        ("healthy", "active"),
        ("struggling", "struggling.errors"),  # 3 connection_refused errors in a row
        ("healthy", "active"),  # a minute without errors: past them
        ("stuck", "stuck.idle"),  # heartbeats only: alive, no progress for 10m
    ]


def test_an_interrupted_claude_turn_waits_for_the_person_then_ends():
    r = replay(str(FIXTURES / "claude-interrupted.jsonl"), Thresholds())
    assert r.fmt == "claude" and r.skipped == 0  # permission-mode is a known record type
    assert [(c.health.badge.value, c.health.reasons[0].rule) for c in r.changes] == [
        ("healthy", "active"),
        ("waiting", "waiting.interrupted"),
        ("healthy", "active"),
        ("completed", "turn.ended"),  # a thinking-only reply; the end is in turn_duration
    ]


def test_codex_stream_retries_struggle_until_the_turn_completes():
    assert timeline("codex-stream-retries.jsonl") == [
        ("unknown", "status.unknown"),
        ("healthy", "active"),
        ("struggling", "struggling.errors"),
        ("completed", "turn.ended"),
    ]


def test_a_question_waits_for_its_answer_and_an_api_error_fails_the_turn():
    """Claude Code 2.1.39: AskUserQuestion answered five minutes later; the next turn ends on a
    529 (the `<synthetic>` API Error message), and the turn_duration line after it is no
    success: the turn still ended on the error."""
    r = replay(str(FIXTURES / "claude-question-then-api-error.jsonl"), Thresholds())
    assert r.skipped == 0
    assert [(c.health.badge.value, c.health.reasons[0].rule) for c in r.changes] == [
        ("healthy", "active"),
        ("waiting", "waiting.question"),
        ("healthy", "active"),
        ("failed", "turn.api_error"),
    ]


def test_a_codex_approval_request_waits_until_the_command_runs():
    """Codex 0.121: exec_approval_request, approved after four minutes; the command fails once
    (one failed result is no streak), the patch and the rerun pass, the task completes."""
    assert timeline("codex-approval.jsonl") == [
        ("unknown", "status.unknown"),
        ("healthy", "active"),
        ("waiting", "waiting.person"),
        ("healthy", "active"),
        ("completed", "turn.ended"),
    ]


def test_thresholds_tune_the_timeline():
    quick = Thresholds(stuck_after=120.0, error_window=5.0)
    r = replay(str(FIXTURES / "bgmon-run-refused.jsonl"), quick)
    stuck = [c for c in r.changes if c.health.badge.value == "stuck"]
    assert stuck and stuck[0].health.reasons[0].evidence["threshold_s"] == 120.0


def test_cli_text_and_json(tmp_path):
    log = str(FIXTURES / "claude-interrupted.jsonl")
    p = subprocess.run(bgmon_cmd("replay", log), capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert "⚑ waiting" in p.stdout and "waiting.interrupted" in p.stdout
    p = subprocess.run(bgmon_cmd("replay", "--json", "--stuck-after", "2m", log),
                       capture_output=True, timeout=60)
    doc = orjson.loads(p.stdout)
    (one,) = doc["logs"]
    assert [t["health"] for t in one["timeline"]] == ["healthy", "waiting", "healthy", "completed"]
    assert one["timeline"][1]["reasons"][0]["asked_at"].endswith("Z")
    missing = subprocess.run(bgmon_cmd("replay", str(tmp_path / "nope.jsonl")), capture_output=True,
                             text=True, timeout=60)
    assert missing.returncode == 2 and "not a file" in missing.stderr and "Traceback" not in missing.stderr


@pytest.mark.skipif(not CORPUS.is_dir(), reason="../shared/corpus is not here")
def test_real_claude_sessions_replay_without_misreadings():
    for path in sorted((CORPUS / "spotter").glob("*.jsonl")):
        r = replay(str(path), Thresholds())
        badges = [c.health.badge.value for c in r.changes]
        assert r.changes, path
        assert "failed" not in badges, (path.name, [(c.line, c.health.reasons[0].detail) for c in r.changes])
        assert r.skipped <= r.lines // 100, (path.name, r.skipped)
