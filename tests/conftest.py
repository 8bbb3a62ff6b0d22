import os

import pytest
import torch

os.environ.setdefault("LAB_RUNS", "/nonexistent-lab-runs-set-per-test")
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")  # Triton kernels run on CPU tensors (before triton is imported)


@pytest.fixture(autouse=True)
def _runs_in_tmp(tmp_path, monkeypatch):
    """Every test writes runs under its own temporary folder."""
    monkeypatch.setenv("LAB_RUNS", str(tmp_path / "runs"))
    torch.set_num_threads(2)
