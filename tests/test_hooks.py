"""`bgmon hooks install|uninstall`: bgmon's entries merged into an agent's settings and removed
again exactly, and the recorder those entries run, as a real subprocess."""

from __future__ import annotations

import json
import os
import shlex
import subprocess

import pytest

from bgmon.hooks.install import MARKER
from tests.conftest import bgmon_cmd

USER_HOOKS = {
    "permissions": {"allow": ["Bash(npm test:*)"]},
    "hooks": {
        "PreToolUse": [{"matcher": "Bash", "hooks": [{"type": "command", "command": "~/bin/guard.sh"}]}],
        "Stop": [{"hooks": [{"type": "command", "command": "notify-send 'done' # mine", "timeout": 9}]}],
    },
    "model": "opus",
}


def hooks(*args: str, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(bgmon_cmd("hooks", *args), capture_output=True, text=True, timeout=60, env=env)


def settings_file(tmp_path, obj=USER_HOOKS, indent=2):
    path = tmp_path / "settings.json"
    path.write_text(json.dumps(obj, indent=indent) + "\n")
    return path


def test_install_merges_keeps_user_hooks_and_uninstall_restores_the_bytes(tmp_path):
    path = settings_file(tmp_path)
    original = path.read_bytes()
    p = hooks("install", "claude", "--file", str(path))
    assert p.returncode == 0, p.stderr
    installed = json.loads(path.read_text())
    # The user's own groups are untouched, in their place, with bgmon's added after them.
    assert installed["hooks"]["PreToolUse"][0] == USER_HOOKS["hooks"]["PreToolUse"][0]
    assert installed["hooks"]["Stop"][0] == USER_HOOKS["hooks"]["Stop"][0]
    assert installed["permissions"] == USER_HOOKS["permissions"] and installed["model"] == "opus"
    for event in ("UserPromptSubmit", "PreToolUse", "Notification", "Stop", "StopFailure", "SubagentStop"):
        ours = [g for g in installed["hooks"][event] if g["hooks"][0]["command"].endswith(MARKER)]
        assert len(ours) == 1, event
    for group in USER_HOOKS["hooks"]["PreToolUse"] + USER_HOOKS["hooks"]["Stop"]:
        assert json.dumps(group, indent=2).replace("\n", "\n      ") in path.read_text()  # same bytes
    assert (tmp_path / "settings.json.bgmon-backup").read_bytes() == original

    text = path.read_bytes()
    p = hooks("install", "claude", "--file", str(path))  # idempotent
    assert p.returncode == 0 and "already" in p.stdout and path.read_bytes() == text

    p = hooks("uninstall", "claude", "--file", str(path))
    assert p.returncode == 0, p.stderr
    assert path.read_bytes() == original
    p = hooks("uninstall", "claude", "--file", str(path))
    assert p.returncode == 0 and "not installed" in p.stdout and path.read_bytes() == original


def test_uninstall_keeps_what_the_user_changed_meanwhile(tmp_path):
    path = settings_file(tmp_path, indent=4)  # not Claude's own style: the backup restores it
    original = path.read_bytes()
    assert hooks("install", "claude", "--file", str(path)).returncode == 0
    assert hooks("uninstall", "claude", "--file", str(path)).returncode == 0
    assert path.read_bytes() == original
    assert hooks("install", "claude", "--file", str(path)).returncode == 0
    obj = json.loads(path.read_text())
    obj["model"] = "sonnet"  # the user edits the file while bgmon's hooks are in
    path.write_text(json.dumps(obj, indent=2) + "\n")
    assert hooks("uninstall", "claude", "--file", str(path)).returncode == 0
    assert json.loads(path.read_text()) == {**USER_HOOKS, "model": "sonnet"}


def test_dry_run_prints_the_change_and_writes_nothing(tmp_path):
    path = settings_file(tmp_path)
    before = path.read_bytes()
    p = hooks("install", "claude", "--dry-run", "--file", str(path))
    assert p.returncode == 0 and "+" in p.stdout and "UserPromptSubmit" in p.stdout and MARKER in p.stdout
    assert path.read_bytes() == before and not (tmp_path / "settings.json.bgmon-backup").exists()


def test_a_missing_file_is_created_and_a_broken_one_is_left_alone(tmp_path):
    path = tmp_path / "new" / "settings.json"
    assert hooks("install", "claude", "--file", str(path)).returncode == 0
    assert "UserPromptSubmit" in json.loads(path.read_text())["hooks"]
    broken = tmp_path / "broken.json"
    broken.write_text('{"hooks": {')
    p = hooks("install", "claude", "--file", str(broken))
    assert p.returncode == 2 and "not valid JSON" in p.stderr and "Traceback" not in p.stderr
    assert broken.read_text() == '{"hooks": {'


def test_codex_notify_is_added_and_removed_exactly_and_never_replaces_the_users(tmp_path):
    path = tmp_path / "config.toml"
    original = 'model = "gpt-5"\n\n[projects."/work"]\ntrust_level = "trusted"\n'
    path.write_text(original)
    assert hooks("install", "codex-notify", "--file", str(path)).returncode == 0
    import tomllib

    assert tomllib.loads(path.read_text())["notify"][-1] == "codex"
    assert hooks("install", "codex-notify", "--file", str(path)).returncode == 0
    assert path.read_text().count("notify =") == 1
    assert hooks("uninstall", "codex-notify", "--file", str(path)).returncode == 0
    assert path.read_text() == original
    path.write_text('notify = ["my-notifier"]\n')
    p = hooks("install", "codex-notify", "--file", str(path))
    assert p.returncode == 2 and "will not replace it" in p.stderr
    assert path.read_text() == 'notify = ["my-notifier"]\n'


# A user's own ~/.codex/hooks.json, shaped like the ones people publish (Codex 0.114+).
CODEX_USER_HOOKS = {
    "hooks": {
        "SessionStart": [{"matcher": "startup|resume", "hooks": [{
            "type": "command", "command": "python3 ~/.codex/hooks/session_start.py", "timeout": 10,
            "statusMessage": "Loading context"}]}],
        "PreToolUse": [{"matcher": "Bash", "hooks": [{
            "type": "command", "command": "python3 ~/.codex/hooks/guard.py", "statusMessage": "Checking"}]}],
        "Stop": [{"hooks": [{"type": "command", "command": "notify-send codex done", "timeout": 30}]}],
    }
}
CODEX_EVENTS = ("UserPromptSubmit", "PreToolUse", "PermissionRequest", "PostToolUse", "Stop", "StopFailure")


def test_codex_hooks_json_keeps_the_users_hooks_and_uninstall_restores_the_bytes(tmp_path):
    path = tmp_path / "hooks.json"
    path.write_text(json.dumps(CODEX_USER_HOOKS, indent=2) + "\n")
    original = path.read_bytes()
    p = hooks("install", "codex", "--dry-run", "--file", str(path))
    assert p.returncode == 0 and "PermissionRequest" in p.stdout and path.read_bytes() == original
    p = hooks("install", "codex", "--file", str(path))
    assert p.returncode == 0, p.stderr
    assert "/hooks" in p.stdout  # Codex runs a new hook only once the person trusts it there
    installed = json.loads(path.read_text())["hooks"]
    for event, groups in CODEX_USER_HOOKS["hooks"].items():
        assert installed[event][: len(groups)] == groups  # the user's own first, untouched
        for group in groups:
            assert json.dumps(group, indent=2).replace("\n", "\n      ") in path.read_text()  # same bytes
    for event in CODEX_EVENTS:
        ours = [g for g in installed[event] if g["hooks"][0]["command"].endswith(MARKER)]
        # No matcher: a group without one matches every tool (Codex's matchers are regexes).
        assert len(ours) == 1 and "matcher" not in ours[0], event
        assert shlex.split(ours[0]["hooks"][0]["command"], comments=True)[-1] == "codex"
    assert (tmp_path / "hooks.json.bgmon-backup").read_bytes() == original
    text = path.read_bytes()
    p = hooks("install", "codex", "--file", str(path))
    assert p.returncode == 0 and "already" in p.stdout and path.read_bytes() == text
    assert hooks("uninstall", "codex", "--file", str(path)).returncode == 0
    assert path.read_bytes() == original


def test_codex_hooks_json_is_created_when_missing_and_a_broken_one_is_left_alone(tmp_path):
    path = tmp_path / "codex-home" / "hooks.json"
    assert hooks("install", "codex", "--file", str(path)).returncode == 0
    assert set(json.loads(path.read_text())["hooks"]) == set(CODEX_EVENTS)
    assert hooks("uninstall", "codex", "--file", str(path)).returncode == 0
    assert json.loads(path.read_text()) == {}
    broken = tmp_path / "broken.json"
    broken.write_text('{"hooks": [')
    p = hooks("install", "codex", "--file", str(broken))
    assert p.returncode == 2 and "not valid JSON" in p.stderr and broken.read_text() == '{"hooks": ['


# -- the recorder, as the agent runs it ---------------------------------------------------------


def installed_command(tmp_path, agent="claude") -> list[str]:
    path = settings_file(tmp_path, {})
    assert hooks("install", agent, "--file", str(path)).returncode == 0
    group = json.loads(path.read_text())["hooks"]["Notification"][0]
    return shlex.split(group["hooks"][0]["command"], comments=True)


def run_hook(argv, payload, state, stdin=None):
    env = {**os.environ, "BGMON_STATE_DIR": str(state)}
    return subprocess.run(argv, input=payload if stdin is None else stdin, capture_output=True,
                          timeout=30, env=env)


def test_the_recorder_appends_one_safe_line_per_event(tmp_path):
    argv = installed_command(tmp_path)
    state = tmp_path / "state"
    secret = "sk-ant-api03-" + "x" * 40
    events = [
        {"session_id": "abc-123", "hook_event_name": "UserPromptSubmit", "prompt": f"use {secret}",
         "transcript_path": "/t.jsonl", "cwd": "/w"},
        {"session_id": "abc-123", "hook_event_name": "PreToolUse", "tool_name": "Bash",
         "tool_input": {"command": f"curl -H 'Authorization: {secret}'"}},
        {"session_id": "abc-123", "hook_event_name": "Notification", "notification_type": "permission_prompt",
         "message": f"Claude needs your permission ({secret})"},
        {"session_id": "abc-123", "hook_event_name": "StopFailure", "error": "rate_limit",
         "last_assistant_message": secret},
    ]
    for obj in events:
        p = run_hook(argv, json.dumps(obj).encode(), state)
        assert p.returncode == 0 and p.stdout == b"" and p.stderr == b""
    text = (state / "hooks" / "claude" / "abc-123.jsonl").read_text()
    lines = [json.loads(line) for line in text.splitlines()]
    assert [ln["event"] for ln in lines] == ["UserPromptSubmit", "PreToolUse", "Notification", "StopFailure"]
    assert lines[2]["notification_type"] == "permission_prompt" and lines[1]["tool_name"] == "Bash"
    assert secret not in text and "/w" not in text and "curl" not in text


@pytest.mark.parametrize("payload", [b"", b"not json", b"[1,2]", b'{"session_id": "../../etc/x"}',
                                     b'{"session_id": 7}', b'{"hook_event_name": "Stop"}'])
def test_the_recorder_never_fails_the_agent(tmp_path, payload):
    argv = installed_command(tmp_path)
    state = tmp_path / "state"
    p = run_hook(argv, payload, state)
    assert p.returncode == 0 and p.stderr == b""
    assert not (state / "hooks" / "claude").exists() or not any((state / "hooks" / "claude").iterdir())


def test_the_recorder_does_not_fail_when_it_cannot_write(tmp_path):
    argv = installed_command(tmp_path)
    state = tmp_path / "state"
    state.write_text("a file where the folder should be")
    p = run_hook(argv, b'{"session_id": "s1", "hook_event_name": "Stop"}', state)
    assert p.returncode == 0 and p.stderr == b""


def test_codex_notify_passes_its_json_as_an_argument(tmp_path):
    argv = installed_command(tmp_path)[:-1] + ["codex"]
    state = tmp_path / "state"
    payload = {"type": "agent-turn-complete", "thread-id": "0199aaaa-bbbb", "turn-id": "1",
               "cwd": "/w", "input-messages": ["secret prompt"], "last-assistant-message": "secret answer"}
    p = run_hook([*argv, json.dumps(payload)], b"", state)
    assert p.returncode == 0
    text = (state / "hooks" / "codex" / "0199aaaa-bbbb.jsonl").read_text()
    assert json.loads(text)["event"] == "agent-turn-complete" and "secret" not in text


def test_codex_hooks_give_their_json_on_stdin_and_a_sub_agents_go_to_its_own_thread(tmp_path):
    path = tmp_path / "hooks.json"
    assert hooks("install", "codex", "--file", str(path)).returncode == 0
    group = json.loads(path.read_text())["hooks"]["PermissionRequest"][0]
    argv = shlex.split(group["hooks"][0]["command"], comments=True)
    state = tmp_path / "state"
    common = {"session_id": "019d036d-c7fa-72d2-b6fd-78878bfe34e4", "turn_id": "019d036e-3164",
              "cwd": "/work/app", "transcript_path": "/home/u/.codex/sessions/x.jsonl", "model": "gpt-5.5",
              "permission_mode": "default"}
    asked = {**common, "hook_event_name": "PermissionRequest", "tool_name": "Bash",
             "tool_input": {"command": "rm -rf build", "description": "clean"}}
    in_sub_agent = {**common, "hook_event_name": "Stop", "agent_id": "019d0400-aaaa-bbbb",
                    "agent_type": "worker", "stop_hook_active": False, "last_assistant_message": "secret"}
    for obj in (asked, in_sub_agent):
        p = run_hook(argv, json.dumps(obj).encode(), state)
        assert p.returncode == 0 and p.stdout == b"" and p.stderr == b""  # no decision: Codex asks as usual
    folder = state / "hooks" / "codex"
    (line,) = [json.loads(x) for x in (folder / f"{common['session_id']}.jsonl").read_text().splitlines()]
    assert line["event"] == "PermissionRequest" and line["tool_name"] == "Bash"
    text = "".join(f.read_text() for f in folder.iterdir())
    assert "rm -rf" not in text and "/work/app" not in text and "secret" not in text
    # A hook run inside a sub-agent names its thread (agent_id): its turn is that thread's, not the parent's.
    assert json.loads((folder / "019d0400-aaaa-bbbb.jsonl").read_text())["event"] == "Stop"
