"""The agents' registry: config keys and flags come from it, and every agent's discovery runs
through it (adding an agent is one module and one registry line)."""

from __future__ import annotations

import time

import pytest

from bgmon.agents import REGISTRY, by_name, by_source, sniff
from bgmon.cli import build_parser, resolve_config
from bgmon.config import ConfigError, load_config
from bgmon.sources.discover import discover
from tests.conftest import append_lines


def test_names_sources_and_formats_are_unique():
    names = [a.name for a in REGISTRY]
    assert len(names) == len(set(names))
    assert len({a.task_source for a in REGISTRY}) == len(REGISTRY)
    formats = [f.name for a in REGISTRY for f in a.formats]
    assert len(formats) == len(set(formats))
    assert by_source("worktree") is by_name("worktrees")


@pytest.mark.parametrize("agent", REGISTRY, ids=lambda a: a.name)
def test_every_agent_has_its_flags_and_keys(agent, tmp_path, isolated_home):
    flags = [f"--no-{agent.name}"] + ([f"--{agent.name}-dir", str(tmp_path)] if agent.home else [])
    config, _ = resolve_config(build_parser().parse_args(flags))
    assert not config.enabled(agent.name)
    assert all(config.enabled(a.name) for a in REGISTRY if a is not agent)
    if agent.home:
        assert config.home(agent.name) == tmp_path
    text = f"[monitor]\n{agent.name} = false\n"
    if agent.home:
        text += f'{agent.name}_dir = "{tmp_path}"\n'
    path = tmp_path / "c.toml"
    path.write_text(text)
    config, warnings = load_config(path, explicit=True)
    assert not config.enabled(agent.name) and warnings == []
    if agent.home:
        assert config.home(agent.name) == tmp_path
    printed = config.to_toml()
    assert f"{agent.name} = false" in printed


@pytest.mark.parametrize("text", ["[monitor]\nclaude = 'no'\n", "[monitor]\ncodex_dir = 3\n",
                                  "[monitor]\ncodex_dir = ''\n"])
def test_bad_agent_keys_are_config_errors(tmp_path, text):
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match="claude|codex_dir"):
        load_config(path, explicit=True)


def test_agent_without_a_home_has_no_dir_key(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[monitor]\nworktrees_dir = "/x"\n')
    _, warnings = load_config(path, explicit=True)
    assert any("worktrees_dir" in w for w in warnings)


def test_home_follows_flag_then_variable_then_default(tmp_path, monkeypatch, isolated_home):
    config, _ = resolve_config(build_parser().parse_args([]))
    assert config.home("claude") == isolated_home / ".claude"
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", str(tmp_path / "env"))
    assert config.home("claude") == tmp_path / "env"
    config, _ = resolve_config(build_parser().parse_args(["--claude-dir", str(tmp_path / "flag")]))
    assert config.home("claude") == tmp_path / "flag"


def test_switched_off_agents_are_not_looked_at(tmp_path, isolated_home):
    project = isolated_home / ".claude" / "projects" / "-w"
    append_lines(project / "s1.jsonl", {"type": "user", "sessionId": "s1", "cwd": "/w"})
    config, _ = resolve_config(build_parser().parse_args([str(tmp_path)]))
    assert "claude:s1" in {s.key for s in discover(config, time.time()).specs}
    config, _ = resolve_config(build_parser().parse_args([str(tmp_path), "--no-claude"]))
    found = discover(config, time.time())
    assert found.specs == [] and not any(".claude" in w for w in found.looked)


def test_sniffing_asks_each_line_format():
    assert sniff({"sessionId": "x", "type": "user"}) == "claude"
    assert sniff({"type": "event_msg", "payload": {}}) == "codex"
    assert sniff({"type": "tool_call", "tool": "x"}) == "native"


def test_agent_processes_are_known_by_name_or_by_the_script_an_interpreter_runs(tmp_path):
    import subprocess
    import sys

    from bgmon.procs import ProcessTable

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    script = tmp_path / "gemini"
    script.write_text("import time\ntime.sleep(60)\n")
    procs = [
        subprocess.Popen(["copilot", "60"], executable="/bin/sleep", cwd=tmp_path / "a"),
        subprocess.Popen(["python3", str(script)], executable=sys.executable, cwd=tmp_path / "b"),
    ]
    try:
        from tests.conftest import wait_for

        cwds = wait_for(lambda: (c := ProcessTable().agent_cwds()) and str(tmp_path / "b") in c and c,
                        what="both agent processes")
        assert procs[0].pid in cwds[str(tmp_path / "a")] and procs[1].pid in cwds[str(tmp_path / "b")]
    finally:
        for p in procs:
            p.kill()
            p.wait()
