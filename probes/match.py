"""Which setting of an algorithm best matches a model? Grid search over a family's hyperparameters.

Returns the best setting and the whole similarity grid (for heatmaps). Metrics: "spd" (Akyurek, lower is
better) and "sime" (Fu, higher is better).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import torch

from tasks import Prompts

from .metrics import sime, spd
from .solvers import solve

HIGHER_IS_BETTER = {"spd": False, "sime": True}


@dataclass
class MatchResult:
    family: str
    metric: str
    best: dict  # the best-matching hyperparameters
    best_score: float
    axes: dict  # hyperparameter name -> the values tried, in grid order
    scores: np.ndarray  # shape (len(values) for each axis)

    def to_dict(self) -> dict:
        return {"family": self.family, "metric": self.metric, "best": self.best, "best_score": self.best_score,
                "axes": self.axes, "scores": self.scores.tolist()}


DEFAULT_START = {"spd": 1, "sime": 0}  # sime: Fu et al.'s code includes position 0; SPD skips the no-pair column


def score(metric: str, target: torch.Tensor, candidate: torch.Tensor, prompts: Prompts,
          start: int | None = None) -> float:
    """How alike two prediction tables [B, n] are over columns start..n-1 (default: DEFAULT_START[metric])."""
    if metric not in HIGHER_IS_BETTER:
        raise ValueError(f"unknown metric {metric!r}; choose one of: {', '.join(HIGHER_IS_BETTER)}")
    start = DEFAULT_START[metric] if start is None else start
    if metric == "spd":
        return spd(target[:, start:].double(), candidate[:, start:].double(), prompts.d).mean().item()
    return sime(target.double(), candidate.double(), prompts.ys.double(), start=start)


def match(target: torch.Tensor, prompts: Prompts, family: str, grid: dict, metric: str = "spd",
          fixed: dict | None = None, start: int | None = None) -> MatchResult:
    """Compare predictions `target` [B, n] with probes.solve(family, prompts, **fixed, **setting) for every
    setting in the product of `grid` (name -> values) and return the best one and the grid of scores."""
    if metric not in HIGHER_IS_BETTER:
        raise ValueError(f"unknown metric {metric!r}; choose one of: {', '.join(HIGHER_IS_BETTER)}")
    axes = {k: list(v) for k, v in grid.items()}
    scores = np.empty([len(v) for v in axes.values()])
    for index in itertools.product(*(range(len(v)) for v in axes.values())):
        setting = {k: axes[k][i] for k, i in zip(axes, index)}
        scores[index] = score(metric, target, solve(family, prompts, **(fixed or {}), **setting), prompts, start)
    flat = int(np.argmax(scores) if HIGHER_IS_BETTER[metric] else np.argmin(scores))
    best_index = np.unravel_index(flat, scores.shape)
    best = {k: axes[k][i] for k, i in zip(axes, best_index)}
    return MatchResult(family, metric, best, float(scores[best_index]), axes, scores)


def line_search_lr(prompts: Prompts, steps: int, lrs, column: int = -1, **fixed) -> float:
    """The GD learning rate with the lowest squared error on `column` (von Oswald: eta found by line search)."""
    target = prompts.ys[:, column]
    errors = [((solve("gd", prompts, steps=steps, lr=lr, **fixed)[:, column] - target) ** 2).mean().item()
              for lr in lrs]
    return list(lrs)[int(np.argmin(errors))]
