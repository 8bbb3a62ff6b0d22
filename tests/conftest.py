import os
import signal
import uuid
from collections import Counter

import pytest
import torch

from owned import SESSION_VAR, cmdline, started_by_session, wait_gone

os.environ.setdefault("LAB_RUNS", "/nonexistent-lab-runs-set-per-test")
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")  # Triton kernels run on CPU tensors (before triton is imported)
SESSION_TOKEN = uuid.uuid4().hex
os.environ[SESSION_VAR] = SESSION_TOKEN  # inherited by every process a test starts: found again at the end
# `make test` runs the suite on every core (pytest-xdist): each worker's tests get the cores shared out, and so do the
# processes they start (notebook kernels, `lab` commands); a run without workers has them all
WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
THREADS = max(1, (os.cpu_count() or 1) // WORKERS)
os.environ["LAB_TEST_THREADS"] = str(THREADS)
if WORKERS > 1:
    os.environ["OMP_NUM_THREADS"] = str(THREADS)

# The slow groups, slowest first (measured with --durations): each runs on one worker, in this order, before the
# single tests fill the gaps. A group shares what is expensive to start: one embedded Ray cluster ("ray": sweeps,
# experiments and the dashboard's sweep page), one browser, or a module's trained fixture.
GROUPS = {
    "ray": ["tests/lab/test_sweep.py", "tests/probes/test_experiments.py", "tests/app/test_dashboard.py"],
}


@pytest.fixture(autouse=True)
def _runs_in_tmp(tmp_path, monkeypatch):
    """Every test writes runs under its own temporary folder."""
    monkeypatch.setenv("LAB_RUNS", str(tmp_path / "runs"))
    torch.set_num_threads(THREADS)


@pytest.fixture(scope="session")
def ray_session():
    """One embedded Ray cluster for the tests that use the executor (the executor reuses a connected Ray and leaves
    it running): its workers, once started, serve every such test. Stopped, with its workers, at the end."""
    import logging

    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    yield ray
    ray.shutdown()


TALLY: Counter = Counter()


@pytest.fixture(scope="session")
def tally() -> Counter:
    """The fault suite's counts (tests/reliability): add to "faults injected", "bad inputs tried" and "runs lost"
    (a killed run that did not come back equal); printed at the end of the test run."""
    return TALLY


_LEFT: dict[int, str] = {}


def _is_worker(config) -> bool:
    return hasattr(config, "workerinput")


def _is_controller(config) -> bool:
    """The process that hands tests to xdist workers and runs none itself."""
    return config.pluginmanager.has_plugin("dsession")


def pytest_sessionfinish(session, exitstatus):
    """Nothing the test session started may outlive it (servers, trainings, jobs): list, kill, and fail. Each xdist
    worker checks what its own tests started and hands the list and its fault counts to the controller."""
    if not _is_controller(session.config):
        left = wait_gone(started_by_session(SESSION_TOKEN), timeout=10)
        for pid in left:
            _LEFT[pid] = cmdline(pid)
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
    if _is_worker(session.config):
        session.config.workeroutput.update(left_running=_LEFT, tally=dict(TALLY))
    if _LEFT:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    """(xdist controller) a worker is done: gather what it left running and its fault counts."""
    output = getattr(node, "workeroutput", {})
    _LEFT.update({int(pid): cmd for pid, cmd in output.get("left_running", {}).items()})
    TALLY.update(output.get("tally", {}))


def pytest_collection_modifyitems(config, items):
    """Mark each slow group for xdist (one worker runs a group, `--dist loadgroup`) and put the groups first, slowest
    first, so the longest work starts at once and the short single tests even out the end."""
    order = {path: rank for rank, paths in enumerate(GROUPS.values()) for path in paths}
    group_of = {path: name for name, paths in GROUPS.items() for path in paths}
    for item in items:
        path = item.nodeid.split("::")[0]
        if path in group_of:
            item.add_marker(pytest.mark.xdist_group(group_of[path]))
    items.sort(key=lambda item: order.get(item.nodeid.split("::")[0], len(order)))  # stable: file order kept within


def pytest_terminal_summary(terminalreporter):
    if _is_worker(terminalreporter.config):
        return
    if TALLY:
        terminalreporter.write_line(f"reliability suite: {TALLY['faults injected']} faults injected, "
                                    f"{TALLY['bad inputs tried']} bad inputs tried, runs lost = {TALLY['runs lost']}")
    if _LEFT:
        terminalreporter.write_line("processes started by the tests and left running (now killed; the run fails):",
                                    red=True)
        for pid, cmd in sorted(_LEFT.items()):
            terminalreporter.write_line(f"  {pid}: {cmd}")
    else:
        terminalreporter.write_line("processes started by the tests and left running: none")
