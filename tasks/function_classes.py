"""Garg et al. 2022's nonlinear function classes (their sec. 4): depth-4 decision trees and 2-layer ReLU networks,
each drawn fresh per prompt, with x ~ N(0, I_d) and the same interleaved prompts as linear regression.

Both follow their code (dtsip/in-context-learning, src/tasks.py): a tree is a full binary tree stored as an array
(node n has children 2n + 1, 2n + 2), every inner node tests one coordinate drawn uniformly from all d, x_f > 0 goes
right, leaf values N(0, 1); a network is y = sqrt(2 / h) relu(x W1) W2 with W1, W2 standard normal, so
E[y^2] = E||x||^2.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .checks import check, check_counts
from .linear_regression import make_generator
from .prompts import Prompts
from .registry import register


def gaussian_xs(B: int, n: int, d: int, g: torch.Generator, d_active: int | None) -> torch.Tensor:
    """x ~ N(0, I_d) [B, n, d] in float64; coordinates from d_active on zeroed (Garg's dimension curriculum)."""
    xs = torch.randn(B, n, d, generator=g, dtype=torch.float64)
    if d_active is not None:
        check(1 <= d_active <= d, "d_active", f"between 1 and d = {d}", d_active)
        xs[..., d_active:] = 0
    return xs


def tree_walk(xs: torch.Tensor, features: torch.Tensor, leaves: torch.Tensor, depth: int) -> torch.Tensor:
    """Evaluate one tree per prompt on its points: xs [B, n, d], features / leaves [B, 2^(depth+1) - 1] -> [B, n]."""
    node = torch.zeros(xs.shape[:2], dtype=torch.long, device=xs.device)  # [B, n], the root
    for _ in range(depth):
        f = torch.gather(features, 1, node)  # [B, n], the coordinate each point's node tests
        right = torch.gather(xs, 2, f.unsqueeze(-1)).squeeze(-1) > 0
        node = 2 * node + 1 + right.long()
    return torch.gather(leaves, 1, node)


@register("decision_tree")
@dataclass
class DecisionTree:
    """y = T(x) for a random depth-`depth` decision tree T per prompt (Garg et al. sec. 4). E[y^2] = leaf_std^2."""

    d: int = 20
    depth: int = 4
    leaf_std: float = 1.0

    def __post_init__(self):
        check(isinstance(self.d, int) and self.d >= 1, "d", "an integer >= 1", self.d)
        check(isinstance(self.depth, int) and 1 <= self.depth <= 12, "depth", "an integer from 1 to 12", self.depth)
        check(self.leaf_std > 0, "leaf_std", "> 0", self.leaf_std)

    def y_variance(self, d_active: int | None = None) -> float:
        return self.leaf_std**2

    def sample(self, batch: int, n_points: int, seed: int | None = None, generator: torch.Generator | None = None,
               d_active: int | None = None, device=None, dtype=torch.float32) -> Prompts:
        """Prompts with params {"features": [B, nodes] long, "leaves": [B, nodes]} (array-stored trees; the entries
        of inner nodes in `leaves` and of leaves in `features` are unused, as in their code)."""
        check_counts(batch=batch, n_points=n_points)
        g = make_generator(seed, generator)
        xs = gaussian_xs(batch, n_points, self.d, g, d_active)
        nodes = 2 ** (self.depth + 1) - 1
        features = torch.randint(0, self.d, (batch, nodes), generator=g)
        leaves = torch.randn(batch, nodes, generator=g, dtype=torch.float64) * self.leaf_std
        ys = tree_walk(xs, features, leaves, self.depth)
        return Prompts(xs, ys, {"features": features, "leaves": leaves}).to(device=device, dtype=dtype)

    def __repr__(self):
        return f"DecisionTree(d={self.d}, depth={self.depth})"


@register("relu_net")
@dataclass
class ReluNet:
    """y = sqrt(2 / hidden) relu(x W1) W2, W1 [d, hidden] and W2 [hidden] standard normal per prompt (Garg et al.
    sec. 4, width 100); the scale makes E[y^2] = E||x||^2 = d, as for linear regression."""

    d: int = 20
    hidden: int = 100

    def __post_init__(self):
        check(isinstance(self.d, int) and self.d >= 1, "d", "an integer >= 1", self.d)
        check(isinstance(self.hidden, int) and self.hidden >= 1, "hidden", "an integer >= 1", self.hidden)

    def y_variance(self, d_active: int | None = None) -> float:
        return float(d_active or self.d)

    def sample(self, batch: int, n_points: int, seed: int | None = None, generator: torch.Generator | None = None,
               d_active: int | None = None, device=None, dtype=torch.float32) -> Prompts:
        """Prompts with params {"W1": [B, d, hidden], "W2": [B, hidden]}."""
        check_counts(batch=batch, n_points=n_points)
        g = make_generator(seed, generator)
        xs = gaussian_xs(batch, n_points, self.d, g, d_active)
        W1 = torch.randn(batch, self.d, self.hidden, generator=g, dtype=torch.float64)
        W2 = torch.randn(batch, self.hidden, generator=g, dtype=torch.float64)
        ys = (2 / self.hidden) ** 0.5 * torch.einsum("bnh,bh->bn", torch.relu(xs @ W1), W2)
        return Prompts(xs, ys, {"W1": W1, "W2": W2}).to(device=device, dtype=dtype)

    def __repr__(self):
        return f"ReluNet(d={self.d}, hidden={self.hidden})"
