import pytest
import torch

import tasks
from lab.config import ModelConfig
from lab.model import build_model
from probes import readout


def _model(n_layers=2):
    return build_model(ModelConfig(n_layers=n_layers, n_heads=2, d_model=16, d_mlp=32, d_in=3, max_len=40))


def test_layer_states_are_the_cached_residual_stream_at_x_positions():
    model, fmt = _model(), tasks.formats.get("interleaved")
    p = tasks.get("linear_regression", d=3).sample(5, 6, seed=0)
    h = readout.layer_states(model, fmt, p)
    assert h.shape == (3, 5, 6, 16)
    _, cache = model.run_with_cache(fmt.encode(p))
    torch.testing.assert_close(h[2], cache["blocks.1.hook_resid_post"][:, 0::2])


def test_linear_fit_recovers_an_exact_linear_map():
    g = torch.Generator().manual_seed(1)
    h = torch.randn(300, 5, generator=g, dtype=torch.float64)
    W, b = torch.randn(5, 2, generator=g, dtype=torch.float64), torch.randn(2, dtype=torch.float64)
    target = h @ W + b
    weights = readout.fit_linear(h, target, lam=0.0)
    torch.testing.assert_close(weights, torch.cat([W, b[None]]))
    assert readout.r2(readout.apply_linear(h, weights), target) == pytest.approx(1.0)
    assert readout.r2(torch.zeros_like(target) + target.mean(0), target) == pytest.approx(0.0)


def test_probe_targets_match_closed_forms():
    p = tasks.get("linear_regression", d=3).sample(4, 7, seed=2, dtype=torch.float64)
    w = readout.probe_targets(p, "w_ols")
    torch.testing.assert_close(w[:, 6], (torch.linalg.pinv(p.xs[:, :6]) @ p.ys[:, :6, None]).squeeze(-1))
    xty = readout.probe_targets(p, "xty")
    torch.testing.assert_close(xty[:, 3], torch.einsum("bnd,bn->bd", p.xs[:, :3], p.ys[:, :3]))
    assert (w[:, 0] == 0).all()
    with pytest.raises(ValueError, match="w_ols, xty"):
        readout.probe_targets(p, "w")


def test_readout_of_layer_0_cannot_predict_but_an_input_that_carries_y_can():
    """A sanity check of the read-out machinery on states whose content is known: at x positions the
    embedding holds x_i only, so a linear read-out of y_i = w.x_i with w random per prompt scores ~0 R^2."""
    model, fmt = _model(1), tasks.formats.get("interleaved")
    task = tasks.get("linear_regression", d=3)
    train, test = task.sample(400, 6, seed=3), task.sample(200, 6, seed=4)
    preds = readout.readout_predictions(model, fmt, train, test)
    assert preds.shape == (2, 200, 6)
    assert readout.r2(preds[0].flatten(), test.ys.flatten()) < 0.05


def test_mlp_probe_fits_a_nonlinear_target_better_than_linear():
    g = torch.Generator().manual_seed(5)
    h = torch.randn(2000, 3, generator=g)
    target = (h[:, :1] * h[:, 1:2])  # a product: invisible to a linear probe
    train, test = slice(0, 1500), slice(1500, None)
    lin = readout.apply_linear(h[test], readout.fit_linear(h[train], target[train]))
    mlp = readout.fit_mlp(h[train], target[train], steps=400)(h[test])
    assert readout.r2(lin, target[test]) < 0.05 and readout.r2(mlp, target[test]) > 0.8
