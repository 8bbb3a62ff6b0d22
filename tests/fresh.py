"""Fresh random seeds on every test run, the same in every pytest-xdist worker (each worker collects the tests, and
the collections must agree): drawn from $LAB_TEST_ENTROPY, which tests/conftest.py sets once per run (set it to
replay a run; the run prints it)."""
import os
import zlib

import numpy as np

ENTROPY_VAR = "LAB_TEST_ENTROPY"


def fresh_seeds(n: int, key: str) -> list[int]:
    """n seeds in 0..2^32 - 1 for the caller named `key` (its module), new on every run."""
    sequence = np.random.SeedSequence(int(os.environ[ENTROPY_VAR]), spawn_key=(zlib.crc32(key.encode()),))
    return sequence.generate_state(n).tolist()
