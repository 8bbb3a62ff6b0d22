"""`lab reproduce svm-convergence` (see tarzanagh.py)."""
from .tarzanagh import SCALES, run_convergence as run  # noqa: F401

NAME = "svm-convergence"
