"""Owned child processes: what the lab starts, it stops (`lab dashboard`'s server, the dashboard's jobs).

A child runs in a process group of its own. Stopping it signals the whole group, waits, and kills what is left
after a grace period (Streamlit has been seen to ignore SIGTERM for seconds). A server child also dies with its
parent, kill -9 included, through Linux's parent-death signal.

What others start for us (an embedded Ray cluster and the workers it starts later) carries an owner mark in its
environment (`marked_as_owned`): a `Reaper` kills every marked process once the owner is gone, and a marked
worker kills itself when it sees its owner gone (`watch_owner`).
"""
from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager

PR_SET_PDEATHSIG = 1
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _die_with_parent() -> None:  # runs in the child between fork and exec
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def group_alive(pgid: int) -> bool:
    """Whether any process of group `pgid` is left (zombies of our own children count until reaped)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # there, but another user's
        pass
    return True


def stop_group(pgid: int, first=signal.SIGTERM, grace_s: float = 5.0, proc: subprocess.Popen | None = None) -> None:
    """Send `first` to process group `pgid`, wait up to grace_s for it to empty, then SIGKILL what is left and wait
    for that too. `proc` (the group's leader, our child) is reaped along the way."""
    for sig, wait_s in ((first, grace_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if proc is not None:
                proc.poll()
            if not group_alive(pgid):
                return
            time.sleep(0.05)


class _Stop(Exception):
    pass


def run_owned(cmd: list[str], env: dict | None = None, grace_s: float = 5.0) -> int:
    """Run `cmd` in the foreground as an owned child and return its exit code. SIGINT, SIGTERM or SIGHUP to this
    process stop the child's whole group (SIGTERM, then SIGKILL after grace_s) before this returns 130 / 143;
    a kill -9 of this process kills the child (parent-death signal)."""
    received: list[int] = []

    def on_signal(signum, frame):
        received.append(signum)
        raise _Stop

    previous = {s: signal.signal(s, on_signal) for s in STOP_SIGNALS}
    proc = None
    try:
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)  # no stop between the fork and knowing the child
        try:
            proc = subprocess.Popen(cmd, env=env, start_new_session=True, preexec_fn=_die_with_parent)
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        return proc.wait()
    except _Stop:
        return 128 + received[0]
    finally:
        for s in STOP_SIGNALS:  # a second Ctrl-C while stopping waits for the stop instead of breaking it
            signal.signal(s, signal.SIG_IGN)
        if proc is not None:
            stop_group(proc.pid, grace_s=grace_s, proc=proc)
            proc.wait()
        for s, handler in previous.items():
            signal.signal(s, handler)


def _stat(pid: int) -> list[str] | None:
    """/proc/PID/stat's fields after the command name (state is [0], ppid [1], start time [19]), or None."""
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    except OSError:
        return None


def descendants(pid: int) -> dict[int, str]:
    """Every living process below `pid`, now, with its start time (which tells a reused pid apart)."""
    stats = {int(p): _stat(int(p)) for p in os.listdir("/proc") if p.isdigit()}
    children: dict[int, list[int]] = {}
    for p, st in stats.items():
        if st and st[0] != "Z":
            children.setdefault(int(st[1]), []).append(p)
    found, todo = {}, [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found[child] = stats[child][19]
                todo.append(child)
    return found


OWNER_VAR = "LAB_CLUSTER_OWNER"  # "PID:START" of the process that started an embedded cluster, in its environment


def start_time(pid: int) -> str | None:
    """When `pid` started (clock ticks since boot; with the pid, names one process for good), None if it is gone."""
    st = _stat(pid)
    return st[19] if st and st[0] != "Z" else None


def owner_token(pid: int | None = None) -> str:
    pid = os.getpid() if pid is None else pid
    return f"{pid}:{start_time(pid)}"


def owner_alive(token: str) -> bool:
    """Whether the process `token` names (owner_token) still runs: a zombie or a reused pid is not it."""
    pid, _, started = token.partition(":")
    return pid.isdigit() and start_time(int(pid)) == started


@contextmanager
def marked_as_owned(token: str):
    """For the body, every process started from here carries OWNER_VAR=token in its environment, and so does every
    process those start (Ray's raylet passes its environment on to the workers it spawns later). A mark is found
    through /proc however the process was re-parented, and whenever it started: what `Reaper` kills."""
    before = os.environ.get(OWNER_VAR)
    os.environ[OWNER_VAR] = token
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(OWNER_VAR, None)
        else:
            os.environ[OWNER_VAR] = before


def watch_owner(interval_s: float = 0.5) -> None:
    """In a process that carries an owner mark (a Ray worker of an embedded cluster): once the owner is gone,
    however it died, this process kills itself (SIGKILL: as if killed with it, so its run reads as interrupted and
    resumes from its last checkpoint). Once per process; nothing where there is no mark."""
    global _WATCHING
    token = os.environ.get(OWNER_VAR)
    if _WATCHING or not token:
        return
    _WATCHING = True

    def watch():
        while owner_alive(token):
            time.sleep(interval_s)
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="lab-owner-watch", daemon=True).start()


_WATCHING = False

REAPER = """
import os, signal, sys, time
owner, marker = sys.argv[1], sys.argv[2].encode()
pids = dict(item.split(":") for item in sys.argv[3:])
def started(pid):
    try:
        st = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return st[19] if st[0] != "Z" else None
def marked():
    found = {}
    if not marker:
        return found
    for p in os.listdir("/proc"):
        if p.isdigit() and p not in (str(os.getpid()), owner):
            try:
                if marker in open(f"/proc/{p}/environ", "rb").read().split(b"\\0"):
                    found[p] = started(p)
            except OSError:
                pass
    return {p: t for p, t in found.items() if t}
sys.stdin.read()  # returns when the owner closes the pipe or dies, however it dies
deadline = time.monotonic() + 30
while time.monotonic() < deadline:
    targets = {p: t for p, t in {**pids, **marked()}.items() if started(p) == t}
    if not targets:
        break
    for pid in targets:
        try:
            os.kill(int(pid), signal.SIGKILL)
        except OSError:
            pass
    pids = {}
    time.sleep(0.05)  # then look again: one may have spawned another meanwhile
"""


class Reaper:
    """Kills `pids` (a `descendants` snapshot) and every process marked with `token` (marked_as_owned) when this
    process ends, kill -9 included: a watcher process of its own session waits on a pipe from us, and when the pipe
    closes kills those still alive (the same start time: never a reused pid), looking again until none is left.
    For what others start for us and leave behind when we are killed (Ray's node agents and workers outlive a
    killed driver: ray-project/ray#52385), including what starts after the snapshot or is re-parented away from
    us. `close()` after a clean stop lets it exit at once."""

    def __init__(self, pids: dict[int, str], token: str = ""):
        marker = f"{OWNER_VAR}={token}" if token else ""  # no token: only the snapshot
        self.proc = subprocess.Popen([sys.executable, "-c", REAPER, str(os.getpid()), marker,
                                      *(f"{p}:{t}" for p, t in pids.items())],
                                     stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


__all__ = ["run_owned", "stop_group", "group_alive", "descendants", "Reaper", "OWNER_VAR", "owner_token",
           "owner_alive", "marked_as_owned", "watch_owner", "start_time"]
