"""A small decoder-style transformer, readable top to bottom (nanoGPT-like), with TransformerLens hook names.

Covers Garg et al.'s GPT-2-style model (pre-LN, GELU, learned positions, causal mask) and von Oswald et al.'s
linear self-attention (no softmax, no LayerNorm, no MLP, keys from context tokens only).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig
from .hooks import HookedModule, HookPoint


def attention_mask(kind: str, T: int, device=None) -> torch.Tensor | None:
    """[T, T] bool, True where query i may attend to key j; None means every key.

    causal: j <= i. context: j < T - 1 (every token reads the context tokens only; the last token is the
    query, von Oswald et al.). none: all keys.
    """
    if kind == "none":
        return None
    if kind == "causal":
        return torch.ones(T, T, dtype=torch.bool, device=device).tril()
    mask = torch.zeros(T, T, dtype=torch.bool, device=device)
    mask[:, : T - 1] = True
    return mask


class Attention(nn.Module):
    """Multi-head attention, softmax or linear (scores used as weights as they are, von Oswald eq. 3)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        D, self.H = cfg.d_model, cfg.n_heads
        self.d_head = D // self.H
        self.kind, self.backend = cfg.attn, cfg.backend
        self.W_Q = nn.Linear(D, D, bias=cfg.bias)
        self.W_K = nn.Linear(D, D, bias=cfg.bias)
        self.W_V = nn.Linear(D, D, bias=cfg.bias)
        self.W_O = nn.Linear(D, D, bias=cfg.bias)
        self.hook_q, self.hook_k, self.hook_v = HookPoint(), HookPoint(), HookPoint()  # [B, T, H, dh]
        self.hook_attn_scores, self.hook_pattern = HookPoint(), HookPoint()  # [B, H, T, T]
        self.hook_z = HookPoint()  # [B, T, H, dh]

    def forward(self, x, mask):  # x [B, T, D], mask [T, T] bool or None
        B, T, D = x.shape
        q = self.hook_q(self.W_Q(x).view(B, T, self.H, self.d_head))
        k = self.hook_k(self.W_K(x).view(B, T, self.H, self.d_head))
        v = self.hook_v(self.W_V(x).view(B, T, self.H, self.d_head))
        if self._fast_path_ok(mask):
            z = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                               attn_mask=mask).transpose(1, 2)
        else:
            z = self._materialised(q, k, v, mask)
        z = self.hook_z(z)  # [B, T, H, dh]
        return self.W_O(z.reshape(B, T, D))

    def _fast_path_ok(self, mask) -> bool:
        """SDPA when softmax, no hook reads the scores or pattern, and every query has a key."""
        if self.kind != "softmax" or self.backend == "reference":
            return False
        if self.hook_attn_scores.active or self.hook_pattern.active:
            return False
        return mask is None or bool(mask.any(dim=-1).all())

    def _materialised(self, q, k, v, mask):
        scores = torch.einsum("bqhd,bkhd->bhqk", q, k)  # [B, H, T, T]
        if self.kind == "softmax":
            scores = scores / math.sqrt(self.d_head)
            if mask is not None:
                has_key = mask.any(dim=-1, keepdim=True)  # [T, 1]; a query with no key gets a zero row
                scores = scores.masked_fill(~(mask | ~has_key), float("-inf"))
            scores = self.hook_attn_scores(scores)
            pattern = torch.softmax(scores, dim=-1)
            if mask is not None:
                pattern = pattern * has_key
        else:
            if mask is not None:
                scores = scores * mask
            scores = self.hook_attn_scores(scores)
            pattern = scores
        pattern = self.hook_pattern(pattern)
        return torch.einsum("bhqk,bkhd->bqhd", pattern, v)


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.fc_in = nn.Linear(cfg.d_model, cfg.mlp_width, bias=cfg.bias)
        self.fc_out = nn.Linear(cfg.mlp_width, cfg.d_model, bias=cfg.bias)
        self.act = nn.GELU() if cfg.act == "gelu" else nn.ReLU()
        self.hook_pre, self.hook_post = HookPoint(), HookPoint()  # [B, T, d_mlp]

    def forward(self, x):
        return self.fc_out(self.hook_post(self.act(self.hook_pre(self.fc_in(x)))))


class Block(nn.Module):
    """Pre-LN residual block: x + attn(ln1(x)), then + mlp(ln2(x))."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        norm = (lambda: nn.LayerNorm(cfg.d_model, bias=cfg.bias)) if cfg.layernorm else nn.Identity
        self.ln1, self.attn = norm(), Attention(cfg)
        self.ln2, self.mlp = (norm(), MLP(cfg)) if cfg.mlp_width else (None, None)
        self.hook_resid_pre, self.hook_attn_out, self.hook_resid_mid = HookPoint(), HookPoint(), HookPoint()
        self.hook_mlp_out, self.hook_resid_post = HookPoint(), HookPoint()

    def forward(self, x, mask):  # [B, T, D]
        x = self.hook_resid_pre(x)
        x = self.hook_resid_mid(x + self.hook_attn_out(self.attn(self.ln1(x), mask)))
        if self.mlp is not None:
            x = x + self.hook_mlp_out(self.mlp(self.ln2(x)))
        return self.hook_resid_post(x)


class Transformer(HookedModule):
    """Read-in (linear from vectors, an embedding of token ids, or the tokens themselves) -> blocks ->
    LayerNorm -> read-out (linear, or minus the last coordinate as in von Oswald et al.).

    Output: [B, T] for a scalar read-out, [B, T, n_classes] for a class read-out. With `tied`, every block
    shares the first block's weights (one block applied n_layers times) but keeps its own hook names.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        assert cfg.d_in > 0 or cfg.input == "tokens", "resolve the config first (d_in is set from the task)"
        self.cfg = cfg
        D = cfg.d_model
        self.embed = {"vector": lambda: nn.Linear(cfg.d_in, D, bias=cfg.bias), "identity": nn.Identity,
                      "tokens": lambda: nn.Embedding(cfg.vocab_size, D)}[cfg.input]()
        self.pos_embed = nn.Embedding(cfg.max_len, D) if cfg.pos == "learned" else None
        self.hook_embed, self.hook_pos_embed = HookPoint(), HookPoint()  # [B, T, D]
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        if cfg.tied:
            for block in self.blocks[1:]:
                for name in ("ln1", "attn", "ln2", "mlp"):
                    self._share(block, self.blocks[0], name)
        self.ln_final = nn.LayerNorm(D, bias=cfg.bias) if cfg.layernorm else nn.Identity()
        n_out = {"scalar": 1, "classes": cfg.n_classes, "minus_last": 0}[cfg.output]
        self.unembed = nn.Linear(D, n_out, bias=cfg.bias) if n_out else None
        self.setup_hooks()
        self._init_weights()

    @staticmethod
    def _share(block: Block, first: Block, name: str):
        """Make `block.name` use `first.name`'s parameters, keeping block's own HookPoints."""
        mine, theirs = getattr(block, name), getattr(first, name)
        if mine is None or isinstance(mine, nn.Identity):
            return
        for child_name, child in theirs.named_children():
            if not isinstance(child, HookPoint):
                setattr(mine, child_name, child)
        for p_name, p in theirs.named_parameters(recurse=False):
            setattr(mine, p_name, p)

    def _init_weights(self):
        """GPT-2 init: N(0, init_std), residual projections scaled by 1/sqrt(2 * n_layers), zero biases."""
        std = self.cfg.init_std
        for name, p in self.named_parameters():
            if p.dim() < 2:
                if name.startswith("ln") or ".ln" in name:
                    continue  # LayerNorm keeps weight 1, bias 0
                nn.init.zeros_(p)
            elif name.endswith(("W_O.weight", "fc_out.weight")):
                nn.init.normal_(p, std=std / math.sqrt(2 * self.cfg.n_layers))
            else:
                nn.init.normal_(p, std=std)

    def forward(self, inputs):  # inputs [B, T, d_in] (vectors) or [B, T] (token ids)
        T = inputs.shape[1]
        x = self.hook_embed(self.embed(inputs))  # [B, T, D]
        if self.pos_embed is not None:
            if T > self.cfg.max_len:
                raise ValueError(f"sequence of {T} tokens is longer than model.max_len = {self.cfg.max_len}")
            x = x + self.hook_pos_embed(self.pos_embed(torch.arange(T, device=x.device)))
        mask = attention_mask(self.cfg.mask, T, x.device)
        for block in self.blocks:
            x = block(x, mask)
        x = self.ln_final(x)
        if self.unembed is None:
            return -x[..., -1]
        out = self.unembed(x)
        return out.squeeze(-1) if self.cfg.output == "scalar" else out

    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


def build_model(cfg: ModelConfig, seed: int = 0) -> Transformer:
    """The model with its initial weights drawn from `seed` (the global RNG is left as it was)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return Transformer(cfg)
