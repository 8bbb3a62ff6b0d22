"""`lab reproduce svm-rank` (see tarzanagh.py)."""
from .tarzanagh import SCALES, run_rank as run  # noqa: F401

NAME = "svm-rank"
