import torch

import tasks
from probes.icl_curve import bootstrap_curve, curve_for_predictions


def test_bootstrap_interval_brackets_the_mean_and_collapses_for_constants():
    errors = torch.rand(500, 6, generator=torch.Generator().manual_seed(0))
    errors[:, 0] = 0.25
    c = bootstrap_curve(errors, n_boot=300)
    for k in range(6):
        assert c["lo"][k] <= c["mean"][k] <= c["hi"][k]
    assert c["lo"][0] == c["mean"][0] == c["hi"][0] == 0.25
    # the 90% interval of a mean of 500 U(0,1) draws is about +-1.645 * 0.289 / sqrt(500) = +-0.021
    assert 0.03 < c["hi"][1] - c["lo"][1] < 0.055


def test_curve_normalisation_zero_predictor_one_and_truth_zero():
    task = tasks.get("linear_regression", d=4, noise_std=0.0)
    p = task.sample(4000, 6, seed=3, dtype=torch.float64)
    curve = curve_for_predictions(task, p, {"truth": p.ys, "zero": torch.zeros_like(p.ys)}, n_boot=50)
    assert max(curve["curves"]["truth"]["mean"]) == 0
    assert all(abs(m - 1) < 0.05 for m in curve["curves"]["zero"]["mean"])
    assert curve["k"] == list(range(6)) and curve["d"] == 4
