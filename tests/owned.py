"""What the tests start, they stop: find the processes a test (or the whole session) started, through /proc."""
from __future__ import annotations

import os
import time
from pathlib import Path

SESSION_VAR = "LAB_TEST_SESSION"  # set by tests/conftest.py; every process the session starts inherits it


def alive(pid: int) -> bool:
    """Running (a zombie, dead but not yet reaped, is not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _pids() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]


def descendants(pid: int) -> set[int]:
    """Every living process below `pid` in the process tree, now (lab.processes.descendants, the pids only;
    imported here, not at the top: conftest imports this module before it sets the Triton environment)."""
    from lab.processes import descendants as below

    return set(below(pid))


def started_by_session(token: str, var: str = SESSION_VAR) -> list[int]:
    """Living processes, other than this one, whose environment carries this session's token (or `var`=token)."""
    marker = f"{var}={token}".encode()
    found = []
    for p in _pids():
        if p == os.getpid() or not alive(p):
            continue
        try:
            env = Path(f"/proc/{p}/environ").read_bytes()
        except OSError:
            continue
        if marker in env.split(b"\0"):
            found.append(p)
    return found


def wait_for(predicate, timeout: float = 60.0, every: float = 0.1) -> bool:
    """Poll `predicate` until it holds (True) or `timeout` seconds pass (False)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(every)
    return False


def wait_gone(pids, timeout: float = 10.0) -> set[int]:
    """Wait until none of `pids` is alive; returns those still alive at the deadline."""
    deadline = time.time() + timeout
    left = {p for p in pids if alive(p)}
    while left and time.time() < deadline:
        time.sleep(0.1)
        left = {p for p in left if alive(p)}
    return left


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"
