"""von Oswald et al. 2023, sec. 3: one trained linear self-attention layer is one step of gradient descent.

Claims (REFERENCES.md section 3): the trained layer's query loss reaches the line-searched one-step GD loss
(0.208 half-MSE at d = N = 10, x ~ U(-0.5, 0.5)); its sensitivity d y / d x_query has cosine ~1 with GD's;
its W_KQ = W_K^T W_Q and W_PV = W_O W_V equal the construction (Prop. 1) up to the scalar ambiguity.
"""
from __future__ import annotations

from ..constructions import gd_layer_weights, kq_pv, kq_pv_products
from ..lsa import (
    EVAL_SEED,
    cosine,
    line_search_grid,
    products_figure,
    projection_scale,
    query_losses,
    sensitivity_alignment,
)
from .common import Training, claim, experiment

NAME = "vo-1layer"
# the construction is defined up to W_KQ -> a W_KQ, W_PV -> W_PV / a for any a != 0, negative a included (the layer
# computes with their product): 3 of 5 seeds learn a < 0 (cosines about -0.999 for both, learned lr about 6)
SAME_SIGN = "the two scalars share a sign, so their product is the construction's"
SCALES = {"quick": {"steps": 2000, "batch_size": 2048, "n_eval": 10_000},
          "paper": {"steps": 20_000, "batch_size": 2048, "n_eval": 10_000},
          "smoke": {"steps": 10, "batch_size": 64, "n_eval": 200}}  # tests only


def trainings(s: dict) -> list[Training]:
    return [Training("train", "vo-lsa-1layer", {"train.steps": s["steps"], "train.batch_size": s["batch_size"]})]


@experiment(NAME, SCALES, trainings)
def analyse(ctx):
    s, trained = ctx.s, ctx.runs["train"]
    d = trained.task.d
    n_context = trained.config.task.n_points - 1
    p = trained.task.sample(s["n_eval"], n_context + 1, seed=EVAL_SEED)
    losses = query_losses(trained, p, gd_steps=1, lrs=line_search_grid())
    eta = losses["gd1_lr"]
    sens = sensitivity_alignment(trained, p, "gd", steps=1, lr=eta)

    kq, pv = kq_pv_products(trained.model)
    kq_ref, pv_ref = kq_pv(**gd_layer_weights(d, n_context, eta))
    a, b = projection_scale(kq, kq_ref), projection_scale(pv, pv_ref)
    products = {"kq_cosine": cosine(kq, kq_ref), "pv_cosine": cosine(pv, pv_ref), "kq_scale": a, "pv_scale": b,
                "learned_lr": a * b * eta}
    products_figure(kq, pv, kq_ref, pv_ref, ctx.figures / "kq_pv.png", "one GD step")

    claims = [
        claim("1-layer LSA query loss reaches the line-searched 1-step GD loss (half-MSE; passes within 2%)",
              0.208, losses["model"], losses["model"] <= 1.02 * losses["gd1"]),
        claim("sensitivity cosine to 1-step GD >= 0.99", 0.99, sens["cosine"], sens["cosine"] >= 0.99),
        claim(f"W_KQ equals the construction up to a scalar (|cosine| >= 0.99; {SAME_SIGN})", 1.0,
              abs(products["kq_cosine"]), abs(products["kq_cosine"]) >= 0.99 and a * b > 0),
        claim(f"W_PV equals the construction up to a scalar (|cosine| >= 0.99; {SAME_SIGN})", 1.0,
              abs(products["pv_cosine"]), abs(products["pv_cosine"]) >= 0.99 and a * b > 0),
    ]
    return claims, {"losses": losses, "sensitivity": sens, "products": products, "paper_gd1_lr": 6.1}
