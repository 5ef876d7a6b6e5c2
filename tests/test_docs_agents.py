"""The pages a person reads name every agent bgmon reads (README's "what bgmon finds", the table
in docs/agents.md, the switches in docs/sources.md) and every hook plan: adding an agent or a
plan without its documentation fails here."""

from __future__ import annotations

import re

import pytest

from bgmon.agents import REGISTRY
from bgmon.hooks.install import PLANS
from tests.conftest import REPO

README = (REPO / "README.md").read_text()
AGENTS = (REPO / "docs" / "agents.md").read_text()
SOURCES = (REPO / "docs" / "sources.md").read_text()


def table_row(name: str) -> list[str]:
    """The cells of docs/agents.md's row for an agent (| `name` | agent | where | read as |)."""
    match = re.search(rf"^\| `{re.escape(name)}` \|(.+)\|\s*$", AGENTS, re.M)
    assert match, f"docs/agents.md has no table row for {name}"
    return [cell.strip() for cell in match.group(1).split("|")]


@pytest.mark.parametrize("agent", REGISTRY, ids=lambda a: a.name)
def test_every_agent_is_documented(agent):
    product = re.sub(r"\s*\(.*\)$", "", table_row(agent.name)[0])
    if agent.name != "worktrees":  # README names bgmon's own tasks by their status files
        assert product in README, f"README's list of what bgmon finds lacks {product}"
        assert f"## {product}" in AGENTS or f"## {product.split()[0]}" in AGENTS
    assert f"--no-{agent.name}" in SOURCES


@pytest.mark.parametrize("name", sorted(PLANS))
def test_every_hook_plan_is_documented(name):
    assert f"bgmon hooks install {name}" in AGENTS
    assert f"hooks install {PLANS[name].agent}" in README
