"""One writer per run folder: `lab train` holds an exclusive lock on RUN/.lock while it trains.

The lock is an advisory `flock` on that file, so the kernel releases it when the holder exits, however it exits
(kill -9 included): a lock left by a dead process is stale by construction and the next trainer takes it over.
The file records who holds it (pid, host, start time), which is what a refused trainer and `lab runs` report.
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path

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
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            who = _record(fd)
            since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(who["started"])) if "started" in who else "?"
            raise RunLocked(f"{folder} is being {doing} by process {who.get('pid', '?')} on {who.get('host', '?')} "
                            f"(since {since}); wait for it, stop it (kill -INT {who.get('pid', 'PID')}), {advice}"
                            ) from None
        previous = _record(fd)  # a holder that let go cleared its record: one left behind is a dead process's
        me = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, me, 0)
        try:
            yield previous or None
        finally:
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # closing the last descriptor releases the lock


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
