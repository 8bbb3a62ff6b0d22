"""The float64 PyTorch reference for every attention variant the kernels implement.

Layout shared by all backends: q, k, v [Z, T, H, dh] (Z = models x batch), key_padding [Z, T] bool (True = a
real key) or None. A query that has no key it may attend to gets a zero output row.
"""
from __future__ import annotations

import math

import torch

MASKS = ("causal", "context", "none")
KINDS = ("softmax", "linear")


def allowed_keys(mask: str, T: int, key_padding: torch.Tensor | None = None, device=None) -> torch.Tensor | None:
    """Bool [T, T] (or [Z, 1, T, T] with key padding): True where query i may attend to key j; None = every key.

    causal: j <= i. context: j < T - 1 (every token reads the context tokens only; the last token is the query,
    von Oswald et al.). none: all keys. key_padding [Z, T] removes padded keys for every query.
    """
    if mask not in MASKS:
        raise ValueError(f"attention mask must be one of {', '.join(MASKS)}; got {mask!r}")
    if mask == "none":
        allowed = None
    elif mask == "causal":
        allowed = torch.ones(T, T, dtype=torch.bool, device=device).tril()
    else:
        allowed = torch.zeros(T, T, dtype=torch.bool, device=device)
        allowed[:, : T - 1] = True
    if key_padding is None:
        return allowed
    padded = key_padding[:, None, None, :].to(torch.bool)  # [Z, 1, 1, T]
    return padded if allowed is None else padded & allowed


def default_scale(kind: str, d_head: int) -> float:
    """1/sqrt(dh) for softmax attention (Vaswani et al.); 1 for linear attention (scores used as they are)."""
    return 1.0 / math.sqrt(d_head) if kind == "softmax" else 1.0


def reference_attention(q, k, v, kind: str = "softmax", mask: str = "causal", key_padding=None,
                        scale: float | None = None) -> torch.Tensor:
    """Attention computed in float64 from the definition: softmax(scale q k^T + mask) v, or (scale q k^T * mask) v.

    q, k, v [Z, T, H, dh] -> [Z, T, H, dh] float64 (differentiable).
    """
    if kind not in KINDS:
        raise ValueError(f"attention kind must be one of {', '.join(KINDS)}; got {kind!r}")
    q, k, v = (t.to(torch.float64) for t in (q, k, v))
    T = q.shape[1]
    scale = default_scale(kind, q.shape[-1]) if scale is None else scale
    scores = torch.einsum("zqhd,zkhd->zhqk", q, k) * scale  # [Z, H, T, T]
    allowed = allowed_keys(mask, T, key_padding, q.device)
    if kind == "softmax":
        if allowed is not None:
            scores = scores.masked_fill(~allowed, float("-inf"))
            has_key = allowed.any(dim=-1, keepdim=True)  # a row with no key: zeros, not NaN
            scores = scores.masked_fill(~has_key, 0.0)
        pattern = torch.softmax(scores, dim=-1)
        if allowed is not None:
            pattern = pattern * has_key
    else:
        pattern = scores if allowed is None else scores * allowed
    return torch.einsum("zhqk,zkhd->zqhd", pattern, v)
