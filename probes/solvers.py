"""Reference learners for in-context linear regression, batched and prefix-wise.

Every solver has the same call shape, `solve(name, prompts, **kw) -> [B, n]`, where column i is the
prediction for x_i from pairs 0..i-1 (column 0 sees no pairs). They compute in float64 and return the
prompts' dtype, so they serve as references for the models.
"""
from __future__ import annotations

import inspect
from collections.abc import Callable

import torch

from tasks import Prompts

from . import boolean_learners, function_learners

Fit = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (X [B, i, d], y [B, i]) -> w [B, d]


def prefix_weights(xs: torch.Tensor, ys: torch.Tensor, fit: Fit) -> torch.Tensor:
    """w[:, i] = fit(xs[:, :i], ys[:, :i]), the weights learned from pairs 0..i-1: [B, n, d]; w[:, 0] = 0."""
    w = torch.zeros_like(xs)
    for i in range(1, xs.shape[1]):
        w[:, i] = fit(xs[:, :i], ys[:, :i])
    return w


def _prefixwise(xs: torch.Tensor, ys: torch.Tensor, fit: Fit) -> torch.Tensor:
    """preds[:, i] = fit(xs[:, :i], ys[:, :i]) . xs[:, i]; column 0 predicts 0."""
    return (prefix_weights(xs, ys, fit) * xs).sum(-1)  # [B, n]


def zero(xs, ys):
    """Always 0: its squared error is E[y^2], the normaliser of every curve."""
    return xs.new_zeros(ys.shape)


def averaging(xs, ys):
    """w = mean_j y_j x_j (Garg et al. baseline; unbiased for w when x ~ N(0, I))."""
    return _prefixwise(xs, ys, lambda X, y: (y.unsqueeze(-1) * X).mean(1))


def knn(xs, ys, k: int = 3):
    """Mean label of the k nearest earlier points (Euclidean, uniform weights); fewer if fewer exist."""
    if not (isinstance(k, int) and k >= 1):
        raise ValueError(f"knn k must be an integer >= 1; got {k!r}")
    B, n, _ = xs.shape
    dist = torch.cdist(xs, xs)  # [B, n, n]
    earlier = torch.ones(n, n, dtype=torch.bool, device=xs.device).tril(-1)  # key j < query i
    dist = dist.masked_fill(~earlier, float("inf"))
    kk = min(k, n)
    d_sel, idx = dist.topk(kk, dim=-1, largest=False)  # [B, n, kk]
    valid = torch.isfinite(d_sel)
    y_sel = torch.gather(ys.unsqueeze(1).expand(B, n, n), 2, idx)
    return (y_sel * valid).sum(-1) / valid.sum(-1).clamp(min=1)


def ols_fit(X, y):
    """Minimum-norm least squares weights pinv(X) y: X [B, N, d], y [B, N] -> [B, d]."""
    return (torch.linalg.pinv(X) @ y.unsqueeze(-1)).squeeze(-1)


def ols(xs, ys):
    """Minimum-norm least squares, w = pinv(X) y (the Bayes-optimal predictor's limit in the noiseless case)."""
    return _prefixwise(xs, ys, ols_fit)


def ridge(xs, ys, lam: float = 1.0):
    """w = (X^T X + lam I)^{-1} X^T y; the posterior mean when lam = sigma^2 / tau^2 (Akyurek et al.)."""
    if not lam > 0:
        raise ValueError(f"ridge lam must be > 0; got {lam!r}")

    def fit(X, y):
        eye = torch.eye(X.shape[-1], dtype=X.dtype, device=X.device)
        return torch.linalg.solve(X.mT @ X + lam * eye, (X.mT @ y.unsqueeze(-1))).squeeze(-1)

    return _prefixwise(xs, ys, fit)


def _gd_iterates(X, y, lr: float = 0.1, normalize: bool = True):
    """w_1, w_2, ... of gradient descent from w = 0 (see `gd`)."""
    scale = lr / X.shape[1] if normalize else lr
    w = X.new_zeros(X.shape[0], X.shape[2])
    while True:
        resid = (X @ w.unsqueeze(-1)).squeeze(-1) - y  # [B, i]
        w = w - scale * (X.mT @ resid.unsqueeze(-1)).squeeze(-1)
        yield w


def gd(xs, ys, steps: int = 1, lr: float = 0.1, normalize: bool = True):
    """`steps` gradient-descent steps from w = 0.

    normalize=True: on L(w) = 1/(2N) sum (w.x_j - y_j)^2 (von Oswald et al., eq. 1);
    normalize=False: on 1/2 sum (w.x_j - y_j)^2, i.e. w <- w - lr (X^T X w - X^T y) (Fu et al., lr 0.01).
    """
    return _prefixwise(xs, ys, lambda X, y: _nth(_gd_iterates(X, y, lr, normalize), steps))


def gdpp(xs, ys, steps: int = 1, lr: float = 0.1, gamma: float = 0.0):
    """GD++ (von Oswald et al., sec. 4): each step is one GD step (normalised, as in `gd`) on the y-slots
    and, at the same time, the curvature correction x_j <- (I - gamma X^T X) x_j of every token, the
    query's included. Written as the token dynamics a linear self-attention layer performs:
      r_j <- r_j - (lr/N) sum_c r_c x_c.x_j,   x_j <- x_j - gamma sum_c x_c x_c^T x_j,
    with context residuals r_c starting at y_c, the query's slot at 0; the prediction is minus that slot.
    gamma = 0 is exactly `gd`.
    """
    B, n, d = xs.shape
    preds = xs.new_zeros(B, n)
    for i in range(1, n):
        X = xs[:, : i + 1].clone()  # [B, i+1, d]: context, then the query
        r = torch.cat([ys[:, :i], ys.new_zeros(B, 1)], dim=1)  # [B, i+1]
        for _ in range(steps):
            Xc, rc = X[:, :i], r[:, :i]
            r = r - (lr / i) * (X @ (Xc.mT @ rc.unsqueeze(-1))).squeeze(-1)
            X = X - gamma * X @ (Xc.mT @ Xc)  # S symmetric: (S x_j)^T = x_j^T S
        preds[:, i] = -r[:, i]
    return preds


def newton(xs, ys, steps: int = 5, alpha: str = "frobenius"):
    """Iterative Newton / Newton-Schulz for S^+ with S = X^T X (Fu et al., sec. 3):
    M_0 = a S, M_{k+1} = 2 M_k - M_k S M_k, w = M_k X^T y.

    alpha="frobenius": a = 1 / ||S S^T||_F (their public code; the default).
    alpha="spectral":  a = 2 / ||S S^T||_2 (the paper's text). Since I - M_{k+1} S = (I - M_k S)^2, this
    boundary value leaves the top eigendirection's error at exactly 1 in exact arithmetic, so it does not
    converge there; it is offered to reproduce the text.
    Convergence takes about log2(cond(S)^2) + 5 steps. When S is singular (fewer points than d) very long
    runs (~80 steps in float64) start to invert round-off in the null space: use only as many steps as needed.
    """
    if alpha not in ("frobenius", "spectral"):
        raise ValueError(f"newton alpha must be one of frobenius, spectral; got {alpha!r}")

    return _prefixwise(xs, ys, lambda X, y: _nth(_newton_iterates(X, y, alpha), steps))


def _newton_iterates(X, y, alpha: str = "frobenius"):
    """w_1, w_2, ... of iterative Newton (see `newton`)."""
    S = X.mT @ X  # [B, d, d]
    SS = S @ S.mT
    if alpha == "frobenius":
        a = 1.0 / torch.linalg.matrix_norm(SS, ord="fro").clamp(min=1e-300)
    else:
        a = 2.0 / torch.linalg.matrix_norm(SS, ord=2).clamp(min=1e-300)
    M = a[:, None, None] * S
    Xty = X.mT @ y.unsqueeze(-1)
    while True:
        M = 2 * M - M @ S @ M
        yield (M @ Xty).squeeze(-1)


def _nth(iterates, n: int):
    """The n-th item (1-based) of an iterator of iterates."""
    if not (isinstance(n, int) and n >= 1):
        raise ValueError(f"steps must be an integer >= 1; got {n!r}")
    for k, w in enumerate(iterates, start=1):
        if k == n:
            return w


def _gd_every_prefix(xs, ys, steps, lr: float = 0.1, normalize: bool = True) -> dict:
    """{k: weights [B, n-1, d] of every prefix i = 1..n-1 after k steps of `gd`}, in closed form: from w = 0,
    w <- w - s (G w - c) with G = X_i^T X_i = V diag(lam) V^T and c = X_i^T y_i gives
    w_k = V diag((1 - (1 - s lam)^k) / lam) V^T c (k s where lam = 0), so any k costs one step's work."""
    B, n, d = xs.shape
    G = (xs[..., :, None] * xs[..., None, :]).cumsum(1)[:, :-1]  # [B, n-1, d, d]: G[:, i-1] = G_i
    c = (ys[..., None] * xs).cumsum(1)[:, :-1]  # [B, n-1, d]
    s = lr / torch.arange(1, n, dtype=xs.dtype, device=xs.device)[:, None] if normalize else \
        torch.full((n - 1, 1), lr, dtype=xs.dtype, device=xs.device)  # [n-1, 1]
    lam, V = torch.linalg.eigh(G)  # [B, n-1, d], [B, n-1, d, d]
    coef = (V.mT @ c.unsqueeze(-1)).squeeze(-1)  # [B, n-1, d]
    a, safe = s * lam, torch.where(lam == 0, 1.0, lam)
    out = {}
    for k in steps:  # 1 - (1 - a)^k, through log1p/expm1 where 1 - a > 0 (accurate when a is tiny)
        shrink = torch.where(a < 1, -torch.expm1(k * torch.log1p(-a)), 1 - (1 - a) ** k)
        factor = torch.where(lam == 0, k * s, shrink / safe)  # [B, n-1, d]
        out[k] = (V @ (factor * coef).unsqueeze(-1)).squeeze(-1)
    return out


def _newton_every_prefix(xs, ys, alpha: str = "frobenius"):
    """Weights [B, n-1, d] of every prefix after step 1, 2, ... of `newton`, prefix by prefix."""
    prefixes = [_newton_iterates(xs[:, :i], ys[:, :i], alpha) for i in range(1, xs.shape[1])]
    while True:
        yield torch.stack([next(it) for it in prefixes], dim=1)


def path(name: str, prompts: Prompts, steps, **kwargs) -> dict[int, torch.Tensor]:
    """Predictions [B, n] after each number of steps in `steps`: {k: solve(name, prompts, steps=k, **kwargs)} for
    name "gd" (in closed form, `_gd_every_prefix`) or "newton" (one run of the iteration, to max(steps))."""
    if name not in ("gd", "newton"):
        raise ValueError(f"path() takes gd or newton; got {name!r}")
    wanted = sorted(set(int(k) for k in steps))
    if not wanted or wanted[0] < 1:
        raise ValueError(f"path() steps must be integers >= 1, at least one; got {list(steps)!r}")
    xs, ys = prompts.xs.double(), prompts.ys.double()
    if name == "gd":
        weights = _gd_every_prefix(xs, ys, wanted, **kwargs)
    else:
        iterates = zip(range(1, wanted[-1] + 1), _newton_every_prefix(xs, ys, **kwargs))
        weights = {k: w for k, w in iterates if k in wanted}
    zero = ys.new_zeros(len(ys), 1)  # column 0 predicts 0, column i uses prefix i
    return {k: torch.cat([zero, (w * xs[:, 1:]).sum(-1)], dim=1).to(prompts.ys.dtype) for k, w in weights.items()}


def lasso_kkt_violation(X, y, w, alpha: float) -> torch.Tensor:
    """How far w [B, d] is from the Lasso optimum, per prompt [B]: with g = X^T (y - X w) / N, the largest of
    |g_j - alpha sign(w_j)| over w_j != 0 and |g_j| - alpha over w_j = 0 (zero exactly at the optimum)."""
    g = (X.mT @ (y - (X @ w.unsqueeze(-1)).squeeze(-1)).unsqueeze(-1)).squeeze(-1) / X.shape[1]  # [B, d]
    off = torch.where(w != 0, (g - alpha * torch.sign(w)).abs(), (g.abs() - alpha).clamp(min=0))
    return off.amax(-1)


def lasso_fit(X, y, alpha: float = 0.1, tol: float = 1e-9, max_iters: int = 100_000):
    """argmin_w 1/(2N) ||X w - y||^2 + alpha ||w||_1 (scikit-learn's Lasso objective) by FISTA with adaptive
    restart (O'Donoghue & Candes 2015), run until every prompt's KKT violation (`lasso_kkt_violation`) is below
    `tol`, or `max_iters`. X [B, N, d], y [B, N] -> w [B, d]. Converged prompts stop moving; a fixed iteration count
    is not enough: below k = d the problem is not strongly convex and 1000 plain FISTA steps were 0.17 off."""
    N = X.shape[1]
    G, c = X.mT @ X / N, (X.mT @ y.unsqueeze(-1)).squeeze(-1) / N  # [B, d, d], [B, d]
    step = (1.0 / torch.linalg.eigvalsh(G)[:, -1].clamp(min=1e-12))[:, None]  # 1 / Lipschitz constant, [B, 1]
    out = c.new_zeros(c.shape)
    idx = torch.arange(c.shape[0], device=c.device)  # the prompts still running
    w = z = out.clone()
    t = c.new_ones(c.shape[0], 1)
    for it in range(max_iters):
        u = z - step * ((G @ z.unsqueeze(-1)).squeeze(-1) - c)
        w_new = torch.sign(u) * (u.abs() - step * alpha).clamp(min=0)
        restart = ((z - w_new) * (w_new - w)).sum(-1, keepdim=True) > 0  # momentum points uphill: drop it
        t = torch.where(restart, torch.ones_like(t), t)
        t_new = (1 + (1 + 4 * t * t).sqrt()) / 2
        z, w, t = w_new + (t - 1) / t_new * (w_new - w), w_new, t_new
        if it % 10 == 9 or it == max_iters - 1:
            out[idx] = w
            running = lasso_kkt_violation(X[idx], y[idx], w, alpha) >= tol
            if not running.all():  # keep only the prompts not yet converged
                idx, G, c, step, w, z, t = (a[running] for a in (idx, G, c, step, w, z, t))
                if len(idx) == 0:
                    break
    return out


def lasso(xs, ys, alpha: float = 0.1, tol: float = 1e-9, max_iters: int = 100_000):
    """Lasso (Garg et al.'s baseline for sparse w), prefix-wise, converged to `tol` (see `lasso_fit`)."""
    if not alpha > 0:
        raise ValueError(f"lasso alpha must be > 0; got {alpha!r}")
    if not tol > 0 or not (isinstance(max_iters, int) and max_iters >= 1):
        raise ValueError(f"lasso needs tol > 0 and an integer max_iters >= 1; got tol={tol!r}, max_iters={max_iters!r}")
    return _prefixwise(xs, ys, lambda X, y: lasso_fit(X, y, alpha, tol, max_iters))


SOLVERS = {"zero": zero, "averaging": averaging, "knn": knn, "ols": ols, "ridge": ridge, "gd": gd,
           "gdpp": gdpp, "newton": newton, "lasso": lasso}
SOLVERS.update(boolean_learners.LEARNERS)  # null, majority, elimination, gf2, mlp (Boolean tasks)
SOLVERS.update(function_learners.LEARNERS)  # tree, boosted_trees, relu_net (Garg et al.'s nonlinear classes)


def solve(name: str, prompts: Prompts, features: str | None = None, **kwargs) -> torch.Tensor:
    """Predictions [B, n] of reference learner `name` on `prompts`; column i uses pairs 0..i-1 and x_i. `features`
    names a ground-truth entry [B, n, D] of prompts.params to learn from instead of x (the oracle of Guo et al.'s
    representation task: ridge on Phi*(x) is solve("ridge", p, features="phi", lam=...))."""
    if name not in SOLVERS:
        raise ValueError(f"unknown solver {name!r}; choose one of: {', '.join(SOLVERS)}")
    fn = SOLVERS[name]
    allowed = list(inspect.signature(fn).parameters)[2:]
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise ValueError(f"solver {name!r} has no argument {unknown[0]!r}; allowed: {', '.join(allowed) or 'none'}")
    xs = prompts.xs
    if features is not None:
        xs = prompts.params.get(features)
        if not (isinstance(xs, torch.Tensor) and xs.dim() == 3 and xs.shape[:2] == prompts.ys.shape):
            raise ValueError(f"features={features!r} must name a [B, n, D] entry of the prompts' ground truth; "
                             f"they have: {', '.join(prompts.params) or 'none'}")
    check_prompts(xs, prompts.ys)
    return fn(xs.double(), prompts.ys.double(), **kwargs).to(prompts.ys.dtype)


def check_prompts(xs: torch.Tensor, ys: torch.Tensor) -> None:
    """xs [B, n, d] and ys [B, n] of one B and n, finite: a learner fed NaN would answer NaN (or 0) silently."""
    if not (isinstance(xs, torch.Tensor) and isinstance(ys, torch.Tensor) and xs.dim() == 3 and ys.dim() == 2
            and xs.shape[:2] == ys.shape):
        shapes = [tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__ for t in (xs, ys)]
        raise ValueError(f"prompts must hold xs [B, n, d] and ys [B, n] with the same B and n; got xs {shapes[0]} "
                         f"and ys {shapes[1]}")
    for name, t in (("xs", xs), ("ys", ys)):
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise ValueError(f"prompts' {name} must be finite; {int((~torch.isfinite(t)).sum())} entries are NaN or "
                             "infinite")
