"""Helpers shared by the recovery tests (no tests here): snapshots, processes, a fake API."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import psutil

from bgmon.model import Badge, Event, EventKind, Health, ProcFacts, Reason, TaskSnapshot

PY = sys.executable
SLEEPER = [PY, "-c", "import time; time.sleep(60)"]


def snap(
    *,
    key: str = "wt:demo",
    id: str = "demo",
    badge: Badge = Badge.STUCK,
    reasons: tuple[tuple[str, str], ...] = (("stuck.silent", "no sign of life for 12m"),),
    pid: int | None = None,
    alive: bool | None = None,
    children: tuple[int, ...] = (),
    path: str = "/nonexistent/demo",
    cwd: str | None = None,
    command: tuple[str, ...] | None = None,
    recent: tuple[Event, ...] = (),
    fields: dict | None = None,
    files: tuple[str, ...] = (),
    status: str = "running",
) -> TaskSnapshot:
    proc = None
    if pid is not None:
        live = _running(pid) if alive is None else alive
        proc = ProcFacts(pid=pid, alive=live, children=children)
    return TaskSnapshot(
        key=key, id=id, name=id, source="worktree", group="g", parent=None, status=status,
        health=Health(badge, tuple(Reason(r, d) for r, d in reasons)), progress=None, step=None,
        last_activity=time.time() - 720, pid=pid, path=path, files=files, fields=fields or {},
        recent=recent, proc=proc, cwd=cwd, command=command,
    )


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def err(text: str) -> Event:
    return Event(kind=EventKind.ERROR, ts=time.time(), text=text)


def gone(pid: int) -> bool:
    return not _running(pid)


def wait_for(cond, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def spawn(argv: list[str], **kw: Any) -> subprocess.Popen:
    return subprocess.Popen(argv, stdin=subprocess.DEVNULL, **kw)


@contextlib.contextmanager
def running(argv: list[str], **kw: Any):
    """A real process for the length of a `with`, killed and reaped after."""
    proc = spawn(argv, **kw)
    try:
        yield proc
    finally:
        cleanup(proc.pid)
        proc.wait(5)


def cleanup(*pids: int | None) -> None:
    for pid in pids:
        if pid:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


# --- a fake Messages API ------------------------------------------------------------------------


def tool_message(tool_input: Any, model: str = "claude-opus-5-5", name: str = "propose_recovery"):
    return {
        "id": "msg_test", "type": "message", "role": "assistant", "model": model,
        "content": [{"type": "tool_use", "id": "toolu_1", "name": name, "input": tool_input}],
        "stop_reason": "tool_use", "stop_sequence": None,
        "usage": {"input_tokens": 12, "output_tokens": 34},
    }


def api_error(kind: str, message: str) -> dict:
    return {"type": "error", "error": {"type": kind, "message": message}}


class FakeAPI:
    """Answers POST /v1/messages with scripted responses and records every request."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.script: deque[tuple[int, Any, dict[str, str], float]] = deque()
        self.default: tuple[int, Any, dict[str, str], float] | None = None
        self.release = threading.Event()
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length)
                api.requests.append({
                    "path": self.path, "headers": dict(self.headers), "raw": raw,
                    "body": json.loads(raw or b"null"),
                })
                status, body, headers, delay = (
                    api.script.popleft() if api.script else api.default  # type: ignore[misc]
                )
                if delay:
                    api.release.wait(delay)
                data = json.dumps(body).encode()
                try:
                    self.send_response(status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(data)))
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the client gave up (timeout test)

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def push(self, status: int = 200, body: Any = None, headers: dict | None = None,
             delay: float = 0.0) -> None:
        self.script.append((status, body, headers or {}, delay))

    def always(self, status: int = 200, body: Any = None, headers: dict | None = None) -> None:
        self.default = (status, body, headers or {}, 0.0)

    def all_raw(self) -> bytes:
        return b"\n".join(r["raw"] for r in self.requests)

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
