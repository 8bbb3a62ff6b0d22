import numpy as np
import pytest
import torch

import tasks
from probes import metrics
from probes.predictors import Predictor, from_solver


@pytest.fixture
def prompts():
    return tasks.get("linear_regression", d=4, noise_std=0.2).sample(64, 9, seed=4, dtype=torch.float64)


def test_spd_of_a_predictor_with_itself_is_zero_and_matches_hand_computation(prompts):
    a = from_solver("ols")(prompts)
    assert metrics.spd(a, a, 4).abs().max() == 0
    b = a + 2.0
    torch.testing.assert_close(metrics.spd(a, b, 4), torch.full((9,), 1.0, dtype=torch.float64))
    torch.testing.assert_close(metrics.prediction_difference(a, b), torch.full((9,), 2.0, dtype=torch.float64))


def test_sensitivity_of_a_linear_predictor_is_its_w(prompts):
    w = torch.randn(64, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    linear = Predictor("linear", lambda p: (p.xs * w[:, None]).sum(-1))
    torch.testing.assert_close(metrics.sensitivity(linear, prompts), w)
    # OLS with more points than d is linear in x_query with w_OLS = pinv(X) y
    X, y = prompts.xs[:, :-1], prompts.ys[:, :-1]
    w_ols = (torch.linalg.pinv(X) @ y.unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(metrics.sensitivity(from_solver("ols"), prompts), w_ols)


def test_implicit_weights_recover_a_linear_predictors_w(prompts):
    ctx = prompts.prefix(8)
    w_ols = (torch.linalg.pinv(ctx.xs) @ ctx.ys.unsqueeze(-1)).squeeze(-1)
    w_hat = metrics.implicit_weights(from_solver("ols"), ctx)
    torch.testing.assert_close(w_hat, w_ols)
    assert metrics.ilwd(w_hat, w_ols) < 1e-20
    assert metrics.ilwd(w_hat, w_ols + 1.0) == pytest.approx(4.0)
    assert metrics.simw(w_hat, 3.0 * w_ols) == pytest.approx(1.0)


def test_sime_is_scale_invariant_and_one_for_identical_errors(prompts):
    ys = prompts.ys
    a = from_solver("ridge", lam=1.0)(prompts)
    b = from_solver("averaging")(prompts)
    assert metrics.sime(a, a, ys) == pytest.approx(1.0)
    scaled = ys + 3.7 * (a - ys)
    assert metrics.sime(scaled, b, ys) == pytest.approx(metrics.sime(a, b, ys))
    assert metrics.sime(a, 2 * ys - a, ys) == pytest.approx(-1.0)  # opposite errors


def test_sensitivity_cosine_and_difference():
    g = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    h = torch.tensor([[0.0, 1.0], [0.0, 5.0]])
    assert metrics.sensitivity_cosine(g, h) == pytest.approx(0.5)
    assert metrics.sensitivity_difference(g, h) == pytest.approx((2**0.5 + 3) / 2)


def test_sime_defaults_to_fu_code_every_position_included(prompts):
    """Fu et al.'s code takes the cosine over every position, position 0 included: a hand-written per-sequence
    cosine over all columns is the default; start=1 drops column 0."""
    ys = prompts.ys.double()
    a, b = from_solver("ridge", lam=1.0)(prompts).double(), from_solver("averaging")(prompts).double()
    a[:, 0] += torch.randn(a.shape[0], dtype=a.dtype)  # column 0 must count by default
    ra, rb = (a - ys).numpy(), (b - ys).numpy()
    by_hand = [float(u @ v / (np.linalg.norm(u) * np.linalg.norm(v))) for u, v in zip(ra, rb)]
    assert metrics.sime(a, b, ys) == pytest.approx(np.mean(by_hand), abs=1e-12)
    by_hand_1 = [float(u[1:] @ v[1:] / (np.linalg.norm(u[1:]) * np.linalg.norm(v[1:]))) for u, v in zip(ra, rb)]
    assert metrics.sime(a, b, ys, start=1) == pytest.approx(np.mean(by_hand_1), abs=1e-12)
    assert abs(metrics.sime(a, b, ys) - metrics.sime(a, b, ys, start=1)) > 1e-4
