"""Where the GPU time goes (CUDA only): data for tuning the attention kernels and the ensemble step.

1. Forward and backward of the Triton kernel and of SDPA's fastest backend, separately, per bench shape (bf16).
2. One E = 64 ensemble step of tiny-linreg split into host-side batch preparation and the graph replay, and the
   step's kernels by GPU time.
3. A sweep of num_warps x num_stages for the kernel at each shape (bf16, fwd+bwd).
Usage: python3 scripts/gpu_tune.py   (prints a report; nothing is written)
"""
from __future__ import annotations

import itertools
import time

import torch
import torch.nn.functional as F
from torch.nn.attention import sdpa_kernel

from lab import kernels
from lab.bench import ATTENTION_SHAPES, _sdpa_backends
from lab.config import make_config
from lab.ensemble import EnsembleTrainer
from lab.kernels import triton_attention


def cuda_time(fn, reps=20, warmup=3) -> float:
    """Milliseconds per call, from CUDA events around `reps` back-to-back calls."""
    for _ in range(warmup):
        fn()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(reps):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / reps


def attention_cases(dtype=torch.bfloat16):
    for N, T, dh in ATTENTION_SHAPES:
        g = torch.Generator().manual_seed(0)
        q, k, v = (torch.randn(N, T, 1, dh, generator=g).cuda().to(dtype).requires_grad_() for _ in range(3))
        grad = torch.randn(N, T, 1, dh, generator=g).cuda().to(dtype)
        yield (N, T, dh), q, k, v, grad


def fastest_sdpa(q, k, v, grad):
    bhtd = [t.transpose(1, 2) for t in (q, k, v)]

    def run():
        F.scaled_dot_product_attention(*bhtd, is_causal=True).transpose(1, 2).backward(grad)

    best = None
    for name, backend in _sdpa_backends().items():
        try:
            with sdpa_kernel([backend]):
                ms = cuda_time(run)
        except RuntimeError:
            continue
        if best is None or ms < best[1]:
            best = (name, ms, backend)
    return best, bhtd


def split():
    print("== fwd / bwd, bf16, ms (ours | sdpa best)")
    for shape, q, k, v, grad in attention_cases():
        (name, _, backend), bhtd = fastest_sdpa(q, k, v, grad)
        with sdpa_kernel([backend]):
            s_fwd = cuda_time(lambda: F.scaled_dot_product_attention(*bhtd, is_causal=True))
            s_out = F.scaled_dot_product_attention(*bhtd, is_causal=True)
            s_bwd = cuda_time(lambda: torch.autograd.grad(s_out, bhtd, grad.transpose(1, 2), retain_graph=True))
        o_fwd = cuda_time(lambda: kernels.attention(q, k, v))
        o_out = kernels.attention(q, k, v)
        o_bwd = cuda_time(lambda: torch.autograd.grad(o_out, (q, k, v), grad, retain_graph=True))
        print(f"{str(shape):18s} fwd {o_fwd:.3f} | {s_fwd:.3f}   bwd {o_bwd:.3f} | {s_bwd:.3f}   sdpa={name}")


def sweep(budget_s=100):
    print("== sweep num_warps x num_stages, bf16 fwd+bwd ms (default config marked *)")
    t0 = time.time()
    for shape, q, k, v, grad in attention_cases():
        default = triton_attention._launch_shape(shape[1], shape[2])
        results = []
        for warps, stages in itertools.product((1, 2, 4, 8), (1, 2, 3)):
            if time.time() - t0 > budget_s:
                break
            triton_attention.LAUNCH_OVERRIDES.clear()
            triton_attention.LAUNCH_OVERRIDES.update(num_warps=warps, num_stages=stages)
            try:
                ms = cuda_time(lambda: kernels.attention(q, k, v).backward(grad), reps=10, warmup=2)
            except Exception as e:  # a config the compiler refuses (e.g. out of shared memory)
                results.append((f"w{warps}s{stages}", float("nan"), type(e).__name__))
                continue
            results.append((f"w{warps}s{stages}", ms, ""))
        triton_attention.LAUNCH_OVERRIDES.clear()
        ok = sorted((r for r in results if r[1] == r[1]), key=lambda r: r[1])
        mark = f"w{default['num_warps']}s3"  # Triton's default num_stages is 3
        text = "  ".join(f"{n}{'*' if n == mark else ''} {ms:.3f}" for n, ms, _ in ok[:6])
        print(f"{str(shape):18s} BM={default['BM']} BD={default['BD']}: {text}")


def ensemble_breakdown(E=64):
    print(f"== tiny-linreg ensemble step, E = {E}")
    cfg = make_config("tiny-linreg", {"ensemble.size": E, "train.device": "cuda"})
    engine = EnsembleTrainer(cfg, torch.device("cuda"))
    for s in range(4):
        engine.step(s, None, cfg.task.n_points)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for s in range(10):
        engine.batch(s, None, cfg.task.n_points)
    host_ms = (time.perf_counter() - t0) * 100
    (entry,) = engine._graphs.values()
    replay_ms = cuda_time(entry["graph"].replay, reps=10, warmup=1)
    t0 = time.perf_counter()
    for s in range(4, 14):
        engine.step(s, None, cfg.task.n_points)
    torch.cuda.synchronize()
    step_ms = (time.perf_counter() - t0) * 100
    print(f"host batch {host_ms:.2f} ms   graph replay {replay_ms:.2f} ms   whole step {step_ms:.2f} ms")
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        engine._body(*entry["static"])  # the same step, eagerly, so each kernel shows
        torch.cuda.synchronize()
    print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=12))


if __name__ == "__main__":
    print(torch.cuda.get_device_name())
    for part in (split, ensemble_breakdown, sweep):
        try:
            part()
        except Exception as e:  # report and go on: each part is independent
            print(f"{part.__name__} failed: {type(e).__name__}: {e}")
