"""The science: reference learners, comparisons and experiments on trained runs."""
from .solvers import SOLVERS, solve

__all__ = ["solve", "SOLVERS"]
