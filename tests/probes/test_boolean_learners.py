"""The Boolean reference learners: exact where their examples determine the function."""
import itertools
import math

import pytest
import torch

import probes
import tasks
from probes.boolean_learners import accuracy, query_only


@pytest.mark.parametrize("fn", ["conjunction", "disjunction"])
def test_literal_elimination_is_exact_after_the_teaching_sequence(fn):
    task = tasks.get("boolean", n=10, fn=fn, teaching=True)
    p = task.sample(200, 20, seed=1)
    pred = probes.solve("elimination", p, kind=fn)
    length = 2 + (p.params["literals"] != 0).sum(1)  # the teaching prefix of each prompt
    after = torch.arange(20)[None, :] >= length[:, None]
    assert after.any()
    assert (accuracy(pred, p.ys)[after] == 1).all()


def test_literal_elimination_never_makes_a_false_positive_on_conjunctions():
    """Its hypothesis keeps every literal of the target, so it is at least as specific."""
    p = tasks.get("boolean", n=12, fn="conjunction").sample(300, 30, seed=2)
    pred = probes.solve("elimination", p, kind="conjunction")
    assert not ((pred > 0) & (p.ys < 0)).any()
    assert accuracy(pred, p.ys)[:, -5:].mean() > accuracy(pred, p.ys)[:, :5].mean()


def test_gf2_is_exact_after_the_parity_teaching_sequence():
    p = tasks.get("boolean", n=9, fn="sparse_parity", k=3, teaching=True).sample(100, 16, seed=3)
    assert (accuracy(probes.solve("gf2", p), p.ys)[:, 10:] == 1).all()


def test_gf2_agrees_with_brute_force_whenever_the_consistent_parities_agree():
    """n = 4: enumerate all 16 parities; where every one consistent with the examples so far gives x_i the same
    label, the learner must give it too (and it is always consistent with the examples it has seen)."""
    p = tasks.get("boolean", n=4, fn="parity").sample(40, 8, seed=4)
    pred = probes.solve("gf2", p)
    bits = (1 - p.xs) / 2
    subsets = torch.tensor(list(itertools.product([0, 1], repeat=4)), dtype=torch.float32)  # [16, 4]
    labels = 1 - 2 * ((bits @ subsets.T) % 2)  # [B, N, 16]: every parity's label on every example
    determined = 0
    for b in range(40):
        for i in range(8):
            consistent = (labels[b, :i] == p.ys[b, :i, None]).all(0)  # [16]
            values = labels[b, i, consistent].unique()
            if len(values) == 1:
                determined += 1
                assert pred[b, i] == values[0]
    assert determined > 100


def test_majority_label_and_its_ties():
    ys = torch.tensor([[1.0, 1.0, -1.0, -1.0, -1.0]])
    p = tasks.Prompts(torch.ones(1, 5, 3), ys)
    assert probes.solve("majority", p).tolist() == [[-1.0, 1.0, 1.0, 1.0, -1.0]]  # nothing / tie -> -1


def test_the_per_prompt_net_learns_a_single_literal():
    task = tasks.get("boolean", n=6, fn="sparse_disjunction", literals=1)
    p = task.sample(16, 24, seed=5)
    acc = accuracy(probes.solve("mlp", p, steps=150), p.ys)
    assert acc[:, -6:].mean() > 0.9 and acc[:, 0].sum() <= 16


def test_the_last_prefix_net_alone_is_the_full_batch_s_last_net():
    """Nets are independent (summed losses, per-parameter Adam): fitting only the last prefix's net from the same
    initial weights gives the full computation's last column."""
    from probes.prefix_nets import train_prefix_nets

    p = tasks.get("boolean", n=5, fn="parity").sample(6, 9, seed=int(torch.randint(0, 10**6, ())))
    X, y = p.xs.double(), (p.ys > 0).double()
    B, N, n, h = 6, 9, 5, 8
    params = [torch.randn(B, N, n, h, dtype=torch.float64), torch.randn(B, N, 1, h, dtype=torch.float64),
              torch.randn(B, N, h, dtype=torch.float64), torch.randn(B, N, 1, dtype=torch.float64)]
    bce = lambda out, target: torch.nn.functional.binary_cross_entropy_with_logits(out, target, reduction="none")  # noqa: E731
    full = train_prefix_nets(X, y, params, 30, 0.05, torch.tanh, bce)  # [B, N]
    last = train_prefix_nets(X, y, [q[:, -1:] for q in params], 30, 0.05, torch.tanh, bce, at=torch.tensor([N - 1]))
    torch.testing.assert_close(last[:, 0], full[:, -1], rtol=0, atol=1e-9)
    only = probes.solve("mlp", p, last_only=True)
    assert only.shape == (B, N) and (only[:, :-1] == 0).all() and (only[:, -1] != 0).all()


def test_a_zero_score_is_wrong_and_the_null_classifier_says_minus_one():
    """Their accuracy is y == sign(score): an abstention (score 0) is wrong whatever the label."""
    ys = torch.tensor([[1.0, -1.0, 1.0, -1.0]])
    assert accuracy(torch.tensor([[0.0, 0.0, 2.0, 0.5]]), ys).tolist() == [[0.0, 0.0, 1.0, 0.0]]
    p = tasks.get("boolean", n=4, fn="majority").sample(3, 5, seed=int(torch.randint(0, 10**6, ())))
    assert (probes.solve("null", p) == -1).all()


def test_elimination_refuses_an_unknown_kind():
    p = tasks.get("boolean", n=4).sample(2, 3, seed=0)
    with pytest.raises(ValueError, match="conjunction or disjunction"):
        probes.solve("elimination", p, kind="parity")


def test_query_only_guess_matches_the_sparse_parity_prior_in_closed_form():
    """Sparse parity over k = 2 of n = 6 bits: P(y = +1 | x) = (C(m, 2) + C(n - m, 2)) / C(n, 2) for a query with m
    ones, so E_f[f(x)] = 2 P - 1; and the guess's accuracy is the closed form's 38/64 on average."""
    task = tasks.get("boolean", n=6, fn="sparse_parity")
    g = torch.Generator().manual_seed(int(torch.randint(0, 10**6, ())))
    xs = torch.randint(0, 2, (400, 6), generator=g).float() * 2 - 1
    m = (xs > 0).sum(-1).tolist()
    exact = torch.tensor([(math.comb(a, 2) + math.comb(6 - a, 2)) / 15 * 2 - 1 for a in m], dtype=torch.float64)
    scores = query_only(task, xs, n_functions=40_000, seed=1)
    assert (scores - exact).abs().max() < 0.03  # Monte Carlo: std 0.005 per query
    assert ((scores > 0) == (exact > 0)).all()  # |exact| >= 1/15 everywhere, far beyond the noise
    p = task.sample(4000, 8, seed=2)
    acc = accuracy(query_only(task, p.xs, n_functions=4096), p.ys).mean().item()
    assert abs(acc - 38 / 64) < 0.02


def test_query_only_refuses_classes_whose_inputs_fit_the_function():
    with pytest.raises(ValueError, match="conjunction draws them to fit it"):
        query_only(tasks.get("boolean", n=6, fn="conjunction"), torch.ones(3, 6))
