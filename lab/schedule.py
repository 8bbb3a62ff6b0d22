"""The learning-rate schedule and the data stream's seeds: shared by solo and ensemble training."""
from __future__ import annotations

import math

from .config import TrainConfig


def lr_at(cfg: TrainConfig, step: int) -> float:
    """Learning rate for `step` (0-based): linear warm-up, then constant or cosine decay to lr * min_lr_ratio."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return cfg.lr
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))


def data_seed(seed: int, step: int) -> int:
    """The seed of step `step`'s batch: the data stream depends only on (seed, step), so resume replays it."""
    return seed * 1_000_003 + step
