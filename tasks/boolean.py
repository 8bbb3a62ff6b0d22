"""Boolean functions in context (Bhattamishra et al. 2023): x in {-1, +1}^n, a fresh function per prompt, labels
y in {-1, +1}, in Garg's interleaved format.

Every class follows their code (satwik77/incontext-bool, src/bool_tasks.py; REFERENCES.md section 5):
- conjunctions and disjunctions: each variable a positive / negated / absent literal with probability 0.15 / 0.15 /
  0.7; an example is forced to satisfy the conjunction, or violate the disjunction, with probability 0.3;
- sparse disjunctions: `literals` (4) positive literals; an example is forced to violate it with probability 0.3;
- 3-CNF and 3-DNF: `clauses` (3) clauses / terms, each variable a positive / negated literal of each with
  probability 0.1 / 0.1 (a clause may be empty: an empty CNF clause is false, an empty DNF term true, so such
  prompts carry one label); one clause / term is chosen per prompt, and an example is forced to violate it (CNF,
  probability 0.3) or satisfy it (DNF, probability 0.35);
- majority over a random subset (each variable in it with probability 0.3), +1 when more than half of it is +1
  (a tie, or the empty subset, is -1);
- 0-1 threshold functions: weights 0 / +1 / -1 with probability 0.7 / 0.15 / 0.15, threshold uniform in
  {-2.5, -1.5, ..., 2.5}, y = sign(w.x - threshold);
- integer halfspaces (weights uniform in -3..3, y = sign(w.x - 0.5)); parity over a uniformly random subset;
  sparse parity (`k` of n bits); nearest neighbour (the first `nn_random` labels are random, every later label
  copies its most similar earlier point's).

Teaching sequences (`teaching=True`, placed first in the prompt) for conjunctions and disjunctions (two
examples that differ on every irrelevant bit, then one per relevant literal with that literal flipped: the
classical teaching set, after which literal elimination is exact) and sparse parity (the all-ones input, then n
inputs with one bit flipped: Gaussian elimination over GF(2) is exact after them).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from .checks import check, check_choices, check_counts
from .linear_regression import make_generator
from .prompts import Prompts
from .registry import register

CLASSES = ("conjunction", "disjunction", "sparse_disjunction", "cnf", "dnf", "majority", "threshold", "halfspace",
           "parity", "sparse_parity", "nearest_neighbour")
TEACHABLE = ("conjunction", "disjunction", "sparse_parity")
FORCE = {"conjunction": 0.3, "disjunction": 0.3, "sparse_disjunction": 0.3, "cnf": 0.3, "dnf": 0.35}
CLAUSE_LITERAL = 0.1  # CNF / DNF: the probability that a variable is a positive (and, again, a negated) literal


@register("boolean")
@dataclass
class BooleanFunctions:
    n: int = 28
    fn: Literal[CLASSES] = "conjunction"
    k: int = 2  # sparse parity: relevant bits
    literals: int = 4  # sparse disjunction
    clauses: int = 3  # 3-CNF / 3-DNF
    nn_random: int = 5  # nearest neighbour: labels drawn at random before copying starts
    teaching: bool = False

    metric = "accuracy"
    objective = "bce"

    def __post_init__(self):
        check_choices(self)
        check(isinstance(self.n, int) and self.n >= 3, "n", "an integer >= 3", self.n)
        check(1 <= self.k <= self.n, "k", f"between 1 and n = {self.n}", self.k)
        check(1 <= self.literals <= self.n, "literals", f"between 1 and n = {self.n}", self.literals)
        check(self.clauses >= 1, "clauses", ">= 1", self.clauses)
        check(self.nn_random >= 1, "nn_random", ">= 1", self.nn_random)
        check(not self.teaching or self.fn in TEACHABLE, "teaching",
              f"false unless fn is one of {', '.join(TEACHABLE)}", self.teaching)

    @property
    def d(self) -> int:
        """The token size the formats see (x in {-1, +1}^n)."""
        return self.n

    def teaching_length(self) -> int:
        """The longest teaching prefix this task can put first in a prompt."""
        return self.n + 1 if self.fn == "sparse_parity" else self.n + 2

    # ---- sampling ------------------------------------------------------------------------------------------
    def sample(self, batch: int, n_points: int, seed: int | None = None, generator: torch.Generator | None = None,
               d_active: int | None = None, device=None, dtype=torch.float32) -> Prompts:
        """`batch` prompts of `n_points` labelled examples; drawn on the CPU, so a seed gives the same prompts on
        every device. params hold the ground truth each prompt's labels were computed from."""
        check_counts(batch=batch, n_points=n_points)
        check(d_active is None, "d_active", "None (no dimension curriculum for Boolean tasks)", d_active)
        if self.teaching:
            check(n_points >= self.teaching_length(), "n_points",
                  f">= {self.teaching_length()} to hold a teaching sequence at n = {self.n}", n_points)
        g = make_generator(seed, generator)
        B, N, n = batch, n_points, self.n
        xs = torch.randint(0, 2, (B, N, n), generator=g).to(torch.float32) * 2 - 1
        params = self.draw_functions(B, generator=g)
        if self.fn in FORCE:
            xs = self._force(g, xs, params)
        if self.teaching:
            xs = self._with_teaching_prefix(xs, params)
        ys = nearest_neighbour_labels(g, xs, self.nn_random) if self.fn == "nearest_neighbour" \
            else evaluate(self.fn, params, xs)
        return Prompts(xs, ys, params).to(device=device, dtype=dtype)

    def draw_functions(self, batch: int, seed: int | None = None, generator: torch.Generator | None = None) -> dict:
        """`batch` functions of the class from its prior: the params `evaluate` computes labels from."""
        return getattr(self, f"_draw_{self.fn}")(make_generator(seed, generator), batch)

    def _draw_conjunction(self, g, B):
        return {"literals": _signs(torch.rand(B, self.n, generator=g), 0.15)}  # +1 x_i, -1 not x_i

    _draw_disjunction = _draw_conjunction

    def _draw_sparse_disjunction(self, g, B):
        return {"literals": _random_literals(g, B, self.n, self.literals).abs()}  # positive literals only

    def _draw_cnf(self, g, B):
        return {"clauses": _signs(torch.rand(B, self.clauses, self.n, generator=g), CLAUSE_LITERAL),
                "forced": torch.randint(0, self.clauses, (B,), generator=g)}  # the clause the forcing uses

    _draw_dnf = _draw_cnf

    def _draw_parity(self, g, B):  # a uniformly random subset
        return {"subset": (torch.rand(B, self.n, generator=g) < 0.5).float()}

    def _draw_majority(self, g, B):
        return {"subset": (torch.rand(B, self.n, generator=g) < 0.3).float()}

    def _draw_nearest_neighbour(self, g, B):
        return {}

    def _draw_sparse_parity(self, g, B):
        return {"subset": _random_literals(g, B, self.n, self.k).abs()}

    def _draw_threshold(self, g, B):
        return {"weights": _signs(torch.rand(B, self.n, generator=g), 0.15),
                "threshold": torch.randint(-3, 3, (B,), generator=g).float() + 0.5}  # -2.5 .. 2.5

    def _draw_halfspace(self, g, B):
        return {"weights": torch.randint(-3, 4, (B, self.n), generator=g).float(),
                "threshold": torch.full((B,), 0.5)}

    def _force(self, g, xs, params):
        """Bhattamishra's balancing: with probability FORCE[fn] an example is made to satisfy (conjunction, DNF)
        or violate (disjunctions, CNF) its function."""
        B, N, n = xs.shape
        forced = torch.rand(B, N, generator=g) < FORCE[self.fn]  # [B, N]
        if self.fn in ("cnf", "dnf"):  # one clause / term per prompt, as in their code
            lits = params["clauses"][torch.arange(B), params["forced"]][:, None, :].expand(B, N, n)
        else:
            lits = params["literals"][:, None, :].expand(B, N, n)
        sign = 1.0 if self.fn in ("conjunction", "dnf") else -1.0  # satisfy its literals, or falsify them
        target = torch.where(lits != 0, sign * lits, xs)
        return torch.where(forced[..., None], target, xs)

    def _with_teaching_prefix(self, xs, params):
        """The teaching examples first (a variable number per prompt), then the random examples."""
        B, N, n = xs.shape
        if self.fn == "sparse_parity":
            ones = torch.ones(B, 1, n)
            flips = 1 - 2 * torch.eye(n).expand(B, n, n)  # row i: all ones but bit i
            teach, length = torch.cat([ones, flips], 1), torch.full((B,), n + 1)
        else:
            lits = params["literals"]  # conjunction: make it true; disjunction: make it false
            sign = 1.0 if self.fn == "conjunction" else -1.0
            first = torch.where(lits != 0, sign * lits, xs[:, 0])  # [B, n]
            second = torch.where(lits != 0, first, -first)  # every irrelevant bit flipped
            flips = first[:, None, :] * (1 - 2 * torch.eye(n))  # row i: bit i flipped
            relevant = lits != 0
            order = torch.argsort((~relevant).float(), dim=1, stable=True)  # relevant bits first
            flips = torch.gather(flips, 1, order[..., None].expand(B, n, n))
            teach = torch.cat([first[:, None], second[:, None], flips], 1)  # [B, n + 2, n]
            length = 2 + relevant.sum(1)
        T = teach.shape[1]
        pos = torch.arange(N)[None, :]  # [1, N]
        from_teach = pos < length[:, None]
        rand_idx = (pos - length[:, None]).clamp(min=0)
        teach_idx = pos.clamp(max=T - 1).expand(B, N)
        return torch.where(from_teach[..., None], torch.gather(teach, 1, teach_idx[..., None].expand(B, N, n)),
                           torch.gather(xs, 1, rand_idx[..., None].expand(B, N, n)))

    def __repr__(self):
        return f"BooleanFunctions(fn={self.fn}, n={self.n}{', teaching' if self.teaching else ''})"


def _signs(u: torch.Tensor, p: float) -> torch.Tensor:
    """+1 where the uniform draw u < p, -1 where p <= u < 2p, else 0 (their np.random.choice([0, 1, -1]))."""
    return torch.where(u < p, 1.0, torch.where(u < 2 * p, -1.0, 0.0))


def _random_literals(g, B, n, count):
    """[B, n] with `count` random variables as literals of random sign (+-1), the rest 0."""
    chosen = torch.rand(B, n, generator=g).argsort(1)[:, :count]
    signs = torch.randint(0, 2, (B, count), generator=g).float() * 2 - 1
    return torch.zeros(B, n).scatter_(1, chosen, signs)


def _pm(b: torch.Tensor) -> torch.Tensor:
    return b.float() * 2 - 1


def evaluate(fn: str, params: dict, xs: torch.Tensor) -> torch.Tensor:
    """Labels [B, N] in {-1, +1} of function class `fn` with ground truth `params` on xs [B, N, n]."""
    if fn in ("conjunction", "disjunction", "sparse_disjunction"):
        lits = params["literals"][:, None, :]
        true = xs * lits == 1  # literal satisfied
        if fn == "conjunction":
            return _pm((true | (lits == 0)).all(-1))
        return _pm(true.any(-1))
    if fn in ("cnf", "dnf"):
        lits = params["clauses"][:, None]  # [B, 1, C, n]
        true = xs[:, :, None, :] * lits == 1
        if fn == "cnf":
            return _pm(true.any(-1).all(-1))
        return _pm((true | (lits == 0)).all(-1).any(-1))
    if fn == "majority":  # sign(sum - 0.5): ties and the empty subset are -1
        return _pm((xs * params["subset"][:, None]).sum(-1) > 0)
    if fn in ("threshold", "halfspace"):
        return _pm((xs * params["weights"][:, None]).sum(-1) - params["threshold"][:, None] > 0)
    if fn in ("parity", "sparse_parity"):
        s = params["subset"][:, None]
        return torch.where(s == 1, xs, torch.ones_like(xs)).prod(-1)
    raise ValueError(f"no closed-form labels for {fn!r}")


def nearest_neighbour_labels(g, xs: torch.Tensor, n_random: int) -> torch.Tensor:
    """The first n_random labels at random; label i copies that of the earlier point most similar to x_i
    (largest inner product, the earliest on ties)."""
    B, N, _ = xs.shape
    ys = torch.randint(0, 2, (B, N), generator=g).float() * 2 - 1
    sim = xs @ xs.transpose(1, 2)  # [B, N, N]
    for i in range(n_random, N):
        j = sim[:, i, :i].argmax(1)  # torch.argmax returns the first maximum
        ys[:, i] = ys[torch.arange(B), j]
    return ys
