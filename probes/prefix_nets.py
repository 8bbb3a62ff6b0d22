"""Per-prompt baselines as one batched computation: for every (prompt p, prefix i) a 2-layer net fitted to pairs
0..i-1 of p by full-batch Adam, evaluated at x_i (Garg et al.'s 2-layer ReLU net, Bhattamishra et al.'s small net)."""
from __future__ import annotations

import torch


def train_prefix_nets(X, y, params: list[torch.Tensor], steps: int, lr: float, act, loss,
                      at: torch.Tensor | None = None) -> torch.Tensor:
    """Train every net at once and return net i's output on x_i: X [b, n, d], y [b, n] -> [b, n], or with `at`
    (m positions) only the nets of those prefixes -> [b, m].

    params: W1 [b, m, d, h], b1 [b, m, 1, h], w2 [b, m, h], b2 [b, m, 1] (copied, not changed; m = n without `at`);
    act: the hidden nonlinearity (torch.relu, torch.tanh); loss(outputs [b, m nets, n points], y [b, m, n]) ->
    elementwise loss. Each net's loss is the mean over its own prefix and the nets' losses are summed, so each net's
    gradient and Adam state are its own."""
    b, n, _ = X.shape
    at = torch.arange(n, device=X.device) if at is None else at.to(X.device)  # [m]
    m = len(at)
    W1, b1, w2, b2 = (p.clone().requires_grad_() for p in params)
    mask = (torch.arange(n, device=X.device)[None] < at[:, None]).to(X.dtype).expand(b, m, n)  # [net, example j]: j < i
    count = mask.sum(-1).clamp(min=1)  # [b, m]
    opt = torch.optim.Adam([W1, b1, w2, b2], lr=lr)

    def outputs():  # every net on every point: [b, n nets, n points]
        h = act(torch.einsum("bjd,bidh->bijh", X, W1) + b1)
        return torch.einsum("bijh,bih->bij", h, w2) + b2

    with torch.enable_grad():
        for _ in range(steps):
            opt.zero_grad()
            ((loss(outputs(), y[:, None, :].expand(b, m, n)) * mask).sum(-1) / count).sum().backward()
            opt.step()
    with torch.no_grad():
        return outputs()[:, torch.arange(m), at]  # net k on x_{at[k]}
