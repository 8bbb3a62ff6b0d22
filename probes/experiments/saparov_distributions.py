"""`lab reproduce saparov-distributions` (see saparov.py)."""
from .saparov import SCALES, run_distributions as run  # noqa: F401

NAME = "saparov-distributions"
