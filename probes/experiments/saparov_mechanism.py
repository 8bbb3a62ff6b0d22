"""`lab reproduce saparov-mechanism` (see saparov.py)."""
from .saparov import SCALES, run_mechanism as run  # noqa: F401

NAME = "saparov-mechanism"
