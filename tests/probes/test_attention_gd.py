import pytest
import torch

from fresh import fresh_seeds
from probes import attention_gd as ag
from probes.svm import att_svm
from tasks.token_selection import TokenSelection

SEED = fresh_seeds(1, __name__)[0]  # fresh problems on every run


@pytest.fixture
def problems():
    return TokenSelection(n=4, T=5, d=6).sample([SEED, SEED + 1, SEED + 2])


@pytest.mark.parametrize("kind", ["logistic", "linear"])
def test_gradient_matches_finite_differences(problems, kind):
    g = torch.Generator().manual_seed(SEED)
    W = torch.randn(3, 6, 6, generator=g, dtype=torch.float64)
    G = ag.gradient(problems, W, kind)
    h = 1e-6
    for s, i, j in [(0, 0, 0), (1, 2, 5), (2, 4, 1), (0, 5, 3)]:
        E = torch.zeros_like(W)
        E[s, i, j] = h
        fd = (ag.loss(problems, W + E, kind) - ag.loss(problems, W - E, kind))[s] / (2 * h)
        assert float(G[s, i, j]) == pytest.approx(float(fd), rel=1e-6, abs=1e-10)
    Wr = W.clone().requires_grad_()
    ag.loss(problems, Wr, kind).sum().backward()
    assert torch.allclose(G, Wr.grad, rtol=1e-10, atol=1e-14)


def test_gradient_stays_accurate_when_attention_saturates(problems):
    """At large ||W|| one token holds nearly all the mass and (diag(s) - s s^T) h cancels far below float64's
    rounding of h (autograd's softmax backward loses it too). Reference: the textbook formula in 400-digit mpmath."""
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 400
    g = torch.Generator().manual_seed(SEED)
    W = 300 * torch.randn(3, 6, 6, generator=g, dtype=torch.float64)
    G = ag.gradient(problems, W)[0]
    X, z, v, y = (t[0].tolist() for t in (problems.X, problems.z, problems.v, problems.y))
    Wm = mpmath.matrix(W[0].tolist())
    ref = mpmath.matrix(6, 6)
    for i in range(4):
        x = [mpmath.matrix(row) for row in X[i]]
        logits = [(x_t.T * Wm * mpmath.matrix(z[i]))[0] for x_t in x]
        top = max(logits)
        e = [mpmath.exp(a - top) for a in logits]
        s = [a / sum(e) for a in e]
        h = [(x_t.T * mpmath.matrix(v))[0] for x_t in x]
        f = sum(a * b for a, b in zip(s, h))
        c = -y[i] / (1 + mpmath.exp(y[i] * f)) / 4
        for t in range(5):
            ref += c * s[t] * (h[t] - f) * x[t] * mpmath.matrix(z[i]).T
    ref = torch.tensor([[float(ref[a, b]) for b in range(6)] for a in range(6)], dtype=torch.float64)
    assert torch.allclose(G, ref, rtol=1e-9, atol=1e-9 * float(ref.abs().max()))


def test_kq_training_uses_the_chain_rule(problems):
    """One plain-GD step on (K, Q) equals a step along autograd's gradients of L(K Q^T)."""
    g = torch.Generator().manual_seed(0)
    K0 = 0.3 * torch.randn(3, 6, 6, generator=g, dtype=torch.float64)
    Q0 = 0.3 * torch.randn(3, 6, 6, generator=g, dtype=torch.float64)
    K, Q = K0.clone().requires_grad_(), Q0.clone().requires_grad_()
    (ag.loss(problems, K @ Q.transpose(1, 2)).sum() + ag.KQ_PENALTY * (K.square().sum() + Q.square().sum())).backward()
    tr = ag.train(problems, param="KQ", steps=1, lr=0.5, normalized=False, init_scale=0.3, seed=0)
    expected = (K0 - 0.5 * K.grad) @ (Q0 - 0.5 * Q.grad).transpose(1, 2)
    assert torch.allclose(tr.W, expected, atol=1e-13)


def test_each_step_and_record_belongs_to_its_own_iterate(problems):
    """Several plain-GD steps on W equal a loop taking autograd's gradient at each iterate, and what step k records
    (loss, softmax mass) is iterate k's (train computes each iterate's attention once and reuses it)."""
    first = torch.zeros(3, 4, dtype=torch.long)
    tr = ag.train(problems, steps=4, lr=0.7, normalized=False, init_scale=0.3, seed=SEED % 997,
                  tokens={"first": first})
    W = 0.3 * torch.randn(3, 6, 6, generator=torch.Generator().manual_seed(SEED % 997), dtype=torch.float64)
    for k in range(5):
        assert torch.allclose(tr.loss[k], ag.loss(problems, W), rtol=0, atol=1e-13)
        assert torch.allclose(tr.mass["first"][k], ag.attention(problems, W)[1][..., 0], rtol=0, atol=1e-13)
        Wr = W.clone().requires_grad_()
        ag.loss(problems, Wr).sum().backward()
        W = W - 0.7 * Wr.grad if k < 4 else W
    assert torch.allclose(tr.W, W, rtol=0, atol=1e-12) and not torch.allclose(tr.W, tr.W * 0)


def test_normalised_steps_have_length_lr(problems):
    tr = ag.train(problems, steps=5, lr=0.1, init_scale=0.0)
    assert torch.allclose(tr.norm[1:], 0.1 * torch.arange(1, 6, dtype=torch.float64)[:, None], atol=0.1)
    assert torch.allclose(tr.norm[1], torch.full((3,), 0.1, dtype=torch.float64), atol=1e-14)


def test_correlation():
    A = torch.randn(2, 3, 3, dtype=torch.float64)
    assert torch.allclose(ag.correlation(A, 2.5 * A), torch.ones(2, dtype=torch.float64))
    assert torch.allclose(ag.correlation(A, -A), -torch.ones(2, dtype=torch.float64))


def test_normalised_gd_turns_towards_the_svm_of_the_tokens_it_selects():
    """Tarzanagh et al.: W turns towards the Att-SVM of the tokens it selects, run for the paper's 2000 iterations.
    At 600, about 3 seed pairs in 100 held a small-margin problem still short of the limit (selected mass 0.935,
    corr 0.878); at 2000 none of 250 pairs fell below mass 0.9995 or corr 0.96."""
    P = TokenSelection().sample([SEED, SEED + 1])
    tr = ag.train(P, steps=2000)
    D = torch.stack([torch.from_numpy(att_svm(P.X[k], P.z[k], tr.selected[k]).W) for k in range(2)])
    tr = ag.train(P, steps=2000, targets={"svm": D}, tokens={"sel": tr.selected})
    corr, mass = tr.corr["svm"], tr.mass["sel"]
    assert corr[-1].min() > 0.9 and (corr[-1] > corr[50]).all()
    assert (mass[-1] > 0.99).all() and (tr.loss[-1] < tr.loss[0]).all()


def test_bad_choices():
    P = TokenSelection().sample(0)
    with pytest.raises(ValueError, match="param must be one of W, KQ"):
        ag.train(P, param="V")
    with pytest.raises(ValueError, match="loss_kind must be one of logistic, linear"):
        ag.train(P, loss_kind="hinge")


def test_compare_with_svm_records_the_run_it_solved_for():
    """The second (recording) pass repeats the first: the SVM is solved for the tokens that run selects."""
    P = TokenSelection(n=3, T=4, d=5).sample([SEED, SEED + 7])
    c = ag.compare_with_svm(P, "KQ", steps=150)
    first = ag.train(P, "KQ", steps=150)
    assert torch.equal(c.trajectory.W, first.W) and torch.equal(c.selected, first.selected)
    for k in range(2):
        for norm in ("fro", "nuclear"):
            assert (c.solutions[norm][k].selection == first.selected[k].numpy()).all()
    assert torch.isfinite(c.trajectory.corr["nuclear"]).all() and c.trajectory.mass["optimal"].shape == (151, 2, 3)
