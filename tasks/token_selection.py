"""Token selection by one attention layer: the data model of Tarzanagh et al. 2023 ("Transformers as SVMs").

Each problem holds n samples (X_i, Y_i, z_i): T unit-norm tokens X_i [T, d], a unit-norm query z_i [d] and a label
Y_i = +-1, plus one fixed unit-norm head v [d] per problem. The model f(X) = v^T X^T softmax(X W z) gains most by
attending to the token with the largest score gamma_it = Y_i v^T x_it (the optimal token). Everything is float64.
Problem k of a batch is drawn from its own generator seeded with `seeds[k]`, so a problem does not depend on the
batch it is drawn in.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .checks import check


@dataclass
class SelectionProblems:
    """S independent problems of n samples each (float64)."""

    X: torch.Tensor  # [S, n, T, d] unit-norm tokens
    z: torch.Tensor  # [S, n, d] unit-norm queries
    v: torch.Tensor  # [S, d] the fixed unit-norm head
    y: torch.Tensor  # [S, n] labels +-1
    seeds: list

    @property
    def scores(self) -> torch.Tensor:
        """gamma_it = Y_i v^T x_it (Tarzanagh et al., Def. 1).  # [S, n, T]"""
        return self.y[..., None] * torch.einsum("sntd,sd->snt", self.X, self.v)

    @property
    def optimal(self) -> torch.Tensor:
        """The globally optimal token per sample: argmax_t gamma_it.  # [S, n]"""
        return self.scores.argmax(-1)

    def __len__(self) -> int:
        return self.X.shape[0]

    def __getitem__(self, k: int) -> SelectionProblems:
        """Problem k alone, as a batch of one."""
        sl = slice(k, k + 1)
        return SelectionProblems(self.X[sl], self.z[sl], self.v[sl], self.y[sl], self.seeds[sl])


@dataclass
class TokenSelection:
    """n samples of T tokens in R^d (REFERENCES.md section 7: n = 6, T = 8, d = 10)."""

    n: int = 6
    T: int = 8
    d: int = 10

    def __post_init__(self):
        for field in ("n", "T", "d"):
            value = getattr(self, field)
            check(isinstance(value, int) and value >= (2 if field == "T" else 1), field,
                  "an integer >= 2" if field == "T" else "an integer >= 1", value)

    def sample(self, seeds) -> SelectionProblems:
        """One problem per seed (an int gives one problem): unit-norm Gaussian tokens, queries and head, labels +-1."""
        seeds = [int(seeds)] if isinstance(seeds, int) else [int(s) for s in seeds]
        check(len(seeds) >= 1, "seeds", "one seed or a non-empty list of seeds", seeds)
        parts = [self._one(s) for s in seeds]
        X, z, v, y = (torch.stack(p) for p in zip(*parts))
        return SelectionProblems(X, z, v, y, seeds)

    def _one(self, seed: int):
        g = torch.Generator().manual_seed(seed)
        X = _unit(torch.randn(self.n, self.T, self.d, generator=g, dtype=torch.float64))
        z = _unit(torch.randn(self.n, self.d, generator=g, dtype=torch.float64))
        v = _unit(torch.randn(self.d, generator=g, dtype=torch.float64))
        y = torch.randint(0, 2, (self.n,), generator=g).to(torch.float64) * 2 - 1
        return X, z, v, y


def _unit(a: torch.Tensor) -> torch.Tensor:
    return a / a.norm(dim=-1, keepdim=True)
