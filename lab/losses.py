"""Per-prediction losses shared by the solo and the ensemble trainers."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def pointwise_loss(preds: torch.Tensor, targets: torch.Tensor, objective: str = "mse") -> torch.Tensor:
    """Per-prediction loss: squared error, or binary cross-entropy of a logit against a label in {-1, +1}
    (Bhattamishra et al.'s objective for Boolean tasks)."""
    if objective == "bce":
        return F.binary_cross_entropy_with_logits(preds, (targets > 0).to(preds.dtype), reduction="none")
    return (preds - targets) ** 2


def set_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """[B]: -log of the softmax mass that logits [B, C] put on the target set (multi-hot [B, C]); with one target
    it is the usual cross-entropy. Graph search: any child that still reaches the goal is a right answer."""
    on_target = logits.masked_fill(targets <= 0, float("-inf"))
    return torch.logsumexp(logits, -1) - torch.logsumexp(on_target, -1)
