"""Real logs written by Claude Code, Codex and oh-my-opencode (../shared/corpus): the whole
engine reads every file without crashing. Skips cleanly where the folder is absent."""

from __future__ import annotations

import os

import pytest

from bgmon.config import Config
from bgmon.engine import collect
from tests.conftest import CORPUS

pytestmark = pytest.mark.skipif(not CORPUS.is_dir(), reason="../shared/corpus is not here")

EVERYTHING = 100 * 365 * 86400.0  # --since: the corpus is older than a day


def corpus_config(homes: dict[str, str], **kw) -> Config:
    """The corpus's roots and the agents' homes given (only those agents are read)."""
    kw.setdefault("roots", (str(CORPUS),))
    kw.setdefault("sources", (*homes, "omo"))
    kw.setdefault("dirs", tuple(homes.items()))
    kw.setdefault("git", False)
    kw.setdefault("since", EVERYTHING)
    kw.setdefault("match_agents", False)
    return Config(**kw)


def spotter_home(tmp_path):
    """Lay spotter's transcripts out as ~/.claude/projects/<project>/ (links, not copies)."""
    project = tmp_path / "claude" / "projects" / "-home-marco-projects-spotter"
    project.mkdir(parents=True)
    for entry in (CORPUS / "spotter").iterdir():
        os.symlink(entry, project / entry.name)
    return tmp_path / "claude"


def test_cchistory_claude_and_codex_homes(tmp_path):
    home = CORPUS / "cchistory" / "mock_data"
    monitor = collect(corpus_config({"claude": str(home / ".claude"), "codex": str(home / ".codex")}))
    snaps = monitor.snapshots()
    sources = sorted(s.source for s in snaps)
    assert sources.count("codex") == 4
    assert sources.count("claude") == 3  # two sessions and one sub-agent
    sub = [s for s in snaps if s.key.endswith("agent-a0a2928875cb36a92")]
    assert sub and sub[0].parent == "claude:cc1df109-4282-4321-8248-8bbcd471da78"
    for s in snaps:
        assert s.health.reasons, s.key
        assert s.group, s.key
    # Rollouts that record their cwd are grouped by it.
    assert sum(s.group.startswith("/Users/mock_user") for s in snaps if s.source == "codex") == 3


def test_spotter_transcripts_with_subagents(tmp_path):
    monitor = collect(corpus_config({"claude": str(spotter_home(tmp_path))}))
    snaps = {s.key: s for s in monitor.snapshots()}
    sessions = [k for k in snaps if "/" not in k.removeprefix("claude:")]
    assert len(sessions) == 8  # five main sessions and short/subagent/tool_heavy
    subagents = [s for s in snaps.values() if s.parent]
    assert len(subagents) >= 8
    for s in snaps.values():
        assert s.group.startswith("/home/") and "spotter" in s.group, (s.key, s.group)
        # every task is judged with evidence
        assert s.health.reasons
    # Reading faults are counted, never fatal: nothing here is expected to be unreadable.
    assert not [w for w in monitor.warnings() if "cannot read" in w]


def test_a_transcript_cut_mid_line_is_read_up_to_the_cut(tmp_path):
    src = CORPUS / "spotter" / "tool_heavy.jsonl"
    project = tmp_path / "claude" / "projects" / "-p"
    project.mkdir(parents=True)
    data = src.read_bytes()
    (project / "cut.jsonl").write_bytes(data[: len(data) // 2])
    (project / "bad.jsonl").write_bytes(data[:5000] + b"\xff\xfe garbage\n" + data[5000:9000])
    snaps = collect(corpus_config({"claude": str(tmp_path / "claude")})).snapshots()
    assert {s.key for s in snaps} == {"claude:cut", "claude:bad"}
