"""Reference learners for Boolean functions in context (Bhattamishra et al. 2023), with probes.solve's call shape:
xs [B, N, n] in {-1, +1}, ys [B, N] in {-1, +1} -> scores [B, N], column i from pairs 0..i-1 and x_i; the
predicted label is the sign of the score, and a score of exactly 0 (k-NN or averaging with no examples or a tie)
is an abstention that counts as wrong, as in their accuracy (y == sign(score)). (1-NN / 3-NN and feature-wise
averaging are the regression solvers `knn` and `averaging`, which already have this shape.)
"""
from __future__ import annotations

import functools

import torch

from tasks.boolean import FORCE, evaluate

from .prefix_nets import train_prefix_nets


def null(xs, ys):
    """Their null classifier: always -1."""
    return -torch.ones_like(ys)


def majority(xs, ys):
    """The most frequent label among the examples so far (no examples, or a tie: -1)."""
    counts = torch.cumsum(ys, 1) - ys  # sum of the labels before i
    return torch.where(counts > 0, 1.0, -1.0).to(ys.dtype)


def elimination(xs, ys, kind: str = "conjunction"):
    """Literal elimination (Valiant 1984), the exact learner for conjunctions (disjunctions, dually).

    Conjunction: start from all 2n literals; each positive example removes the literals it falsifies; predict
    the conjunction of those left (no positive yet: all literals, contradictory, so -1). Disjunction: each
    negative example removes the literals it satisfies; predict their disjunction (no negative yet: +1).
    """
    if kind not in ("conjunction", "disjunction"):
        raise ValueError(f"elimination kind must be conjunction or disjunction; got {kind!r}")
    B, N, n = xs.shape
    teach = ys > 0 if kind == "conjunction" else ys < 0  # the examples that remove literals
    sign = 1.0 if kind == "conjunction" else -1.0  # literal x_j = +1 kept while every such example has x_j = sign
    keep_pos = ((xs == sign) | ~teach[..., None]).to(torch.int64)  # [B, N, n]
    keep_neg = ((xs == -sign) | ~teach[..., None]).to(torch.int64)

    def shift(t):  # product over j < i
        return torch.cat([torch.ones_like(t[:, :1]), t.cumprod(1)[:, :-1]], 1)

    alive_pos, alive_neg = shift(keep_pos).bool(), shift(keep_neg).bool()  # literal "x_j" / "not x_j" alive
    if kind == "conjunction":
        ok = ((xs == 1) | ~alive_pos) & ((xs == -1) | ~alive_neg)
        return torch.where(ok.all(-1), 1.0, -1.0).to(xs.dtype)
    any_true = ((xs == 1) & alive_pos) | ((xs == -1) & alive_neg)
    return torch.where(any_true.any(-1), 1.0, -1.0).to(xs.dtype)


def gf2(xs, ys):
    """Gaussian elimination over GF(2), the exact learner for parities: bits b = (1 - x)/2, label bit c =
    (1 - y)/2, c = <s, b> mod 2. Examples are added one at a time to a reduced row-echelon basis; the prediction
    for x_i uses the solution with every free variable 0 (unique, hence exact, once the examples span)."""
    B, N, n = xs.shape
    bits = ((1 - xs) / 2).round().to(torch.uint8)
    labels = ((1 - ys) / 2).round().to(torch.uint8)
    rows = torch.cat([bits, labels[..., None]], -1)  # [B, N, n + 1]
    basis = torch.zeros(B, n, n + 1, dtype=torch.uint8, device=xs.device)  # basis[b, p]: the row pivoting at p
    has = torch.zeros(B, n, dtype=torch.bool, device=xs.device)
    out = torch.empty(B, N, dtype=xs.dtype, device=xs.device)
    idx = torch.arange(B, device=xs.device)
    for i in range(N):
        solution = basis[:, :, n] * has  # s_p = the pivot row's label bit; free variables 0
        out[:, i] = 1.0 - 2.0 * ((bits[:, i] * solution).sum(-1) % 2).to(xs.dtype)
        r = rows[:, i].clone()
        for p in range(n):  # reduce by the existing pivots
            hit = has[:, p] & (r[:, p] == 1)
            r = torch.where(hit[:, None], r ^ basis[:, p], r)
        nonzero = (r[:, :n] != 0).any(-1)
        pivot = torch.where(nonzero, r[:, :n].argmax(-1), torch.zeros_like(idx))  # first set bit
        for p in range(n):  # keep the basis reduced: clear the new pivot column from the other rows
            hit = nonzero & has[:, p] & (basis[idx, p, pivot] == 1)
            basis[:, p] = torch.where(hit[:, None], basis[:, p] ^ r, basis[:, p])
        basis[idx[nonzero], pivot[nonzero]] = r[nonzero]
        has[idx[nonzero], pivot[nonzero]] = True
    return out


def mlp(xs, ys, hidden: int = 32, steps: int = 200, lr: float = 0.03, seed: int = 0, last_only: bool = False):
    """A small net trained per prompt and prefix (Bhattamishra's per-prompt baseline): for every (prompt, i) a
    one-hidden-layer tanh MLP fitted by full-batch Adam on BCE to pairs 0..i-1, all trained at once as one
    batched computation; returns its logit for x_i (column 0: 0). last_only fits only the last prefix's net (N times
    less work) and leaves the other columns 0 (abstentions)."""
    B, N, n = xs.shape
    at = torch.tensor([N - 1]) if last_only else torch.arange(N)
    m = len(at)
    g = torch.Generator().manual_seed(seed)
    params = [torch.randn(B, m, n, hidden, generator=g, dtype=torch.float64) / n ** 0.5,  # W1
              torch.zeros(B, m, 1, hidden, dtype=torch.float64),  # b1
              torch.randn(B, m, hidden, generator=g, dtype=torch.float64) / hidden ** 0.5,  # w2
              torch.zeros(B, m, 1, dtype=torch.float64)]  # b2
    bce = functools.partial(torch.nn.functional.binary_cross_entropy_with_logits, reduction="none")
    fitted = train_prefix_nets(xs.double(), (ys.double() > 0).double(), [q.to(xs.device) for q in params], steps, lr,
                               torch.tanh, bce, at=at)  # [B, m]: net k on x_{at[k]}
    out = torch.zeros(B, N, dtype=torch.float64, device=xs.device)
    out[:, at] = fitted
    out[:, 0] = 0.0
    return out.to(xs.dtype)


def has_query_prior(fn: str) -> bool:
    """Whether class fn draws its inputs independently of its function, so that `query_only` applies."""
    return fn not in FORCE and fn != "nearest_neighbour"


def query_only(task, xs: torch.Tensor, n_functions: int = 4096, seed: int = 0, chunk: int = 256) -> torch.Tensor:
    """The best guess from the query alone, ignoring every in-context example: scores [...] = E_f[f(x)] over
    n_functions fresh functions of the task's class (Monte Carlo), for queries xs [..., n]. A model at this level
    learned the class's prior over inputs, not in context. Not for classes whose inputs are drawn to fit the function
    (forced examples) or whose labels depend on the other examples (nearest neighbour)."""
    if not has_query_prior(task.fn):
        raise ValueError(f"query_only needs inputs drawn independently of the function; {task.fn} draws them to fit it")
    flat = xs.reshape(-1, xs.shape[-1]).float()  # [M, n]
    total = torch.zeros(flat.shape[0], dtype=torch.float64)
    g = torch.Generator().manual_seed(seed)
    for start in range(0, n_functions, chunk):
        F = min(chunk, n_functions - start)
        params = task.draw_functions(F, generator=g)
        total += evaluate(task.fn, params, flat.expand(F, *flat.shape)).double().sum(0)  # [M]
    return (total / n_functions).reshape(xs.shape[:-1])


def accuracy(scores: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
    """Per-example correctness [B, N] (1 or 0) of scores against labels in {-1, +1}: sign(score) == y, so a score of
    0 is wrong (Bhattamishra et al.'s accuracy)."""
    return (torch.sign(scores) == torch.sign(ys)).to(torch.float64)


def all_prefix_mean(curve_mean) -> float:
    """Their reported scalar: accuracy averaged over every prefix position k = 0..N-1 of a per-position curve."""
    return float(sum(curve_mean) / len(curve_mean))


LEARNERS = {"null": null, "majority": majority, "elimination": elimination, "gf2": gf2, "mlp": mlp}
