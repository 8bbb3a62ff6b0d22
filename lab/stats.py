"""Statistics over seeds: the mean and a percentile-bootstrap interval of a handful of numbers."""
from __future__ import annotations

import numpy as np

LEVEL = 0.9  # the lab's intervals are 90% (DESIGN.md: "bootstrap confidence intervals")


def mean_interval(values, level: float = LEVEL, n_boot: int = 2000, seed: int = 0) -> dict:
    """{"mean", "lo", "hi", "n"} of `values` (NaN/None left out): the percentile bootstrap (Efron & Tibshirani 1993,
    ch. 13) of the mean over the values, resampled with replacement. One value gives lo = hi = mean; none gives
    None everywhere and n = 0."""
    x = np.asarray([v for v in values if v is not None], dtype=float)
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return {"mean": None, "lo": None, "hi": None, "n": 0}
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), size=(n_boot, len(x)))].mean(axis=1)  # [n_boot]
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return {"mean": float(x.mean()), "lo": float(lo), "hi": float(hi), "n": int(len(x))}
