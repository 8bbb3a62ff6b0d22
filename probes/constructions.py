"""Weights that make the lab's own model run a known algorithm exactly.

von Oswald et al. 2023, Prop. 1: one linear self-attention layer on stacked tokens e_j = (x_j, y_j), query
(x_q, 0), keys from the context only, performs one gradient-descent step on L(W) = 1/(2N) sum ||W x_j - y_j||^2
from W_0 = 0: with W_K = W_Q = [[I, 0], [0, 0]] and P W_V = -(eta/N) [[0, 0], [0, 1]] every y-slot becomes
y_j - (eta/N) sum_i y_i x_i.x_j, and minus the query's y-slot is the GD prediction. K such layers give K
steps (the context y-slots then hold residuals). GD++ adds -gamma [[I, 0], [0, 0]] to P W_V, so every
x_j also becomes (I - gamma X^T X) x_j. These match probes.solve("gd"/"gdpp", lr=eta, gamma) exactly.
"""
from __future__ import annotations

import torch

from lab.config import ModelConfig
from lab.model import Transformer, build_model


def lsa_config(d: int, n_layers: int = 1, tied: bool = False) -> ModelConfig:
    """von Oswald's linear self-attention stack for d-dimensional x: tokens of size d+1 are the residual stream."""
    return ModelConfig(n_layers=n_layers, n_heads=1, d_model=d + 1, d_mlp=0, d_in=d + 1, input="identity",
                       output="minus_last", layernorm=False, pos="none", attn="linear", mask="context",
                       bias=False, tied=tied)


def gd_layer_weights(d: int, n_context: int, lr: float, gamma: float = 0.0, dtype=torch.float64) -> dict:
    """W_Q, W_K, W_V, W_O (nn.Linear weights, [d+1, d+1]) of one GD (gamma = 0) or GD++ step."""
    x_block = torch.zeros(d + 1, d + 1, dtype=dtype)
    x_block[:d, :d] = torch.eye(d, dtype=dtype)
    out_scale = torch.full((d + 1,), gamma, dtype=dtype)
    out_scale[d] = lr / n_context
    return {"W_Q": x_block.clone(), "W_K": x_block.clone(), "W_V": -torch.eye(d + 1, dtype=dtype),
            "W_O": torch.diag(out_scale)}


def gd_model(d: int, n_context: int, steps: int, lr: float, gamma: float = 0.0, tied: bool = False,
             dtype=torch.float64) -> Transformer:
    """A lab Transformer whose prediction for the query of a stacked prompt with `n_context` context points
    equals `steps` steps of GD (or GD++ with gamma) with learning rate `lr`."""
    model = build_model(lsa_config(d, steps, tied=tied)).to(dtype)
    weights = gd_layer_weights(d, n_context, lr, gamma, dtype)
    with torch.no_grad():
        for block in model.blocks:
            for name, w in weights.items():
                getattr(block.attn, name).weight.copy_(w)
    return model


def kq_pv(W_Q, W_K, W_V, W_O) -> tuple[torch.Tensor, torch.Tensor]:
    """The products von Oswald compare: W_KQ = W_K^T W_Q (scores = e_k^T W_KQ e_q) and W_PV = W_O W_V
    (the update added to a token per unit of attention), both [d+1, d+1]. Takes `gd_layer_weights(...)` too."""
    return W_K.T @ W_Q, W_O @ W_V


def kq_pv_products(model: Transformer, layer: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """`kq_pv` of a model's layer, detached, in float64."""
    attn = model.blocks[layer].attn
    return kq_pv(*(getattr(attn, n).weight.detach().double() for n in ("W_Q", "W_K", "W_V", "W_O")))
