"""Reference learners for Garg et al.'s nonlinear function classes (their sec. 4 baselines, settings from their
code's eval.py): greedy decision trees and gradient-boosted trees for decision-tree prompts, a 2-layer ReLU network
trained by Adam per prompt for ReLU-network prompts. Same call shape as probes.solvers: (xs [B, n, d], ys [B, n])
-> [B, n], column i fitted to pairs 0..i-1 and evaluated at x_i, column 0 predicts 0.

Trees come from scikit-learn (greedy CART: `DecisionTreeRegressor`; boosting: `GradientBoostingRegressor`, standing
in for their XGBoost with its own defaults of 100 depth-3 trees at learning rate 0.1): a well-kept library does this
better than code we would write, and one dependency serves both.
"""
from __future__ import annotations

import numpy as np
import torch

from .prefix_nets import train_prefix_nets


def _per_prefix(xs, ys, make_estimator) -> torch.Tensor:
    """Fit a fresh scikit-learn regressor to every (prompt, prefix) and predict the next point: [B, n]. The prompts
    were checked (finite, shapes: solvers.check_prompts), so scikit-learn's own checks of every fit and of every
    boosting stage's tree are skipped: the same numbers, a third less time on these tiny fits."""
    import sklearn

    X, Y = xs.double().cpu().numpy(), ys.double().cpu().numpy()
    out = np.zeros(Y.shape)
    with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
        for b in range(X.shape[0]):
            for i in range(1, X.shape[1]):
                out[b, i] = make_estimator().fit(X[b, :i], Y[b, :i]).predict(X[b, i:i + 1])[0]
    return torch.from_numpy(out).to(device=xs.device, dtype=xs.dtype)


def tree(xs, ys, max_depth: int | None = None):
    """Greedy regression tree (CART, squared error) per prompt and prefix; max_depth None grows it until its leaves
    are pure (Garg et al. show both 4 and None)."""
    from sklearn.tree import DecisionTreeRegressor

    if max_depth is not None and not (isinstance(max_depth, int) and max_depth >= 1):
        raise ValueError(f"tree max_depth must be None or an integer >= 1; got {max_depth!r}")
    return _per_prefix(xs, ys, lambda: DecisionTreeRegressor(max_depth=max_depth, random_state=0))


def boosted_trees(xs, ys, n_estimators: int = 100, max_depth: int = 3, learning_rate: float = 0.1):
    """Gradient-boosted regression trees per prompt and prefix (scikit-learn's defaults)."""
    from sklearn.ensemble import GradientBoostingRegressor

    if not (isinstance(n_estimators, int) and n_estimators >= 1 and learning_rate > 0):
        raise ValueError(f"boosted_trees needs n_estimators >= 1 and learning_rate > 0; got {n_estimators!r}, "
                         f"{learning_rate!r}")
    return _per_prefix(xs, ys, lambda: GradientBoostingRegressor(
        n_estimators=n_estimators, max_depth=max_depth, learning_rate=learning_rate, random_state=0))


def relu_net_init(b: int, n: int, d: int, hidden: int, g: torch.Generator) -> list[torch.Tensor]:
    """Initial weights of b x n nets, nn.Linear's default U(+-1/sqrt(fan_in)): W1 [b, n, d, h], b1 [b, n, 1, h],
    w2 [b, n, h], b2 [b, n, 1]."""
    def uniform(*shape, fan_in):
        return (torch.rand(*shape, generator=g, dtype=torch.float64) * 2 - 1) * fan_in ** -0.5

    return [uniform(b, n, d, hidden, fan_in=d), uniform(b, n, 1, hidden, fan_in=d),
            uniform(b, n, hidden, fan_in=hidden), uniform(b, n, 1, fan_in=hidden)]


def relu_net_train(X, y, params: list[torch.Tensor], steps: int, lr: float) -> torch.Tensor:
    """Train net (p, i) on pairs 0..i-1 of prompt p by full-batch Adam on its mean squared error, all nets at once;
    returns net i's prediction for x_i. X [b, n, d], y [b, n] -> [b, n]."""
    return train_prefix_nets(X, y, params, steps, lr, torch.relu, lambda out, target: (out - target) ** 2)


def relu_net(xs, ys, hidden: int = 100, steps: int = 100, lr: float = 5e-3, seed: int = 0, chunk: int = 64):
    """A 2-layer ReLU network fitted per prompt and prefix by full-batch Adam on the mean squared error (Garg et al.'s
    baseline: width 100, lr 5e-3, 100 steps, batch 100 >= every prefix), nn.Linear's default init. The nets of
    `chunk` prompts train at once as one batched computation (`relu_net_train`)."""
    if not (isinstance(hidden, int) and hidden >= 1 and isinstance(steps, int) and steps >= 0 and lr > 0):
        raise ValueError(f"relu_net needs integers hidden >= 1, steps >= 0 and lr > 0; "
                         f"got {hidden!r}, {steps!r}, {lr!r}")
    B, n, d = xs.shape
    g = torch.Generator().manual_seed(seed)
    out = torch.zeros(B, n, dtype=torch.float64, device=xs.device)
    for lo in range(0, B, chunk):
        X, y = xs[lo:lo + chunk].double(), ys[lo:lo + chunk].double()
        params = [p.to(xs.device) for p in relu_net_init(X.shape[0], n, d, hidden, g)]
        out[lo:lo + chunk] = relu_net_train(X, y, params, steps, lr)
    out[:, 0] = 0.0
    return out.to(xs.dtype)


LEARNERS = {"tree": tree, "boosted_trees": boosted_trees, "relu_net": relu_net}
