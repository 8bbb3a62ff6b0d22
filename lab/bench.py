"""Benchmarks (scripts, not tests): time ours against the obvious alternative, side by side, same process.

- `bench_attention`: the Triton kernel's forward + backward vs torch's scaled_dot_product_attention (its fastest
  backend for each case) and vs the materialised reference, at the lab's shapes.
- `bench_train`: prompts/s of an ensemble of E models vs E solo runs trained one after another, same steps.
- `bench_model`: one training step of our model vs torch.nn.TransformerEncoder of the same shape.
- `bench_hyena`: the Hyena operator's convolutions, forward + backward: the long one as lab.challengers computes it
  (Toeplitz product below FFT_FROM = 64 tokens, FFT above) vs always by FFT; the short one vs nn.Conv1d trimmed.
(`lab bench sweep`, the executor on an experiment, lives with the experiments: probes/experiments/bench.py.)
Every result has the shape of DESIGN.md: {"benchmark", "device", "rows": [{"case", "ours_s", "baseline",
"baseline_s", "ratio" = baseline_s / ours_s, ...}]}.
"""
from __future__ import annotations

import os
import time

import torch
import torch.nn.functional as F
from torch import nn

import tasks

from .config import DEFAULT_THREADS, make_config
from .ensemble import EnsembleTrainer
from .model import build_model
from .optimizers import make_optimizer
from .runs import atomic_write_json
from .trainer import SoloEngine, prompt_loss, torch_threads

# (models x batch x heads, tokens, head dim): the lab's attention shapes (issue 4)
ATTENTION_SHAPES = [(4096, 41, 32), (2048, 81, 32), (512, 201, 64), (8192, 11, 16)]


def _device(device) -> torch.device:
    return torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))


def _device_name(dev: torch.device) -> str:
    return torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _time(fn, dev, reps: int, warmup: int) -> float:
    """Mean seconds per call of fn after `warmup` untimed calls (synchronised before and after)."""
    for _ in range(warmup):
        fn()
    _sync(dev)
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    _sync(dev)
    return (time.perf_counter() - t0) / reps


def _sdpa_backends():
    from torch.nn.attention import SDPBackend

    return {"flash": SDPBackend.FLASH_ATTENTION, "efficient": SDPBackend.EFFICIENT_ATTENTION,
            "cudnn": SDPBackend.CUDNN_ATTENTION, "math": SDPBackend.MATH}


def bench_attention(shapes=ATTENTION_SHAPES, dtypes=("float32", "bfloat16"), reps: int = 20, warmup: int = 3,
                    device=None) -> dict:
    """Causal softmax attention, forward + backward, per (rows, T, dh) shape and dtype: ours vs SDPA's fastest
    backend (each backend tried; one that refuses the case is skipped) and vs the materialised reference."""
    from torch.nn.attention import sdpa_kernel

    from . import kernels

    dev = _device(device)
    if not kernels.triton_usable(torch.empty(0, device=dev)):
        raise ValueError("lab bench attention times the Triton kernel, which needs a CUDA device (this machine has "
                         "none; set TRITON_INTERPRET=1 to run it, slowly, on the CPU)")
    rows, table = [], []
    for N, T, dh in shapes:
        for dtype_name in dtypes:
            dtype = getattr(torch, dtype_name)
            g = torch.Generator().manual_seed(0)
            q, k, v = (torch.randn(N, T, 1, dh, generator=g).to(dev, dtype).requires_grad_() for _ in range(3))
            grad = torch.randn(N, T, 1, dh, generator=g).to(dev, dtype)
            bhtd = [t.transpose(1, 2) for t in (q, k, v)]  # [N, 1, T, dh]: SDPA's layout, same memory

            def ours():
                kernels.attention(q, k, v, kind="softmax", mask="causal").backward(grad)

            def sdpa():
                F.scaled_dot_product_attention(*bhtd, is_causal=True).transpose(1, 2).backward(grad)

            def reference():
                s = (bhtd[0] @ bhtd[1].transpose(-1, -2)) * dh ** -0.5
                s = s.masked_fill(~torch.ones(T, T, dtype=torch.bool, device=dev).tril(), float("-inf"))
                (torch.softmax(s.float(), -1).to(dtype) @ bhtd[2]).transpose(1, 2).backward(grad)

            ours_s = _time(ours, dev, reps, warmup)
            timings = {}
            for name, backend in _sdpa_backends().items():
                try:
                    with sdpa_kernel([backend]):
                        timings[name] = _time(sdpa, dev, reps, warmup)
                except RuntimeError:
                    continue  # this backend does not take this case
            case = f"N={N} T={T} dh={dh} causal softmax {dtype_name}"
            if timings:
                best = min(timings, key=timings.get)
                table.append({"N": N, "T": T, "dh": dh, "dtype": dtype_name, "triton_s": ours_s,
                              "sdpa_s": timings[best], "sdpa_backend": best})
                rows.append({"case": case, "ours_s": ours_s, "baseline": f"sdpa ({best}, fastest of "
                             f"{'/'.join(timings)})", "baseline_s": timings[best], "ratio": timings[best] / ours_s})
            ref_s = _time(reference, dev, reps, warmup)
            rows.append({"case": case, "ours_s": ours_s, "baseline": "materialised reference", "baseline_s": ref_s,
                         "ratio": ref_s / ours_s})
    result = {"benchmark": "attention", "device": _device_name(dev), "rows": rows}
    if dev.type == "cuda" and table:  # what backend=auto reads on this device (lab/kernels/choice.py)
        path = kernels.choice.table_path(result["device"])
        atomic_write_json(path, {"device": result["device"], "torch": torch.__version__, "rows": table})
        kernels.choice.measured.cache_clear()
        result["table"] = str(path)
    return result


def _time_training(engine, cfg, dev, steps: int, warmup: int) -> float:
    """Seconds for `steps` training steps of an engine (sampling included) after `warmup` untimed ones."""
    engine.model.train()
    n = cfg.task.n_points
    for s in range(warmup):
        engine.step(s, None, n)
    _sync(dev)
    t0 = time.perf_counter()
    for s in range(warmup, warmup + steps):
        engine.step(s, None, n)
    _sync(dev)
    return time.perf_counter() - t0


def bench_train(preset: str = "tiny-linreg", sizes=(1, 4, 16, 64), steps: int = 20, warmup: int = 5,
                overrides=None, device=None) -> dict:
    """Training throughput: an ensemble of E models (one stacked computation) vs E solo runs one after another
    (the plain trainer, seeds 0..E-1), each for `steps` steps of the preset (sampling, forward, backward,
    clipping, Adam; no checkpoints), with the trainer's threads (train.threads)."""
    dev = _device(device)
    base = make_config(make_config(preset, overrides), {"train.device": dev.type})
    with torch_threads(base.train):
        return _bench_train(preset, base, sizes, steps, warmup, dev)


def _bench_train(preset, base, sizes, steps, warmup, dev) -> dict:
    solo_s = []  # solo run i (seed i) in turn: E solo runs take sum(solo_s[:E])
    for seed in range(max(sizes)):
        cfg = make_config(base, {"train.seed": seed})
        solo_s.append(_time_training(SoloEngine(cfg, dev), cfg, dev, steps, warmup))
    rows = []
    for E in sizes:  # E = 1 too: one model through the stacked path (on CUDA: one graph per step)
        cfg = make_config(base, {"ensemble.size": E})
        ens_s = _time_training(EnsembleTrainer(cfg, dev), cfg, dev, steps, warmup)
        solo_total = sum(solo_s[:E])
        prompts = E * base.train.batch_size * steps
        mc = base.model
        rows.append({"case": f"{preset}: E={E} models ({mc.n_layers}L x {mc.d_model}, batch "
                             f"{base.train.batch_size}, {steps} steps)",
                     "ours_s": ens_s, "baseline": f"{E} solo runs one after another", "baseline_s": solo_total,
                     "ratio": solo_total / ens_s, "ours_prompts_per_s": prompts / ens_s,
                     "baseline_prompts_per_s": prompts / solo_total})
    return {"benchmark": "train", "device": _device_name(dev), "rows": rows}


def _train_solo(preset: str, overrides: list[str], threads: int, steps: int, warmup: int) -> float:
    """Seconds for `steps` solo training steps of the preset on `threads` CPU threads."""
    cfg = make_config(preset, [*overrides, "train.device=cpu", f"train.threads={threads}"])
    with torch_threads(cfg.train):
        return _time_training(SoloEngine(cfg, torch.device("cpu")), cfg, torch.device("cpu"), steps, warmup)


def bench_threads(preset: str = "tiny-linreg", steps: int = 20, warmup: int = 5, overrides=None) -> dict:
    """CPU training steps with the trainer's default threads (DEFAULT_THREADS) vs torch's default (one per core),
    alone and beside a second training of the same kind and threads (the load of two trainings at once, or of
    any busy machine: OpenMP workers then spin waiting for cores). The second training is a child process of
    ours, stopped when the timing is done."""
    import subprocess
    import sys

    from .processes import stop_group

    overrides = list(overrides or [])
    ours_t, torch_t = DEFAULT_THREADS, os.cpu_count() or 1
    rows = []
    for load in (False, True):
        timings = {}
        for threads in (ours_t, torch_t):
            neighbour = None
            if load:
                code = (f"from lab.bench import _train_solo; _train_solo({preset!r}, {overrides!r}, {threads}, "
                        "10**9, 0)")
                neighbour = subprocess.Popen([sys.executable, "-c", code], start_new_session=True,
                                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                time.sleep(3.0)  # let it start training
            try:
                timings[threads] = _train_solo(preset, overrides, threads, steps, warmup)
            finally:
                if neighbour is not None:
                    stop_group(neighbour.pid, grace_s=2.0, proc=neighbour)
                    neighbour.wait()
        where = "beside a second training like it" if load else "alone"
        rows.append({"case": f"{preset}: {steps} training steps, {where}", "ours_s": timings[ours_t],
                     "baseline": f"torch default ({torch_t} threads) vs ours ({ours_t})",
                     "baseline_s": timings[torch_t], "ratio": timings[torch_t] / timings[ours_t]})
    return {"benchmark": "threads", "device": "cpu", "rows": rows}


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


def bench_model(preset: str = "garg-linreg", steps: int = 10, warmup: int = 3, device=None) -> dict:
    """Seconds per training step (forward, backward, Adam) of the preset's model at its full prompt length."""
    cfg = make_config(preset)
    dev = _device(device)
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

        return step

    ours_s = _time(stepper(ours), dev, steps, warmup)
    base_s = _time(stepper(base), dev, steps, warmup)
    case = (f"{preset}: {cfg.model.n_layers}L x {cfg.model.d_model} wide x {cfg.model.n_heads} heads, "
            f"batch {cfg.train.batch_size}, {fmt.seq_len(cfg.task.n_points)} tokens, "
            f"{ours.n_params() / 1e6:.2f}M params")
    return {"benchmark": "model", "device": _device_name(dev),
            "rows": [{"case": case, "ours_s": ours_s, "baseline": "torch.nn.TransformerEncoder", "baseline_s": base_s,
                      "ratio": base_s / ours_s}]}


def bench_hyena(lengths=(20, 40, 96, 128, 256), batch: int = 64, width: int = 64, reps: int = 20, warmup: int = 3,
                device=None) -> dict:
    """Seconds per forward + backward of Hyena's causal convolutions at batch x width x length (Bhattamishra's
    quick table: 64 x 64 x 40)."""
    from .challengers import causal_conv, causal_fft_conv, causal_short_conv

    dev = _device(device)
    g = torch.Generator().manual_seed(0)
    rows = []

    def fwd_bwd(fn, *inputs):
        def run():
            fn(*inputs).sum().backward()
        return run

    for T in lengths:
        u = torch.randn(batch, width, T, generator=g).to(dev).requires_grad_()
        h = torch.randn(width, T, generator=g).to(dev).requires_grad_()
        ours_s = _time(fwd_bwd(causal_conv, u, h), dev, reps, warmup)
        base_s = _time(fwd_bwd(causal_fft_conv, u, h), dev, reps, warmup)
        rows.append({"case": f"long conv: {batch} x {width} x {T} tokens", "ours_s": ours_s,
                     "baseline": "FFT at every length", "baseline_s": base_s, "ratio": base_s / ours_s})
    conv = nn.Conv1d(3 * width, 3 * width, kernel_size=3, groups=3 * width, padding=2).to(dev)
    T = 40  # Bhattamishra's quick table
    x = torch.randn(batch, 3 * width, T, generator=g).to(dev).requires_grad_()
    ours_s = _time(fwd_bwd(causal_short_conv, conv, x), dev, reps, warmup)
    base_s = _time(fwd_bwd(lambda c, v: c(v)[..., :T], conv, x), dev, reps, warmup)
    rows.append({"case": f"short conv: {batch} x {3 * width} x {T} tokens", "ours_s": ours_s,
                 "baseline": "nn.Conv1d, trimmed to causal", "baseline_s": base_s, "ratio": base_s / ours_s})
    return {"benchmark": "hyena", "device": _device_name(dev), "rows": rows}


def format_rows(result: dict) -> str:
    """The benchmark as a table: case, ours, baseline, ratio (baseline / ours)."""
    lines = [f"{result['benchmark']} benchmark on {result['device']} (ratio = baseline time / our time)"]
    if result.get("table"):
        lines.append(f"(backend=auto reads these timings from {result['table']})")
    for r in result["rows"]:
        extra = (f"  [{r['ours_prompts_per_s']:,.0f} vs {r['baseline_prompts_per_s']:,.0f} prompts/s]"
                 if "ours_prompts_per_s" in r else "")
        lines.append(f"{r['case']:58s} ours {r['ours_s'] * 1e3:9.3f} ms | {r['baseline']:34s} "
                     f"{r['baseline_s'] * 1e3:9.3f} ms | x{r['ratio']:.2f}{extra}")
    return "\n".join(lines)
