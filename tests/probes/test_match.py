import numpy as np
import pytest
import torch

import probes
import tasks
from probes.match import line_search_lr, match


@pytest.fixture
def prompts():
    return tasks.get("linear_regression", d=4).sample(200, 10, seed=8, dtype=torch.float64)


@pytest.mark.parametrize("metric", ["spd", "sime"])
def test_match_finds_the_setting_that_generated_the_predictions(prompts, metric):
    target = probes.solve("newton", prompts, steps=4)
    result = match(target, prompts, "newton", {"steps": [1, 2, 3, 4, 5, 6]}, metric=metric)
    assert result.best == {"steps": 4}
    assert result.scores.shape == (6,)
    assert result.best_score == pytest.approx(0.0 if metric == "spd" else 1.0, abs=1e-12)


def test_match_over_two_axes_returns_the_whole_grid(prompts):
    target = probes.solve("gd", prompts, steps=3, lr=0.2)
    result = match(target, prompts, "gd", {"steps": [1, 2, 3], "lr": [0.1, 0.2, 0.4]})
    assert result.best == {"steps": 3, "lr": 0.2} and result.scores.shape == (3, 3)
    assert np.argmin(result.scores) == 2 * 3 + 1
    assert result.to_dict()["axes"] == {"steps": [1, 2, 3], "lr": [0.1, 0.2, 0.4]}


def test_line_search_picks_the_lowest_error_lr(prompts):
    lrs = [0.05, 0.3, 0.8, 1.5, 3.0]
    best = line_search_lr(prompts, 1, lrs)
    errs = {lr: ((probes.solve("gd", prompts, steps=1, lr=lr)[:, -1] - prompts.ys[:, -1]) ** 2).mean() for lr in lrs}
    assert errs[best] == min(errs.values())


def test_unknown_metric_lists_choices(prompts):
    with pytest.raises(ValueError, match="spd, sime"):
        match(prompts.ys, prompts, "ols", {}, metric="l7")
