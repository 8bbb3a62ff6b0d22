"""Stacks of E models as one computation (`Transformer(cfg, n_models=E)`): per-model tensors carry a leading model
dimension [E, ...] and broadcast over that model's activations [E, ..., *rest]."""
from __future__ import annotations

import torch


def per_model(p: torch.Tensor, ndim: int) -> torch.Tensor:
    """A stack's per-model tensor p [E, *rest] as [E, 1, ..., 1, *rest] with `ndim` dims: it broadcasts over
    activations [E, ..., *rest]."""
    return p.view(p.shape[0], *([1] * (ndim - p.dim())), *p.shape[1:])
