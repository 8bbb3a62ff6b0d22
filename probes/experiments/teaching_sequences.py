"""`lab reproduce teaching-sequences`: accuracy with and without a teaching prefix (see bhattamishra.py)."""
from .bhattamishra import SCALES, run_teaching as run  # noqa: F401

NAME = "teaching-sequences"
