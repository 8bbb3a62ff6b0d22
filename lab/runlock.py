"""One writer per run folder: `lab train` holds an exclusive lock on RUN/.lock while it trains.

The lock is an advisory `flock` on that file, so the kernel releases it when the holder exits, however it exits
(kill -9 included): a lock left by a dead process is stale by construction and the next trainer takes it over.
The file records who holds it (pid, host, start time, and the process that owns it: the driver of the sweep whose
embedded Ray cluster runs the trainer), which is what a refused trainer and `lab runs` report. A holder whose owner
is gone is an orphan of a killed sweep (it dies by itself within a second: lab.processes.watch_owner); a trainer
that finds one kills it and takes the lock over at once, instead of refusing; so it does when the holder is a
killed process still exiting.
"""
from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import time
from contextlib import contextmanager
from pathlib import Path

from .processes import OWNER_VAR, owner_alive, start_time

LOCK = ".lock"


class RunLocked(ValueError):
    """Another live process trains this run folder; the message names its PID."""


def _record(fd: int) -> dict:
    """What the lock file says about its (last) holder, {} when it says nothing readable."""
    try:
        data = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


@contextmanager
def hold(folder: Path, doing: str = "trained", advice: str = "or train into another --out"):
    """Hold `folder`'s lock for the body (a run's while it is `doing` "trained", a sweep's while "swept"); yields
    the previous holder's record when it was a process that died without letting go (a stale lock, taken over),
    else None. Raises RunLocked if a live process holds it."""
    path = Path(folder) / LOCK
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        if not _lock(fd):
            who = _record(fd)
            if not (_gone_or_orphaned(who) and _take_over(fd, who)):
                started = who.get("started")
                since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)) \
                    if isinstance(started, (int, float)) and 0 <= started < 1e11 else "?"
                raise RunLocked(f"{folder} is being {doing} by process {who.get('pid', '?')} on "
                                f"{who.get('host', '?')} (since {since}); wait for it, stop it "
                                f"(kill -INT {who.get('pid', 'PID')}), {advice}")
        previous = _record(fd)  # a holder that let go cleared its record: one left behind is a dead process's
        me = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(),
                         "pid_start": start_time(os.getpid()), "owner": os.environ.get(OWNER_VAR)}).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, me, 0)
        try:
            yield previous or None
        finally:
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # closing the last descriptor releases the lock


def _lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def _gone_or_orphaned(who: dict) -> bool:
    """The holder ran here and is exiting (a killed process whose last threads still run holds its files for a
    moment after it reads as dead), or it is the process its record names and its owner (a sweep's driver) is
    gone."""
    pid, owner = who.get("pid"), who.get("owner")
    if not (isinstance(pid, int) and pid > 0 and who.get("host") == socket.gethostname()):
        return False
    started = start_time(pid)
    if started is None:
        return True
    return isinstance(owner, str) and started == who.get("pid_start") and not owner_alive(owner)


def _take_over(fd: int, who: dict, wait_s: float = 10.0) -> bool:
    """Kill an orphaned holder (one that is exiting is left to finish) and take its lock once the kernel lets go
    of it; False if that takes more than wait_s."""
    if start_time(who["pid"]) is not None:
        try:
            os.kill(who["pid"], signal.SIGKILL)
        except OSError:
            pass
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if _lock(fd):
            return True
        time.sleep(0.02)
    return False


def holder(folder: Path) -> dict | None:
    """The record of the live process that holds `folder`'s run lock, or None when none does. Reads only."""
    path = Path(folder) / LOCK
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return None  # nobody holds it exclusively (the shared lock goes with the descriptor)
    except BlockingIOError:
        return _record(fd) or {"pid": "?"}
    finally:
        os.close(fd)


__all__ = ["LOCK", "RunLocked", "hold", "holder"]
