"""oh-my-opencode's .opencode/background-tasks.json: one task per entry, same health rules."""

from __future__ import annotations

import shutil
import time

import orjson
import pytest

from bgmon.config import Config
from bgmon.engine import Monitor, collect
from bgmon.formats.opencode import status_fields
from tests.conftest import CORPUS


def config(root) -> Config:
    return Config(roots=(str(root),), sources=("omo",), git=False)


def write(root, entries) -> None:
    path = root / ".opencode" / "background-tasks.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(entries))


def test_entries_become_tasks_judged_by_the_usual_rules(tmp_path):
    now_ms = int(time.time() * 1000)
    write(tmp_path, [
        {"id": "bg_a", "description": "Explore", "agent": "explore", "status": "running",
         "startedAt": now_ms, "progress": {"toolCalls": 4, "lastUpdate": now_ms}},
        {"id": "bg_b", "description": "Old", "status": "running", "startedAt": "2025-01-01T00:00:00Z",
         "progress": {"toolCalls": 0, "lastUpdate": "2025-01-01T00:00:00Z"}},
        {"id": "bg_c", "status": "error", "error": "model overloaded"},
        {"not": "a task"},
    ])
    snaps = {s.id: s for s in collect(config(tmp_path)).snapshots()}
    assert set(snaps) == {"bg_a", "bg_b", "bg_c"}
    assert snaps["bg_a"].health.badge.value == "healthy" and snaps["bg_a"].step == "explore: 4 tool calls"
    assert snaps["bg_a"].source == "omo" and snaps["bg_a"].name == "Explore"
    assert snaps["bg_b"].health.reasons[0].rule == "stuck.silent"
    assert snaps["bg_c"].health.badge.value == "failed" and "model overloaded" in snaps["bg_c"].health.summary


def test_a_torn_list_keeps_the_last_good_tasks(tmp_path):
    write(tmp_path, [{"id": "bg_a", "status": "running", "startedAt": time.time()}])
    m = Monitor(config(tmp_path))
    m.sweep()
    m.evaluate()
    (tmp_path / ".opencode" / "background-tasks.json").write_text('[{"id": "bg_a", "sta')
    m.sweep()
    m.evaluate()
    assert [s.id for s in m.snapshots()] == ["bg_a"]
    assert any("background-tasks.json" in w for w in m.warnings())


def test_unknown_status_is_shown_as_is():
    assert status_fields({"id": "x", "status": "teleporting"})["status"] == "teleporting"


@pytest.mark.skipif(not CORPUS.is_dir(), reason="../shared/corpus is not here")
@pytest.mark.parametrize("commit", ["at-245acda", "at-78514ec"])
def test_corpus_task_lists(tmp_path, commit):
    root = tmp_path / commit
    shutil.copytree(CORPUS / "oh-my-opencode" / commit, root)
    snaps = {s.id: s for s in collect(config(root)).snapshots()}
    assert snaps["bg_wzsdt60b"].health.badge.value == "completed"
    if commit == "at-78514ec":
        # running, last update long ago: stuck, with the evidence
        assert snaps["bg_392b9c9b"].health.badge.value == "stuck"
