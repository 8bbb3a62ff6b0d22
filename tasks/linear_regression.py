"""In-context linear regression (Garg et al. 2022; Akyurek et al. 2023; von Oswald et al. 2023; Fu et al. 2023).

y = w . x + sigma * eps with x ~ N(0, Sigma) or U(-a, a)^d and w ~ N(0, tau^2 I), optionally s-sparse.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from .checks import check, check_choices, check_counts, check_seed
from .prompts import Prompts
from .registry import register


def make_generator(seed: int | None = None, generator: torch.Generator | None = None) -> torch.Generator:
    """A CPU generator from an explicit seed or generator (one of the two is required)."""
    if generator is not None:
        return generator
    if seed is None:
        raise ValueError("sample() needs a seed or a torch.Generator: randomness is explicit in this lab")
    return torch.Generator().manual_seed(check_seed(seed))


def random_orthogonal(d: int, seed: int) -> torch.Tensor:
    """A Haar-random d x d orthogonal matrix (QR of a Gaussian with the sign fix), float64."""
    g = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r))


@register("linear_regression")
@dataclass
class LinearRegression:
    """Noisy or noiseless linear regression prompts.

    x_cov: "isotropic" (Sigma = I), "skewed" (eigenvalues proportional to 1/i^2, Garg's skewed variant),
    "ill_conditioned" (two levels, 1 and 1/kappa, half the directions each: condition number kappa, Fu).
    Non-isotropic spectra are scaled to trace d, in a random eigenbasis fixed by `basis_seed`.
    x_dist "uniform" draws x ~ U(-x_range, x_range)^d (von Oswald's code uses x_range = 0.5).
    sparsity s > 0 keeps s random coordinates of w per prompt (Garg's sparse variant); under the dimension
    curriculum they are drawn among the d_active active coordinates, as their `SparseLinearRegression(valid_coords)`
    does (all of them when s > d_active), so no prompt's weights land only on zeroed coordinates.
    x_scale multiplies every x (Garg's out-of-distribution "scaled x" prompts; 1 in training).
    """

    d: int = 20
    x_dist: Literal["gaussian", "uniform"] = "gaussian"
    x_cov: Literal["isotropic", "skewed", "ill_conditioned"] = "isotropic"
    kappa: float = 100.0
    x_range: float = 1.0
    w_std: float = 1.0
    sparsity: int = 0
    noise_std: float = 0.0
    basis_seed: int = 0
    x_scale: float = 1.0

    def __post_init__(self):
        check_choices(self)
        check(isinstance(self.d, int) and self.d >= 1, "d", "an integer >= 1", self.d)
        check(self.kappa >= 1, "kappa", ">= 1", self.kappa)
        check(self.x_range > 0, "x_range", "> 0", self.x_range)
        check(self.w_std > 0, "w_std", "> 0", self.w_std)
        check(self.noise_std >= 0, "noise_std", ">= 0", self.noise_std)
        check(self.x_scale > 0, "x_scale", "> 0", self.x_scale)
        check(0 <= self.sparsity <= self.d, "sparsity", f"between 0 (dense) and d = {self.d}", self.sparsity)
        check(self.x_dist == "gaussian" or self.x_cov == "isotropic", "x_cov",
              "isotropic when x_dist is uniform", self.x_cov)
        self._x_sqrt_cov = self._sqrt_covariance()  # [d, d] float64, or None for the identity

    def covariance_eigenvalues(self) -> torch.Tensor:
        """Eigenvalues of Sigma (float64, trace d for the Gaussian variants)."""
        d = self.d
        if self.x_dist == "uniform":
            return torch.full((d,), self.x_range**2 / 3, dtype=torch.float64)
        if self.x_cov == "isotropic":
            return torch.ones(d, dtype=torch.float64)
        if self.x_cov == "skewed":
            lam = 1.0 / torch.arange(1, d + 1, dtype=torch.float64) ** 2
        else:
            lam = torch.ones(d, dtype=torch.float64)
            lam[d - d // 2:] = 1.0 / self.kappa
        return lam * d / lam.sum()

    def covariance(self) -> torch.Tensor:
        """Sigma = U diag(lambda) U^T, float64 [d, d]."""
        if self._x_sqrt_cov is None:
            return torch.diag(self.covariance_eigenvalues())
        return self._x_sqrt_cov @ self._x_sqrt_cov.T

    def _sqrt_covariance(self):
        if self.x_dist == "uniform" or self.x_cov == "isotropic":
            return None
        u = random_orthogonal(self.d, self.basis_seed)
        return u * self.covariance_eigenvalues().sqrt()  # U diag(sqrt(lambda))

    def y_variance(self, d_active: int | None = None) -> float:
        """E[y^2]: the zero predictor's squared error, used to normalise errors (Garg: d). With d_active, x keeps
        only its first d_active coordinates (as `sample` draws it): E||x||^2 is then that block's trace."""
        active = d_active or self.d
        w_frac = min(self.sparsity, active) / active if self.sparsity else 1.0  # the kept share of active coords
        x_power = self.covariance().diagonal()[:active].sum() * self.x_scale**2
        return float(self.w_std**2 * w_frac * x_power + self.noise_std**2)

    def sample(self, batch: int, n_points: int, seed: int | None = None, generator: torch.Generator | None = None,
               d_active: int | None = None, device=None, dtype=torch.float32) -> Prompts:
        """Draw `batch` prompts of `n_points` pairs. Drawn on the CPU, so a seed gives the same prompts everywhere.

        d_active < d zeroes the coordinates of x beyond d_active (Garg's dimension curriculum).
        """
        check_counts(batch=batch, n_points=n_points)
        g = make_generator(seed, generator)
        B, n, d = batch, n_points, self.d
        if self.x_dist == "uniform":
            xs = (torch.rand(B, n, d, generator=g, dtype=torch.float64) * 2 - 1) * self.x_range
        else:
            xs = torch.randn(B, n, d, generator=g, dtype=torch.float64)
            if self._x_sqrt_cov is not None:
                xs = xs @ self._x_sqrt_cov.T
        if self.x_scale != 1.0:
            xs = xs * self.x_scale
        if d_active is not None:
            check(1 <= d_active <= d, "d_active", f"between 1 and d = {d}", d_active)
            xs[..., d_active:] = 0
        w = torch.randn(B, d, generator=g, dtype=torch.float64) * self.w_std
        if self.sparsity:  # s random coordinates among the active ones (their valid_coords)
            active = d_active or d
            keep = torch.rand(B, active, generator=g).argsort(dim=1)[:, : self.sparsity]  # [B, min(s, active)]
            w = w * torch.zeros(B, d, dtype=torch.float64).scatter_(1, keep, 1.0)
        ys = torch.einsum("bnd,bd->bn", xs, w)
        if self.noise_std:
            ys = ys + self.noise_std * torch.randn(B, n, generator=g, dtype=torch.float64)
        return Prompts(xs, ys, {"w": w}).to(device=device, dtype=dtype)

    def __repr__(self):
        return f"LinearRegression(d={self.d}, x={self.x_dist}/{self.x_cov}, noise_std={self.noise_std})"

