"""Next-token prediction with common and class-specific tokens: the data model of Tian et al. 2023 ("Scan and Snap").

A sequence is T-1 context tokens, then a fixed query token m; the token to predict is one of K classes n. Given n,
the context tokens are drawn i.i.d. from P(l | m, n): `common_share` of the mass on common tokens shared by every
class (uniformly), the rest on the class's own distinct tokens with probabilities proportional to
distinct_decay^j, j = 0, 1, ... (so later distinct tokens are rarer). Vocabulary: common tokens 0..C-1, then class
n's distinct tokens C + n D .. C + n D + D - 1, then the query token (the last id). Classes are uniform.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .checks import check, check_seed


@dataclass
class ScanSnapBatch:
    tokens: torch.Tensor  # [B, T] int64: T-1 context tokens, then the query token
    next_token: torch.Tensor  # [B] int64 in 0..K-1: the class that generated the context


@dataclass
class ScanSnap:
    """K classes, C common tokens, D distinct tokens per class, T-1 context tokens."""

    n_classes: int = 4
    n_common: int = 4
    n_distinct: int = 4
    context: int = 32
    common_share: float = 0.5
    distinct_decay: float = 0.5

    def __post_init__(self):
        for field, low in (("n_classes", 2), ("n_common", 1), ("n_distinct", 1), ("context", 1)):
            value = getattr(self, field)
            check(isinstance(value, int) and value >= low, field, f"an integer >= {low}", value)
        check(0 < self.common_share < 1, "common_share", "in (0, 1)", self.common_share)
        check(0 < self.distinct_decay <= 1, "distinct_decay", "in (0, 1]", self.distinct_decay)

    @property
    def vocab_size(self) -> int:
        return self.n_common + self.n_classes * self.n_distinct + 1

    @property
    def query_token(self) -> int:
        return self.vocab_size - 1

    def distinct_tokens(self, n: int) -> list[int]:
        """Class n's distinct tokens, most frequent first."""
        start = self.n_common + n * self.n_distinct
        return list(range(start, start + self.n_distinct))

    def conditional(self) -> torch.Tensor:
        """P(l | m, n) for every class n and token l.  # [K, M] float64, rows sum to 1"""
        P = torch.zeros(self.n_classes, self.vocab_size, dtype=torch.float64)
        P[:, : self.n_common] = self.common_share / self.n_common
        w = self.distinct_decay ** torch.arange(self.n_distinct, dtype=torch.float64)
        for n in range(self.n_classes):
            P[n, self.distinct_tokens(n)] = (1 - self.common_share) * w / w.sum()
        return P

    def sample(self, batch: int, seed: int | None = None, generator: torch.Generator | None = None,
               next_token: torch.Tensor | None = None) -> ScanSnapBatch:
        """`batch` sequences (classes uniform, or the given next_token [batch]), from a seed or a generator."""
        if generator is None:
            check(seed is not None, "seed", "given (or a torch.Generator): randomness is explicit", seed)
            generator = torch.Generator().manual_seed(check_seed(seed))
        if next_token is None:
            next_token = torch.randint(0, self.n_classes, (batch,), generator=generator)
        context = torch.multinomial(self.conditional()[next_token], self.context, replacement=True,
                                    generator=generator)  # [B, T-1]
        query = torch.full((batch, 1), self.query_token, dtype=torch.int64)
        return ScanSnapBatch(torch.cat([context, query], dim=1), next_token)
