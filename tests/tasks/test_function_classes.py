"""Garg et al.'s decision trees and ReLU networks: labels against a plain per-example evaluation."""
import math

import pytest
import torch

import tasks


def _seed():
    return int(torch.randint(0, 10**6, ()))  # fresh prompts every run


def test_decision_tree_labels_equal_a_direct_recursive_walk():
    task = tasks.get("decision_tree", d=7, depth=4)
    p = task.sample(16, 12, seed=_seed(), dtype=torch.float64)
    features, leaves = p.params["features"], p.params["leaves"]
    assert features.shape == leaves.shape == (16, 2**5 - 1) and features.max() < 7

    def walk(b, x, node=0, level=0):  # their code: x_f > 0 goes to child 2n + 2, else 2n + 1
        if level == task.depth:
            return leaves[b, node].item()
        f = features[b, node].item()
        return walk(b, x, 2 * node + (2 if x[f] > 0 else 1), level + 1)

    for b in range(16):
        for i in range(12):
            assert p.ys[b, i].item() == walk(b, p.xs[b, i])
    leaf_values = {v for v in p.ys.flatten().tolist()}
    assert len(leaf_values) > 16  # many leaves reached, not one constant


def test_decision_tree_with_d_active_uses_only_the_left_branch_of_inactive_coordinates():
    task = tasks.get("decision_tree", d=6, depth=3)
    p = task.sample(8, 10, seed=_seed(), d_active=2, dtype=torch.float64)
    assert (p.xs[..., 2:] == 0).all()
    assert task.y_variance() == 1.0


def test_relu_net_labels_equal_a_per_example_network():
    task = tasks.get("relu_net", d=5, hidden=9)
    p = task.sample(6, 8, seed=_seed(), dtype=torch.float64)
    W1, W2 = p.params["W1"], p.params["W2"]
    for b in range(6):
        for i in range(8):
            hidden = [max(0.0, sum(p.xs[b, i, k].item() * W1[b, k, j].item() for k in range(5))) for j in range(9)]
            y = math.sqrt(2 / 9) * sum(h * W2[b, j].item() for j, h in enumerate(hidden))
            assert p.ys[b, i].item() == pytest.approx(y, abs=1e-12)


def test_relu_net_scale_makes_the_zero_predictor_error_d():
    task = tasks.get("relu_net", d=8, hidden=100)
    p = task.sample(4000, 4, seed=_seed(), dtype=torch.float64)
    assert (p.ys**2).mean().item() / task.y_variance() == pytest.approx(1.0, abs=0.08)
    assert task.y_variance(d_active=3) == 3.0


@pytest.mark.parametrize("name, kw", [("decision_tree", {"depth": 0}), ("decision_tree", {"leaf_std": -1.0}),
                                      ("relu_net", {"hidden": 0})])
def test_bad_arguments_are_one_line_errors(name, kw):
    with pytest.raises(ValueError, match=next(iter(kw))):
        tasks.get(name, **kw)
