import numpy as np
import pytest
import torch

import probes
import tasks
from fresh import fresh_seeds


def _prompts(d=5, n=12, B=6, seed=0, **kw):
    return tasks.get("linear_regression", d=d, **kw).sample(B, n, seed=seed, dtype=torch.float64)


def _per_prefix(p, fit):
    """Reference: numpy, one prompt and one prefix at a time; fit(X, y) -> w."""
    xs, ys = p.xs.numpy(), p.ys.numpy()
    out = np.zeros(ys.shape)
    for b in range(xs.shape[0]):
        for i in range(1, xs.shape[1]):
            out[b, i] = fit(xs[b, :i], ys[b, :i]) @ xs[b, i]
    return torch.from_numpy(out)


def test_zero_predictor_scores_one():
    task = tasks.get("linear_regression", d=8)
    p = task.sample(4000, 10, seed=1, dtype=torch.float64)
    err = ((probes.solve("zero", p) - p.ys) ** 2).mean().item() / task.y_variance()
    assert err == pytest.approx(1.0, abs=0.03)


def test_ols_error_is_d_minus_k_over_d_on_isotropic_data():
    d = 8
    task = tasks.get("linear_regression", d=d)
    p = task.sample(6000, 12, seed=2, dtype=torch.float64)
    err = ((probes.solve("ols", p) - p.ys) ** 2).mean(0) / d
    for k in range(d):
        assert err[k].item() == pytest.approx((d - k) / d, abs=0.04), k
    assert err[d:].max().item() < 1e-16


def test_ols_is_min_norm_least_squares():
    p = _prompts(d=6, n=10)
    torch.testing.assert_close(probes.solve("ols", p), _per_prefix(p, lambda X, y: np.linalg.pinv(X) @ y),
                               rtol=0, atol=1e-10)


def test_ridge_matches_closed_form():
    p = _prompts(noise_std=0.3)
    lam = 0.7
    ref = _per_prefix(p, lambda X, y: np.linalg.solve(X.T @ X + lam * np.eye(X.shape[1]), X.T @ y))
    torch.testing.assert_close(probes.solve("ridge", p, lam=lam), ref, rtol=0, atol=1e-10)


@pytest.mark.parametrize("normalize", [True, False])
def test_gd_matches_closed_form(normalize):
    """K steps from 0 on 1/(2N)||Xw - y||^2: w_K = sum_{t<K} (I - eta S)^t eta X^T y / N (N -> 1 unnormalised)."""
    p, steps, lr = _prompts(d=4, n=9), 3, (0.3 if normalize else 0.01)

    def fit(X, y):
        N = X.shape[0] if normalize else 1
        A = np.eye(X.shape[1]) - lr * X.T @ X / N
        return sum(np.linalg.matrix_power(A, t) for t in range(steps)) @ (lr * X.T @ y / N)

    got = probes.solve("gd", p, steps=steps, lr=lr, normalize=normalize)
    torch.testing.assert_close(got, _per_prefix(p, fit), rtol=0, atol=1e-10)


def test_gdpp_with_zero_gamma_is_gd_and_matches_token_loop():
    p = _prompts(d=3, n=6, B=3, x_dist="uniform", x_range=0.5)
    torch.testing.assert_close(probes.solve("gdpp", p, steps=2, lr=0.8, gamma=0.0),
                               probes.solve("gd", p, steps=2, lr=0.8), rtol=0, atol=1e-12)
    steps, lr, gamma = 2, 0.8, 0.3
    xs, ys = p.xs.numpy(), p.ys.numpy()
    ref = np.zeros(ys.shape)
    for b in range(3):
        for i in range(1, 6):  # tokens: context 0..i-1, query i; explicit scalar loops over tokens
            x = [xs[b, j].copy() for j in range(i + 1)]
            r = [ys[b, j] for j in range(i)] + [0.0]
            for _ in range(steps):
                new_r = [r[j] - lr / i * sum(r[c] * (x[c] @ x[j]) for c in range(i)) for j in range(i + 1)]
                new_x = [x[j] - gamma * sum(x[c] * (x[c] @ x[j]) for c in range(i)) for j in range(i + 1)]
                x, r = new_x, new_r
            ref[b, i] = -r[i]
    torch.testing.assert_close(probes.solve("gdpp", p, steps=steps, lr=lr, gamma=gamma), torch.from_numpy(ref),
                               rtol=0, atol=1e-12)


def test_newton_schulz_reaches_least_squares():
    p = _prompts(d=4, n=10)
    ols = probes.solve("ols", p)
    newton = probes.solve("newton", p, steps=40)
    torch.testing.assert_close(newton, ols, rtol=0, atol=1e-10)
    few = probes.solve("newton", p, steps=2)
    assert (few - ols).abs().max() > 1e-3  # few iterations are not yet least squares


def test_newton_spectral_alpha_matches_its_formula_for_one_iteration():
    p = _prompts(d=3, n=6, B=2)

    def fit(X, y):
        S = X.T @ X
        M0 = 2 / np.linalg.norm(S @ S.T, 2) * S
        return (2 * M0 - M0 @ S @ M0) @ X.T @ y

    torch.testing.assert_close(probes.solve("newton", p, steps=1, alpha="spectral"), _per_prefix(p, fit),
                               rtol=0, atol=1e-10)


def test_averaging_and_knn_match_brute_force():
    p = _prompts(d=3, n=8)
    ref = _per_prefix(p, lambda X, y: (y[:, None] * X).mean(0))
    torch.testing.assert_close(probes.solve("averaging", p), ref, rtol=0, atol=1e-12)
    xs, ys = p.xs.numpy(), p.ys.numpy()
    ref = np.zeros(ys.shape)
    for b in range(xs.shape[0]):
        for i in range(1, xs.shape[1]):
            dist = np.linalg.norm(xs[b, :i] - xs[b, i], axis=1)
            ref[b, i] = ys[b, np.argsort(dist)[:3]].mean()
    torch.testing.assert_close(probes.solve("knn", p, k=3), torch.from_numpy(ref), rtol=0, atol=1e-12)


def test_lasso_satisfies_kkt_conditions():
    """Subgradient optimality: g = X^T (y - X w) / N has |g_j| <= alpha, and g_j = alpha sign(w_j) where w_j != 0."""
    from probes.solvers import lasso_fit

    p, alpha = _prompts(d=6, n=14, sparsity=2), 0.05
    preds = probes.solve("lasso", p, alpha=alpha)
    for i in (3, 8, 13):
        X, y = p.xs[:, :i], p.ys[:, :i]
        w = lasso_fit(X, y, alpha=alpha, tol=1e-12)  # [B, d]
        g = (X.mT @ (y - (X @ w.unsqueeze(-1)).squeeze(-1)).unsqueeze(-1)).squeeze(-1) / i
        assert (g.abs() <= alpha + 1e-11).all()
        nz = w.abs() > 1e-10
        assert nz.any()
        torch.testing.assert_close(g[nz], alpha * torch.sign(w[nz]), rtol=0, atol=1e-11)
        torch.testing.assert_close(preds[:, i], (w * p.xs[:, i]).sum(1), rtol=0, atol=1e-7)  # default tol


def test_lasso_converges_below_k_equals_d_against_an_interior_point_reference():
    """A light penalty at few examples (not strongly convex: 1000 plain FISTA steps were up to 0.17 off per
    prediction) against cvxpy's interior-point solver at tight tolerances, in float64."""
    cp = pytest.importorskip("cvxpy")
    p, alpha = _prompts(d=10, n=6, sparsity=3), 0.01
    preds = probes.solve("lasso", p, alpha=alpha)  # [B, n]
    for b in range(6):
        for i in range(1, 6):
            X, y = p.xs[b, :i].numpy(), p.ys[b, :i].numpy()
            v = cp.Variable(10)
            cp.Problem(cp.Minimize(cp.sum_squares(X @ v - y) / (2 * i) + alpha * cp.norm1(v))).solve(
                solver=cp.CLARABEL, tol_gap_abs=1e-12, tol_gap_rel=1e-12, tol_feas=1e-12)
            assert abs(preds[b, i].item() - float(v.value @ p.xs[b, i].numpy())) < 1e-6


@pytest.mark.parametrize("name, kw", [("ols", {}), ("ridge", {"lam": 0.5}), ("gd", {"steps": 2}), ("knn", {}),
                                      ("averaging", {}), ("newton", {"steps": 3}), ("lasso", {"alpha": 0.1}),
                                      ("gdpp", {"steps": 2, "gamma": 0.1})])
def test_column_i_never_sees_y_i(name, kw):
    p = _prompts(d=3, n=7)
    i = 4
    q = tasks.Prompts(p.xs, p.ys.clone(), p.params)
    q.ys[:, i] += 10.0
    a, b = probes.solve(name, p, **kw), probes.solve(name, q, **kw)
    torch.testing.assert_close(a[:, : i + 1], b[:, : i + 1], rtol=0, atol=0)
    assert (a[:, i + 1] - b[:, i + 1]).abs().max() > 1e-6  # ... and column i + 1 does


def test_unknown_solver_or_argument_lists_choices():
    p = _prompts()
    with pytest.raises(ValueError, match="ols"):
        probes.solve("magic", p)
    with pytest.raises(ValueError, match="allowed: steps, lr, normalize"):
        probes.solve("gd", p, step=3)


@pytest.mark.parametrize("name, kw, steps, task", [
    ("gd", {"lr": 0.01, "normalize": False}, [1, 4, 2, 9], {}), ("gd", {"lr": 0.5}, [1, 4, 2, 9], {}),
    ("gd", {"lr": 0.01, "normalize": False}, [3000, 1, 700], {"x_cov": "ill_conditioned", "kappa": 100.0}),
    ("newton", {"alpha": "frobenius"}, [1, 4, 2, 9], {})])
def test_path_equals_separate_solves(name, kw, steps, task):
    """path's predictions (gd's in closed form, on every prefix's Gram matrix) are the iterations' own, for prefixes
    shorter than d (singular Gram matrices) too, and over thousands of steps on ill-conditioned data."""
    from probes.solvers import path

    (seed,) = fresh_seeds(1, __name__ + name + str(steps))
    p = _prompts(d=3, n=7, seed=seed, **task)
    got = path(name, p, steps, **kw)
    assert list(got) == sorted(steps)
    for k, preds in got.items():
        torch.testing.assert_close(preds, probes.solve(name, p, steps=k, **kw), rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="steps must be integers >= 1"):
        path(name, p, [0, 3], **kw)


def test_vo_gdpp_grid_search_is_the_gdpp_solver_over_the_grid():
    """vo-gdpp's search (every rate of a gamma at once, the query only) gives solve("gdpp")'s query predictions and
    so the same best (loss, lr, gamma) as solving each grid point on its own."""
    from probes.experiments.vo_gdpp import best_gdpp, gdpp_queries
    from probes.lsa import half_mse

    (seed,) = fresh_seeds(1, __name__)
    p = tasks.get("linear_regression", d=4, x_dist="uniform", x_range=0.5).sample(64, 7, seed=seed)
    lrs, gammas = [0.5, 2.0, 5.5, 9.0], [0.0, 0.15, 0.35]
    for g in gammas:
        queries = gdpp_queries(p.xs.double(), p.ys.double(), 2, lrs, g)  # [L, B]
        for lr, q in zip(lrs, queries):
            torch.testing.assert_close(q.float(), probes.solve("gdpp", p, steps=2, lr=lr, gamma=g)[:, -1])
    each = min((half_mse(probes.solve("gdpp", p, steps=2, lr=lr, gamma=g)[:, -1], p.ys[:, -1]), lr, g)
               for lr in lrs for g in gammas)
    best = best_gdpp(p, 2, lrs, gammas)
    assert best[1:] == each[1:] and best[0] == pytest.approx(each[0], rel=1e-6)
