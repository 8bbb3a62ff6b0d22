"""`lab reproduce saparov-scaling` (see saparov.py)."""
from .saparov import SCALES, run_scaling as run  # noqa: F401

NAME = "saparov-scaling"
