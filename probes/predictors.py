"""One call shape for everything that predicts in context: models and reference learners alike.

A Predictor maps Prompts to prefix-wise predictions [B, n] (column i from pairs 0..i-1 and x_i) and, more
cheaply, to the last column alone. Both are differentiable, so sensitivities d prediction / d x_query work.
"""
from __future__ import annotations

from collections.abc import Callable

import torch

from tasks import Prompts

from .solvers import solve


class Predictor:
    def __init__(self, name: str, all_columns: Callable[[Prompts], torch.Tensor],
                 last_column: Callable[[Prompts], torch.Tensor] | None = None):
        self.name = name
        self._all = all_columns
        self._last = last_column or (lambda p: all_columns(p)[:, -1])

    def __call__(self, p: Prompts) -> torch.Tensor:  # [B, n]
        return self._all(p)

    def last(self, p: Prompts) -> torch.Tensor:  # [B]
        return self._last(p)

    def __repr__(self):
        return f"Predictor({self.name!r})"


def from_solver(name: str, **kwargs) -> Predictor:
    label = name + "".join(f" {k}={v}" for k, v in kwargs.items())
    return Predictor(label, lambda p: solve(name, p, **kwargs))


def from_model(model, fmt, name: str = "model") -> Predictor:
    """A lab Transformer read through its token format; prompts are cast to the model's dtype and device."""
    param = next(model.parameters(), None)

    def cast(p: Prompts) -> Prompts:
        return p if param is None else p.to(device=param.device, dtype=param.dtype)

    return Predictor(name, lambda p: fmt.predict(model, cast(p)), lambda p: fmt.predict_last(model, cast(p)))


def from_run(run) -> Predictor:
    return from_model(run.model, run.format, name=str(run.path))


def at_queries(predictor: Predictor, context: Prompts, queries: torch.Tensor) -> torch.Tensor:
    """Predictions [B, m] for m query points [B, m, d], each from the whole context of its prompt."""
    B, k, d = context.xs.shape
    m = queries.shape[1]
    xs = torch.cat([context.xs.unsqueeze(1).expand(B, m, k, d), queries.unsqueeze(2)], dim=2)  # [B, m, k+1, d]
    ys = torch.cat([context.ys.unsqueeze(1).expand(B, m, k), context.ys.new_zeros(B, m, 1)], dim=2)
    return predictor.last(Prompts(xs.reshape(B * m, k + 1, d), ys.reshape(B * m, k + 1))).reshape(B, m)
