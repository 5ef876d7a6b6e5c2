"""Process facts from psutil: liveness, CPU of the whole tree, children, memory.

Process objects are cached between looks (psutil then detects pid reuse for us), one scan of
the process table per look gives every tree, and access-denied is a fact, not an error.
Zombies count as gone: `is_running()` is true for them, so we ask for the status.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterable

import psutil

from bgmon.model import ProcFacts

# Agents started as a script of an interpreter show as `node …/gemini`: the script names them.
INTERPRETERS = frozenset({"node", "bun", "deno", "python", "python3"})


class ProcessTable:
    def __init__(self) -> None:
        self._procs: dict[int, psutil.Process] = {}
        self._cpu: dict[int, float] = {}  # root pid → tree CPU seconds at the previous look

    def look(self, pids: Iterable[int]) -> dict[int, ProcFacts]:
        wanted = {p for p in pids if isinstance(p, int) and p > 0}
        if not wanted:
            return {}
        children = self._children_map()
        facts = {pid: self._facts(pid, children) for pid in wanted}
        for pid in list(self._cpu):
            if pid not in wanted:
                del self._cpu[pid]
        return facts

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

    def _proc(self, pid: int) -> psutil.Process | None:
        proc = self._procs.get(pid)
        if proc is not None and proc.is_running():
            return proc
        try:
            proc = psutil.Process(pid)
        except psutil.Error:
            self._procs.pop(pid, None)
            return None
        self._procs[pid] = proc
        return proc

    @staticmethod
    def _children_map() -> dict[int, list[int]]:
        kids: dict[int, list[int]] = defaultdict(list)
        for proc in psutil.process_iter(["ppid"]):
            ppid = proc.info.get("ppid")
            if ppid:
                kids[ppid].append(proc.pid)
        return kids

    def _facts(self, pid: int, kids: dict[int, list[int]]) -> ProcFacts:
        proc = self._proc(pid)
        if proc is None:
            self._cpu.pop(pid, None)
            return ProcFacts(pid=pid, alive=False)
        try:
            status = proc.status()
            name = proc.name()
            started = proc.create_time()
        except psutil.AccessDenied:
            return ProcFacts(pid=pid, alive=True, access_denied=True)
        except psutil.Error:
            return ProcFacts(pid=pid, alive=False)
        if status == psutil.STATUS_ZOMBIE:
            return ProcFacts(pid=pid, alive=False, zombie=True, name=name)
        tree = _descendants(pid, kids)
        cpu, rss, denied = 0.0, 0, False
        for member in (pid, *tree):
            p = self._proc(member)
            if p is None:
                continue
            try:
                with p.oneshot():
                    t = p.cpu_times()
                    cpu += t.user + t.system + getattr(t, "children_user", 0.0) + getattr(t, "children_system", 0.0)
                    rss += p.memory_info().rss
            except psutil.AccessDenied:
                denied = True
            except psutil.Error:
                continue
        previous = self._cpu.get(pid)
        self._cpu[pid] = cpu
        # Any CPU time beyond clock-tick noise since the previous look counts as busy.
        active = previous is not None and cpu - previous > 0.005
        return ProcFacts(
            pid=pid, alive=True, cpu_seconds=cpu, cpu_active=active, rss=rss,
            children=tuple(tree), name=name, access_denied=denied, started=started,
        )


def _descendants(pid: int, kids: dict[int, list[int]]) -> list[int]:
    out, stack, seen = [], list(kids.get(pid, ())), {pid}
    while stack:
        child = stack.pop()
        if child in seen:
            continue
        seen.add(child)
        out.append(child)
        stack.extend(kids.get(child, ()))
    return out
