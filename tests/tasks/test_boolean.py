"""Boolean function samplers: labels match each function on every example (checked by a plain per-example
evaluation written independently of the vectorised one), balance, teaching prefixes, seeds."""
import pytest
import torch

import tasks
from tasks.boolean import CLASSES


def _label(fn: str, params: dict, b: int, x: list, task) -> float:
    """One example's label from the ground truth, the slow and obvious way."""
    if fn in ("conjunction", "disjunction", "sparse_disjunction"):
        lits = [(j, int(s)) for j, s in enumerate(params["literals"][b].tolist()) if s != 0]
        sat = [x[j] == s for j, s in lits]
        return 1.0 if (all(sat) if fn == "conjunction" else any(sat)) else -1.0
    if fn in ("cnf", "dnf"):
        groups = [[(j, int(s)) for j, s in enumerate(c.tolist()) if s != 0] for c in params["clauses"][b]]
        if fn == "cnf":
            return 1.0 if all(any(x[j] == s for j, s in c) for c in groups) else -1.0
        return 1.0 if any(all(x[j] == s for j, s in c) for c in groups) else -1.0
    if fn == "majority":
        return 1.0 if sum(x[j] for j, m in enumerate(params["subset"][b].tolist()) if m) > 0 else -1.0  # tie: -1
    if fn in ("threshold", "halfspace"):
        total = sum(w * xj for w, xj in zip(params["weights"][b].tolist(), x))
        return 1.0 if total - params["threshold"][b].item() > 0 else -1.0
    if fn in ("parity", "sparse_parity"):
        prod = 1.0
        for j, m in enumerate(params["subset"][b].tolist()):
            prod *= x[j] if m else 1.0
        return prod
    raise AssertionError(fn)


@pytest.mark.parametrize("fn", [c for c in CLASSES if c != "nearest_neighbour"])
def test_labels_match_the_function_on_every_example(fn):
    task = tasks.get("boolean", n=8, fn=fn)
    p = task.sample(40, 12, seed=3)
    assert set(p.xs.unique().tolist()) == {-1.0, 1.0} and set(p.ys.unique().tolist()) <= {-1.0, 1.0}
    for b in range(40):
        for i in range(12):
            assert p.ys[b, i].item() == _label(fn, p.params, b, p.xs[b, i].tolist(), task), (fn, b, i)


def test_nearest_neighbour_labels_copy_the_most_similar_earlier_point():
    p = tasks.get("boolean", n=8, fn="nearest_neighbour", nn_random=3).sample(30, 15, seed=4)
    for b in range(30):
        for i in range(3, 15):
            sims = [sum(a * c for a, c in zip(p.xs[b, i].tolist(), p.xs[b, j].tolist())) for j in range(i)]
            assert p.ys[b, i] == p.ys[b, sims.index(max(sims))]


@pytest.mark.parametrize("fn", CLASSES)
def test_labels_are_balanced_within_the_rules(fn):
    """At n = 28 a random conjunction is almost never true: the forced 30% are what keeps its labels from all
    being -1 (dually for disjunctions). Every class stays between 25% and 75% positive."""
    positive = (tasks.get("boolean", n=28, fn=fn).sample(1000, 40, seed=5).ys > 0).float().mean().item()
    assert 0.25 < positive < 0.75
    if fn in tasks.boolean.FORCE:
        forced_label_share = positive if fn in ("conjunction", "dnf") else 1 - positive
        assert forced_label_share >= tasks.boolean.FORCE[fn] - 0.02


def test_literal_distribution_is_0_15_positive_0_15_negated():
    lits = tasks.get("boolean", n=28, fn="conjunction").sample(4000, 1, seed=6).params["literals"]
    assert (lits == 1).float().mean().item() == pytest.approx(0.15, abs=0.01)
    assert (lits == -1).float().mean().item() == pytest.approx(0.15, abs=0.01)


def test_sparse_classes_have_exactly_their_size():
    assert (tasks.get("boolean", n=10, fn="sparse_parity", k=3).sample(50, 2, seed=7).params["subset"]
            .sum(1) == 3).all()
    assert ((tasks.get("boolean", n=10, fn="sparse_disjunction").sample(50, 2, seed=7).params["literals"] != 0)
            .sum(1) == 4).all()


@pytest.mark.parametrize("fn", ["conjunction", "disjunction", "sparse_parity"])
def test_teaching_prefix_comes_first_and_labels_still_match(fn):
    task = tasks.get("boolean", n=8, fn=fn, teaching=True)
    p = task.sample(30, 14, seed=8)
    assert torch.equal(p.ys, tasks.boolean.evaluate(fn, p.params, p.xs))
    if fn == "sparse_parity":
        assert (p.xs[:, 0] == 1).all() and (p.xs[:, 1:9].prod(-1) == -1).all()  # all ones, then one bit flipped
    else:
        first, second = p.xs[:, 0], p.xs[:, 1]
        relevant = p.params["literals"] != 0
        assert ((first == second) == relevant).all()  # the two first examples differ exactly on irrelevant bits
        assert (p.ys[:, :2] == (1 if fn == "conjunction" else -1)).all()
    with pytest.raises(ValueError, match="n_points must be >= 9"):
        tasks.get("boolean", n=8, fn="sparse_parity", teaching=True).sample(2, 5, seed=0)
    with pytest.raises(ValueError, match="teaching must be false unless"):
        tasks.get("boolean", n=8, fn="majority", teaching=True)


def test_same_seed_same_prompts_and_bad_arguments_are_named():
    t = tasks.get("boolean", n=6, fn="cnf")
    a, b = t.sample(5, 7, seed=9), t.sample(5, 7, seed=9)
    assert torch.equal(a.xs, b.xs) and torch.equal(a.ys, b.ys)
    with pytest.raises(ValueError, match="fn must be one of"):
        tasks.get("boolean", fn="xor-of-everything")
    with pytest.raises(ValueError, match="k must be between 1 and n = 6"):
        tasks.get("boolean", n=6, fn="sparse_parity", k=9)
