"""Comparison metrics between predictors (models or algorithms), each a plain function.

Akyurek et al. 2023: squared prediction difference (SPD) and implicit linear weight difference (ILWD).
von Oswald et al. 2023: prediction difference, sensitivity cosine and sensitivity-difference norm.
Fu et al. 2023: similarity of errors (SimE) and of induced weights (SimW).
The curves shown to people: a mean per column with a percentile-bootstrap interval over prompts.
"""
from __future__ import annotations

import numpy as np
import torch

from tasks import Prompts

from .predictors import Predictor, at_queries


def spd(pred_a: torch.Tensor, pred_b: torch.Tensor, d: int) -> torch.Tensor:
    """SPD / d per column: E_prompts[(A(D)(x) - B(D)(x))^2] / d for predictions [B, n] -> [n]."""
    return ((pred_a - pred_b) ** 2).mean(0) / d


def prediction_difference(pred_a: torch.Tensor, pred_b: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of two predictions (von Oswald's |y_model - y_GD|), per column."""
    return (pred_a - pred_b).abs().mean(0)


def implicit_weights(predictor: Predictor, context: Prompts, n_probe: int | None = None, seed: int = 0) -> torch.Tensor:
    """Akyurek's implicit linear weights [B, d]: the least-squares w with w . x ~= predictor(context)(x) over
    `n_probe` (default 2d) unlabeled probe inputs x ~ N(0, I) per prompt."""
    B, _, d = context.xs.shape
    m = n_probe or 2 * d
    g = torch.Generator().manual_seed(seed)
    probe = torch.randn(B, m, d, generator=g, dtype=torch.float64).to(context.xs)
    preds = at_queries(predictor, context, probe)  # [B, m]
    return torch.linalg.lstsq(probe.double(), preds.double().unsqueeze(-1)).solution.squeeze(-1)


def ilwd(w_a: torch.Tensor, w_b: torch.Tensor) -> float:
    """Implicit linear weight difference E ||w_A - w_B||^2 over prompts."""
    return ((w_a - w_b) ** 2).sum(-1).mean().item()


def sensitivity(predictor: Predictor, p: Prompts) -> torch.Tensor:
    """d prediction / d x_query [B, d] for the last point of every prompt (autograd)."""
    xs = p.xs.detach().clone().requires_grad_(True)
    out = predictor.last(Prompts(xs, p.ys, p.params))
    (grad,) = torch.autograd.grad(out.sum(), xs)  # each prompt's output depends on its own x only
    return grad[:, -1]


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine similarity along the last dimension."""
    return (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1)).clamp(min=1e-30)


def sensitivity_cosine(g_a: torch.Tensor, g_b: torch.Tensor) -> float:
    """Mean cosine between two sensitivities [B, d] (von Oswald: about 1 for a trained LSA vs GD)."""
    return cosine(g_a.double(), g_b.double()).mean().item()


def sensitivity_difference(g_a: torch.Tensor, g_b: torch.Tensor) -> float:
    """Mean norm of the difference of two sensitivities [B, d]."""
    return (g_a.double() - g_b.double()).norm(dim=-1).mean().item()


def sime(pred_a: torch.Tensor, pred_b: torch.Tensor, ys: torch.Tensor, start: int = 0) -> float:
    """Fu's similarity of errors: cosine between the residual vectors (pred - y over positions start..n-1)
    of two predictors on the same sequence, averaged over sequences. Invariant to scaling either residual.
    The default start = 0 follows Fu et al.'s code (sklearn cosine over every position, position 0 included);
    start = 1 leaves out the position that sees no pairs (values shift by up to about 0.02)."""
    ra, rb = (pred_a - ys)[:, start:].double(), (pred_b - ys)[:, start:].double()
    return cosine(ra, rb).mean().item()


def simw(w_a: torch.Tensor, w_b: torch.Tensor) -> float:
    """Fu's similarity of induced weights: mean cosine between two predictors' implicit weights [B, d]."""
    return cosine(w_a.double(), w_b.double()).mean().item()


def bootstrap_curve(errors: torch.Tensor, n_boot: int = 1000, level: float = 0.9, seed: int = 0) -> dict:
    """errors [B, n] -> mean over prompts per column with a percentile bootstrap CI over prompts."""
    e = errors.double().cpu().numpy()
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, e.shape[0], size=(n_boot, e.shape[0]))
    means = e[idx].mean(axis=1)  # [n_boot, n]
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2], axis=0)
    return {"mean": e.mean(0).tolist(), "lo": lo.tolist(), "hi": hi.tolist()}
