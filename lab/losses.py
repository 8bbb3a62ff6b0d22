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
