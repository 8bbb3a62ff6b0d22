"""The attention SVM (Att-SVM) of Tarzanagh et al. 2023, solved exactly for a given token selection.

Att-SVM (their eq. 2):  min ||W||  subject to  (x_{i,a_i} - x_{it})^T W z_i >= 1  for every sample i and token t != a_i,
where a_i is the selected token of sample i. With ||.||_F it is the limit direction of gradient descent on W; with the
nuclear norm ||.||_* it is the limit direction for W = K Q^T (their Theorem 2). Each constraint is <W, A_it> >= 1 with
A_it = (x_{i,a_i} - x_it) z_i^T.

Frobenius: a least-distance program, solved exactly through non-negative least squares (Lawson & Hanson 1974, ch. 23:
LDP -> NNLS with scipy.optimize.nnls), then polished on its support. Nuclear: a semidefinite program, solved with
cvxpy's Clarabel interior-point solver (scipy has no SDP solver).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy.optimize import nnls

NORMS = ("fro", "nuclear")


class InfeasibleSelection(ValueError):
    """No W meets every margin constraint for the requested token selection."""


@dataclass
class SVMSolution:
    """An Att-SVM solution and what it says about the selection."""

    W: np.ndarray  # [d, d]
    norm: str  # "fro" or "nuclear"
    selection: np.ndarray  # [n] the selected token per sample
    margins: np.ndarray  # [n, T] (x_{i,a_i} - x_it)^T W z_i; nan at the selected token
    support: np.ndarray  # [n, T] bool: tight constraints (margin 1 within tol): the support tokens
    objective: float  # ||W||_F or ||W||_*
    rank: int  # numerical rank of W
    globally_optimal: bool | None  # every selected token has the top score (None without scores)
    locally_optimal: bool | None  # every support token scores below its sample's selected token (Def. 2)


def constraint_matrices(X, z, selection) -> np.ndarray:
    """A_it = (x_{i,a_i} - x_it) z_i^T for every sample i and token t != a_i.  # [n, T-1, d, d]"""
    X, z, sel = _as_arrays(X, z, selection)
    n, T, _ = X.shape
    diffs = X[np.arange(n), sel][:, None, :] - X  # [n, T, d]
    diffs = np.take_along_axis(diffs, _others(sel, T)[..., None], axis=1)  # [n, T-1, d]
    return diffs[..., :, None] * z[:, None, None, :]


def att_svm(X, z, selection, norm: str = "fro", scores=None, tight_tol: float = 1e-6, rank_tol: float = 1e-5
            ) -> SVMSolution:
    """Solve Att-SVM for tokens `selection` [n] of X [n, T, d] with queries z [n, d].

    scores [n, T] (gamma_it), if given, decide global and local optimality. A constraint is tight (its token a
    support token) when its margin is within `tight_tol` of 1; the rank counts singular values above
    `rank_tol` times the largest. Raises InfeasibleSelection when no W meets the constraints.
    """
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {', '.join(NORMS)}; got {norm!r}")
    X, z, sel = _as_arrays(X, z, selection)
    n, T, d = X.shape
    A = constraint_matrices(X, z, sel).reshape(n * (T - 1), d * d)  # [m, d*d]
    if np.any(np.linalg.norm(A, axis=1) < 1e-12):
        i = int(np.argmin(np.linalg.norm(A, axis=1))) // (T - 1)
        raise InfeasibleSelection(f"selection infeasible: sample {i}'s selected token equals another of its tokens")
    W = (_min_frobenius(A) if norm == "fro" else _min_nuclear(A, d)).reshape(d, d)
    margins = np.full((n, T), np.nan)
    margins[np.arange(n)[:, None], _others(sel, T)] = (A @ W.reshape(-1)).reshape(n, T - 1)
    support = np.abs(np.nan_to_num(margins, nan=np.inf) - 1) <= tight_tol
    sv = np.linalg.svd(W, compute_uv=False)
    objective = float(np.linalg.norm(W) if norm == "fro" else sv.sum())
    glob = loc = None
    if scores is not None:
        scores = np.asarray(scores, dtype=np.float64)
        glob = bool(np.all(sel == scores.argmax(-1)))
        loc = bool(np.all(scores[support] < np.repeat(scores[np.arange(n), sel], support.sum(1))))
    return SVMSolution(W, norm, sel, margins, support, objective, int(np.sum(sv > rank_tol * sv[0])), glob, loc)


def dual_value(A: np.ndarray, lam: np.ndarray) -> float:
    """The Frobenius Att-SVM's dual objective sum(lam) - ||sum_k lam_k A_k||^2 / 2 (lam >= 0): by weak duality a
    lower bound on ||W||_F^2 / 2 for every feasible W, equal to it at the optimum."""
    return float(lam.sum() - 0.5 * np.sum((lam @ A) ** 2))


def _min_frobenius(A: np.ndarray) -> np.ndarray:
    """min ||w|| s.t. A w >= 1, via LDP -> NNLS: u = argmin_{u>=0} ||E u - f||, E = [A^T; 1^T], f = e_last;
    r = E u - f; infeasible iff r = 0, else w = -r[:-1] / r[-1]."""
    m, p = A.shape
    E = np.vstack([A.T, np.ones((1, m))])  # [p+1, m]
    f = np.zeros(p + 1)
    f[-1] = 1.0
    u, _ = nnls(E, f, maxiter=50 * m)
    r = E @ u - f
    if np.linalg.norm(r) < 1e-10 or r[-1] > -1e-10:
        raise InfeasibleSelection("selection infeasible: no W separates the selected tokens by margin 1")
    w = -r[:-1] / r[-1]
    return _polish(A, w, active=u > 0)


def _polish(A: np.ndarray, w: np.ndarray, active: np.ndarray) -> np.ndarray:
    """Re-solve on the active set: w = A_S^T (A_S A_S^T)^-1 1 (tight constraints met exactly), kept only when it is
    still feasible with non-negative multipliers, i.e. still the optimum."""
    As = A[active]
    if not len(As):
        return w
    lam, *_ = np.linalg.lstsq(As @ As.T, np.ones(len(As)), rcond=None)
    w2 = lam @ As
    if np.all(lam >= -1e-12) and np.all(A @ w2 >= 1 - 1e-10):
        return w2
    return w


def _min_nuclear(A: np.ndarray, d: int) -> np.ndarray:
    """min ||W||_* s.t. <A_k, W> >= 1, a semidefinite program solved by Clarabel (through cvxpy)."""
    import cvxpy as cp

    W = cp.Variable((d, d))
    problem = cp.Problem(cp.Minimize(cp.normNuc(W)), [A @ cp.vec(W, order="C") >= 1])
    with warnings.catch_warnings():  # "optimal_inaccurate" is checked below instead of warned about
        warnings.simplefilter("ignore", UserWarning)
        problem.solve(solver=cp.CLARABEL)
    if problem.status in ("infeasible", "infeasible_inaccurate"):
        raise InfeasibleSelection("selection infeasible: no W separates the selected tokens by margin 1")
    w = None if W.value is None else np.asarray(W.value).reshape(-1)
    # Clarabel sometimes stops at "almost solved"; on these problems that is still accurate to ~1e-8 (SCS agrees)
    if problem.status not in ("optimal", "optimal_inaccurate") or (A @ w).min() < 1 - 1e-6:
        raise RuntimeError(f"nuclear-norm Att-SVM: solver status {problem.status}, no accurate solution")
    return w


def _others(sel: np.ndarray, T: int) -> np.ndarray:
    return np.array([[t for t in range(T) if t != s] for s in sel])  # [n, T-1]


def _as_arrays(X, z, selection):
    X = np.asarray(X, dtype=np.float64)
    z = np.asarray(z, dtype=np.float64)
    sel = np.asarray(selection, dtype=np.int64).reshape(-1)
    if X.ndim != 3 or z.shape != (X.shape[0], X.shape[2]) or sel.shape != (X.shape[0],):
        raise ValueError(f"want X [n, T, d], z [n, d], selection [n]; got {X.shape}, {z.shape}, {sel.shape}")
    if np.any(sel < 0) or np.any(sel >= X.shape[1]):
        raise ValueError(f"selection must hold token indices in 0..{X.shape[1] - 1}; got {sel.tolist()}")
    return X, z, sel
