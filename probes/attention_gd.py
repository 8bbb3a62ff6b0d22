"""Gradient descent on the one-layer attention model of Tarzanagh et al. 2023, many problems at once.

f(X) = v^T X^T softmax(X W z) with v fixed; loss L(W) = (1/n) sum_i l(Y_i f(X_i)) (their eq. 1), l logistic
(default) or linear (l(u) = -u). W is trained directly, or as W = K Q^T. Normalised GD (their experiments):
W <- W - lr grad / ||grad||_F; for (K, Q) each factor is normalised on its own, and the loss carries their
vanishing penalty lam (||K||_F^2 + ||Q||_F^2) with lam = machine epsilon (TFasSVM README). Every problem of a batch
is its own model: the leading dimension S of every tensor is the problem.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from tasks.token_selection import SelectionProblems

from .svm import InfeasibleSelection, att_svm

PARAMS = ("W", "KQ")
LOSSES = ("logistic", "linear")
KQ_PENALTY = torch.finfo(torch.float64).eps
LR = 0.1  # normalised GD step (their experiments)
PLAIN_LR = 10.0  # plain GD, for comparison: gradients shrink as the softmax saturates, so a large step


def token_values(P: SelectionProblems) -> torch.Tensor:
    """h = X v, each token's value [S, n, T] (fixed: v is not trained)."""
    return torch.einsum("sntd,sd->snt", P.X, P.v)


def attention(P: SelectionProblems, W: torch.Tensor, h: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
    """The model's outputs f [S, n] and softmax attention s [S, n, T] for W [S, d, d]; h: `token_values(P)` if
    already computed."""
    logits = torch.einsum("sntd,sde,sne->snt", P.X, W, P.z)
    s = torch.softmax(logits, dim=-1)
    f = ((token_values(P) if h is None else h) * s).sum(-1)
    return f, s


def loss(P: SelectionProblems, W: torch.Tensor, kind: str = "logistic") -> torch.Tensor:
    """(1/n) sum_i l(Y_i f(X_i)) per problem.  # [S]"""
    return _loss_of_outputs(P, attention(P, W)[0], kind)


def _loss_of_outputs(P: SelectionProblems, f: torch.Tensor, kind: str) -> torch.Tensor:
    margin = P.y * f
    per_sample = torch.nn.functional.softplus(-margin) if kind == "logistic" else -margin
    return per_sample.mean(-1)


def gradient(P: SelectionProblems, W: torch.Tensor, kind: str = "logistic", at: tuple | None = None) -> torch.Tensor:
    """dL/dW in closed form: (1/n) sum_i l'(Y_i f_i) Y_i X_i^T (diag(s_i) - s_i s_i^T) X_i v z_i^T.  # [S, d, d]
    at: (f, s, h) of this W when already computed (`train` computes them once per iterate)."""
    h = token_values(P) if at is None else at[2]  # [S, n, T] value of each token
    f, s = attention(P, W, h) if at is None else at[:2]
    # (diag(s) - s s^T) h = s_t (h_t - f) with h_t - f = sum_u s_u (h_t - h_u): summed this way it stays accurate
    # when one token holds nearly all the mass (h_top - f is then far below h's rounding error)
    g = s * torch.einsum("snu,sntu->snt", s, h[..., :, None] - h[..., None, :])  # [S, n, T]
    dl = -torch.sigmoid(-P.y * f) if kind == "logistic" else -torch.ones_like(f)
    c = dl * P.y / f.shape[-1]  # [S, n]
    return torch.einsum("sn,snt,sntd,sne->sde", c, g, P.X, P.z)


@dataclass
class Trajectory:
    """What training recorded: index 0 is the initialisation, index k the iterate after k steps."""

    W: torch.Tensor  # [S, d, d] the final W (K Q^T for the (K, Q) model)
    softmax: torch.Tensor  # [S, n, T] the final attention
    loss: torch.Tensor  # [steps+1, S]
    norm: torch.Tensor  # [steps+1, S] ||W||_F
    corr: dict = field(default_factory=dict)  # name -> [steps+1, S] <W_k, D> / (||W_k|| ||D||) per target D
    mass: dict = field(default_factory=dict)  # name -> [steps+1, S, n] softmax probability on given tokens

    @property
    def selected(self) -> torch.Tensor:
        """The token each sample attends to most at the end.  # [S, n]"""
        return self.softmax.argmax(-1)


def train(P: SelectionProblems, param: str = "W", steps: int = 2000, lr: float = LR, normalized: bool = True,
          loss_kind: str = "logistic", init_scale: float = 0.01, seed: int = 0, targets: dict | None = None,
          tokens: dict | None = None) -> Trajectory:
    """Train every problem's W (or K, Q) by (normalised) gradient descent from a small random start.

    targets: name -> [S, d, d] directions whose correlation with W is recorded at every step (an SVM solution);
    tokens: name -> [S, n] token indices whose softmax probability is recorded at every step.
    """
    _check(param, PARAMS, "param")
    _check(loss_kind, LOSSES, "loss_kind")
    S, d = P.v.shape
    g = torch.Generator().manual_seed(seed)
    K = init_scale * torch.randn(S, d, d, generator=g, dtype=torch.float64)
    Q = init_scale * torch.randn(S, d, d, generator=g, dtype=torch.float64)
    W = K if param == "W" else K @ Q.transpose(1, 2)
    targets, tokens = targets or {}, tokens or {}
    rec = {"loss": [], "norm": []} | {f"corr/{k}": [] for k in targets} | {f"mass/{k}": [] for k in tokens}

    h = token_values(P)

    def record(W) -> tuple:  # each iterate's outputs and attention are computed once, here: (f, s, h) for gradient
        f, s = attention(P, W, h)
        rec["loss"].append(_loss_of_outputs(P, f, loss_kind))
        rec["norm"].append(W.flatten(1).norm(dim=1))
        for name, D in targets.items():
            rec[f"corr/{name}"].append(correlation(W, D))
        for name, idx in tokens.items():
            rec[f"mass/{name}"].append(s.gather(-1, idx[..., None]).squeeze(-1))
        return f, s, h

    at = record(W)
    for _ in range(steps):
        G = gradient(P, W, loss_kind, at)
        if param == "W":
            W = W - lr * _scaled(G, normalized)
        else:
            GK = G @ Q + 2 * KQ_PENALTY * K
            GQ = G.transpose(1, 2) @ K + 2 * KQ_PENALTY * Q
            K, Q = K - lr * _scaled(GK, normalized), Q - lr * _scaled(GQ, normalized)
            W = K @ Q.transpose(1, 2)
        at = record(W)
    stack = {k: torch.stack(v) for k, v in rec.items()}
    return Trajectory(W=W, softmax=at[1], loss=stack["loss"], norm=stack["norm"],
                      corr={k: stack[f"corr/{k}"] for k in targets}, mass={k: stack[f"mass/{k}"] for k in tokens})


def correlation(A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """<A, B> / (||A||_F ||B||_F) per problem (Tarzanagh et al.'s correlation coefficient).  # [S]"""
    a, b = A.flatten(1), B.flatten(1)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))


def _scaled(G: torch.Tensor, normalized: bool) -> torch.Tensor:
    """G / ||G||_F per problem (a zero gradient stays zero) or G itself."""
    if not normalized:
        return G
    norm = G.flatten(1).norm(dim=1).clamp_min(torch.finfo(G.dtype).tiny)
    return G / norm[:, None, None]


def _check(value, allowed, name):
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")


@dataclass
class SVMComparison:
    """A training run beside the Att-SVM of the tokens it ends up selecting (Tarzanagh et al., Theorems 1-2)."""

    trajectory: Trajectory  # with corr["fro"], corr["nuclear"] and mass["selected"], mass["optimal"]
    solutions: dict  # norm -> [S] SVMSolution, or None where the selection is infeasible

    @property
    def selected(self) -> torch.Tensor:
        return self.trajectory.selected  # [S, n]

    def curves(self, norm: str, every: int = 1) -> dict:
        """JSON-ready, every `every` steps: corr with the `norm` SVM (mean and 10-90% band over the problems with a
        feasible selection) and the softmax on the selected tokens (mean, and the mean over problems of the worst
        sample)."""
        corr = self.trajectory.corr[norm].numpy()  # [steps+1, S]
        mass = self.trajectory.mass["selected"].numpy()  # [steps+1, S, n]
        idx = np.arange(0, len(corr), every)
        corr = corr[idx][:, ~np.isnan(corr[-1])]
        return {"step": idx.tolist(), "svm": norm, "corr_mean": corr.mean(1).tolist(),
                "corr_lo": np.percentile(corr, 10, axis=1).tolist(),
                "corr_hi": np.percentile(corr, 90, axis=1).tolist(),
                "mass_mean": mass[idx].mean((1, 2)).tolist(), "mass_min": mass[idx].min(2).mean(1).tolist()}


def compare_with_svm(P: SelectionProblems, param: str = "W", norms=("fro", "nuclear"), **train_kw) -> SVMComparison:
    """Train once to learn which tokens each problem selects, solve the Att-SVM for that selection in each norm,
    then train again (same seed, so the same iterates) recording corr(W_k, W_svm) and the softmax mass on the
    selected and on the optimal tokens at every step. Infeasible selections get corr nan."""
    selected = train(P, param, **train_kw).selected
    d = P.v.shape[-1]
    solutions, targets = {}, {}
    for norm in norms:
        solutions[norm] = [_solve_or_none(P, k, selected[k], norm) for k in range(len(P))]
        targets[norm] = torch.stack([torch.from_numpy(s.W) if s else torch.full((d, d), torch.nan, dtype=torch.float64)
                                     for s in solutions[norm]])  # [S, d, d]
    traj = train(P, param, targets=targets, tokens={"selected": selected, "optimal": P.optimal}, **train_kw)
    return SVMComparison(traj, solutions)


def _solve_or_none(P: SelectionProblems, k: int, selection, norm: str):
    try:
        return att_svm(P.X[k], P.z[k], selection, norm=norm, scores=P.scores[k])
    except InfeasibleSelection:
        return None
