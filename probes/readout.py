"""Looking inside layer by layer.

Fu et al. 2023: freeze a trained model, fit a fresh linear read-out on each layer's residual stream at the
prediction positions, and compare each layer's predictions with algorithm iterates.
Akyurek et al. 2023: probes (linear, and a 2-layer MLP) that decode w_OLS and X^T y from each layer, scored
by R^2 on held-out prompts against a control (the same probe on an untrained model).
"""
from __future__ import annotations

import torch
from torch import nn

from tasks import Prompts

from .solvers import ols_fit, prefix_weights


def layer_names(model) -> list[str]:
    """The residual stream after the read-in (layer 0) and after each block (layers 1..L)."""
    return ["blocks.0.hook_resid_pre"] + [f"blocks.{l}.hook_resid_post" for l in range(model.cfg.n_layers)]


@torch.no_grad()
def layer_states(model, fmt, p: Prompts) -> torch.Tensor:
    """Hidden states [L+1, B, n, D] at the positions where the model's predictions are read."""
    param = next(model.parameters())
    p = p.to(device=param.device, dtype=param.dtype)
    names = layer_names(model)
    _, cache = model.run_with_cache(fmt.encode(p), names_filter=names)
    return torch.stack([fmt.decode(cache[n]) for n in names]).cpu()


def _with_bias(h: torch.Tensor) -> torch.Tensor:
    return torch.cat([h, torch.ones_like(h[..., :1])], dim=-1)


def fit_linear(h: torch.Tensor, target: torch.Tensor, lam: float = 1e-4) -> torch.Tensor:
    """Ridge regression with a bias, in float64: h [N, D], target [N, k] -> weights [D+1, k]."""
    H = _with_bias(h.double())
    gram = H.T @ H + lam * H.shape[0] * torch.eye(H.shape[1], dtype=torch.float64)
    return torch.linalg.solve(gram, H.T @ target.double())


def apply_linear(h: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    return _with_bias(h.double()) @ weights


def readout_predictions(model, fmt, train: Prompts, test: Prompts, lam: float = 1e-4) -> torch.Tensor:
    """Fu's per-layer read-outs: fit y from each layer's state on `train`, predict `test`: [L+1, B, n]."""
    h_train, h_test = layer_states(model, fmt, train), layer_states(model, fmt, test)
    out = []
    for l in range(h_train.shape[0]):
        w = fit_linear(h_train[l].flatten(0, 1), train.ys.reshape(-1, 1), lam)
        out.append(apply_linear(h_test[l], w).squeeze(-1))
    return torch.stack(out)


def probe_targets(p: Prompts, kind: str) -> torch.Tensor:
    """What a probe decodes at position i, from pairs 0..i-1: "w_ols" (min-norm) or "xty" (X^T y): [B, n, d]."""
    if kind not in ("w_ols", "xty"):
        raise ValueError(f"unknown probe target {kind!r}; choose one of: w_ols, xty")
    fit = ols_fit if kind == "w_ols" else (lambda X, y: (X.mT @ y.unsqueeze(-1)).squeeze(-1))
    return prefix_weights(p.xs.double(), p.ys.double(), fit)


def r2(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Coefficient of determination, pooled over all outputs: 1 - SSE / SST (per-output means)."""
    pred, target = pred.double(), target.double()
    sse = ((pred - target) ** 2).sum()
    sst = ((target - target.mean(0)) ** 2).sum()
    return (1 - sse / sst).item()


def fit_mlp(h: torch.Tensor, target: torch.Tensor, hidden: int = 128, steps: int = 500, lr: float = 3e-3,
            seed: int = 0) -> nn.Module:
    """A 2-layer ReLU MLP probe trained with Adam on standardised inputs (full batch)."""
    h, target = h.float(), target.float()
    mean, std = h.mean(0), h.std(0).clamp(min=1e-6)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = nn.Sequential(nn.Linear(h.shape[1], hidden), nn.ReLU(), nn.Linear(hidden, target.shape[1]))
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    x = (h - mean) / std
    for _ in range(steps):
        loss = ((net(x) - target) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.requires_grad_(False)
    return nn.Sequential(_Standardise(mean, std), net)


class _Standardise(nn.Module):
    def __init__(self, mean, std):
        super().__init__()
        self.mean, self.std = mean, std

    def forward(self, x):
        return (x.float() - self.mean) / self.std


def probe_layers(model, fmt, train: Prompts, test: Prompts, target: str, kinds=("linear", "mlp"),
                 start: int = 1, mlp_steps: int = 500) -> dict:
    """R^2 per layer of each probe kind decoding `target` at positions start..n-1: {kind: [L+1 floats]}."""
    h_train, h_test = layer_states(model, fmt, train)[:, :, start:], layer_states(model, fmt, test)[:, :, start:]
    t_train = probe_targets(train, target)[:, start:].flatten(0, 1)
    t_test = probe_targets(test, target)[:, start:].flatten(0, 1)
    result = {}
    for kind in kinds:
        scores = []
        for l in range(h_train.shape[0]):
            a, b = h_train[l].flatten(0, 1), h_test[l].flatten(0, 1)
            if kind == "linear":
                pred = apply_linear(b, fit_linear(a, t_train))
            else:
                pred = fit_mlp(a, t_train, steps=mlp_steps)(b)
            scores.append(r2(pred, t_test))
        result[kind] = scores
    return result
