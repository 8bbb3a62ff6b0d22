"""Tian et al. 2023, "Scan and Snap" (REFERENCES.md section 8): the training dynamics of one attention layer.

One run at the base learning-rate ratio eta_Y / eta_Z tracks the attention on common and on distinct tokens over
training; a sweep of the ratio gives the final attention entropy against it.
"""
from __future__ import annotations

import numpy as np

from tasks.scan_snap import ScanSnap

from ..dynamics import summarize, train_dynamics
from ..figures import scan_snap_figure
from .common import claim, experiment, save_figure

NAME = "scan-and-snap"
SCALES = {
    "quick": {"task": {}, "steps": 2000, "batch": 128, "lr_attention": 1.0, "ratios": (0.5, 1, 2, 5, 10, 20),
              "base_ratio": 1},
    "paper": {"task": {"n_classes": 10, "n_common": 10, "n_distinct": 8, "context": 64}, "steps": 20_000,
              "batch": 256, "lr_attention": 1.0, "ratios": (0.5, 1, 2, 5, 10, 20, 50), "base_ratio": 1},
    "smoke": {"task": {"n_classes": 2, "n_common": 2, "n_distinct": 2, "context": 8}, "steps": 30, "batch": 16,
              "lr_attention": 1.0, "ratios": (1, 10), "base_ratio": 1},  # tests only
}
COLLAPSE = 0.9  # attention "collapses" when one token id holds this much of it


@experiment(NAME, SCALES)
def analyse(ctx):
    """The one-layer model of Tian et al. trains here, in probes/dynamics.py (SGD on Y and Z with their own
    learning rates), not as lab runs: the executor has no trainings to run for it. Seed replica k draws its
    batches from seed k."""
    s = ctx.s
    task = ScanSnap(**s["task"])
    sweep = {r: train_dynamics(task, r * s["lr_attention"], s["lr_attention"], s["steps"], s["batch"],
                               seed=ctx.seed_index) for r in s["ratios"]}
    summaries = {r: summarize(d) for r, d in sweep.items()}
    base = summaries[s["base_ratio"]]
    common, distinct, peaks = base["common_mass"], base["distinct_mass"], base["distinct_peak_steps"]
    entropy = {r: m["final_entropy"] for r, m in summaries.items()}
    ratios = list(s["ratios"])
    rising = all(entropy[a] < entropy[b] for a, b in zip(ratios, ratios[1:]))
    rarer_first = all(a >= b for a, b in zip(peaks, peaks[1:])) and distinct[-1][-1] < distinct[-1][0]
    claims = [
        claim("attention leaves the common tokens (their share falls below half its start)", "falls",
              f"{common[0]:.3f} -> {common[-1]:.3f}", common[-1] < 0.5 * common[0]),
        claim("among distinct tokens the rarer lose weight first (attention peaks earlier the rarer the token; the "
              "rarest ends below its start)", "rarer first", f"peak steps {peaks} (most frequent first)", rarer_first),
        claim(f"attention does not collapse onto one token (largest token share < {COLLAPSE})", "no collapse",
              round(base["top_token_share"], 4), base["top_token_share"] < COLLAPSE),
        claim("a larger decoder/attention learning-rate ratio leaves a higher final attention entropy (rising over "
              f"the ratios {ratios})", "rises", " < ".join(f"{entropy[r]:.3f}" for r in ratios), rising),
    ]
    metrics = {"task": {k: getattr(task, k) for k in ("n_classes", "n_common", "n_distinct", "context",
                                                      "common_share", "distinct_decay")},
               "steps": s["steps"], "lr_attention": s["lr_attention"], "base_ratio": s["base_ratio"],
               "base": base, "final_entropy": {str(r): e for r, e in entropy.items()},
               "initial_entropy": base["entropy"][0],
               "entropy_curves": {str(r): m["entropy"] for r, m in summaries.items()},
               "final_loss": {str(r): m["final_loss"] for r, m in summaries.items()},
               # how much attention still moves late: the entropy drop over the second half of training
               "entropy_drop_second_half": {str(r): _late_drop(m) for r, m in summaries.items()}}
    save_figure(scan_snap_figure(metrics), ctx.figures / "scan_snap.png")
    return claims, metrics


def _late_drop(m: dict) -> float:
    half = int(np.searchsorted(m["record_steps"], m["record_steps"][-1] // 2))
    return m["entropy"][half] - m["entropy"][-1]
