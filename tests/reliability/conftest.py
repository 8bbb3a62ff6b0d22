"""The fault suite: it counts what it does, and prints the counts at the end of the test run."""
from collections import Counter

import pytest

TALLY: Counter = Counter()


@pytest.fixture(scope="session")
def tally() -> Counter:
    """Add to "faults injected", "bad inputs tried" and "runs lost" (a killed run that did not come back equal)."""
    return TALLY


def pytest_terminal_summary(terminalreporter):
    if TALLY:
        terminalreporter.write_line(f"reliability suite: {TALLY['faults injected']} faults injected, "
                                    f"{TALLY['bad inputs tried']} bad inputs tried, runs lost = {TALLY['runs lost']}")
