"""Claude Code transcripts (`~/.claude/projects/<project>/<session>.jsonl`, sub-agents too).

One decoded line in, events out; no state across lines (see docs/formats_agents.md for what is
read from which line type, and what the engine has to add). This runs for every line of files
that reach several MB, so the common lines (`progress`, tool results) take the cheap paths: no
regexes, no scans of tool output unless the result is an error, and text is only ever sliced.

Lines are decoded by `decode` into `Line` records that hold only the fields read here: msgspec
skips the rest without building it (message ids, usage, thinking text, a tool result's output,
which is most of a transcript's bytes), which makes decoding a good deal cheaper than a full
decode. A line of another shape (a message that is not an object, …) is decoded in full by the
reader instead, and `parse` takes that dict through `from_dict`, which keeps what the schema
would and drops what it would refuse.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

import msgspec

from bgmon.clip import clip as clip_text
from bgmon.formats import canonical_input, checklist_events
from bgmon.model import Event, EventKind, clip
from bgmon.timefmt import parse_time

_fromiso = datetime.fromisoformat

_TEXT = 400
_NAME = 80
_ID = 120

_META = EventKind.META
_TOOL_CALL = EventKind.TOOL_CALL
_TOOL_RESULT = EventKind.TOOL_RESULT
_PROGRESS = EventKind.PROGRESS
_STEP = EventKind.STEP
_MESSAGE = EventKind.MESSAGE
_ERROR = EventKind.ERROR
_HEARTBEAT = EventKind.HEARTBEAT
_TURN_START = EventKind.TURN_START
_TURN_END = EventKind.TURN_END
_TURN_ABORTED = EventKind.TURN_ABORTED
_API_ERROR = EventKind.API_ERROR
_BG_START = EventKind.BG_START
_BG_END = EventKind.BG_END

# stop_reason values after which the model does not continue on its own.
_ENDING_STOPS = frozenset({"end_turn", "stop_sequence", "refusal"})
# User text that the harness writes for local work (slash commands, `!` shell mode): no model turn.
_LOCAL_PREFIXES = (
    "<local-command-",
    "<command-name>",  # local commands (/mcp, /clear, /compact) put the name first
    "<bash-input>",
    "<bash-stdout>",
    "<bash-stderr>",
)
_INTERRUPTED = "[Request interrupted by user"
_NOTIFICATION = "<task-notification>"
# <status> of a <task-notification> or of a TaskOutput result → ok of the BG_END.
_BG_OK = {"completed": True, "failed": False, "error": False, "killed": None, "stopped": None}
# progress line kinds worth a HEARTBEAT (hook_progress only accompanies calls we already see).
_HEARTBEAT_KINDS = frozenset({"bash_progress", "agent_progress", "waiting_for_task"})
_KILLERS = frozenset({"KillBash", "KillShell", "TaskStop"})
# In every line that writes the to-do list or the task board: TodoWrite and TaskUpdate calls,
# TaskCreate's result (`toolUseResult.task`), a prompt's `todos` snapshot (≤ 2.0). The
# start-up's backward search for the newest list tests blocks for these before parsing a line.
CHECKLIST_MARKS = (b'"TodoWrite"', b'"TaskUpdate"', b'"task":{', b'"todos":[{')


# -- the fields read here ---------------------------------------------------------------------
# gc=False: decoded JSON cannot point back at a record, so they are never part of a cycle.


class Block(msgspec.Struct, gc=False):
    """One item of a message's content: text, thinking, tool_use or tool_result."""

    type: Any = None
    text: Any = None
    id: Any = None
    name: Any = None
    input: Any = None
    tool_use_id: Any = None
    is_error: Any = None
    # A tool result's output, undecoded (`_output`): read only when the result is an error.
    content: msgspec.Raw = None  # type: ignore[assignment]  # a dict line's holds its value


class Message(msgspec.Struct, gc=False):
    content: str | list[Block] | None = None
    stop_reason: Any = None
    model: Any = None


class ResultFacts(msgspec.Struct, gc=False):
    """`toolUseResult` when it is an object: background starts, TaskCreate, TaskOutput."""

    backgroundTaskId: Any = None
    status: Any = None
    agentId: Any = None
    taskId: Any = None
    task: Any = None
    retrieval_status: Any = msgspec.UNSET  # only whether it is there counts


class Line(msgspec.Struct, gc=False):
    type: Any = None
    timestamp: Any = None
    cwd: Any = None
    message: Message | None = None
    toolUseResult: str | list[Any] | ResultFacts | None = None
    todos: Any = None
    isMeta: Any = None
    isCompactSummary: Any = None
    isApiErrorMessage: Any = None
    error: Any = None
    cause: Any = None
    data: Any = None  # progress
    parentToolUseID: Any = None
    subtype: Any = None  # system
    retryAttempt: Any = None
    maxRetries: Any = None
    operation: Any = None  # queue-operation
    content: Any = None
    attachment: Any = None


# The reader's decoder for this format (LineFormat.decode). It raises on a line of another shape
# (msgspec.ValidationError, a ValueError), and the reader decodes that line in full instead.
decode = msgspec.json.Decoder(Line).decode
_decode_any = msgspec.json.Decoder().decode


def from_dict(obj: dict) -> Line:
    """A line decoded in full (the reader's general decoder, tests) → the record `decode` would
    give, with what has another shape than the schema's dropped as the handlers would ignore it."""
    line = _record(Line, obj)
    msg = obj.get("message")
    if isinstance(msg, dict):
        message = line.message = _record(Message, msg)
        content = msg.get("content")
        if isinstance(content, list):
            message.content = [_record(Block, item) for item in content if isinstance(item, dict)]
        elif not isinstance(content, str):
            message.content = None
    else:
        line.message = None
    extra = obj.get("toolUseResult")
    if isinstance(extra, dict):
        line.toolUseResult = _record(ResultFacts, extra)
    elif not isinstance(extra, str | list):
        line.toolUseResult = None
    return line


_R = TypeVar("_R", bound=msgspec.Struct)


def _record(kind: type[_R], obj: dict) -> _R:
    """The fields of `kind` taken from a dict as they are (nested records are the caller's);
    a field the dict lacks keeps its default."""
    return kind(**{name: obj[name] for name in kind.__struct_fields__ if name in obj})


def _output(content: object) -> object:
    """A tool result's content as JSON values, whichever way the line was decoded."""
    if isinstance(content, msgspec.Raw):
        try:
            return _decode_any(content)
        except (ValueError, RecursionError):
            return None
    return content


def _ts(value: object) -> float | None:
    # Fast path for the one form Claude Code writes ("2026-02-12T16:02:25.227Z"); parse_time
    # gives the same value but tries a float first, which costs more than the rest of a line.
    # (Anything fromisoformat accepts starts with a digit: no need to look.)
    if isinstance(value, str) and value[-1:] == "Z":
        try:
            return _fromiso(value).timestamp()
        except (ValueError, OverflowError):
            pass
    try:
        return parse_time(value)
    except (ValueError, OverflowError, TypeError):  # out-of-range dates, huge numbers
        return None


def _str(value: object, limit: int) -> str | None:
    # Most values fit: no call for them (this runs several times a line).
    if isinstance(value, str) and value:
        return value if len(value) <= limit else clip_text(value, limit)
    return None


def _input(value: object) -> str | None:
    try:
        return canonical_input(value)
    except (RecursionError, ValueError, TypeError):  # pathological nesting
        return None


def _visible(text: str) -> bool:
    return bool(text) and not text.isspace()


def _between(text: str, start: str, end: str, frm: int = 0) -> str | None:
    i = text.find(start, frm)
    if i < 0:
        return None
    i += len(start)
    j = text.find(end, i)
    return text[i:j].strip() if j >= 0 else None


# -- shared pieces ------------------------------------------------------------------------


def _todos(todos: object, ts: float | None, out: list[Event]) -> None:
    """TodoWrite's list (and the `todos` snapshot on prompt lines) → PROGRESS and STEP."""
    checklist_events(todos, _todo_text, ts, out)


def _todo_text(item: dict) -> object:
    form = item.get("activeForm")
    return form if isinstance(form, str) and form else item.get("content")


def _task_update(raw: dict, ts: float | None, out: list[Event]) -> None:
    """TaskUpdate (2.1.16+): one item of the task board changes status (and maybe title)."""
    task_id = raw.get("taskId")
    status = raw.get("status")
    if not (isinstance(task_id, str | int) and not isinstance(task_id, bool)):
        return
    title = next(
        (t for t in (raw.get("activeForm"), raw.get("subject")) if isinstance(t, str) and t), None
    )
    out.append(Event(
        EventKind.TASK_ITEM, ts=ts, call_id=clip(str(task_id), _ID),
        input=status if isinstance(status, str) else None, text=clip(title, _TEXT),
    ))


def _notifications(text: str, ts: float | None, out: list[Event]) -> None:
    """Each <task-notification> block (a background command or agent finished) → BG_END."""
    pos = text.find(_NOTIFICATION)
    while pos >= 0:
        end = text.find("</task-notification>", pos)
        block = text[pos : end if end >= 0 else len(text)]
        task_id = _between(block, "<task-id>", "</task-id>")
        if task_id:
            status = _between(block, "<status>", "</status>")
            summary = _between(block, "<summary>", "</summary>")
            ok = _BG_OK.get(status.lower()) if status else None
            out.append(
                Event(
                    _BG_END,
                    ts=ts,
                    call_id=clip(task_id, _ID),
                    ok=ok,
                    error=clip(summary or status, _TEXT) if ok is False else None,
                    text=clip(summary, _TEXT) if summary else None,
                )
            )
        if end < 0:
            break
        pos = text.find(_NOTIFICATION, end)


def _result_text(content: object) -> str | None:
    """The readable part of a failed tool_result's content (a string or a list of blocks)."""
    content = _output(content)
    if isinstance(content, list):
        for block in content:
            if isinstance(block, dict) and block.get("type") == "text":
                content = block.get("text")
                break
        else:
            return None
    if not isinstance(content, str):
        return None
    text = content[: _TEXT * 2].strip()
    if text.startswith("<tool_use_error>"):
        text = text[len("<tool_use_error>") :]
        cut = text.find("</tool_use_error>")
        if cut >= 0:
            text = text[:cut]
    return clip(text.strip(), _TEXT) or None


# -- per line type ------------------------------------------------------------------------


def _assistant(obj: Line, ts: float | None, out: list[Event]) -> None:
    msg = obj.message
    if msg is None:
        return
    content = msg.content
    if isinstance(content, str):
        content = [Block("text", content)]
    elif content is None:
        return
    texts: list[str] = []
    calls = False
    for item in content:
        kind = item.type
        if kind == "tool_use":
            calls = True
            _tool_use(item, ts, out)
        elif kind == "text":
            text = item.text
            if isinstance(text, str) and _visible(text):
                texts.append(text)
    failed = obj.isApiErrorMessage is True or bool(
        texts and texts[0].startswith("API Error") and msg.model == "<synthetic>"
    )
    if failed:
        detail = texts[0] if texts else obj.error
        out.append(Event(_API_ERROR, ts=ts, text=_str(detail, _TEXT) or "API error"))
        return
    # Positional events (text is the 10th field) and the clip inlined: nearly every assistant
    # line takes this path, and keywords or a call per text cost a tenth of the line.
    for text in texts:
        out.append(Event(_MESSAGE, ts, None, None, None, None, None, None, None,
                         text if len(text) <= _TEXT else clip_text(text, _TEXT)))
    stop = msg.stop_reason
    if isinstance(stop, str):
        if stop in _ENDING_STOPS:
            out.append(Event(_TURN_END, ts, None, None, None, None, None, None, None, stop))
    elif stop is None and texts and not calls:
        # 2.1.3x writes each content block as its own line with stop_reason null: a text-only
        # line is the turn's end, or the preamble of a tool call written a moment later.
        out.append(Event(_TURN_END, ts, None, None, None, None, None, None, None, "text_only"))


def _tool_use(item: Block, ts: float | None, out: list[Event]) -> None:
    name = item.name
    raw = item.input
    # Positional (kind, ts, tool, call_id, input): keywords cost more on this hot path.
    out.append(Event(_TOOL_CALL, ts, _str(name, _NAME), _str(item.id, _ID), _input(raw)))
    if not isinstance(raw, dict):
        return
    if name == "TodoWrite":
        _todos(raw.get("todos"), ts, out)
    elif name == "TaskUpdate":
        _task_update(raw, ts, out)
    elif isinstance(name, str) and name in _KILLERS:
        # KillBash/KillShell end a background shell; no <task-notification> follows them.
        shell = raw.get("shell_id") or raw.get("task_id")
        if isinstance(shell, str) and shell:
            out.append(Event(_BG_END, ts=ts, call_id=clip(shell, _ID), text="killed"))


def _user(obj: Line, ts: float | None, out: list[Event]) -> None:
    msg = obj.message
    content = msg.content if msg is not None else None
    text: str | None = None
    results: list[Block] = []
    if isinstance(content, str):
        text = content
    elif content is not None:
        for item in content:
            kind = item.type
            if kind == "tool_result":
                results.append(item)
            elif kind == "text" and text is None:
                value = item.text
                if isinstance(value, str):
                    text = value
    if results:
        _results(obj, results, ts, out)
        if text is not None and text.startswith(_INTERRUPTED):
            out.append(Event(_TURN_ABORTED, ts=ts, text=clip(text, _TEXT)))
    elif text is not None:
        _prompt(obj, text, ts, out)
    todos = obj.todos
    if todos:
        _todos(todos, ts, out)


def _results(obj: Line, results: list[Block], ts: float | None, out: list[Event]) -> None:
    extra = obj.toolUseResult
    for item in results:
        ok = item.is_error is not True
        error = None if ok else _result_text(item.content) or "tool error"
        if ok and len(results) == 1 and isinstance(extra, str) and extra.startswith("Error:"):
            ok, error = False, clip(extra, _TEXT)
        # Positional (kind, ts, tool, call_id, input, ok, error): a hot path.
        out.append(Event(_TOOL_RESULT, ts, None, _str(item.tool_use_id, _ID), None, ok, error))
    if isinstance(extra, ResultFacts):
        _tool_use_result(extra, ts, out)


def _tool_use_result(extra: ResultFacts, ts: float | None, out: list[Event]) -> None:
    """The structured side of a result: background starts, and TaskOutput's view of them."""
    bg = extra.backgroundTaskId
    if isinstance(bg, str) and bg:
        out.append(Event(_BG_START, ts=ts, call_id=clip(bg, _ID)))
        return
    if extra.status == "async_launched":  # Agent/Task (or workflow) in the background
        bg = extra.agentId or extra.taskId
        if isinstance(bg, str) and bg:
            out.append(Event(_BG_START, ts=ts, call_id=clip(bg, _ID)))
        return
    task = extra.task
    retrieval = extra.retrieval_status is not msgspec.UNSET
    if isinstance(task, dict) and not retrieval:  # TaskCreate's new item
        item_id, subject = task.get("id"), task.get("subject")
        if isinstance(item_id, str | int) and not isinstance(item_id, bool):
            out.append(Event(
                EventKind.TASK_ITEM, ts=ts, call_id=clip(str(item_id), _ID), input="pending",
                text=clip(subject, _TEXT) if isinstance(subject, str) else None,
            ))
        return
    if retrieval and isinstance(task, dict):  # TaskOutput
        task_id = task.get("task_id")
        status = task.get("status")
        if not (isinstance(task_id, str) and task_id and isinstance(status, str)):
            return
        if status not in _BG_OK:
            return  # still running
        ok = _BG_OK[status]
        code = task.get("exitCode")
        if ok and isinstance(code, int) and not isinstance(code, bool) and code != 0:
            ok = False
        error = None
        if ok is False:
            error = f"exit code {code}" if isinstance(code, int) else status
        out.append(Event(_BG_END, ts=ts, call_id=clip(task_id, _ID), ok=ok, error=error))


def _prompt(obj: Line, text: str, ts: float | None, out: list[Event]) -> None:
    """Plain user text: a person's prompt, an interruption, or harness text that is neither."""
    if obj.isMeta is True or obj.isCompactSummary is True:
        return
    head = text[:64].lstrip()
    if head.startswith(_INTERRUPTED):
        out.append(Event(_TURN_ABORTED, ts=ts, text=clip(text, _TEXT)))
        return
    if head.startswith(_NOTIFICATION):
        _notifications(text, ts, out)
        summary = _between(text, "<summary>", "</summary>")
        out.append(Event(_TURN_START, ts=ts, text=clip(summary or "task notification", _TEXT)))
        return
    if head.startswith(_LOCAL_PREFIXES):
        return
    if head.startswith("<command-message>"):  # a prompt command (skills, custom commands)
        name = _between(text, "<command-name>", "</command-name>") or ""
        args = _between(text, "<command-args>", "</command-args>") or ""
        text = f"{name} {args}".strip() or text
    if _visible(text):
        out.append(Event(_TURN_START, ts=ts, text=clip(text, _TEXT)))


def _progress(obj: Line) -> list[Event]:
    """`progress` lines: most (hook_progress) only accompany a call we see anyway, so they get
    no events at all, not even META; a long command's, sub-agent's or wait's get a HEARTBEAT."""
    data = obj.data
    if not isinstance(data, dict):
        return []
    kind = data.get("type")
    if not isinstance(kind, str) or kind not in _HEARTBEAT_KINDS:
        return []
    text = None
    if kind == "waiting_for_task":
        what = data.get("taskDescription")
        text = clip(f"waiting for {what}", _TEXT) if isinstance(what, str) and what else None
    ts = _ts(obj.timestamp)
    return [Event(_HEARTBEAT, ts=ts, call_id=_str(obj.parentToolUseID, _ID), text=text)]


def _system(obj: Line, ts: float | None, out: list[Event]) -> None:
    subtype = obj.subtype
    if subtype == "turn_duration" or subtype == "stop_hook_summary":
        # The turn's end when its last reply was thinking only (no text, no stop_reason): the
        # Stop hooks ran, or the harness timed the turn.
        out.append(Event(_TURN_END, ts=ts, text=subtype))
    elif subtype == "api_error":  # a retried API call; the final failure is an assistant line
        attempt, most = obj.retryAttempt, obj.maxRetries
        detail = _api_error_detail(obj.error) or _api_error_detail(obj.cause)
        text = "API error"
        if isinstance(attempt, int) and isinstance(most, int):
            text += f" (retry {attempt}/{most})"
        if detail:
            text += f": {detail}"
        out.append(Event(_ERROR, ts=ts, text=clip(text, _TEXT)))


def _api_error_detail(error: object) -> str | None:
    if isinstance(error, str):
        return error
    if not isinstance(error, dict):
        return None
    status = error.get("status")
    message = error.get("message")
    inner = error.get("error")
    if not isinstance(message, str) and isinstance(inner, dict):
        message = inner.get("message")
        if not isinstance(message, str) and isinstance(inner.get("error"), dict):
            message = inner["error"].get("message")
    if not isinstance(message, str):
        message = error.get("code") if isinstance(error.get("code"), str) else None
    parts = [str(status)] if isinstance(status, int) and not isinstance(status, bool) else []
    if isinstance(message, str) and message:
        parts.append(message)
    return " ".join(parts) or None


def _queue(obj: Line, ts: float | None, out: list[Event]) -> None:
    if obj.operation != "enqueue":
        return
    content = obj.content
    if isinstance(content, str) and content.startswith(_NOTIFICATION):
        _notifications(content, ts, out)


def _attachment(obj: Line, ts: float | None, out: list[Event]) -> None:
    att = obj.attachment
    if not isinstance(att, dict) or att.get("type") != "queued_command":
        return
    prompt = att.get("prompt")
    if isinstance(prompt, str) and prompt[:64].lstrip().startswith(_NOTIFICATION):
        _notifications(prompt, ts, out)


def _nothing(obj: Line, ts: float | None, out: list[Event]) -> None:
    return


# Keyed by the line's `type`, whatever JSON value it holds (a non-string simply has no handler).
_HANDLERS: dict[object, Callable[[Line, float | None, list[Event]], None]] = {
    "assistant": _assistant,
    "user": _user,
    "system": _system,
    "queue-operation": _queue,
    "attachment": _attachment,
    "file-history-snapshot": _nothing,
    "summary": _nothing,
    "last-prompt": _nothing,
    "ai-title": _nothing,
    "custom-title": _nothing,
    # Real record types of newer versions that say nothing about health: known, not warnings.
    "permission-mode": _nothing,
    "pr-link": _nothing,
    "agent-name": _nothing,
    "teleported-from": _nothing,
    "world_state": _nothing,
    "token_usage_record": _nothing,
    "tag": _nothing,
}


def parse(obj: Line | dict) -> list[Event] | None:
    """One Claude Code transcript line (a `Line` from `decode`, or a dict decoded in full) →
    events; None for a line type this format doesn't know."""
    if type(obj) is not Line:
        if not isinstance(obj, dict):
            return None
        obj = from_dict(obj)
    kind = obj.type
    if kind == "progress":  # over half of all lines: the cheapest path
        return _progress(obj)
    try:
        handler = _HANDLERS.get(kind)
    except TypeError:  # not hashable: not a line type
        return None
    if handler is None:
        return None
    ts = _ts(obj.timestamp)
    cwd = obj.cwd
    # Every line with a cwd gives a META with that line's time. Positional arguments (cwd is
    # the 11th field): keywords cost a quarter more on a path taken for nearly every line.
    out: list[Event] = (
        [Event(_META, ts, None, None, None, None, None, None, None, None, cwd)]
        if isinstance(cwd, str) and cwd else []
    )
    handler(obj, ts, out)
    return out
