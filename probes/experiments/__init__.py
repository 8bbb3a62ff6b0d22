"""Paper reproductions: `lab reproduce NAME --scale quick|paper`. Each module has NAME, SCALES and run()."""
from __future__ import annotations

import importlib

MODULES = {"vo-1layer": "vo_1layer", "vo-gdpp": "vo_gdpp", "akyurek-depth": "akyurek_depth",
           "fu-newton": "fu_newton", "fu-illcond": "fu_illcond", "bhattamishra-table": "bhattamishra_table",
           "teaching-sequences": "teaching_sequences",
           "saparov-distributions": "saparov_distributions", "saparov-scaling": "saparov_scaling",
           "saparov-mechanism": "saparov_mechanism", "svm-convergence": "svm_convergence", "svm-rank": "svm_rank",
           "scan-and-snap": "scan_and_snap"}


def names() -> list[str]:
    return list(MODULES)


def get(name: str):
    if name not in MODULES:
        raise ValueError(f"unknown experiment {name!r}; choose one of: {', '.join(MODULES)}")
    return importlib.import_module(f"{__name__}.{MODULES[name]}")


def reproduce(name: str, scale: str = "quick", out=None, quiet: bool = False) -> dict:
    """Run experiment `name` at `scale` ("quick": a CPU in minutes; "paper": the original setting)."""
    module = get(name)
    if scale not in ("quick", "paper", "smoke"):
        raise ValueError(f"scale must be one of quick, paper; got {scale!r}")
    return module.run(scale, out=out, quiet=quiet)
