"""Optimisers beside torch's Adam/AdamW."""
from __future__ import annotations

import torch


class SignMomentum(torch.optim.Optimizer):
    """Sign-of-momentum descent (signum; Bernstein et al. 2018): m <- beta1 m + (1 - beta1) g, then
    p <- p (1 - lr wd) - lr sign(m). What Saparov et al.'s training effectively ran (REFERENCES.md section 6)."""

    def __init__(self, params, lr: float = 1e-4, beta1: float = 0.9, weight_decay: float = 0.0):
        super().__init__(params, {"lr": lr, "beta1": beta1, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure=None):
        loss = None if closure is None else closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "momentum" not in state:
                    state["momentum"] = torch.zeros_like(p)
                m = state["momentum"]
                m.lerp_(p.grad, 1 - group["beta1"])
                if group["weight_decay"]:
                    p.mul_(1 - group["lr"] * group["weight_decay"])
                p.add_(m.sign(), alpha=-group["lr"])
        return loss
