"""Paper reproductions: `lab reproduce NAME --scale quick|paper [--seeds N]`. Each module registers its experiments
with `common.experiment` (one registry, EXPERIMENTS, in the order imported here); `reproduce` runs one through the
sweep executor."""
from __future__ import annotations

# the papers' order is the listing's order: kept out of the import sorting
# isort: off
from . import vo_1layer, vo_gdpp, akyurek_depth, fu_newton, fu_illcond, bhattamishra, saparov, tarzanagh  # noqa: F401
from . import scan_and_snap, garg, guo  # noqa: F401
# isort: on
from .common import EXPERIMENTS, Experiment, get, names, reproduce  # noqa: F401
