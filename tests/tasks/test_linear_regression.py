import pytest
import torch

import tasks


def test_shapes_and_noiseless_labels_are_exact():
    task = tasks.get("linear_regression", d=6)
    p = task.sample(5, 9, seed=3, dtype=torch.float64)
    assert p.xs.shape == (5, 9, 6) and p.ys.shape == (5, 9) and p.params["w"].shape == (5, 6)
    torch.testing.assert_close(p.ys, torch.einsum("bnd,bd->bn", p.xs, p.params["w"]), rtol=0, atol=1e-12)


def test_same_seed_same_prompts_other_seed_other_prompts():
    task = tasks.get("linear_regression", d=4)
    a, b, c = task.sample(3, 5, seed=11), task.sample(3, 5, seed=11), task.sample(3, 5, seed=12)
    assert torch.equal(a.xs, b.xs) and torch.equal(a.ys, b.ys)
    assert not torch.equal(a.xs, c.xs)
    g = torch.Generator().manual_seed(11)
    assert torch.equal(task.sample(3, 5, generator=g).xs, a.xs)


def test_sampling_needs_explicit_randomness():
    with pytest.raises(ValueError, match="seed"):
        tasks.get("linear_regression", d=3).sample(2, 3)


@pytest.mark.parametrize("cov", ["skewed", "ill_conditioned"])
def test_covariance_matches_its_spectrum(cov):
    task = tasks.get("linear_regression", d=6, x_cov=cov, kappa=50.0, basis_seed=4)
    xs = task.sample(20000, 4, seed=0, dtype=torch.float64).xs.reshape(-1, 6)
    emp = xs.T @ xs / xs.shape[0]
    sigma = task.covariance()
    assert torch.linalg.matrix_norm(emp - sigma) / torch.linalg.matrix_norm(sigma) < 0.03
    eig = torch.linalg.eigvalsh(sigma)
    assert eig.sum().item() == pytest.approx(6.0)
    if cov == "ill_conditioned":
        assert (eig.max() / eig.min()).item() == pytest.approx(50.0)
    else:
        lam = torch.sort(eig, descending=True).values
        torch.testing.assert_close(lam / lam[0], 1 / torch.arange(1, 7, dtype=torch.float64) ** 2)


def test_uniform_x_range_and_variance():
    task = tasks.get("linear_regression", d=10, x_dist="uniform", x_range=0.5)
    p = task.sample(2000, 11, seed=1, dtype=torch.float64)
    assert p.xs.abs().max() <= 0.5 and p.xs.abs().max() > 0.49
    assert (p.ys**2).mean().item() == pytest.approx(task.y_variance(), rel=0.05)
    assert task.y_variance() == pytest.approx(10 / 12)


def test_sparsity_noise_and_y_variance():
    task = tasks.get("linear_regression", d=8, sparsity=3, noise_std=0.5, w_std=2.0)
    p = task.sample(4000, 10, seed=2, dtype=torch.float64)
    assert ((p.params["w"] != 0).sum(1) == 3).all()
    resid = p.ys - torch.einsum("bnd,bd->bn", p.xs, p.params["w"])
    assert resid.std().item() == pytest.approx(0.5, rel=0.03)
    assert (p.ys**2).mean().item() == pytest.approx(task.y_variance(), rel=0.05)
    assert task.y_variance() == pytest.approx(4.0 * 3 + 0.25)


@pytest.mark.parametrize("d, s, d_active", [(20, 3, 5), (5, 2, 2), (20, 5, 3), (8, 3, 8)])
def test_sparse_weights_lie_among_the_active_coordinates(d, s, d_active):
    """Garg et al.'s SparseLinearRegression(valid_coords=d_active): the s nonzero weights are a uniform s-subset of
    the active coordinates (all of them when s > d_active), so no prompt is y = 0 everywhere."""
    task = tasks.get("linear_regression", d=d, sparsity=s)
    p = task.sample(6000, 7, seed=5, d_active=d_active, dtype=torch.float64)
    nonzero = p.params["w"] != 0  # [B, d]
    kept = min(s, d_active)
    assert (nonzero.sum(1) == kept).all() and not nonzero[:, d_active:].any()
    assert (p.ys.abs().amax(1) > 0).all()
    freq = nonzero[:, :d_active].double().mean(0)  # each active coordinate kept with probability kept / d_active
    torch.testing.assert_close(freq, torch.full((d_active,), kept / d_active, dtype=torch.float64), rtol=0, atol=0.03)
    assert (p.ys**2).mean().item() == pytest.approx(task.y_variance(d_active), rel=0.06)
    assert task.y_variance(d_active) == pytest.approx(kept)


def test_d_active_zeroes_trailing_coordinates():
    p = tasks.get("linear_regression", d=7).sample(4, 6, seed=0, d_active=3)
    assert (p.xs[..., 3:] == 0).all() and (p.xs[..., :3] != 0).all()


@pytest.mark.parametrize("kwargs, field", [({"d": 0}, "d"), ({"noise_std": -1.0}, "noise_std"),
                                           ({"sparsity": 9, "d": 4}, "sparsity"), ({"x_cov": "weird"}, "x_cov"),
                                           ({"kappa": 0.5}, "kappa"),
                                           ({"x_dist": "uniform", "x_cov": "skewed"}, "x_cov")])
def test_bad_arguments_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        tasks.get("linear_regression", **kwargs)


def test_unknown_task_and_argument_list_the_choices():
    with pytest.raises(ValueError, match="linear_regression"):
        tasks.get("no_such_task")
    with pytest.raises(ValueError, match="allowed: d, "):
        tasks.get("linear_regression", dim=3)


@pytest.mark.parametrize("x_cov", ["isotropic", "skewed"])
def test_scaled_x_and_active_dims_match_the_y_variance(x_cov):
    """Garg's shifted prompts: x scaled by 2, only the first 3 of 6 coordinates active."""
    task = tasks.get("linear_regression", d=6, x_cov=x_cov, x_scale=2.0, noise_std=0.3)
    base = tasks.get("linear_regression", d=6, x_cov=x_cov)
    p, q = task.sample(6000, 8, seed=3, d_active=3), base.sample(6000, 8, seed=3, d_active=3)
    torch.testing.assert_close(p.xs, 2.0 * q.xs)
    assert (p.xs[..., 3:] == 0).all()
    assert (p.ys.double() ** 2).mean().item() == pytest.approx(task.y_variance(d_active=3), rel=0.05)
    assert task.y_variance(d_active=3) < task.y_variance()
    with pytest.raises(ValueError, match="x_scale"):
        tasks.get("linear_regression", x_scale=0.0)
