"""Attention kernels: an implementation detail of `lab.model.Attention`.

`attention(q, k, v, ...)` runs the Triton kernel (CUDA tensors, or CPU tensors under TRITON_INTERPRET=1);
`reference_attention` is the float64 definition every kernel is tested against.
"""
from __future__ import annotations

import functools
import importlib.util
import os

import torch

from . import choice
from .reference import KINDS, MASKS, allowed_keys, default_scale, reference_attention


def triton_available() -> bool:
    return importlib.util.find_spec("triton") is not None


def triton_usable(t: torch.Tensor) -> bool:
    """Whether the Triton kernel can run on tensors like `t`: CUDA, or CPU under the Triton interpreter."""
    if not triton_available():
        return False
    return t.is_cuda or os.environ.get("TRITON_INTERPRET") == "1"


@functools.cache
def _cuda_name(index: int) -> str:
    return torch.cuda.get_device_name(index)


def auto_path(kind: str, mask: str, padded: bool, T: int, dh: int, x: torch.Tensor) -> str:
    """backend=auto's path for attention on tensors like `x` (choice.choose with this device's measurements)."""
    cuda = x.is_cuda
    rows = choice.measured(_cuda_name(x.device.index or 0)) if cuda else ()
    return choice.choose(kind, mask, padded, T, dh, str(x.dtype).removeprefix("torch."), cuda,
                         cuda and triton_available(), rows)


def attention(q, k, v, kind: str = "softmax", mask: str = "causal", key_padding=None, scale: float | None = None):
    """Triton attention on q, k, v [Z, T, H, dh] -> [Z, T, H, dh]; key_padding [Z, T] bool (True = real key)."""
    if kind not in KINDS:
        raise ValueError(f"attention kind must be one of {', '.join(KINDS)}; got {kind!r}")
    if mask not in MASKS:
        raise ValueError(f"attention mask must be one of {', '.join(MASKS)}; got {mask!r}")
    if not triton_usable(q):
        raise RuntimeError("the triton attention backend needs a CUDA device and the triton package "
                           "(or TRITON_INTERPRET=1 on CPU); use model.backend=auto, sdpa or reference")
    if q.dtype not in (torch.float32, torch.bfloat16, torch.float16):
        raise ValueError(f"the triton attention backend takes float32, bfloat16 or float16; got {q.dtype}")
    from .triton_attention import TritonAttention

    Z, T, H, dh = q.shape
    if key_padding is not None:
        key_padding = key_padding.to(torch.bool).reshape(Z, T).contiguous()
    scale = default_scale(kind, dh) if scale is None else float(scale)
    return TritonAttention.apply(q, k, v, key_padding, kind == "softmax", mask, scale)


__all__ = ["attention", "auto_path", "choice", "reference_attention", "allowed_keys", "default_scale",
           "triton_available", "triton_usable", "KINDS", "MASKS"]
