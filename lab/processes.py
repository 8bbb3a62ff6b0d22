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


__all__ = ["run_owned", "stop_group", "group_alive"]
