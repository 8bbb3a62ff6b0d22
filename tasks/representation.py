"""In-context learning with a representation (Guo et al. 2023, "How do transformers learn in-context beyond simple
functions?", REFERENCES.md section 10): y = <w, Phi*(x)> + sigma * eps.

Phi*: R^d -> R^D is one fixed random MLP shared by every prompt (its weights come from `phi_seed`, part of the
task's config); w ~ N(0, I_D / D) is fresh per prompt and x ~ N(0, I_d). The Bayes-optimal learner is ridge
regression on Phi*(x) with lambda = sigma^2 D.

Phi*, as we read their sec. 5 (each choice an option): `phi_depth` layers h <- h + act(W h) (residual, default) or
h <- act(W h), W [D, D] (the first [D, d]) with N(0, 2 / fan_in) entries, leaky ReLU with slope 0.01; with
residual connections and d != D the first layer maps x by W alone. The output is scaled by one constant so that
E||Phi*(x)||^2 = D (estimated once on 16384 draws from `phi_seed`), which makes E[y^2] = 1 + sigma^2.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from .checks import check, check_choices, check_counts
from .function_classes import gaussian_xs
from .linear_regression import make_generator
from .prompts import Prompts
from .registry import register


@register("representation")
@dataclass
class Representation:
    d: int = 20
    D: int = 20
    phi_depth: int = 1
    residual: bool = True
    act: Literal["leaky_relu", "relu"] = "leaky_relu"
    noise_std: float = 0.1
    phi_seed: int = 0

    def __post_init__(self):
        check_choices(self)
        check(isinstance(self.d, int) and self.d >= 1, "d", "an integer >= 1", self.d)
        check(isinstance(self.D, int) and self.D >= 1, "D", "an integer >= 1", self.D)
        check(isinstance(self.phi_depth, int) and 1 <= self.phi_depth <= 16, "phi_depth", "an integer from 1 to 16",
              self.phi_depth)
        check(self.noise_std >= 0, "noise_std", ">= 0", self.noise_std)
        g = torch.Generator().manual_seed(int(self.phi_seed))
        dims = [self.d] + [self.D] * self.phi_depth
        self.phi_weights = [torch.randn(o, i, generator=g, dtype=torch.float64) * (2 / i) ** 0.5
                            for i, o in zip(dims[:-1], dims[1:])]  # [D, d], then [D, D]
        probe = torch.randn(16384, self.d, generator=g, dtype=torch.float64)
        self.phi_scale = 1.0
        self.phi_scale = float((self.D / self.phi(probe).pow(2).sum(-1).mean()).sqrt())

    def _act(self, h: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.leaky_relu(h, 0.01) if self.act == "leaky_relu" else torch.relu(h)

    def phi(self, xs: torch.Tensor) -> torch.Tensor:
        """Phi*(x): [..., d] -> [..., D] (float64 weights; computed in xs's dtype)."""
        h = xs
        for W in self.phi_weights:
            W = W.to(device=xs.device, dtype=xs.dtype)
            z = self._act(h @ W.T)
            h = h + z if self.residual and h.shape[-1] == W.shape[0] else z
        return h * self.phi_scale

    def y_variance(self, d_active: int | None = None) -> float:
        """E[y^2] = E||Phi*(x)||^2 / D + sigma^2 = 1 + sigma^2 at full dimension (the zero predictor's error)."""
        return 1.0 + self.noise_std**2

    def bayes_lambda(self) -> float:
        """The ridge penalty of the posterior mean for w ~ N(0, I / D): sigma^2 D (on sum-of-squares ridge)."""
        return self.noise_std**2 * self.D

    def sample(self, batch: int, n_points: int, seed: int | None = None, generator: torch.Generator | None = None,
               d_active: int | None = None, device=None, dtype=torch.float32) -> Prompts:
        """Prompts with params {"w": [B, D], "phi": [B, n, D]} (Phi*(x_i) for every point: the probes' targets)."""
        check_counts(batch=batch, n_points=n_points)
        g = make_generator(seed, generator)
        xs = gaussian_xs(batch, n_points, self.d, g, d_active)
        w = torch.randn(batch, self.D, generator=g, dtype=torch.float64) / self.D**0.5
        phi = self.phi(xs)  # [B, n, D]
        ys = torch.einsum("bnk,bk->bn", phi, w)
        if self.noise_std:
            ys = ys + self.noise_std * torch.randn(batch, n_points, generator=g, dtype=torch.float64)
        return Prompts(xs, ys, {"w": w, "phi": phi}).to(device=device, dtype=dtype)

    def __repr__(self):
        return f"Representation(d={self.d}, D={self.D}, phi_depth={self.phi_depth}, noise_std={self.noise_std})"
