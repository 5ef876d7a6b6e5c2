"""One simulated background agent for `bgmon demo`: `python bgmon/demo_agent.py ROLE TASK_DIR`.

Each role behaves like a real agent would, through the same files bgmon reads: it keeps
`TASK_DIR/status.json` current (atomically: temporary file, then `os.replace`) and appends
bgmon's own event lines to `TASK_DIR/logs/events.jsonl`. The roles:

  steady       works through its steps: progress, steps, successful tool calls, heartbeats
  failing      its tool calls fail, several in a row (bgmon: struggling)
  busy         goes quiet while a child process burns CPU (bgmon: busy, not stuck); it keeps
               no heartbeat lease (readyUntil), so only the CPU of its tree says it lives
  loop         repeats the very same tool call (bgmon: stuck, loop)
  crash        dies abruptly (SIGKILL) with `status: running` (bgmon: failed); a restart succeeds
  complete     does a few steps and writes `status: completed`
  coordinator  a parent task that heartbeats and counts its children's completions

Standard library only, so the recorded `command` (this file run by the same Python) restarts an
agent whatever the install. Every agent stops by itself once the demo that started it is gone
(the workspace's `.bgmon-demo` marker names the demo's pid), so nothing outlives the demo, not
even an agent that recovery restarted. Timings are divided by `--speed`. Logs stay bounded: past
LOG_CAP the log is rotated to `events.jsonl.1`.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime

MARKER = ".bgmon-demo"  # in the workspace root: the pid of the demo that owns the agents
LOG_NAME = "logs/events.jsonl"
LOG_CAP = 256 << 10  # bytes before the log is rotated
LEASE = 10.0  # readyUntil = now + LEASE (seconds at speed 1)
BUSY_QUIET = 60.0  # how long the busy agent's child runs (seconds at speed 1)
BURN_PERIOD = 0.1  # the busy child's duty cycle: busy BURN_DUTY of every BURN_PERIOD
BURN_DUTY = 0.2
ROLES = ("steady", "failing", "busy", "loop", "crash", "complete", "coordinator")


class Stop(BaseException):
    """Leave now: the demo is gone, or someone sent SIGTERM. Carries the reason."""


def iso_ms(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def write_json_atomic(path: str, obj: dict) -> None:
    tmp = f"{os.path.dirname(path)}/.{os.path.basename(path)}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(obj, fh, indent=2)
        fh.write("\n")
    os.replace(tmp, path)


def read_json(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_owner(root: str) -> int | None:
    try:
        with open(os.path.join(root, MARKER), encoding="utf-8") as fh:
            return int(fh.read().strip())
    except (OSError, ValueError):
        return None


class Agent:
    def __init__(self, role: str, task_dir: str, speed: float) -> None:
        self.role = role
        self.dir = os.path.abspath(task_dir)
        self.root = os.path.dirname(os.path.dirname(self.dir))  # ROOT/.worktrees/NAME
        self.speed = speed
        self.status_path = os.path.join(self.dir, "status.json")
        self.fields = read_json(self.status_path)
        self.fields.setdefault("id", "bg_" + os.urandom(3).hex())
        self.fields.setdefault("name", os.path.basename(self.dir))
        self.fields.setdefault("timestamp", iso_ms(time.time()))
        self.fields.setdefault("log", LOG_NAME)
        self.fields.setdefault("cwd", self.dir)
        for stale in ("exitCode", "error"):
            self.fields.pop(stale, None)
        self.log_path = os.path.join(self.dir, str(self.fields["log"]))
        os.makedirs(os.path.dirname(self.log_path), exist_ok=True)
        self.owner = read_owner(self.root)
        self.child: subprocess.Popen | None = None
        self.calls = 0

    # -- staying alive only while the demo is -----------------------------------------------

    def check(self) -> None:
        if self.owner is None or read_owner(self.root) != self.owner or not pid_alive(self.owner):
            raise Stop("the demo that started it has exited")

    def sleep(self, seconds: float) -> None:
        """Sleep `seconds` (at speed 1), checking on the demo every fraction of a second."""
        end = time.monotonic() + seconds / self.speed
        while True:
            self.check()
            left = end - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(0.2, left))

    # -- what real agents write ---------------------------------------------------------------

    def status(self, **changes: object) -> None:
        self.fields.update(changes)
        now = time.time()
        self.fields["pid"] = os.getpid()
        self.fields["updatedAt"] = iso_ms(now)
        if self.role != "busy":
            self.fields["readyUntil"] = iso_ms(now + LEASE / self.speed)
        write_json_atomic(self.status_path, self.fields)

    def event(self, kind: str, **fields: object) -> None:
        line = {"ts": round(time.time(), 3), "type": kind}
        line.update({k: v for k, v in fields.items() if v is not None})
        try:
            if os.path.getsize(self.log_path) > LOG_CAP:
                os.replace(self.log_path, self.log_path + ".1")
        except OSError:
            pass
        with open(self.log_path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(line) + "\n")

    def start_call(self, tool: str, args: dict) -> str:
        self.calls += 1
        call_id = f"call_{os.getpid():x}_{self.calls}"
        self.event("tool_call", tool=tool, call_id=call_id, input=args)
        return call_id

    def finish_call(self, call_id: str, ok: bool, out: str | None = None) -> None:
        if ok:
            self.event("tool_result", call_id=call_id, ok=True, text=out)
        else:
            self.event("tool_result", call_id=call_id, ok=False, error=out or "error")

    def call(self, tool: str, args: dict, ok: bool = True, out: str | None = None,
             took: float = 0.6) -> None:
        call_id = self.start_call(tool, args)
        self.sleep(took)
        self.finish_call(call_id, ok, out)

    def progress(self, done: int, total: int, step: str | None = None) -> None:
        self.event("progress", done=done, total=total, text=step)
        changes: dict = {"progress": {"done": done, "total": total}}
        if step:
            changes["step"] = step
        self.status(**changes)

    def step(self, text: str) -> None:
        self.event("step", text=text)
        self.status(step=text)

    def stop(self, why: str) -> None:
        """A graceful end (SIGTERM, or the demo left): say so, and take the child along."""
        if self.child is not None and self.child.poll() is None:
            self.child.terminate()
            try:
                self.child.wait(2)
            except subprocess.TimeoutExpired:
                self.child.kill()
        if self.fields.get("status") in ("running", "created"):
            try:
                self.event("message", text=f"stopped: {why}")
                self.status(status="cancelled", step=f"stopped: {why}")
            except OSError:
                pass  # the workspace is being removed


# -- the roles ----------------------------------------------------------------------------------


def steady(a: Agent) -> None:
    """fix-login: steady progress through its steps, round after round."""
    plan = [
        ("reading the login handler", [
            ("Read", {"file_path": "src/auth/login.py"}, "212 lines"),
            ("Grep", {"pattern": "def verify_password", "path": "src/auth"}, "src/auth/passwords.py:41"),
        ]),
        ("reproducing the failing login test", [
            ("Bash", {"command": "pytest tests/test_login.py -q"}, "1 failed, 11 passed in 2.31s"),
        ]),
        ("fixing the session cookie expiry", [
            ("Read", {"file_path": "src/auth/session.py"}, "98 lines"),
            ("Edit", {"file_path": "src/auth/session.py", "old": "max_age=0", "new": "max_age=SESSION_TTL"},
             "1 edit applied"),
        ]),
        ("re-running the login tests", [
            ("Bash", {"command": "pytest tests/test_login.py -q"}, "12 passed in 2.05s"),
        ]),
        ("checking the password-reset flow", [
            ("Read", {"file_path": "src/auth/reset.py"}, "143 lines"),
        ]),
        ("adding a regression test", [
            ("Write", {"file_path": "tests/test_login_expiry.py"}, "wrote 34 lines"),
        ]),
        ("running the auth suite", [
            ("Bash", {"command": "pytest tests/auth -q"}, "48 passed in 6.80s"),
        ]),
        ("writing the summary", []),
    ]
    total = len(plan)
    batch = 1
    a.status(status="running", progress={"done": 0, "total": total}, step=plan[0][0])
    while True:
        for done, (text, calls) in enumerate(plan):
            a.step(text if batch == 1 else f"{text} (batch {batch})")
            for tool, args, out in calls:
                a.call(tool, args, True, out)
                a.sleep(0.3)
            if not calls:
                a.event("message", text="Session cookies now expire after SESSION_TTL; 12 login tests pass.")
                a.sleep(0.8)
            a.progress(done + 1, total)
            a.event("heartbeat")
            a.sleep(0.4)
        a.event("message", text=f"Batch {batch} done; picking up the next failing tests.")
        batch += 1
        a.progress(0, total, f"picking up batch {batch}")
        a.sleep(1.0)


def failing(a: Agent) -> None:
    """migrate-db: its database is down, so most tool calls fail."""
    refused = ('sqlalchemy.exc.OperationalError: (psycopg2.OperationalError) connection to server at '
               '"localhost" (127.0.0.1), port 5432 failed: Connection refused')
    cycle = [
        ("Bash", {"command": "alembic upgrade head"}, False, refused),
        ("Bash", {"command": "pg_isready -h localhost -p 5432"}, False, "localhost:5432 - no response (exit 2)"),
        ("Bash", {"command": "docker compose up -d db"}, False,
         "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?"),
        ("Bash", {"command": "alembic upgrade head --sql"}, False, refused),
        ("Read", {"file_path": "alembic.ini"}, True, "sqlalchemy.url = postgresql://app@localhost:5432/app"),
    ]
    a.status(status="running", progress={"done": 0, "total": 3},
             step="applying migration 0042_add_sessions")
    a.step("applying migration 0042_add_sessions")
    attempt = 0
    while True:
        for tool, args, ok, out in cycle:
            a.call(tool, args, ok, out, took=0.5)
            a.status()
            a.sleep(0.4)
        attempt += 1
        a.event("message", text=f"The database still refuses connections (attempt {attempt}); trying again.")


def busy(a: Agent) -> None:
    """upgrade-deps: a long test run in a child process; the agent itself says nothing meanwhile."""
    a.status(status="running", progress={"done": 0, "total": 3}, step="updating the lockfile")
    run = 1
    while True:
        a.step("updating the lockfile")
        a.call("Bash", {"command": "uv lock --upgrade"}, True, "Resolved 143 packages in 1.2s", took=0.4)
        a.call("Read", {"file_path": "pyproject.toml"}, True, "61 lines", took=0.2)
        a.progress(1, 3, "running the test suite (pytest -q, 1,842 tests)")
        call_id = a.start_call("Bash", {"command": "pytest -q", "run": run})
        # Quiet from here on: no heartbeat, no log line, until the child process ends.
        a.child = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "_burn", a.dir, f"{BUSY_QUIET / a.speed:.3f}"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            close_fds=True,
        )
        while a.child.poll() is None:
            a.sleep(0.2)
        a.child = None
        a.finish_call(call_id, True, "1842 passed, 12 skipped in 58.31s")
        a.progress(2, 3, "committing the upgrade")
        a.call("Bash", {"command": "git commit -am 'Upgrade dependencies'"}, True, "[upgrade-deps 4be1c09]",
               took=0.3)
        a.progress(3, 3, "checking for newer releases")
        a.event("message", text="All tests pass on the upgraded dependencies.")
        a.sleep(1.0)
        run += 1
        a.progress(0, 3, "updating the lockfile")


def loop(a: Agent) -> None:
    """refactor-api: keeps re-reading the same file, making no progress."""
    a.status(status="running", progress={"done": 1, "total": 4}, step="splitting src/api/routes.py into modules")
    a.step("splitting src/api/routes.py into modules")
    a.call("Grep", {"pattern": "@router", "path": "src/api"}, True, "37 matches in src/api/routes.py")
    a.sleep(0.3)
    n = 0
    while True:
        a.call("Read", {"file_path": "src/api/routes.py"}, True, "412 lines", took=0.4)
        n += 1
        if n % 3 == 0:
            a.event("message", text="Let me read routes.py again to find where the handlers are registered.")
        a.status()
        a.sleep(0.4)


def crash(a: Agent) -> None:
    """build-assets: the first run dies (out of memory, SIGKILL); a restarted one succeeds."""
    count_path = os.path.join(a.dir, ".attempt")
    try:
        with open(count_path, encoding="utf-8") as fh:
            attempt = int(fh.read().strip() or 0) + 1
    except (OSError, ValueError):
        attempt = 1
    with open(count_path, "w", encoding="utf-8") as fh:
        fh.write(str(attempt))
    a.status(status="running", progress={"done": 0, "total": 4}, step="installing packages", attempt=attempt)
    a.step("installing packages" if attempt == 1 else f"installing packages (attempt {attempt})")
    a.call("Bash", {"command": "npm ci"}, True, "added 1284 packages in 9s")
    a.progress(1, 4, "reading the webpack config")
    a.call("Read", {"file_path": "webpack.config.js"}, True, "88 lines", took=0.3)
    a.progress(2, 4, "bundling the frontend (webpack --mode production)")
    if attempt == 1:
        a.start_call("Bash", {"command": "npm run build"})
        for pct in (41, 63, 87):
            a.sleep(0.9)
            a.event("message", text=f"[webpack] {pct}% building {pct * 23} of 2311 modules")
            a.status()
        a.event("error", text="FATAL ERROR: Reached heap limit Allocation failed - "
                              "JavaScript heap out of memory")
        a.sleep(0.2)
        os.kill(os.getpid(), signal.SIGKILL)  # no final status: exactly what bgmon must catch
    a.call("Bash", {"command": "NODE_OPTIONS=--max-old-space-size=4096 npm run build"}, True,
           "webpack compiled successfully in 41.2s", took=2.0)
    a.progress(3, 4, "checking bundle sizes")
    a.call("Bash", {"command": "npx size-limit"}, True, "main.js 182 kB (limit 250 kB)")
    a.progress(4, 4, "done")
    a.event("message", text="Assets built.")
    a.status(status="completed", exitCode=0, step="done")


def complete(a: Agent) -> None:
    """write-changelog: a short job that finishes."""
    a.status(status="running", progress={"done": 0, "total": 3}, step="collecting merged pull requests")
    a.step("collecting merged pull requests")
    a.call("Bash", {"command": "gh pr list --state merged --limit 50"}, True, "23 pull requests")
    a.progress(1, 3, "drafting CHANGELOG.md")
    a.call("Read", {"file_path": "CHANGELOG.md"}, True, "340 lines", took=0.3)
    a.call("Edit", {"file_path": "CHANGELOG.md", "section": "1.4.0"}, True, "1 edit applied")
    a.progress(2, 3, "checking links")
    a.call("Bash", {"command": "npx markdown-link-check CHANGELOG.md"}, True, "57 links checked, 0 dead")
    a.progress(3, 3, "done")
    a.event("message", text="CHANGELOG.md has 23 new entries for 1.4.0.")
    a.status(status="completed", exitCode=0, step="done")


def coordinator(a: Agent) -> None:
    """ship-release: a parent task waiting on its children (tasks whose `parent` is its id)."""
    my_id = a.fields["id"]
    a.status(status="running", step="starting sub-tasks")
    a.event("message", text="Release 1.4.0: migrating the database and writing the changelog in sub-tasks.")
    beat = 0
    while True:
        kids = []
        wt = os.path.dirname(a.dir)
        for name in sorted(os.listdir(wt)):
            fields = read_json(os.path.join(wt, name, "status.json"))
            if fields.get("parent") == my_id:
                kids.append(fields)
        done = sum(1 for k in kids if k.get("status") == "completed")
        waiting = [str(k.get("name")) for k in kids if k.get("status") != "completed"]
        step = f"waiting for {', '.join(waiting)}" if waiting else "tagging the release"
        a.status(progress={"done": done, "total": len(kids) + 1}, step=step)
        a.event("heartbeat")
        if beat % 4 == 0:
            a.call("Bash", {"command": "gh pr checks 1432", "poll": beat}, True, "4 checks passed", took=0.3)
        beat += 1
        a.sleep(2.0)


RUN = {
    "steady": steady, "failing": failing, "busy": busy, "loop": loop,
    "crash": crash, "complete": complete, "coordinator": coordinator,
}


def burn(task_dir: str, seconds: float) -> int:
    """The busy agent's child: uses the CPU BURN_DUTY of the time (a test run, say), then exits.
    Leaves early if its parent goes away."""
    parent = os.getppid()
    end = time.monotonic() + seconds
    while time.monotonic() < end and os.getppid() == parent:
        spin_until = time.monotonic() + BURN_PERIOD * BURN_DUTY
        while time.monotonic() < spin_until:
            pass
        time.sleep(BURN_PERIOD * (1 - BURN_DUTY))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["_burn"] and len(argv) == 3:
        return burn(argv[1], float(argv[2]))
    p = argparse.ArgumentParser(prog="demo_agent", description="A simulated agent for `bgmon demo`.")
    p.add_argument("role", choices=ROLES)
    p.add_argument("task_dir")
    p.add_argument("--speed", type=float, default=1.0)
    args = p.parse_args(argv)
    if not args.speed > 0:
        p.error("--speed must be above 0")
    agent = Agent(args.role, args.task_dir, args.speed)

    def on_term(signum: int, _frame: object) -> None:
        raise Stop(f"received {signal.Signals(signum).name}")

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)
    try:
        agent.check()
        RUN[args.role](agent)
    except Stop as stop:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # finish the last write in peace
        agent.stop(str(stop))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
