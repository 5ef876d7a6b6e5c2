"""Codex CLI rollouts (`~/.codex/sessions/YYYY/MM/DD/rollout-*.jsonl`).

Every line is an envelope `{"timestamp", "type", "payload"}`; see docs/formats_agents.md for what
is read from which payload. One TOOL_RESULT per call: the model API pairs every call with exactly
one `*_output` item, so results come from those, and from `item_completed` command items, which
"code mode" writes instead (Activity counts one verdict per call id); `exec_command_end` (which a version may or
may not persist, before or after the output) only ends background processes.
"""

from __future__ import annotations

import orjson

from bgmon.formats import canonical_input, checklist_events
from bgmon.model import EXITED, Event, EventKind, clip
from bgmon.timefmt import parse_time

_TEXT = 400
_NAME = 80
_ID = 120
_HEADER = 600  # the part of an exec output that holds "Exit code"/"Process exited" lines

# Outputs Codex writes when a call failed before or instead of running (no exit code in them).
_FAIL_PREFIXES = (
    "failed to parse function arguments",
    "unsupported call",
    "unsupported custom tool call",
    "exec command rejected",
    "patch rejected",
    "apply_patch verification failed",
    "execution error",
    "error: ",
)
_EXITED = "Process exited with code "
EXITED_TEXT = EXITED
_RUNNING = "Process running with session ID "
# In every line that writes the plan (the start-up's backward search for it tests these first).
CHECKLIST_MARKS = (b"update_plan",)


def _ts(value: object) -> float | None:
    try:
        return parse_time(value)
    except (ValueError, OverflowError, TypeError):
        return None


def _str(value: object, limit: int) -> str | None:
    return clip(value, limit) if isinstance(value, str) and value else None


def _input(value: object) -> str | None:
    try:
        return canonical_input(value)
    except (RecursionError, ValueError, TypeError):
        return None


def _int(text: str) -> int | None:
    """The integer at the start of `text` ("0\\nWall time…" → 0)."""
    text = text.lstrip()
    end = 1 if text[:1] == "-" else 0
    while end < len(text) and text[end].isdigit():
        end += 1
    try:
        return int(text[:end])
    except ValueError:
        return None


def _after(text: str, marker: str) -> str:
    i = text.find(marker)
    return text[i + len(marker) :] if i >= 0 else ""


# -- tool calls ---------------------------------------------------------------------------


def _arguments(raw: object) -> object:
    """`arguments` is a JSON string; parse it so equal calls canonicalise equally."""
    if isinstance(raw, str):
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            return raw
    return raw


def _plan(args: object, ts: float | None, out: list[Event]) -> None:
    """update_plan {"plan": [{"step", "status"}]} → PROGRESS and the in_progress STEP."""
    plan = args.get("plan") if isinstance(args, dict) else None
    checklist_events(plan, lambda item: item.get("step"), ts, out)


def _function_call(p: dict, ts: float | None) -> list[Event]:
    name = p.get("name")
    args = _arguments(p.get("arguments"))
    out = [
        Event(
            EventKind.TOOL_CALL,
            ts=ts,
            tool=_str(name, _NAME),
            call_id=_str(p.get("call_id"), _ID),
            input=_input(args),
        )
    ]
    if name == "update_plan":
        _plan(args, ts, out)
    return out


def _custom_tool_call(p: dict, ts: float | None) -> list[Event]:
    return [
        Event(
            EventKind.TOOL_CALL,
            ts=ts,
            tool=_str(p.get("name"), _NAME),
            call_id=_str(p.get("call_id"), _ID),
            input=_input(p.get("input")),
        )
    ]


def _local_shell_call(p: dict, ts: float | None) -> list[Event]:
    action = p.get("action")
    command = action.get("command") if isinstance(action, dict) else None
    return [
        Event(
            EventKind.TOOL_CALL,
            ts=ts,
            tool="local_shell",
            call_id=_str(p.get("call_id"), _ID) or _str(p.get("id"), _ID),
            input=_input(command if command is not None else action),
        )
    ]


# -- tool results -------------------------------------------------------------------------


def _output_text(raw: object) -> tuple[str, bool | None]:
    """The output's text and an explicit success flag, whichever shape the version wrote."""
    success = None
    if isinstance(raw, dict):  # {"content": str | items, "success": bool}
        flag = raw.get("success")
        success = flag if isinstance(flag, bool) else None
        content = raw.get("content")
        raw = content if content is not None else raw.get("output")
    if isinstance(raw, str):
        return raw, success
    if isinstance(raw, list):  # content items: [{"type": "input_text", "text": …}, …]
        for item in raw:
            if isinstance(item, dict):
                text = item.get("text")
                if isinstance(text, str):
                    return text, success
    return "", success


def _verdict(text: str, success: bool | None) -> tuple[bool, int | None, str | None, str]:
    """→ (ok, exit code, running session id, the output body) for one call's output text."""
    if text.startswith("{"):  # ≤0.7x shell: {"output": …, "metadata": {"exit_code": N, …}}
        try:
            data = orjson.loads(text)
        except orjson.JSONDecodeError:
            data = None
        if isinstance(data, dict):
            meta = data.get("metadata")
            code = meta.get("exit_code") if isinstance(meta, dict) else None
            body = data.get("output")
            body = body if isinstance(body, str) else ""
            if isinstance(code, int) and not isinstance(code, bool):
                return code == 0, code, None, body
            if data.get("isError") is True or data.get("success") is False:  # MCP-style results
                return False, None, None, body or text
    if text.startswith("Exit code:"):  # ~0.80 shell_command: "Exit code: N\nWall time: …\nOutput:\n…"
        code = _int(text[len("Exit code:") :])
        if code is not None:
            return code == 0, code, None, _after(text, "\nOutput:\n")
    header = text[:_HEADER]
    cut = header.find("\nOutput:")
    if cut >= 0:
        header = header[:cut]
    if _EXITED in header:  # 0.12x exec_command / write_stdin
        code = _int(_after(header, _EXITED))
        if code is not None:
            return code == 0, code, None, _after(text, "\nOutput:\n")
    if _RUNNING in header:
        session = _after(header, _RUNNING).split("\n", 1)[0].strip()
        if session:
            return True, None, session, _after(text, "\nOutput:\n")
    if success is not None:
        return success, None, None, text
    head = text[:80].lstrip().lower()
    if head.startswith(_FAIL_PREFIXES) or head == "aborted":
        return False, None, None, text
    return True, None, None, text


def _output(p: dict, ts: float | None) -> list[Event]:
    text, success = _output_text(p.get("output"))
    ok, code, session, body = _verdict(text, success)
    error = None
    if not ok:
        detail = body.strip()[:_TEXT] if body else ""
        head = f"exit code {code}" if code is not None else ""
        error = clip(f"{head}: {detail}" if head and detail else head or detail or "failed", _TEXT)
    call_id = _str(p.get("call_id"), _ID)
    # "exited N" lets a write_stdin poll end the background session it named (activity.py).
    said = f"{EXITED_TEXT}{code}" if code is not None else None
    out = [Event(EventKind.TOOL_RESULT, ts=ts, call_id=call_id, ok=ok, error=error, text=said)]
    if session is not None:
        # The call returned while its process keeps running; `exec_command_end` ends it later.
        out.append(
            Event(EventKind.BG_START, ts=ts, call_id=clip(session, _ID), text=f"session {session}")
        )
    return out


def _exec_end(p: dict, ts: float | None) -> list[Event]:
    """exec_command_end: the process behind a call exited. It ends a background session (keyed
    by its process id); the call's own result is its function_call_output."""
    pid = p.get("process_id")
    if isinstance(pid, int) and not isinstance(pid, bool):
        pid = str(pid)
    if not isinstance(pid, str) or not pid:
        return []
    code = p.get("exit_code")
    status = p.get("status")
    if not isinstance(code, int) or isinstance(code, bool):
        code = None
    ok = status != "failed" and status != "declined" and (code is None or code == 0)
    error = None if ok else (f"exit code {code}" if code is not None else str(status))
    return [Event(EventKind.BG_END, ts=ts, call_id=clip(pid, _ID), ok=ok, error=clip(error, _TEXT))]


# Command items as `item_completed` writes them ("code mode" runs commands whose exit status is
# written only there); exec --json spells the type in snake case, the app-server in camel case.
_COMMAND_ITEMS = frozenset({"command_execution", "commandExecution", "CommandExecution"})


def _item_completed(p: dict, ts: float | None) -> list[Event]:
    """item_completed {item: {type: command_execution, id, exit_code, status}} → the command's
    result. Keyed by the item's call id (or id): when the same call's output also appears,
    Activity counts the first verdict only."""
    item = p.get("item")
    if not isinstance(item, dict) or item.get("type") not in _COMMAND_ITEMS:
        return []
    call_id = _str(item.get("call_id"), _ID) or _str(item.get("id"), _ID)
    code = item.get("exit_code", item.get("exitCode"))
    if not isinstance(code, int) or isinstance(code, bool):
        code = None
    status = item.get("status")
    if code is None and status not in ("completed", "failed", "declined"):
        return []  # still running, or a status this version does not say: no verdict
    ok = status not in ("failed", "declined") and (code is None or code == 0)
    error = None
    if not ok:
        head = f"exit code {code}" if code is not None else str(status)
        out = item.get("aggregated_output", item.get("aggregatedOutput"))
        detail = out.strip()[:_TEXT] if isinstance(out, str) else ""
        error = clip(f"{head}: {detail}" if detail else head, _TEXT)
    said = f"{EXITED_TEXT}{code}" if code is not None else None
    return [Event(EventKind.TOOL_RESULT, ts=ts, call_id=call_id, ok=ok, error=error, text=said)]


# -- messages and turns -------------------------------------------------------------------


def _message(p: dict, ts: float | None) -> list[Event]:
    if p.get("role") != "assistant":
        return []  # user/developer items repeat prompts and instructions; turns come from events
    content = p.get("content")
    texts: list[str] = []
    if isinstance(content, str):
        texts.append(content)
    elif isinstance(content, list):
        for item in content:
            if isinstance(item, dict):
                text = item.get("text")
                if isinstance(text, str) and text and not text.isspace():
                    texts.append(text)
    if not texts:
        return []
    out = [Event(EventKind.MESSAGE, ts=ts, text=clip("\n".join(texts), _TEXT))]
    phase = p.get("phase")
    if phase == "final_answer":
        out.append(Event(EventKind.TURN_END, ts=ts, text="final_answer"))
    elif phase is None:
        # Versions without phases: the last message of a turn, or a preamble to a tool call.
        out.append(Event(EventKind.TURN_END, ts=ts, text="text_only"))
    return out


def _response_item(p: dict, ts: float | None) -> list[Event]:
    kind = p.get("type")
    if kind == "function_call":
        return _function_call(p, ts)
    if kind == "function_call_output" or kind == "custom_tool_call_output":
        return _output(p, ts)
    if kind == "custom_tool_call":
        return _custom_tool_call(p, ts)
    if kind == "local_shell_call":
        return _local_shell_call(p, ts)
    if kind == "message":
        return _message(p, ts)
    return []  # reasoning, web_search_call, ghost_snapshot, compaction, …


def _event_msg(p: dict, ts: float | None) -> list[Event]:
    kind = p.get("type")
    if kind == "task_started" or kind == "turn_started":
        return [Event(EventKind.TURN_START, ts=ts)]
    if kind == "user_message":
        if p.get("kind") not in (None, "plain"):  # old versions tagged injected instructions
            return []
        return [Event(EventKind.TURN_START, ts=ts, text=_str(p.get("message"), _TEXT))]
    if kind == "task_complete" or kind == "turn_complete":
        return [Event(EventKind.TURN_END, ts=ts, text="task_complete")]
    if kind == "turn_aborted":
        return [Event(EventKind.TURN_ABORTED, ts=ts, text=_str(p.get("reason"), _TEXT) or "aborted")]
    if kind == "error":
        return [Event(EventKind.API_ERROR, ts=ts, text=_str(p.get("message"), _TEXT) or "error")]
    if kind == "stream_error":  # a retried stream; the turn goes on (a final failure is "error")
        return [Event(EventKind.ERROR, ts=ts, text=_str(p.get("message"), _TEXT) or "stream error")]
    if kind == "exec_command_end":
        return _exec_end(p, ts)
    if kind == "item_completed":
        return _item_completed(p, ts)
    if isinstance(kind, str) and kind in _ASKS:
        return [Event(EventKind.WAITING, ts=ts, text=_ask_text(kind, p))]
    if kind == "entered_review_mode" or kind == "exited_review_mode":
        # A review sub-agent (its own rollout) runs between these: the session is alive, and
        # its span holds the sub-agent's start (engine.family._spawner).
        return [Event(EventKind.HEARTBEAT, ts=ts, text=kind.replace("_", " "))]
    return []  # agent_message (repeats the message item), token_count, agent_reasoning, …


# Codex asks the person before it runs a command or applies a patch (or asks a question).
_ASKS = {
    "exec_approval_request": "approve command",
    "apply_patch_approval_request": "approve patch",
    "patch_approval_request": "approve patch",
    "request_user_input": "question",
    "elicitation_request": "question",
}


def _ask_text(kind: str, p: dict) -> str:
    what = _ASKS[kind]
    command = p.get("command")
    if isinstance(command, list):
        command = " ".join(str(c) for c in command)
    detail = command if isinstance(command, str) and command else p.get("reason") or p.get("message")
    return clip(f"{what}: {detail}" if isinstance(detail, str) and detail else what, _TEXT) or what


def _session_meta(p: dict, ts: float | None) -> list[Event]:
    """The session's facts. A sub-agent's rollout (review, compaction, a spawned thread) says so
    in `source: {"subagent": KIND}`: its kind goes in `tool`, and its parent's session id, which
    only spawned threads name, in `call_id` (see Activity._meta for how nesting uses them)."""
    cwd = p.get("cwd")
    kind, parent = _subagent(p.get("source"))
    if parent is None:
        parent = _str(p.get("parent_thread_id"), _ID)
    return [
        Event(
            EventKind.META,
            ts=ts,
            cwd=cwd if isinstance(cwd, str) and cwd else None,
            text=_str(p.get("id"), _ID),
            tool=kind,
            call_id=parent if kind else None,
        )
    ]


def _subagent(source: object) -> tuple[str | None, str | None]:
    """`{"subagent": "review"}` (0.80) or `{"subagent": {"thread_spawn": {"parent_thread_id":
    …}}}` (later) → (its kind, its parent's session id or None). Others are no sub-agent."""
    if not isinstance(source, dict):
        return None, None
    sub = source.get("subagent", source.get("sub_agent"))
    if isinstance(sub, str) and sub:
        return clip(sub, _NAME), None
    if isinstance(sub, dict) and sub:
        kind = next(iter(sub))
        detail = sub[kind]
        parent = detail.get("parent_thread_id") if isinstance(detail, dict) else None
        if kind == "other" and isinstance(detail, str) and detail:
            kind = detail
        return clip(str(kind), _NAME) or "subagent", _str(parent, _ID)
    return None, None


def _turn_context(p: dict, ts: float | None) -> list[Event]:
    cwd = p.get("cwd")
    return [Event(EventKind.META, ts=ts, cwd=cwd)] if isinstance(cwd, str) and cwd else []


def _compacted(p: dict, ts: float | None) -> list[Event]:
    return []


def _before_envelope(obj: dict) -> list[Event] | None:
    """Rollouts from before `{timestamp, type, payload}` (mid-2025): a header line with the
    session's id and start, `{"record_type": "state"}` lines, and bare response items (above)
    that carry no time of their own."""
    if "record_type" in obj:
        return []
    if "id" in obj and "timestamp" in obj:
        return _session_meta(obj, _ts(obj.get("timestamp")))
    return None


_BARE_ITEMS = frozenset({
    "message", "function_call", "function_call_output", "custom_tool_call",
    "custom_tool_call_output", "local_shell_call", "reasoning",
})


def _nothing(p: dict, ts: float | None) -> list[Event]:
    return []


_HANDLERS = {
    "session_meta": _session_meta,
    "response_item": _response_item,
    "event_msg": _event_msg,
    "turn_context": _turn_context,
    "compacted": _compacted,
    # Newer record types that say nothing about health: known, not warnings.
    "world_state": _nothing,
    "token_usage_record": _nothing,
}


def parse(obj: dict) -> list[Event] | None:
    """One rollout line → events; None for an envelope type this format doesn't know."""
    if not isinstance(obj, dict):
        return None
    kind = obj.get("type")
    if not isinstance(kind, str):
        return _before_envelope(obj)
    handler = _HANDLERS.get(kind)
    if handler is None:
        if kind in _BARE_ITEMS and "payload" not in obj:
            return _response_item(obj, None)  # a rollout from before the envelope (mid-2025)
        return None
    payload = obj.get("payload")
    if not isinstance(payload, dict):
        return []
    return handler(payload, _ts(obj.get("timestamp")))
