"""Processes, in one place: the facts a look needs (liveness, CPU and memory of the whole tree,
children), whether a pid is still running (a zombie is not), and stopping a tree.

On Linux a look reads /proc directly: one read of /proc/PID/stat per process gives its state,
CPU (its own and its reaped children's), start time and memory, and its children come from
/proc/PID/task/TID/children, so a look never walks the whole process table and reads each
process once. Where /proc lacks those files, psutil answers (one table walk per look).
Access-denied is a fact, not an error.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, replace

import psutil

from bgmon.model import ProcFacts

# Agents started as a script of an interpreter show as `node …/gemini`: the script names them.
INTERPRETERS = frozenset({"node", "bun", "deno", "python", "python3"})
# A process whose log proves progress gets only a liveness read; its tree (children, CPU,
# memory) is read again at least this often.
TREE_REFRESH = 30.0
_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_GONE = (b"Z", b"X", b"x")  # zombie, dead
_STOPPED = (b"T", b"t")  # stopped by a signal (SIGSTOP, ctrl-Z), or by a tracer
_PROC = os.path.isdir("/proc/self/task")  # Linux's /proc: read directly


@dataclass(frozen=True, slots=True)
class Stat:
    """One read of /proc/PID/stat."""

    pid: int
    name: str
    state: bytes
    cpu: float  # user + system, with reaped children's, in seconds
    started: float  # epoch seconds (as psutil's create_time)
    rss: int  # bytes

    @property
    def gone(self) -> bool:
        return self.state in _GONE

    @property
    def stopped(self) -> bool:
        return self.state in _STOPPED


_boot: float | None = None


def _boot_time() -> float:
    global _boot
    if _boot is None:
        _boot = psutil.boot_time()
    return _boot


def read_stat(pid: int) -> Stat | None:
    """The process's stat line; None when there is no such process. PermissionError when
    /proc hides it (hidepid)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The name is in parentheses and may itself hold spaces and parentheses.
    open_at, close_at = data.find(b"("), data.rfind(b")")
    fields = data[close_at + 2:].split()
    if open_at < 0 or close_at < 0 or len(fields) < 22:
        return None
    cpu = sum(int(f) for f in fields[11:15]) / _TICK  # utime stime cutime cstime
    return Stat(
        pid=pid, name=data[open_at + 1:close_at].decode(errors="replace"), state=fields[0],
        cpu=cpu, started=_boot_time() + int(fields[19]) / _TICK, rss=int(fields[21]) * _PAGE,
    )


def children(pid: int) -> list[int] | None:
    """Direct children from /proc/PID/task/*/children; None when the kernel has no such files."""
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return []
    except OSError:
        return None
    out: list[int] = []
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as fh:
                out += [int(c) for c in fh.read().split()]
        except FileNotFoundError:
            if not os.path.exists(f"/proc/{pid}/task/{tid}"):
                continue  # the thread ended
            return None  # no children files (CONFIG_PROC_CHILDREN off)
        except OSError:
            continue
    return out


def descendants(pid: int) -> list[int]:
    """Every descendant of pid, parents before children."""
    out, stack, seen = [], [pid], {pid}
    fallback: dict[int, list[int]] | None = None
    while stack:
        node = stack.pop()
        kids = children(node)
        if kids is None:
            fallback = fallback if fallback is not None else _children_map()
            kids = fallback.get(node, [])
        for kid in kids:
            if kid not in seen:
                seen.add(kid)
                out.append(kid)
                stack.append(kid)
    return out


def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = defaultdict(list)
    for proc in psutil.process_iter(["ppid"]):
        ppid = proc.info.get("ppid")
        if ppid:
            kids[ppid].append(proc.pid)
    return kids


def running(pid: int) -> bool | None:
    """Is the process running? A zombie is not (it has exited; only its parent's wait is
    missing). None when it exists but cannot be looked at."""
    try:
        st = read_stat(pid)
    except PermissionError:
        return None
    if st is not None:
        return not st.gone
    try:  # no /proc (or no such pid): psutil knows the platform's way
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:
        return None


def tree_cpu(pid: int) -> float | None:
    """CPU seconds of the process and its descendants (reaped ones included, through the
    children's times); None when it is gone."""
    root = read_stat(pid)
    if root is None:
        return None
    total = root.cpu
    for kid in descendants(pid):
        st = read_stat(kid)
        if st is not None:
            total += st.cpu
    return total


def wait_gone(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait until every process has exited (a zombie counts as exited, and is reaped when it is
    our own child); return those still running."""
    deadline = time.monotonic() + timeout
    alive = list(procs)
    while True:
        still = []
        for p in alive:
            try:
                if p.status() == psutil.STATUS_ZOMBIE:
                    with contextlib.suppress(psutil.Error, ChildProcessError):
                        p.wait(0)
                    continue
                still.append(p)
            except psutil.NoSuchProcess:
                continue
            except psutil.AccessDenied:
                still.append(p)
        alive = still
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.05)


def stop_tree(proc: psutil.Process, grace: float, kill_wait: float) -> tuple[int, list[int], list[int]]:
    """SIGTERM the process and all its descendants, SIGKILL what is left after `grace` s.
    Returns (processes signalled, pids that needed SIGKILL, pids still running after it).
    psutil.NoSuchProcess when the process had exited already."""
    tree = [proc, *proc.children(recursive=True)]  # listed first: children re-parent on exit
    for p in tree:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.send_signal(signal.SIGTERM)
    left = wait_gone(tree, grace)
    killed = []
    for p in left:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
            killed.append(p.pid)
    left = wait_gone(left, kill_wait)
    return len(tree), killed, [p.pid for p in left]


class ProcessTable:
    """Looks at the task processes: `look(pids)` → facts per pid. CPU is compared with the
    previous look (a pid that now belongs to a newer process starts afresh)."""

    def __init__(self) -> None:
        self._cpu: dict[int, tuple[float, float]] = {}  # pid → (start time, tree CPU) last look
        self._facts: dict[int, tuple[float, ProcFacts]] = {}  # pid → (when, last full facts)

    def look(self, pids: Iterable[int], light: Iterable[int] = ()) -> dict[int, ProcFacts]:
        """Facts for each pid. Pids in `light` (their logs prove progress) get a liveness
        read only, with the tree facts of their last full look (refreshed every TREE_REFRESH)."""
        wanted = {p for p in pids if isinstance(p, int) and p > 0}
        now = time.monotonic()
        light = set(light)
        out: dict[int, ProcFacts] = {}
        for pid in wanted:
            if not _PROC:
                out[pid] = _psutil_facts(pid, self._cpu)
                continue
            try:
                st = read_stat(pid)
            except PermissionError:
                out[pid] = ProcFacts(pid=pid, alive=True, access_denied=True)
                continue
            if st is None:
                out[pid] = ProcFacts(pid=pid, alive=False)
            elif st.gone:
                out[pid] = ProcFacts(pid=pid, alive=False, zombie=st.state == b"Z", name=st.name)
            else:
                cached = self._facts.get(pid)
                if (pid in light and cached is not None and now - cached[0] < TREE_REFRESH
                        and cached[1].started == st.started):
                    # Not sampled now, so not "busy now": the log is what proves progress.
                    quiet = cached[1]
                    if quiet.cpu_active or quiet.stopped != st.stopped:
                        quiet = replace(quiet, cpu_active=False, stopped=st.stopped)
                    self._facts[pid] = (cached[0], quiet)
                    out[pid] = quiet
                    continue
                out[pid] = self._full(st)
                self._facts[pid] = (now, out[pid])
        for table in (self._cpu, self._facts):
            for pid in [p for p in table if p not in wanted or not out[p].alive]:
                del table[pid]
        return out

    def _full(self, root: Stat) -> ProcFacts:
        tree = descendants(root.pid)
        cpu, rss = root.cpu, root.rss
        for kid in tree:
            try:
                st = read_stat(kid)
            except PermissionError:
                continue
            if st is not None:
                cpu += st.cpu
                rss += st.rss
        previous = self._cpu.get(root.pid)
        self._cpu[root.pid] = (root.started, cpu)
        # Any CPU time beyond clock-tick noise since the previous look counts as busy.
        active = previous is not None and previous[0] == root.started and cpu - previous[1] > 0.005
        return ProcFacts(
            pid=root.pid, alive=True, cpu_seconds=cpu, cpu_active=active, rss=rss,
            children=tuple(tree), name=root.name, started=root.started, stopped=root.stopped,
        )

    def agent_cwds(self) -> dict[str, list[int]]:
        """Working directory → pids of running agent processes (best effort)."""
        from bgmon.agents import PROCESS_NAMES

        out: dict[str, list[int]] = defaultdict(list)
        for proc in psutil.process_iter(["name", "cmdline"]):
            try:
                name = (proc.info.get("name") or "").lower()
                argv = proc.info.get("cmdline") or [""]
                argv0 = os.path.basename(argv[0]).lower()
                if argv0 in INTERPRETERS and len(argv) > 1:
                    argv0 = os.path.basename(argv[1]).lower()
                if name in PROCESS_NAMES or argv0 in PROCESS_NAMES:
                    out[proc.cwd()].append(proc.pid)
            except (psutil.Error, OSError, IndexError):
                continue
        return dict(out)



def _psutil_facts(pid: int, last_cpu: dict[int, tuple[float, float]]) -> ProcFacts:
    """Without /proc: the same facts through psutil (a walk of the table for the tree)."""
    try:
        proc = psutil.Process(pid)
        status, name, started = proc.status(), proc.name(), proc.create_time()
    except psutil.AccessDenied:
        return ProcFacts(pid=pid, alive=True, access_denied=True)
    except psutil.Error:
        return ProcFacts(pid=pid, alive=False)
    if status == psutil.STATUS_ZOMBIE:
        return ProcFacts(pid=pid, alive=False, zombie=True, name=name)
    cpu, rss, tree = 0.0, 0, []
    try:
        tree = proc.children(recursive=True)
    except psutil.Error:
        pass
    for p in (proc, *tree):
        try:
            t = p.cpu_times()
            cpu += t.user + t.system + getattr(t, "children_user", 0.0) + getattr(t, "children_system", 0.0)
            rss += p.memory_info().rss
        except psutil.Error:
            continue
    previous = last_cpu.get(pid)
    last_cpu[pid] = (started, cpu)
    active = previous is not None and previous[0] == started and cpu - previous[1] > 0.005
    return ProcFacts(pid=pid, alive=True, cpu_seconds=cpu, cpu_active=active, rss=rss,
                     children=tuple(p.pid for p in tree), name=name, started=started,
                     stopped=status in (psutil.STATUS_STOPPED, psutil.STATUS_TRACING_STOP))
