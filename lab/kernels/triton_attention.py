"""Triton attention kernels for many short sequences (the lab's regime: 10-250 tokens, head dims 8-128,
thousands of (model, prompt, head) rows), forward and backward, softmax and linear.

One program per (row, query tile) in the forward pass and per (row, key tile) in the backward pass; rows are
models x batch x heads on grid axis 0, so one launch serves a whole ensemble. Flash-attention style online
softmax (Dao et al. 2022, alg. 1) with the log-sum-exp saved for the backward pass (Dao 2023, alg. 2). When
the whole sequence fits one key tile (T <= 64 here) the backward pass is a single launch that also writes
dq; otherwise a second kernel sums dq over key tiles (no atomics, deterministic). Every length is
bounds-masked; head dims are padded to a power of two >= 16 for `tl.dot`; fp32 and bf16 inputs accumulate in
fp32. Layout: q, k, v [Z, T, H, dh] with any strides except a unit stride on dh.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

MASK_CODES = {"none": 0, "causal": 1, "context": 2}
# fp32 products as three TF32 tensor-core products (about fp32 accuracy); "ieee" runs on the FMA units and took
# 24.8 ms against 0.78 ms in bf16 at (512, 201, 64) on an H100. The interpreter computes every product in fp32.
FP32_PRECISION = "tf32x3"
LOG2E = 1.4426950408889634


@triton.jit
def _allowed(offs_m, offs_n, T, kpm_row, MASK: tl.constexpr, HAS_KPM: tl.constexpr):
    """[BM, BN] bool: key n exists, the mask lets query m see it, and it is not padding."""
    ok = (offs_n[None, :] < T) & (offs_m[:, None] < T)
    if MASK == 1:
        ok = ok & (offs_n[None, :] <= offs_m[:, None])
    if MASK == 2:
        ok = ok & (offs_n[None, :] < T - 1)
    if HAS_KPM:
        real = tl.load(kpm_row + offs_n, mask=offs_n < T, other=0)
        ok = ok & (real[None, :] != 0)
    return ok


@triton.jit
def _load_tile(ptr, offs_t, offs_d, stride_t, T, DH):
    return tl.load(ptr + offs_t[:, None] * stride_t + offs_d[None, :],
                   mask=(offs_t[:, None] < T) & (offs_d[None, :] < DH), other=0.0)


@triton.jit
def _fwd_kernel(Q, K, V, O, LSE, KPM,
                s_qz, s_qt, s_qh, s_kz, s_kt, s_kh, s_vz, s_vt, s_vh, s_oz, s_ot, s_oh, s_kpm,
                H, T, DH, scale,
                SOFTMAX: tl.constexpr, MASK: tl.constexpr, HAS_KPM: tl.constexpr,
                BM: tl.constexpr, BN: tl.constexpr, BD: tl.constexpr, PREC: tl.constexpr):
    row = tl.program_id(0)
    tile = tl.program_id(1)
    z = (row // H).to(tl.int64)
    h = (row % H).to(tl.int64)
    offs_m = tile * BM + tl.arange(0, BM)
    offs_d = tl.arange(0, BD)
    q = _load_tile(Q + z * s_qz + h * s_qh, offs_m, offs_d, s_qt, T, DH)  # [BM, BD]
    k_base, v_base, kpm_row = K + z * s_kz + h * s_kh, V + z * s_vz + h * s_vh, KPM + z * s_kpm
    m_i = tl.full([BM], float("-inf"), tl.float32)
    l_i = tl.zeros([BM], tl.float32)
    acc = tl.zeros([BM, BD], tl.float32)
    hi = T
    if MASK == 1:
        hi = tl.minimum(T, (tile + 1) * BM)
    for start in range(0, hi, BN):
        offs_n = start + tl.arange(0, BN)
        k = _load_tile(k_base, offs_n, offs_d, s_kt, T, DH)  # [BN, BD]
        v = _load_tile(v_base, offs_n, offs_d, s_vt, T, DH)
        s = tl.dot(q, tl.trans(k), input_precision=PREC) * scale  # [BM, BN]
        ok = _allowed(offs_m, offs_n, T, kpm_row, MASK, HAS_KPM)
        if SOFTMAX:
            s = tl.where(ok, s * 1.4426950408889634, float("-inf"))  # log2 domain
            m_new = tl.maximum(m_i, tl.max(s, 1))
            m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)  # a row with no key yet
            p = tl.exp2(s - m_safe[:, None])
            alpha = tl.exp2(m_i - m_safe)
            l_i = l_i * alpha + tl.sum(p, 1)
            acc = acc * alpha[:, None]
            m_i = m_new
        else:
            p = tl.where(ok, s, 0.0)
        acc += tl.dot(p.to(v.dtype), v, input_precision=PREC)
    if SOFTMAX:
        has_key = l_i > 0
        l_safe = tl.where(has_key, l_i, 1.0)
        acc = acc / l_safe[:, None]
        lse = tl.where(has_key, m_i + tl.log2(l_safe), float("inf"))  # inf: p = 0 in the backward pass
        tl.store(LSE + row.to(tl.int64) * T + offs_m, lse, mask=offs_m < T)
    o_ptrs = O + z * s_oz + h * s_oh + offs_m[:, None] * s_ot + offs_d[None, :]
    tl.store(o_ptrs, acc.to(O.dtype.element_ty), mask=(offs_m[:, None] < T) & (offs_d[None, :] < DH))


@triton.jit
def _probs_and_dscores(q, k, v, do, o, lse, offs_m, offs_n, T, kpm_row, scale,
                       SOFTMAX: tl.constexpr, MASK: tl.constexpr, HAS_KPM: tl.constexpr, PREC: tl.constexpr):
    """Recompute the attention weights P [BM, BN] and dL/dscores * scale [BM, BN] for one tile pair."""
    s = tl.dot(q, tl.trans(k), input_precision=PREC) * scale
    ok = _allowed(offs_m, offs_n, T, kpm_row, MASK, HAS_KPM)
    dp = tl.dot(do, tl.trans(v), input_precision=PREC)  # dL/dP
    if SOFTMAX:
        p = tl.where(ok, tl.exp2(s * 1.4426950408889634 - lse[:, None]), 0.0)
        delta = tl.sum(do.to(tl.float32) * o.to(tl.float32), 1)  # rowsum(dO * O) = rowsum(P * dP)
        ds = p * (dp - delta[:, None])
    else:
        p = tl.where(ok, s, 0.0)
        ds = tl.where(ok, dp, 0.0)
    return p, ds * scale


@triton.jit
def _bwd_kv_kernel(Q, K, V, O, DO, LSE, DQ, DK, DV, KPM,
                   s_qz, s_qt, s_qh, s_kz, s_kt, s_kh, s_vz, s_vt, s_vh, s_oz, s_ot, s_oh, s_kpm,
                   H, T, DH, scale,
                   SOFTMAX: tl.constexpr, MASK: tl.constexpr, HAS_KPM: tl.constexpr,
                   BM: tl.constexpr, BN: tl.constexpr, BD: tl.constexpr, PREC: tl.constexpr,
                   WRITE_DQ: tl.constexpr):
    """dK, dV for one key tile (loop over query tiles); with WRITE_DQ (a single key tile) dQ as well.
    O, DO, DQ, DK, DV share the strides of O (allocated contiguous [Z, T, H, dh])."""
    row = tl.program_id(0)
    tile = tl.program_id(1)
    z = (row // H).to(tl.int64)
    h = (row % H).to(tl.int64)
    offs_n = tile * BN + tl.arange(0, BN)
    offs_d = tl.arange(0, BD)
    k = _load_tile(K + z * s_kz + h * s_kh, offs_n, offs_d, s_kt, T, DH)  # [BN, BD]
    v = _load_tile(V + z * s_vz + h * s_vh, offs_n, offs_d, s_vt, T, DH)
    q_base, o_off, kpm_row = Q + z * s_qz + h * s_qh, z * s_oz + h * s_oh, KPM + z * s_kpm
    lse_row = LSE + row.to(tl.int64) * T
    dk = tl.zeros([BN, BD], tl.float32)
    dv = tl.zeros([BN, BD], tl.float32)
    lo = 0
    if MASK == 1:
        lo = (tile * BN // BM) * BM  # earlier queries cannot see these keys
    for start in range(lo, T, BM):
        offs_m = start + tl.arange(0, BM)
        q = _load_tile(q_base, offs_m, offs_d, s_qt, T, DH)
        do = _load_tile(DO + o_off, offs_m, offs_d, s_ot, T, DH)
        o = _load_tile(O + o_off, offs_m, offs_d, s_ot, T, DH)
        lse = 0.0
        if SOFTMAX:
            lse = tl.load(lse_row + offs_m, mask=offs_m < T, other=float("inf"))
        p, ds = _probs_and_dscores(q, k, v, do, o, lse, offs_m, offs_n, T, kpm_row, scale,
                                   SOFTMAX, MASK, HAS_KPM, PREC)
        dv += tl.dot(tl.trans(p).to(do.dtype), do, input_precision=PREC)
        dk += tl.dot(tl.trans(ds).to(q.dtype), q, input_precision=PREC)
        if WRITE_DQ:
            dq = tl.dot(ds.to(k.dtype), k, input_precision=PREC)
            tl.store(DQ + o_off + offs_m[:, None] * s_ot + offs_d[None, :], dq.to(DQ.dtype.element_ty),
                     mask=(offs_m[:, None] < T) & (offs_d[None, :] < DH))
    io_mask = (offs_n[:, None] < T) & (offs_d[None, :] < DH)
    kv_ptrs = o_off + offs_n[:, None] * s_ot + offs_d[None, :]
    tl.store(DK + kv_ptrs, dk.to(DK.dtype.element_ty), mask=io_mask)
    tl.store(DV + kv_ptrs, dv.to(DV.dtype.element_ty), mask=io_mask)


@triton.jit
def _bwd_q_kernel(Q, K, V, O, DO, LSE, DQ, KPM,
                  s_qz, s_qt, s_qh, s_kz, s_kt, s_kh, s_vz, s_vt, s_vh, s_oz, s_ot, s_oh, s_kpm,
                  H, T, DH, scale,
                  SOFTMAX: tl.constexpr, MASK: tl.constexpr, HAS_KPM: tl.constexpr,
                  BM: tl.constexpr, BN: tl.constexpr, BD: tl.constexpr, PREC: tl.constexpr):
    """dQ for one query tile, summed over key tiles (used when there is more than one key tile)."""
    row = tl.program_id(0)
    tile = tl.program_id(1)
    z = (row // H).to(tl.int64)
    h = (row % H).to(tl.int64)
    offs_m = tile * BM + tl.arange(0, BM)
    offs_d = tl.arange(0, BD)
    o_off = z * s_oz + h * s_oh
    q = _load_tile(Q + z * s_qz + h * s_qh, offs_m, offs_d, s_qt, T, DH)
    do = _load_tile(DO + o_off, offs_m, offs_d, s_ot, T, DH)
    o = _load_tile(O + o_off, offs_m, offs_d, s_ot, T, DH)
    lse = 0.0
    if SOFTMAX:
        lse = tl.load(LSE + row.to(tl.int64) * T + offs_m, mask=offs_m < T, other=float("inf"))
    k_base, v_base, kpm_row = K + z * s_kz + h * s_kh, V + z * s_vz + h * s_vh, KPM + z * s_kpm
    dq = tl.zeros([BM, BD], tl.float32)
    hi = T
    if MASK == 1:
        hi = tl.minimum(T, (tile + 1) * BM)
    for start in range(0, hi, BN):
        offs_n = start + tl.arange(0, BN)
        k = _load_tile(k_base, offs_n, offs_d, s_kt, T, DH)
        v = _load_tile(v_base, offs_n, offs_d, s_vt, T, DH)
        p, ds = _probs_and_dscores(q, k, v, do, o, lse, offs_m, offs_n, T, kpm_row, scale,
                                   SOFTMAX, MASK, HAS_KPM, PREC)
        dq += tl.dot(ds.to(k.dtype), k, input_precision=PREC)
    tl.store(DQ + o_off + offs_m[:, None] * s_ot + offs_d[None, :], dq.to(DQ.dtype.element_ty),
             mask=(offs_m[:, None] < T) & (offs_d[None, :] < DH))


LAUNCH_OVERRIDES: dict = {}  # e.g. {"num_warps": 8, "num_stages": 2}: for scripts/gpu_tune.py's sweep only


def _launch_shape(T: int, dh: int) -> dict:
    """Tile sizes for one sequence length and head dim: one tile when T <= 64, else 64 x 64 tiles."""
    block = min(64, max(16, triton.next_power_of_2(T)))
    bd = max(16, triton.next_power_of_2(dh))
    warps = 1 if block * bd <= 256 else 2 if block <= 16 else 4
    return {"BM": block, "BN": block, "BD": bd, "num_warps": warps, **LAUNCH_OVERRIDES}


def _strides(t: torch.Tensor) -> tuple[int, int, int]:
    return t.stride(0), t.stride(1), t.stride(2)  # z, t, h


def _unit_last(t: torch.Tensor) -> torch.Tensor:
    return t if t.stride(-1) == 1 else t.contiguous()


class TritonAttention(torch.autograd.Function):
    """softmax(scale q k^T + mask) v or (scale q k^T * mask) v on [Z, T, H, dh] tensors, with gradients for
    q, k and v."""

    @staticmethod
    def forward(ctx, q, k, v, key_padding, softmax: bool, mask: str, scale: float):
        q, k, v = _unit_last(q), _unit_last(k), _unit_last(v)
        Z, T, H, dh = q.shape
        o = torch.empty((Z, T, H, dh), device=q.device, dtype=q.dtype)
        lse = torch.empty((Z * H, T), device=q.device, dtype=torch.float32)
        kpm = key_padding if key_padding is not None else torch.empty(1, device=q.device, dtype=torch.bool)
        cfg = _launch_shape(T, dh)
        consts = dict(SOFTMAX=softmax, MASK=MASK_CODES[mask], HAS_KPM=key_padding is not None,
                      PREC=FP32_PRECISION if q.dtype == torch.float32 else None, **cfg)
        grid = (Z * H, triton.cdiv(T, cfg["BM"]))
        _fwd_kernel[grid](q, k, v, o, lse, kpm, *_strides(q), *_strides(k), *_strides(v), *_strides(o),
                          kpm.stride(0) if key_padding is not None else 0, H, T, dh, scale, **consts)
        ctx.save_for_backward(q, k, v, o, lse, kpm)
        ctx.consts, ctx.scale, ctx.has_kpm = consts, scale, key_padding is not None
        return o

    @staticmethod
    def backward(ctx, do):
        q, k, v, o, lse, kpm = ctx.saved_tensors
        Z, T, H, dh = q.shape
        do = do.contiguous()  # the strides of o
        dq, dk, dv = torch.empty_like(o), torch.empty_like(o), torch.empty_like(o)
        c = ctx.consts
        one_key_tile = triton.cdiv(T, c["BN"]) == 1
        common = (*_strides(q), *_strides(k), *_strides(v), *_strides(o), kpm.stride(0) if ctx.has_kpm else 0,
                  H, T, dh, ctx.scale)
        _bwd_kv_kernel[(Z * H, triton.cdiv(T, c["BN"]))](q, k, v, o, do, lse, dq, dk, dv, kpm, *common,
                                                         WRITE_DQ=one_key_tile, **c)
        if not one_key_tile:
            _bwd_q_kernel[(Z * H, triton.cdiv(T, c["BM"]))](q, k, v, o, do, lse, dq, kpm, *common, **c)
        return dq, dk, dv, None, None, None, None
