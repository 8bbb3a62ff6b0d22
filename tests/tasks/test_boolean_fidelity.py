"""The Boolean generators against an independent computation of Bhattamishra et al.'s own rules (their
src/bool_tasks.py, rewritten here as plain per-prompt numpy in their arithmetic form: y = sign(x.w - kw)): label
balance, the share of prompts that carry a single label, and the support of the drawn functions."""
import numpy as np
import pytest

import tasks
from fresh import fresh_seeds

PROMPTS, POINTS = 2000, 40
SEED = fresh_seeds(1, __name__)[0]


def _literals(rng, n, p_each):
    """Each variable +1 / -1 / 0 with probability p_each / p_each / 1 - 2 p_each (their np.random.choice)."""
    return rng.choice([0, 1, -1], size=n, p=[1 - 2 * p_each, p_each, p_each]).astype(float)


def _force(rng, xs, w, sign, p):
    """Their balancing loop: with probability p an example gets x_j = sign * w_j on every literal of w."""
    for i in range(len(xs)):
        if rng.random() < p:
            xs[i, w != 0] = sign * w[w != 0]
    return xs


def _theirs(fn: str, n: int, rng) -> np.ndarray:
    """One prompt's POINTS labels by their rule."""
    xs = rng.integers(0, 2, size=(POINTS, n)).astype(float) * 2 - 1
    if fn == "sparse_disjunction":
        w = np.zeros(n)
        w[rng.choice(n, 4, replace=False)] = 1
        xs = _force(rng, xs, w, -1, 0.3)
        return np.sign(xs @ w + (np.abs(w).sum() - 1))
    if fn in ("cnf", "dnf"):
        ws = [_literals(rng, n, 0.1) for _ in range(3)]
        kws = [np.abs(w).sum() - 1 for w in ws]
        chosen = ws[rng.integers(3)]
        xs = _force(rng, xs, chosen, -1 if fn == "cnf" else 1, 0.3 if fn == "cnf" else 0.35)
        if fn == "cnf":
            return np.min([np.sign(xs @ w + kw) for w, kw in zip(ws, kws)], axis=0)
        return np.max([np.sign(xs @ w - kw) for w, kw in zip(ws, kws)], axis=0)
    if fn == "majority":
        w = (rng.random(n) < 0.3).astype(float)
        return np.sign(xs @ w - 0.5)
    if fn == "threshold":
        w = _literals(rng, n, 0.15)
        return np.sign(xs @ w - (rng.integers(-3, 3) + 0.5))
    raise AssertionError(fn)


def _stats(ys: np.ndarray) -> tuple[float, float, float, float]:
    """(P(y = +1), the share of prompts whose labels are all one value) of labels [prompts, points], and the standard
    error of each (examples within a prompt are correlated: the error of P(+1) is that of the per-prompt means)."""
    positive = (ys > 0).mean(1)  # [prompts]
    single = (np.abs(ys.sum(1)) == ys.shape[1]).astype(float)
    n = len(ys)
    return float(positive.mean()), float(single.mean()), float(positive.std() / n**0.5), float(single.std() / n**0.5)


@pytest.mark.parametrize("fn, n", [("sparse_disjunction", 28), ("cnf", 28), ("dnf", 28), ("cnf", 6), ("dnf", 6),
                                   ("majority", 6), ("majority", 28), ("threshold", 28), ("threshold", 6)])
def test_label_balance_and_single_label_prompts_match_their_rule(fn, n):
    rng = np.random.default_rng(fresh_seeds(1, f"{__name__}.{fn}.{n}")[0])
    theirs = np.stack([_theirs(fn, n, rng) for _ in range(PROMPTS)])
    assert set(np.unique(theirs)) <= {-1.0, 1.0}  # their arithmetic never hits sign(0)
    ours = tasks.get("boolean", n=n, fn=fn).sample(PROMPTS, POINTS, seed=int(rng.integers(2**31))).ys.numpy()
    (p_theirs, single_theirs, se_p, se_s), (p_ours, single_ours, se_p2, se_s2) = _stats(theirs), _stats(ours)
    assert abs(p_ours - p_theirs) < 5 * np.hypot(se_p, se_p2) + 1e-3, (p_ours, p_theirs)  # 5 standard errors
    assert abs(single_ours - single_theirs) < 5 * np.hypot(se_s, se_s2) + 1e-3, (single_ours, single_theirs)


def test_their_measured_balance_points():
    """The issue's measurements of their code: P(+1) at n = 28 for sparse disjunction 0.655, CNF 0.595, DNF 0.447;
    at n = 6 majority 0.345, and 64% of CNF prompts carry a single label."""
    def ours(fn, n):
        return _stats(tasks.get("boolean", n=n, fn=fn).sample(PROMPTS, POINTS, seed=SEED).ys.numpy())

    for fn, n, p in (("sparse_disjunction", 28, 0.655), ("cnf", 28, 0.595), ("dnf", 28, 0.447), ("majority", 6, 0.345)):
        assert ours(fn, n)[0] == pytest.approx(p, abs=0.04), fn  # their numbers, from a sample of unknown size
    assert ours("cnf", 6)[1] == pytest.approx(0.64, abs=0.07)


def test_function_support_follows_their_priors():
    n, B = 28, 6000
    draw = {fn: tasks.get("boolean", n=n, fn=fn).draw_functions(B, seed=SEED)
            for fn in ("sparse_disjunction", "cnf", "majority", "threshold")}
    lits = draw["sparse_disjunction"]["literals"]
    assert ((lits == 1).sum(1) == 4).all() and not (lits == -1).any()  # 4 positive literals, none negated
    clauses = draw["cnf"]["clauses"]  # [B, 3, n]: 0.1 / 0.1 / 0.8 per variable and clause
    assert (clauses == 1).float().mean().item() == pytest.approx(0.1, abs=0.005)
    assert (clauses == -1).float().mean().item() == pytest.approx(0.1, abs=0.005)
    assert set(draw["cnf"]["forced"].unique().tolist()) == {0, 1, 2}
    assert draw["majority"]["subset"].mean().item() == pytest.approx(0.3, abs=0.005)
    w, t = draw["threshold"]["weights"], draw["threshold"]["threshold"]
    assert (w == 0).float().mean().item() == pytest.approx(0.7, abs=0.005)
    assert (w == 1).float().mean().item() == pytest.approx(0.15, abs=0.005)
    assert sorted(t.unique().tolist()) == [-2.5, -1.5, -0.5, 0.5, 1.5, 2.5]
