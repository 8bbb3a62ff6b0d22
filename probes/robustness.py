"""Garg et al. 2022 sec. 5: a model trained on isotropic noiseless linear regression, tested under distribution shifts,
each beside least squares on the same prompts.

Shifts of the whole prompt (every point and the query alike) are evaluated prefix-wise, as the ICL curve is. Shifts
of the query alone (its examples from one distribution, the query from another) need one prompt per k: the query
is placed at position k after k examples, and column k is read.
"""
from __future__ import annotations

import torch

from tasks import Prompts

from .icl_curve import shifted_task
from .metrics import bootstrap_curve
from .solvers import solve

WHOLE_PROMPT = {"noisy labels (sigma = 1)": {"noise_std": 1.0}, "scaled x (x2)": {"x_scale": 2.0},
                "scaled w (x2)": {"w_std": 2.0}, "skewed covariance": {"x_cov": "skewed"}}
QUERY = ("examples in one orthant", "query in the opposite half-space")
SHIFTS = (*WHOLE_PROMPT, *QUERY)


def _labels(xs: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return torch.einsum("bnd,bd->bn", xs, w)


def query_shift(task, shift: str, batch: int, n_points: int, seed: int) -> tuple[Prompts, torch.Tensor]:
    """Examples [B, n, d] from the shifted example distribution (labels w . x; params also hold the orthant's "signs"
    [B, d] or the half-space's normal "z" [B, d]), and queries [B, d] from the query's distribution:
    "examples in one orthant": every example's coordinates take one random sign pattern per prompt, the query is
    unrestricted; "query in the opposite half-space": examples with <x, z> >= 0 for a random unit z per prompt, the
    query with <x, z> < 0 (reflections of Gaussian draws, so E[x x^T] stays I)."""
    p = task.sample(batch, n_points + 1, seed=seed, dtype=torch.float64)
    g = torch.Generator().manual_seed(seed + 1)
    xs, query = p.xs[:, :-1], p.xs[:, -1]  # [B, n, d], [B, d]
    w = p.params["w"]
    if shift == "examples in one orthant":
        signs = torch.randint(0, 2, (batch, task.d), generator=g).double() * 2 - 1
        xs, shape = xs.abs() * signs[:, None], {"signs": signs}
    elif shift == "query in the opposite half-space":
        z = torch.randn(batch, task.d, generator=g, dtype=torch.float64)
        z = z / z.norm(dim=-1, keepdim=True)
        side = torch.einsum("bnd,bd->bn", xs, z)
        xs = xs - 2 * side.clamp(max=0).unsqueeze(-1) * z[:, None]  # reflected into <x, z> >= 0
        q_side = (query * z).sum(-1, keepdim=True)
        query, shape = query - 2 * q_side.clamp(min=0) * z, {"z": z}  # into <x, z> <= 0
    else:
        raise ValueError(f"unknown query shift {shift!r}; choose one of: {', '.join(QUERY)}")
    return Prompts(xs, _labels(xs, w), {"w": w, **shape}), query


def query_shift_predictions(predict, examples: Prompts, query: torch.Tensor) -> torch.Tensor:
    """Column k: `predict` on the prompt whose k-th point is the query (its first k points the examples): [B, n]."""
    out = torch.zeros(examples.ys.shape, dtype=torch.float64)
    w = examples.params["w"]
    for k in range(examples.n_points):
        xs = examples.xs.clone()
        xs[:, k] = query
        out[:, k] = predict(Prompts(xs, _labels(xs, w), {"w": w}))[:, k].double()
    return out


def robustness(run, n_prompts: int = 1280, seed: int = 7_654_321, shifts=SHIFTS) -> dict:
    """{shift: {"model": curve, "ols": curve}} with curves as in the ICL curve (squared error / E[y^2] of the
    shifted prompts, 90% bootstrap intervals), for each shift of `shifts`."""
    task, n = run.task, run.config.task.n_points
    out = {}
    for i, shift in enumerate(shifts):
        if shift in WHOLE_PROMPT:
            shifted = shifted_task(task, **WHOLE_PROMPT[shift])
            p = shifted.sample(n_prompts, n, seed=seed + i, dtype=torch.float64)
            preds = {"model": run.predict(p).double(), "ols": solve("ols", p).double()}
            ys, scale = p.ys, shifted.y_variance()
        else:
            examples, query = query_shift(task, shift, n_prompts, n, seed + i)
            preds = {"model": query_shift_predictions(run.predict, examples, query),
                     "ols": query_shift_predictions(lambda q: solve("ols", q), examples, query)}
            ys = _labels(query[:, None].expand(-1, n, -1), examples.params["w"])  # the query's label at every k
            scale = task.y_variance()
        out[shift] = {name: bootstrap_curve((v - ys) ** 2 / scale) for name, v in preds.items()}
    return out
