import pytest
import torch

import probes
import tasks
from probes.constructions import gd_layer_weights, gd_model, kq_pv_products


def _stacked_prediction(model, p):
    fmt = tasks.formats.get("stacked")
    return fmt.decode(model(fmt.encode(p)))[:, 0]  # the query's prediction, [B]


@pytest.mark.parametrize("d, n_context, steps", [(3, 5, 1), (5, 10, 1), (4, 7, 3), (10, 10, 2), (6, 4, 4)])
def test_lsa_construction_is_gradient_descent_float64(d, n_context, steps):
    task = tasks.get("linear_regression", d=d, x_dist="uniform", x_range=0.5)
    p = task.sample(32, n_context + 1, seed=d * 100 + steps, dtype=torch.float64)
    lr = 2.3
    model = gd_model(d, n_context, steps, lr)
    expected = probes.solve("gd", p, steps=steps, lr=lr)[:, -1]
    torch.testing.assert_close(_stacked_prediction(model, p), expected, rtol=0, atol=1e-10)
    tied = gd_model(d, n_context, steps, lr, tied=True)
    torch.testing.assert_close(_stacked_prediction(tied, p), expected, rtol=0, atol=1e-10)


@pytest.mark.parametrize("d, n_context, steps, gamma", [(3, 6, 1, 0.2), (10, 10, 2, 0.179), (5, 8, 3, 0.05)])
def test_lsa_construction_is_gd_plus_plus_float64(d, n_context, steps, gamma):
    p = tasks.get("linear_regression", d=d, x_dist="uniform", x_range=0.5).sample(
        16, n_context + 1, seed=steps, dtype=torch.float64)
    model = gd_model(d, n_context, steps, lr=1.5, gamma=gamma)
    expected = probes.solve("gdpp", p, steps=steps, lr=1.5, gamma=gamma)[:, -1]
    torch.testing.assert_close(_stacked_prediction(model, p), expected, rtol=0, atol=1e-10)
    gd_gap = (expected - probes.solve("gd", p, steps=steps, lr=1.5)[:, -1]).abs().max()
    # the x-update is simultaneous with the y-update, so it changes the prediction from the second step on
    assert gd_gap > 1e-4 if steps > 1 else gd_gap < 1e-12


def test_lsa_construction_float32():
    p = tasks.get("linear_regression", d=8).sample(64, 9, seed=1)
    model = gd_model(8, 8, 2, lr=0.4, dtype=torch.float32)
    torch.testing.assert_close(_stacked_prediction(model, p), probes.solve("gd", p, steps=2, lr=0.4)[:, -1],
                               rtol=0, atol=1e-5)


def test_products_of_the_construction():
    model = gd_model(3, 5, 1, lr=2.0, gamma=0.1)
    kq, pv = kq_pv_products(model)
    w = gd_layer_weights(3, 5, 2.0, 0.1)
    torch.testing.assert_close(kq, w["W_K"])
    torch.testing.assert_close(pv, -torch.diag(torch.tensor([0.1, 0.1, 0.1, 0.4], dtype=torch.float64)))
