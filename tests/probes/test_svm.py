import cvxpy as cp
import numpy as np
import pytest
from scipy.optimize import minimize

from fresh import fresh_seeds
from probes.svm import InfeasibleSelection, att_svm, constraint_matrices, dual_value
from tasks.token_selection import TokenSelection

SEEDS = fresh_seeds(3, __name__)  # fresh problems on every run


def _problem(seed, **kw):
    P = TokenSelection(**kw).sample(seed)
    return P.X[0].numpy(), P.z[0].numpy(), P.scores[0].numpy()


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("norm", ["fro", "nuclear"])
def test_every_constraint_holds_and_one_is_tight(seed, norm):
    X, z, scores = _problem(seed)
    sol = att_svm(X, z, scores.argmax(-1), norm=norm, scores=scores)
    A = constraint_matrices(X, z, sol.selection)
    margins = np.einsum("ntde,de->nt", A, sol.W)
    assert margins.min() >= 1 - (1e-10 if norm == "fro" else 1e-7)
    assert sol.support.sum() >= 1 and np.isnan(sol.margins[np.arange(len(X)), sol.selection]).all()
    assert np.allclose(np.sort(sol.margins[~np.isnan(sol.margins)]), np.sort(margins.ravel()))
    assert sol.globally_optimal and sol.locally_optimal


@pytest.mark.parametrize("seed", SEEDS)
def test_no_feasible_w_of_smaller_frobenius_norm(seed):
    """Weak duality: a dual point found by L-BFGS-B bounds ||W||^2/2 of every feasible W from below; it meets ours.
    A second solver (Clarabel's interior point on the primal QP) finds the same norm."""
    X, z, scores = _problem(seed)
    sel = scores.argmax(-1)
    sol = att_svm(X, z, sel)
    A = constraint_matrices(X, z, sel).reshape(-1, X.shape[2] ** 2)
    res = minimize(lambda lam: -dual_value(A, lam), np.zeros(len(A)),
                   jac=lambda lam: -(1 - A @ (lam @ A)), bounds=[(0, None)] * len(A), method="L-BFGS-B",
                   options={"ftol": 1e-15, "gtol": 1e-12, "maxiter": 10_000})
    half_sq = 0.5 * sol.objective ** 2
    assert dual_value(A, res.x) <= half_sq + 1e-9
    assert dual_value(A, res.x) == pytest.approx(half_sq, rel=1e-6)
    w = cp.Variable(A.shape[1])
    cp.Problem(cp.Minimize(cp.sum_squares(w)), [A @ w >= 1]).solve(solver=cp.CLARABEL)
    assert np.linalg.norm(w.value) == pytest.approx(sol.objective, rel=1e-6)
    # KKT: W is a non-negative combination of the tight constraints' matrices
    As = A[sol.support[~np.isnan(sol.margins)].ravel()]
    lam = np.linalg.lstsq(As.T, sol.W.ravel(), rcond=None)[0]
    assert np.allclose(lam @ As, sol.W.ravel(), atol=1e-9) and lam.min() > -1e-9


@pytest.mark.parametrize("seed", SEEDS[:2])
def test_nuclear_solution_against_a_second_solver_and_the_frobenius_one(seed):
    X, z, scores = _problem(seed)
    sel = scores.argmax(-1)
    fro, nuc = att_svm(X, z, sel, "fro"), att_svm(X, z, sel, "nuclear")
    # each is feasible for the other's problem, so each optimum is at most the other's norm of the other's W
    assert nuc.objective <= np.linalg.svd(fro.W, compute_uv=False).sum() + 1e-6
    assert fro.objective <= np.linalg.norm(nuc.W) + 1e-9
    A = constraint_matrices(X, z, sel).reshape(-1, X.shape[2] ** 2)
    W = cp.Variable((X.shape[2], X.shape[2]))
    value = cp.Problem(cp.Minimize(cp.normNuc(W)), [A @ cp.vec(W, order="C") >= 1]).solve(solver=cp.SCS, eps=1e-9)
    assert nuc.objective == pytest.approx(value, rel=1e-4)
    assert nuc.rank <= fro.rank


def test_frobenius_rank_is_at_most_n():
    X, z, scores = _problem(SEEDS[0], n=3, T=6, d=10)
    sol = att_svm(X, z, scores.argmax(-1))
    assert sol.rank <= 3 and np.linalg.matrix_rank(sol.W, tol=1e-8) == sol.rank


@pytest.mark.parametrize("norm", ["fro", "nuclear"])
def test_infeasible_selections_raise(norm):
    X, z, _ = _problem(SEEDS[1], n=2, T=5, d=4)
    mid = X.copy()
    mid[0, 0] = (X[0, 1] + X[0, 2]) / 2  # the selected token sits between two others: no W separates it
    with pytest.raises(InfeasibleSelection, match="infeasible"):
        att_svm(mid, z, [0, 0], norm=norm)
    dup = X.copy()
    dup[1, 3] = dup[1, 4]
    with pytest.raises(InfeasibleSelection, match="sample 1"):
        att_svm(dup, z, [0, 3], norm=norm)


def test_local_and_global_optimality():
    X, z, scores = _problem(SEEDS[2])
    sel = scores.argmax(-1)
    sel[0] = np.argsort(scores[0])[-2]  # the second-best token of sample 0
    sol = att_svm(X, z, sel, scores=scores)
    assert not sol.globally_optimal
    s = scores[0]
    expected = all(s[t] < s[sel[0]] for t in np.flatnonzero(sol.support[0]))
    assert sol.locally_optimal == expected
    worst = scores.argmin(-1)
    assert att_svm(X, z, worst, scores=scores).locally_optimal is False  # every support token scores higher


def test_bad_arguments():
    X, z, _ = _problem(1)
    with pytest.raises(ValueError, match="norm must be one of fro, nuclear"):
        att_svm(X, z, [0] * 6, norm="l1")
    with pytest.raises(ValueError, match="token indices in 0..7"):
        att_svm(X, z, [8] * 6)
