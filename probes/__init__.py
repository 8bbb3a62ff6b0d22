"""The science: reference learners, weight constructions, comparison metrics, matching, read-outs, experiments."""
from . import constructions, metrics
from .solvers import SOLVERS, path, solve

__all__ = ["solve", "path", "SOLVERS", "constructions", "metrics"]
