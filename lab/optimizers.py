"""The optimiser a run trains with (`train.optimizer`): torch's Adam/AdamW, and sign-of-momentum descent beside them."""
from __future__ import annotations

import torch
from torch import nn

from .config import TrainConfig


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


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """The optimiser `train.optimizer` names: adam, adamw or signum, with the config's lr, betas and weight decay."""
    if cfg.optimizer == "signum":
        return SignMomentum(model.parameters(), lr=cfg.lr, beta1=cfg.beta1, weight_decay=cfg.weight_decay)
    cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    return cls(model.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), weight_decay=cfg.weight_decay)
