"""Prompts: the raw tensors of a batch of in-context tasks, plus their ground truth."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class Prompts:
    """A batch of B prompts of n (x, y) pairs each.

    `params` holds the ground truth each prompt was drawn from (for linear regression `{"w": [B, d]}`).
    Keeping prompts raw lets a reference learner (which sees xs, ys) and a model (which sees tokens)
    be compared point by point on identical data.
    """

    xs: torch.Tensor  # [B, n, d]
    ys: torch.Tensor  # [B, n]
    params: dict = field(default_factory=dict)

    @property
    def batch_size(self) -> int:
        return self.xs.shape[0]

    @property
    def n_points(self) -> int:
        return self.xs.shape[1]

    @property
    def d(self) -> int:
        return self.xs.shape[2]

    def to(self, device=None, dtype=None) -> Prompts:
        """A copy on `device`, floating tensors cast to `dtype` (ground truth included)."""

        def move(t):
            if not isinstance(t, torch.Tensor):
                return t
            return t.to(device=device, dtype=dtype if (dtype is not None and t.is_floating_point()) else None)

        return Prompts(move(self.xs), move(self.ys), {k: move(v) for k, v in self.params.items()})

    def prefix(self, n: int) -> Prompts:
        """The first n pairs of every prompt (ground truth unchanged)."""
        return Prompts(self.xs[:, :n], self.ys[:, :n], dict(self.params))
