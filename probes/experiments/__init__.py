"""Paper reproductions: `lab reproduce NAME --scale quick|paper [--seeds N]`. Each module registers its experiments
with `common.experiment` (one registry, EXPERIMENTS, in the order imported here); `reproduce` runs one through the
sweep executor."""
from __future__ import annotations

# isort: off  (the papers' order is the listing's order)
from . import (  # noqa: F401  # noqa: F401
    akyurek_depth,
    bhattamishra,
    fu_illcond,
    fu_newton,
    garg,
    guo,
    saparov,
    scan_and_snap,
    tarzanagh,
    vo_1layer,
    vo_gdpp,
)

# isort: on
from .common import EXPERIMENTS, Experiment, get, names, reproduce  # noqa: F401
