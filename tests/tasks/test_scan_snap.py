import pytest
import torch

from tasks.scan_snap import ScanSnap


def test_conditional_distribution():
    task = ScanSnap(n_classes=3, n_common=2, n_distinct=3, common_share=0.4, distinct_decay=0.5)
    P = task.conditional()
    assert P.shape == (3, task.vocab_size) and torch.allclose(P.sum(1), torch.ones(3, dtype=torch.float64))
    assert torch.allclose(P[:, :2], torch.full((3, 2), 0.2, dtype=torch.float64))
    assert (P[:, task.query_token] == 0).all()
    for n in range(3):
        d = task.distinct_tokens(n)
        assert torch.allclose(P[n, d], 0.6 * torch.tensor([4, 2, 1], dtype=torch.float64) / 7)
        others = [m for m in range(3) if m != n]
        assert (P[others][:, d] == 0).all()  # distinct: only their own class emits them


def test_samples_follow_the_conditional_and_end_with_the_query():
    task = ScanSnap()
    b = task.sample(4000, seed=int(torch.randint(0, 2**31, ())))
    assert b.tokens.shape == (4000, task.context + 1) and (b.tokens[:, -1] == task.query_token).all()
    P = task.conditional()
    for n in range(task.n_classes):
        ctx = b.tokens[b.next_token == n, :-1].reshape(-1)
        freq = torch.bincount(ctx, minlength=task.vocab_size).double() / len(ctx)
        assert torch.allclose(freq, P[n], atol=0.01)
    counts = torch.bincount(b.next_token, minlength=task.n_classes)
    assert counts.min() > 850  # classes uniform (1000 expected each)


def test_seeded():
    task = ScanSnap()
    assert torch.equal(task.sample(8, seed=5).tokens, task.sample(8, seed=5).tokens)
    assert not torch.equal(task.sample(8, seed=5).tokens, task.sample(8, seed=6).tokens)
    with pytest.raises(ValueError, match="seed must be given"):
        task.sample(8)


@pytest.mark.parametrize("kw, field", [({"n_classes": 1}, "n_classes"), ({"common_share": 1.0}, "common_share"),
                                       ({"distinct_decay": 0}, "distinct_decay")])
def test_bad_arguments(kw, field):
    with pytest.raises(ValueError, match=f"^{field} must be"):
        ScanSnap(**kw)
