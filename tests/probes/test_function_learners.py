"""Garg et al.'s baselines for decision trees and ReLU networks: the prefix convention, a greedy tree's exactness on
repeated points, and the batched per-prompt nets against a plain torch.nn training loop."""
import pytest
import torch
from sklearn.ensemble import GradientBoostingRegressor
from sklearn.tree import DecisionTreeRegressor

import probes
import tasks
from probes.function_learners import relu_net_init, relu_net_train


def _prompts(name, B=4, n=9, **kw):
    return tasks.get(name, d=4, **kw).sample(B, n, seed=int(torch.randint(0, 10**6, ())), dtype=torch.float64)


@pytest.mark.parametrize("learner, make", [
    ("tree", lambda: DecisionTreeRegressor(max_depth=3, random_state=0)),
    ("boosted_trees", lambda: GradientBoostingRegressor(random_state=0)),
])
def test_tree_learners_fit_pairs_before_i_and_predict_x_i(learner, make):
    p = _prompts("decision_tree", depth=2)
    kw = {"max_depth": 3} if learner == "tree" else {}
    preds = probes.solve(learner, p, **kw)
    assert (preds[:, 0] == 0).all()
    for b in range(4):
        for i in (1, 4, 8):
            direct = make().fit(p.xs[b, :i].numpy(), p.ys[b, :i].numpy()).predict(p.xs[b, i:i + 1].numpy())[0]
            assert preds[b, i].item() == pytest.approx(direct, abs=1e-12)


def test_a_full_greedy_tree_returns_the_label_of_a_repeated_point():
    p = _prompts("decision_tree", B=3, n=10)
    p.xs[:, 9] = p.xs[:, 4]  # the query repeats an earlier point: a tree grown to pure leaves returns its label
    preds = probes.solve("tree", p)
    torch.testing.assert_close(preds[:, 9], p.ys[:, 4], rtol=0, atol=1e-12)


def test_batched_relu_nets_equal_one_net_trained_by_a_plain_torch_loop():
    p = _prompts("relu_net", B=3, n=7, hidden=6)
    g = torch.Generator().manual_seed(5)
    params = relu_net_init(3, 7, 4, 10, g)
    preds = relu_net_train(p.xs, p.ys, params, steps=25, lr=5e-3)  # [3, 7]
    for b, i in ((0, 3), (2, 6), (1, 1)):
        net = torch.nn.Sequential(torch.nn.Linear(4, 10), torch.nn.ReLU(), torch.nn.Linear(10, 1)).double()
        with torch.no_grad():
            net[0].weight.copy_(params[0][b, i].T)
            net[0].bias.copy_(params[1][b, i, 0])
            net[2].weight.copy_(params[2][b, i][None])
            net[2].bias.copy_(params[3][b, i])
        opt = torch.optim.Adam(net.parameters(), lr=5e-3)
        for _ in range(25):
            opt.zero_grad()
            torch.nn.functional.mse_loss(net(p.xs[b, :i]).squeeze(-1), p.ys[b, :i]).backward()
            opt.step()
        assert preds[b, i].item() == pytest.approx(net(p.xs[b, i:i + 1]).item(), abs=1e-10)


def test_relu_net_learner_fits_its_prompts_better_than_averaging():
    p = _prompts("relu_net", B=16, n=31, hidden=20)
    net = probes.solve("relu_net", p, steps=200, lr=1e-2)
    assert (net[:, 0] == 0).all()
    err = lambda q: ((q - p.ys)[:, 20:] ** 2).mean().item()  # noqa: E731
    assert err(net) < 0.8 * err(probes.solve("averaging", p))


def test_ridge_on_ground_truth_features_is_the_float64_closed_form():
    task = tasks.get("representation", d=5, D=6, phi_depth=2, noise_std=0.3)
    p = task.sample(4, 9, seed=int(torch.randint(0, 10**6, ())), dtype=torch.float64)
    lam = task.bayes_lambda()
    oracle = probes.solve("ridge", p, features="phi", lam=lam)
    for b in range(4):
        for i in (1, 5, 8):
            F, y = p.params["phi"][b, :i], p.ys[b, :i]
            w = torch.linalg.inv(F.T @ F + lam * torch.eye(6, dtype=torch.float64)) @ F.T @ y
            assert oracle[b, i].item() == pytest.approx((p.params["phi"][b, i] @ w).item(), abs=1e-12)
    with pytest.raises(ValueError, match="features='nope'"):
        probes.solve("ridge", p, features="nope", lam=1.0)
