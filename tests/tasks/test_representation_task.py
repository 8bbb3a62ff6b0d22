"""Guo et al.'s representation task: Phi* fixed by its seed, labels against a per-example evaluation."""
import pytest
import torch

import tasks


def test_labels_equal_w_dot_phi_of_x_by_a_per_example_mlp():
    task = tasks.get("representation", d=6, D=5, phi_depth=2, noise_std=0.0, phi_seed=int(torch.randint(0, 999, ())))
    p = task.sample(5, 7, seed=int(torch.randint(0, 10**6, ())), dtype=torch.float64)
    W1, W2 = task.phi_weights  # [5, 6], [5, 5]

    def leaky(v):
        return [t if t > 0 else 0.01 * t for t in v]

    for b in range(5):
        for i in range(7):
            x = p.xs[b, i].tolist()
            h = leaky([sum(W1[r, c].item() * x[c] for c in range(6)) for r in range(5)])  # d != D: no skip
            z = leaky([sum(W2[r, c].item() * h[c] for c in range(5)) for r in range(5)])
            phi = [task.phi_scale * (h[r] + z[r]) for r in range(5)]  # residual
            assert p.params["phi"][b, i].tolist() == pytest.approx(phi, abs=1e-12)
            assert p.ys[b, i].item() == pytest.approx(sum(w * f for w, f in zip(p.params["w"][b].tolist(), phi)),
                                                      abs=1e-12)


def test_phi_is_shared_by_prompts_and_fixed_by_its_seed_alone():
    a, b = tasks.get("representation", phi_seed=3), tasks.get("representation", phi_seed=3)
    c = tasks.get("representation", phi_seed=4)
    x = torch.randn(10, 20, dtype=torch.float64)
    assert torch.equal(a.phi(x), b.phi(x)) and not torch.allclose(a.phi(x), c.phi(x))
    p1, p2 = a.sample(50, 5, seed=1), a.sample(50, 5, seed=2)
    assert not torch.equal(p1.params["w"], p2.params["w"])  # w fresh per prompt


def test_normalisation_makes_the_zero_predictor_error_one_plus_noise():
    task = tasks.get("representation", phi_depth=3, noise_std=0.5)
    p = task.sample(4000, 6, seed=int(torch.randint(0, 10**6, ())), dtype=torch.float64)
    assert (p.ys**2).mean().item() == pytest.approx(task.y_variance(), rel=0.08)
    assert task.y_variance() == 1.25 and task.bayes_lambda() == pytest.approx(0.25 * 20)


def test_bad_arguments_are_one_line_errors():
    with pytest.raises(ValueError, match="phi_depth"):
        tasks.get("representation", phi_depth=0)
    with pytest.raises(ValueError, match="act"):
        tasks.get("representation", act="tanh")
