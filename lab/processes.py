"""Owned child processes: what the lab starts, it stops (`lab dashboard`'s server, the dashboard's jobs).

A child runs in a process group of its own. Stopping it signals the whole group, waits, and kills what is left
after a grace period (Streamlit has been seen to ignore SIGTERM for seconds). A server child also dies with its
parent, kill -9 included, through Linux's parent-death signal.
"""
from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time

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


REAPER = """
import os, signal, sys
pids = dict(item.split(":") for item in sys.argv[1:])
sys.stdin.read()  # returns when the owner closes the pipe or dies, however it dies
for pid, started in pids.items():
    try:
        if open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[19] == started:
            os.kill(int(pid), signal.SIGKILL)
    except (OSError, IndexError):
        pass
"""


class Reaper:
    """Kills `pids` (a `descendants` snapshot) when this process ends, kill -9 included: a watcher process of its
    own session waits on a pipe from us, and when the pipe closes kills those still alive (the same start time:
    never a reused pid). For what others start for us and leave behind when we are killed (Ray's node agents
    outlive a killed driver: ray-project/ray#52385). `close()` after a clean stop lets it exit at once."""

    def __init__(self, pids: dict[int, str]):
        self.proc = subprocess.Popen([sys.executable, "-c", REAPER, *(f"{p}:{t}" for p, t in pids.items())],
                                     stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


__all__ = ["run_owned", "stop_group", "group_alive", "descendants", "Reaper"]
