"""Shared measurements for von Oswald et al.'s linear self-attention (d = N = 10, U(-0.5, 0.5)):
the experiments vo-1layer and vo-gdpp, and `lab probe RUN construction`."""
from __future__ import annotations

import numpy as np
import torch

from . import metrics
from .figures import pyplot, save_figure
from .match import line_search_lr
from .predictors import from_run, from_solver
from .solvers import solve

EVAL_SEED = 20_231_001


def half_mse(pred: torch.Tensor, y: torch.Tensor) -> float:
    """von Oswald's loss: 1/2 (prediction - y)^2 on the query, averaged."""
    return 0.5 * ((pred.double() - y.double()) ** 2).mean().item()


def query_losses(run, p, gd_steps: int, lrs) -> dict:
    """The model's query loss beside the zero predictor and line-searched GD with `gd_steps` steps."""
    y = p.ys[:, -1]
    model_pred = from_run(run).last(p).detach()
    eta = float(line_search_lr(p, gd_steps, lrs))
    gd_pred = solve("gd", p, steps=gd_steps, lr=eta)[:, -1]
    return {"model": half_mse(model_pred, y), "zero": half_mse(torch.zeros_like(y), y),
            f"gd{gd_steps}": half_mse(gd_pred, y), f"gd{gd_steps}_lr": eta,
            "model_vs_gd_abs_diff": (model_pred.double() - gd_pred.double()).abs().mean().item()}


def sensitivity_alignment(run, p, family: str, **kw) -> dict:
    """von Oswald's alignment: cosine and difference norm of d prediction / d x_query, model vs algorithm."""
    g_model = metrics.sensitivity(from_run(run), p)
    g_alg = metrics.sensitivity(from_solver(family, **kw), p)
    return {"cosine": metrics.sensitivity_cosine(g_model, g_alg),
            "difference_norm": metrics.sensitivity_difference(g_model, g_alg)}


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    """Cosine of two matrices taken as flat vectors."""
    return metrics.cosine(a.double().flatten(), b.double().flatten()).item()


def projection_scale(a: torch.Tensor, b: torch.Tensor) -> float:
    """The scalar s minimising ||a - s b||."""
    a, b = a.double().flatten(), b.double().flatten()
    return (a @ b / (b @ b)).item()


def line_search_grid(lo: float = 0.5, hi: float = 15.0, n: int = 59) -> list[float]:
    return [float(v) for v in np.linspace(lo, hi, n)]


def products_figure(kq, pv, kq_ref, pv_ref, path, algorithm: str):
    """Trained W_KQ and W_PV beside the construction's, each panel on its own colour scale."""
    plt = pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(7, 6.4))
    panels = [(kq, "trained W_KQ"), (kq_ref, "construction W_KQ"), (pv, "trained W_PV"), (pv_ref, "construction W_PV")]
    for ax, (m, title) in zip(axes.flat, panels):
        lim = m.abs().max().item() or 1.0
        im = ax.imshow(m.numpy(), cmap="RdBu_r", vmin=-lim, vmax=lim)
        ax.set_title(title, fontsize=10)
        ax.set_xticks([]), ax.set_yticks([])
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.suptitle(f"trained LSA vs {algorithm}\n(each panel on its own colour scale)", fontsize=11)
    fig.tight_layout()
    save_figure(fig, path)
