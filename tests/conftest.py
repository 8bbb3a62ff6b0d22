import os
import signal
import uuid

import pytest
import torch

from owned import SESSION_VAR, cmdline, started_by_session, wait_gone

os.environ.setdefault("LAB_RUNS", "/nonexistent-lab-runs-set-per-test")
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")  # Triton kernels run on CPU tensors (before triton is imported)
SESSION_TOKEN = uuid.uuid4().hex
os.environ[SESSION_VAR] = SESSION_TOKEN  # inherited by every process a test starts: found again at the end


@pytest.fixture(autouse=True)
def _runs_in_tmp(tmp_path, monkeypatch):
    """Every test writes runs under its own temporary folder."""
    monkeypatch.setenv("LAB_RUNS", str(tmp_path / "runs"))
    torch.set_num_threads(2)


@pytest.fixture(scope="session")
def ray_session():
    """One embedded Ray cluster for the tests that use the executor (the executor reuses a connected Ray and leaves
    it running): its workers, once started, serve every such test. Stopped, with its workers, at the end."""
    import logging

    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    yield ray
    ray.shutdown()


_LEFT: dict[int, str] = {}


def pytest_sessionfinish(session, exitstatus):
    """Nothing the test session started may outlive it (servers, trainings, jobs): list, kill, and fail."""
    left = wait_gone(started_by_session(SESSION_TOKEN), timeout=10)
    for pid in left:
        _LEFT[pid] = cmdline(pid)
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    if left:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter):
    if _LEFT:
        terminalreporter.write_line("processes started by the tests and left running (now killed; the run fails):",
                                    red=True)
        for pid, cmd in sorted(_LEFT.items()):
            terminalreporter.write_line(f"  {pid}: {cmd}")
    else:
        terminalreporter.write_line("processes started by the tests and left running: none")
