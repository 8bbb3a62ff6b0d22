"""A helper for the dashboard tests: `lab dashboard` served on a free localhost port."""
import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager

import pytest


@contextmanager
def dashboard(runs_root):
    """`lab dashboard` on a free localhost port, reading `runs_root`; yields (base URL, its first stdout line)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "lab.cli", "dashboard", "--port", str(port), "--address",
                             "127.0.0.1"], env={**os.environ, "LAB_RUNS": str(runs_root)},
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    base = f"http://127.0.0.1:{port}"
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
        yield base, first_line
    finally:
        proc.terminate()
        proc.wait(timeout=20)
