"""`lab reproduce bhattamishra-table`: Boolean function classes x architectures x baselines (see bhattamishra.py)."""
from .bhattamishra import SCALES, run_table as run  # noqa: F401

NAME = "bhattamishra-table"
