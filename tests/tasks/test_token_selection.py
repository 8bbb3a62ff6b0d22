import pytest
import torch

from tasks.token_selection import TokenSelection


def test_unit_norms_labels_and_scores():
    P = TokenSelection(n=5, T=7, d=4).sample([3, 11])
    assert P.X.shape == (2, 5, 7, 4) and P.z.shape == (2, 5, 4) and P.v.shape == (2, 4)
    assert P.X.dtype == torch.float64
    for t in (P.X, P.z, P.v):
        assert torch.allclose(t.norm(dim=-1), torch.ones((), dtype=torch.float64), atol=1e-14)
    assert set(P.y.unique().tolist()) <= {-1.0, 1.0}
    i, t = 2, 5
    assert torch.isclose(P.scores[1, i, t], P.y[1, i] * P.X[1, i, t] @ P.v[1])
    assert torch.equal(P.optimal, P.scores.argmax(-1))


def test_a_problem_does_not_depend_on_its_batch():
    task = TokenSelection()
    alone, batch = task.sample(7), task.sample([1, 7, 2])
    assert torch.equal(alone.X[0], batch.X[1]) and torch.equal(alone.y[0], batch.y[1])
    assert torch.equal(batch[1].z, alone.z)
    assert not torch.equal(batch.X[0], batch.X[2])


@pytest.mark.parametrize("kw", [{"T": 1}, {"n": 0}, {"d": 2.5}])
def test_bad_sizes_raise_one_line(kw):
    with pytest.raises(ValueError, match="must be an integer"):
        TokenSelection(**kw)
