import math

import numpy as np
import torch

from fresh import fresh_seeds
from probes.dynamics import OneLayerAttention, train_dynamics
from tasks.scan_snap import ScanSnap

SEED = fresh_seeds(1, __name__)[0]


def _random_model(task, normalize=True):
    g = torch.Generator().manual_seed(SEED)
    model = OneLayerAttention(task.vocab_size, task.n_classes, normalize)
    with torch.no_grad():
        model.Z.copy_(torch.randn(model.Z.shape, generator=g, dtype=torch.float64))
        model.Y.copy_(torch.randn(model.Y.shape, generator=g, dtype=torch.float64))
    return model


def test_forward_equals_the_papers_formula_written_out():
    """Tian et al. eqs. (2)-(3): b_t = softmax_t(z[m, x_t]), u = sum_t b_t e_{x_t}, logits = Y^T u / ||u||."""
    task = ScanSnap(context=7)
    model = _random_model(task)
    b = task.sample(5, seed=SEED)
    logits, a = model(b.tokens)
    Z, Y = model.Z.detach(), model.Y.detach()
    for i in range(5):
        m, ctx = b.tokens[i, -1], b.tokens[i, :-1]
        w = [math.exp(Z[m, x]) for x in ctx]
        u = torch.zeros(task.vocab_size, dtype=torch.float64)
        for wt, x in zip(w, ctx):
            u[x] += wt / sum(w)
        assert torch.allclose(a[i], torch.tensor(w, dtype=torch.float64) / sum(w), atol=1e-14)
        assert torch.allclose(logits[i], (u / u.norm()) @ Y, atol=1e-12)


def test_no_positional_encoding():
    task = ScanSnap(context=9)
    model = _random_model(task)
    b = task.sample(6, seed=SEED)
    perm = torch.cat([torch.randperm(9), torch.tensor([9])])
    assert torch.allclose(model(b.tokens)[0], model(b.tokens[:, perm])[0], atol=1e-12)


def test_separate_learning_rates():
    task = ScanSnap(n_classes=2, n_common=2, n_distinct=2, context=8)
    frozen = train_dynamics(task, lr_decoder=1.0, lr_attention=0.0, steps=40, batch=16, seed=SEED, n_eval=64)
    assert np.allclose(frozen.entropy, math.log(8))  # attention never moves from uniform
    assert frozen.loss[-1] < frozen.loss[0]  # while the decoder learns
    idle = train_dynamics(task, lr_decoder=0.0, lr_attention=1.0, steps=40, batch=16, seed=SEED, n_eval=64)
    assert np.allclose(idle.loss, math.log(2)) and np.allclose(idle.entropy, math.log(8))  # Y = 0: no signal to Z
    both = train_dynamics(task, lr_decoder=1.0, lr_attention=1.0, steps=40, batch=16, seed=SEED, n_eval=64)
    assert both.entropy[-1] < math.log(8) - 1e-3
    assert np.allclose(both.token_attention.sum(-1), 1)  # attention mass over token ids sums to one per class
    assert both.steps[0] == 0 and both.steps[-1] == 40 and list(both.steps) == sorted(set(both.steps))


def test_common_tokens_lose_attention():
    task = ScanSnap(n_classes=3, n_common=3, n_distinct=2, context=16)
    d = train_dynamics(task, 1.0, 1.0, steps=300, batch=64, seed=SEED, n_eval=96)
    common = d.mass(lambda n: list(range(task.n_common)))
    assert common[-1] < 0.8 * common[0]
