"""Paper reproductions: `lab reproduce NAME --scale quick|paper [--seeds N]`. Each module registers its experiments
with `common.experiment` (one registry, EXPERIMENTS, in the order imported here); `reproduce` runs one through the
sweep executor."""
from __future__ import annotations

# isort: off  (the papers' order is the listing's order)
from . import vo_1layer, vo_gdpp, akyurek_depth, fu_newton, fu_illcond, bhattamishra, saparov, tarzanagh  # noqa: F401
from . import scan_and_snap, garg, guo  # noqa: F401
# isort: on
from .common import EXPERIMENTS, Experiment, reproduce  # noqa: F401


def names() -> list[str]:
    return list(EXPERIMENTS)


def get(name: str) -> Experiment:
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; choose one of: {', '.join(names())}")
    return EXPERIMENTS[name]
