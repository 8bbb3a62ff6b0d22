import os
import signal
import uuid
from collections import Counter

import pytest
import torch

from fresh import ENTROPY_VAR
from owned import SESSION_VAR, cmdline, started_by_session, wait_gone

os.environ.setdefault("LAB_RUNS", "/nonexistent-lab-runs-set-per-test")
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")  # Triton kernels run on CPU tensors (before triton is imported)
os.environ.setdefault(ENTROPY_VAR, str(uuid.uuid4().int >> 64))  # fresh seeds, one draw per run (tests/fresh.py)
# One Ray auth token for every cluster of the run: clusters starting at once (a worker's ray_session, a test's `ray
# start --head`, a `lab sweep` child) otherwise share Ray's default token file (seen: `lab sweep --address` refused by
# its head, InvalidAuthToken, while other workers' clusters started)
os.environ.setdefault("RAY_AUTH_TOKEN", uuid.uuid4().hex)
SESSION_TOKEN = uuid.uuid4().hex
os.environ[SESSION_VAR] = SESSION_TOKEN  # inherited by every process a test starts: found again at the end
# `make test` runs the suite on every core (pytest-xdist): each worker's tests get the cores shared out, and so do the
# processes they start (notebook kernels, `lab` commands); a run without workers has them all
WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
THREADS = max(1, (os.cpu_count() or 1) // WORKERS)
os.environ["LAB_TEST_THREADS"] = str(THREADS)
if WORKERS > 1:
    os.environ["OMP_NUM_THREADS"] = str(THREADS)

# The order of work for `make test` (xdist's loadgroup), longest first so the cores stay busy to the end (measured with
# --durations). A group runs on one worker: each file of GROUPS shares its module's fixture there (the dashboard's
# trained runs and sweep, a browser, a trained template), and the other tests on the embedded Ray cluster of
# `ray_session` share one cluster ("ray"). FIRST files go out before the rest.
GROUPS = ["tests/app/test_dashboard.py", "tests/reliability/test_corrupt_files.py", "tests/app/test_browser.py",
          "tests/reliability/test_kill_and_resume.py", "tests/probes/test_interpretability.py",
          "tests/probes/test_search.py", "tests/probes/test_patching.py"]
FIRST = ["tests/app/test_dashboard.py", "tests/probes/test_experiments.py", "tests/lab/test_sweep.py",
         "tests/test_notebooks.py", "tests/test_docs.py", "tests/app/test_browser.py",
         "tests/reliability/test_corrupt_files.py", "tests/reliability/test_kill_and_resume.py"]
# What `make check` leaves out (-m "not slow"): trainings through Ray, browsers, notebooks, subprocesses of `lab`
SLOW = ["tests/app/", "tests/reliability/", "tests/lab/test_sweep.py", "tests/probes/test_experiments.py",
        "tests/test_notebooks.py", "tests/test_docs.py", "tests/test_docs_site.py"]


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

    from lab.executor import loopback_only

    with loopback_only():  # as the lab's own embedded clusters: nothing the tests start listens beyond loopback
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
                 logging_level=logging.ERROR)
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


def _file(item) -> str:
    return item.nodeid.split("::")[0]


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the xdist_group marks
def pytest_collection_modifyitems(config, items):
    """Mark the slow tests and the groups, and put the FIRST files first, in that order (the rest keep theirs)."""
    for item in items:
        group = _file(item) if _file(item) in GROUPS else "ray" if "ray_session" in item.fixturenames else None
        if group:
            item.add_marker(pytest.mark.xdist_group(group))
        if any(_file(item).startswith(prefix) for prefix in SLOW):
            item.add_marker(pytest.mark.slow)
    items.sort(key=lambda item: FIRST.index(_file(item)) if _file(item) in FIRST else len(FIRST))


def pytest_terminal_summary(terminalreporter):
    if _is_worker(terminalreporter.config):
        return
    terminalreporter.write_line(f"fresh random inputs: {ENTROPY_VAR}={os.environ[ENTROPY_VAR]} replays this run's")
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
