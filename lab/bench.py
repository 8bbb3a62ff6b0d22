"""Benchmarks (scripts, not tests): time ours against the obvious alternative, side by side, same process."""
from __future__ import annotations

import time

import torch
from torch import nn

import tasks

from .config import make_config
from .model import build_model
from .trainer import make_optimizer, prompt_loss


def _time_steps(step_fn, steps: int, warmup: int) -> float:
    """Mean seconds per call of step_fn after `warmup` untimed calls."""
    for _ in range(warmup):
        step_fn()
    t0 = time.perf_counter()
    for _ in range(steps):
        step_fn()
    return (time.perf_counter() - t0) / steps


class _TorchEncoderBaseline(nn.Module):
    """The same shape built from torch.nn.TransformerEncoder (pre-LN, GELU, causal): the obvious alternative."""

    def __init__(self, mc, max_len):
        super().__init__()
        self.embed = nn.Linear(mc.d_in, mc.d_model)
        self.pos = nn.Embedding(max_len, mc.d_model)
        layer = nn.TransformerEncoderLayer(mc.d_model, mc.n_heads, mc.mlp_width, dropout=0.0, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, mc.n_layers, enable_nested_tensor=False)
        self.ln = nn.LayerNorm(mc.d_model)
        self.unembed = nn.Linear(mc.d_model, 1)

    def forward(self, x):  # [B, T, d_in] -> [B, T]
        T = x.shape[1]
        h = self.embed(x) + self.pos(torch.arange(T, device=x.device))
        mask = nn.Transformer.generate_square_subsequent_mask(T, device=x.device)
        return self.unembed(self.ln(self.encoder(h, mask=mask, is_causal=True))).squeeze(-1)


def bench_train(preset: str = "garg-linreg", steps: int = 10, warmup: int = 3, device: str | None = None) -> dict:
    """Seconds per training step (forward, backward, Adam) of the preset's model at its full prompt length."""
    cfg = make_config(preset)
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    task, fmt = cfg.task.build(), tasks.formats.get(cfg.task.format)
    p = task.sample(cfg.train.batch_size, cfg.task.n_points, seed=0, device=dev)
    ours = build_model(cfg.model, seed=0).to(dev)
    torch.manual_seed(0)
    base = _TorchEncoderBaseline(cfg.model, fmt.seq_len(cfg.task.n_points)).to(dev)

    def stepper(model):
        opt = make_optimizer(model, cfg.train)

        def step():
            loss = prompt_loss(model, fmt, p, cfg.train.loss)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if dev.type == "cuda":
                torch.cuda.synchronize()

        return step

    ours_s = _time_steps(stepper(ours), steps, warmup)
    base_s = _time_steps(stepper(base), steps, warmup)
    case = (f"{preset}: {cfg.model.n_layers}L x {cfg.model.d_model} wide x {cfg.model.n_heads} heads, "
            f"batch {cfg.train.batch_size}, {fmt.seq_len(cfg.task.n_points)} tokens, {ours.n_params() / 1e6:.2f}M params")
    return {"benchmark": "train", "device": str(dev) if dev.type == "cpu" else torch.cuda.get_device_name(dev),
            "rows": [{"case": case, "ours_s": ours_s, "baseline": "torch.nn.TransformerEncoder", "baseline_s": base_s,
                      "ratio": base_s / ours_s}]}
