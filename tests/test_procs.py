"""Process facts with real processes: liveness, kill -9, zombies, CPU of the whole tree."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from bgmon.engine import collect
from bgmon.procs import ProcessTable
from tests.conftest import wait_for

BUSY_CHILD = (
    "import subprocess, sys, time\n"
    "child = subprocess.Popen([sys.executable, '-c', 'while True: pass'])\n"
    "time.sleep(60)\n"
)


def test_live_process_then_kill_9_is_gone():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    table = ProcessTable()
    try:
        assert table.look([proc.pid])[proc.pid].alive
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        facts = table.look([proc.pid])[proc.pid]
        assert not facts.alive
    finally:
        proc.kill()


def test_zombie_counts_as_gone():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    table = ProcessTable()
    # Not reaped: the child stays a zombie while we do not wait() for it.
    assert wait_for(lambda: table.look([proc.pid])[proc.pid].zombie)
    facts = table.look([proc.pid])[proc.pid]
    assert not facts.alive and facts.zombie
    proc.wait()


def test_cpu_of_a_busy_child_counts_for_the_parent_tree():
    proc = subprocess.Popen([sys.executable, "-c", BUSY_CHILD], start_new_session=True)
    table = ProcessTable()
    try:
        assert wait_for(lambda: len(table.look([proc.pid])[proc.pid].children) == 1)
        table.look([proc.pid])
        time.sleep(0.3)
        facts = table.look([proc.pid])[proc.pid]
        assert facts.cpu_active and facts.rss > 0
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_idle_process_is_not_cpu_active():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    table = ProcessTable()
    try:
        time.sleep(0.5)  # let the interpreter finish starting
        table.look([proc.pid])
        time.sleep(0.3)
        assert not table.look([proc.pid])[proc.pid].cpu_active
    finally:
        proc.kill()
        proc.wait()


def test_engine_turns_a_killed_task_failed_and_a_busy_silent_one_healthy(ws):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    busy = subprocess.Popen([sys.executable, "-c", BUSY_CHILD], start_new_session=True)
    try:
        ws.task("victim", pid=sleeper.pid)
        ws.task("busy", pid=busy.pid, updatedAt=time.time() - 3600)  # silent for an hour
        wait_for(lambda: len(ProcessTable().look([busy.pid])[busy.pid].children) == 1, what="busy child")
        snaps = {s.name: s for s in collect(ws.config(cpu_sample=0.3)).snapshots()}
        assert snaps["victim"].health.badge.value == "healthy"
        assert snaps["busy"].health.badge.value == "healthy"
        assert snaps["busy"].health.reasons[0].rule == "busy"
        sleeper.kill()
        sleeper.wait()
        snaps = {s.name: s for s in collect(ws.config()).snapshots()}
        assert snaps["victim"].health.badge.value == "failed"
        assert f"process {sleeper.pid} exited" in snaps["victim"].health.summary
    finally:
        sleeper.kill()
        os.killpg(busy.pid, signal.SIGKILL)
        busy.wait()


def test_a_look_reads_each_task_process_without_walking_the_process_table(monkeypatch):
    """Issue 11: a look walked every process on the machine (and read each pid's facts one
    call at a time). Now the tree comes from the task process's own children."""
    import psutil

    proc = subprocess.Popen([sys.executable, "-c", BUSY_CHILD], start_new_session=True)
    table = ProcessTable()

    def walked(*args, **kwargs):
        raise AssertionError("a look walked the whole process table")

    try:
        wait_for(lambda: len(ProcessTable().look([proc.pid])[proc.pid].children) == 1, what="child")
        monkeypatch.setattr(psutil, "process_iter", walked)
        table.look([proc.pid])
        time.sleep(0.3)
        facts = table.look([proc.pid])[proc.pid]
        assert facts.alive and len(facts.children) == 1 and facts.cpu_active
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_a_light_look_keeps_the_tree_facts_and_still_sees_a_death():
    proc = subprocess.Popen([sys.executable, "-c", BUSY_CHILD], start_new_session=True)
    table = ProcessTable()
    try:
        full = wait_for(lambda: (f := table.look([proc.pid])[proc.pid]).children and f, what="child")
        light = table.look([proc.pid], light=[proc.pid])[proc.pid]
        assert light.children == full.children and light.rss == full.rss and light.alive
        assert not light.cpu_active  # not sampled: the log, not the CPU, proves progress
        # Unchanged facts from one light look to the next: the task is not marked dirty.
        assert table.look([proc.pid], light=[proc.pid])[proc.pid] == light
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        assert not table.look([proc.pid], light=[proc.pid])[proc.pid].alive
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
