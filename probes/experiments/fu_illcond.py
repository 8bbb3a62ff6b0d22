"""Fu et al. 2023 on ill-conditioned data (condition number 100): the layers still match a few Newton
iterations (about 21), while GD needs about 2000 steps (REFERENCES.md section 4). Same model and read-outs
as fu-newton, trained and tested on x ~ N(0, Sigma) with a two-level spectrum, kappa = 100.
"""
from __future__ import annotations

from ..inspect import GD_STEPS
from .common import claim, experiment
from .fu_newton import READOUT_METRICS, SCALES, read_out, training

NAME = "fu-illcond"
GD_STEPS_LONG = sorted(set(GD_STEPS) | {7000, 10_000, 14_000, 20_000})
TASK = {"task.x_cov": "ill_conditioned", "task.kappa": 100.0}


@experiment(NAME, SCALES, lambda s: training(s, TASK))
def analyse(ctx):
    r = read_out(ctx, gd_steps=GD_STEPS_LONG)
    newton_last, gd_last = r["best_newton"][-1], r["best_gd"][-1]
    claims = [
        claim("the last layer still matches few Newton iterations (<= 30)", 21, newton_last, newton_last <= 30),
        claim("while GD needs far more steps (>= 20x the Newton iterations)", 2000, gd_last,
              gd_last >= 20 * newton_last),
    ]
    return claims, {k: r[k] for k in READOUT_METRICS}
