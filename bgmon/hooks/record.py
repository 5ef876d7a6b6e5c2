"""bgmon's hook recorder: an agent runs it on its lifecycle events; it appends one line for the
session to bgmon's state folder (hooks/<agent>/<session id>.jsonl), which the agent's adapter
reads as the session's own word on its state.

It is run as `python -I -S record.py AGENT` and imports only the standard library, so it starts
in milliseconds (bench/hooks.py measures it). It must never block or fail the agent: it does not
wait for input on a terminal, swallows every error and always exits 0. It writes nothing
secret: the time, the event's name and a few short fields that name a kind (never prompts, tool
inputs, outputs or messages).

Input: Claude Code's and Codex's hooks give a JSON object on stdin (session_id, hook_event_name,
…); Codex's older `notify` gives it as the last argument (type, thread-id, …). A Codex hook run
inside a sub-agent names that sub-agent's thread as `agent_id`: the event is that thread's.
"""

import os
import sys
import time

try:  # CPython's JSON scanner without `json` itself, whose import (re, enum) costs ~6 ms
    import _json

    class _Context:
        strict = True
        object_hook = object_pairs_hook = None
        parse_float, parse_int = float, int
        parse_constant = staticmethod(float)
        memo: dict = {}

    # The stub types the context as a scanner; the scanner only reads the attributes above.
    _scan = _json.make_scanner(_Context())  # type: ignore[arg-type]
    _quote = _json.encode_basestring_ascii

    def loads(text: str) -> object:
        start = len(text) - len(text.lstrip())
        obj, _end = _scan(text, start)
        return obj

    def dumps(obj: dict) -> str:
        return "{" + ", ".join(f"{_quote(k)}: {v!r}" if isinstance(v, float) else f"{_quote(k)}: {_quote(v)}"
                               for k, v in obj.items()) + "}"
except (ImportError, AttributeError):  # another Python: the plain module
    from json import dumps
    from json import loads as _json_loads

    def loads(text: str) -> object:
        return _json_loads(text)

MAX_INPUT = 1 << 20
KEPT = ("notification_type", "tool_name", "agent_type", "error")  # short names of kinds
SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


def state_dir() -> str:
    base = os.environ.get("BGMON_STATE_DIR")
    if base:
        return base
    xdg = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(xdg, "bgmon")


def _input(agent: str, argv: list) -> object:
    if agent == "codex" and len(argv) > 2:
        return loads(argv[-1])  # notify
    if sys.stdin is None or sys.stdin.isatty():
        return None
    return loads(sys.stdin.read(MAX_INPUT))


def record(argv: list) -> None:
    agent = argv[1] if len(argv) > 1 else ""
    if agent not in ("claude", "codex"):
        return
    obj = _input(agent, argv)
    if not isinstance(obj, dict):
        return
    session = (obj.get("agent_id") if agent == "codex" else None) or obj.get("session_id") \
        or obj.get("thread-id") or obj.get("thread_id")
    if not isinstance(session, str) or not 0 < len(session) <= 128 or not set(session) <= SAFE \
            or session.startswith("."):
        return
    event = obj.get("hook_event_name") or obj.get("type")
    line = {"ts": round(time.time(), 3), "event": str(event)[:60]}
    for key in KEPT:
        value = obj.get(key)
        if isinstance(value, str) and value:
            line[key] = value[:80]
    folder = os.path.join(state_dir(), "hooks", agent)
    os.makedirs(folder, mode=0o700, exist_ok=True)
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(os.path.join(folder, session + ".jsonl"), flags, 0o600)
    try:
        os.write(fd, (dumps(line) + "\n").encode())
    finally:
        os.close(fd)


if __name__ == "__main__":
    try:
        record(sys.argv)
    except BaseException:  # noqa: BLE001 - the agent must never see this hook fail
        pass
    sys.exit(0)
