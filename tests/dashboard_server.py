"""A helper for the dashboard tests: `lab dashboard` served on a free localhost port, stopped as a user stops it
(SIGTERM or Ctrl-C), with a check that nothing it started is left running."""
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager

import pytest

from owned import cmdline, descendants, wait_gone


@contextmanager
def dashboard(runs_root, stop_signal=signal.SIGTERM):
    """`lab dashboard` on a free localhost port, reading `runs_root`; yields (base URL, its first stdout line,
    the process). On exit: `stop_signal` to it; it must exit, and every process below it must be gone."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "lab.cli", "dashboard", "--port", str(port), "--address",
                             "127.0.0.1"], env={**os.environ, "LAB_RUNS": str(runs_root)},
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    base = f"http://127.0.0.1:{port}"
    below: set[int] = set()
    try:
        first_line = proc.stdout.readline()
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if urllib.request.urlopen(f"{base}/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("lab dashboard did not serve within 60 s")
        below = descendants(proc.pid)
        assert below, "lab dashboard serves through a streamlit child"
        yield base, first_line, proc
        below |= descendants(proc.pid)  # and whatever its pages started meanwhile
    finally:
        proc.send_signal(stop_signal)
        try:
            code = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            pytest.fail(f"lab dashboard did not stop within 30 s of {signal.Signals(stop_signal).name}")
        left = wait_gone(below | descendants(proc.pid), timeout=5)
        for pid in left:
            os.kill(pid, signal.SIGKILL)
    assert code == 0, f"lab dashboard exited {code} on {signal.Signals(stop_signal).name}"
    assert not left, f"lab dashboard left running: {[cmdline(p) for p in left]}"
