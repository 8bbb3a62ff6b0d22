"""Guo et al. 2023, "How do transformers learn in-context beyond simple functions? A case study on learning with
representations" (REFERENCES.md section 10): y = <w, Phi*(x)> + noise with one fixed random MLP Phi*.

Claims: (a) the model's error is close to the oracle's (ridge on Phi*(x), Bayes-optimal lambda) and far below ridge
on x; (b) linear probes decode Phi*(x_i) at the x tokens, R^2 rising through the lower layers to near 1, above an
untrained control; (c) pasting: the frozen upper layers, fed (Phi*(x_i), y_i) through a freshly trained linear embedding
(with the model's position table, trained along: what its backbone adds at the input), reach near-oracle error and
beat the same pasting into an untrained upper module; (d) copying: the y tokens come
to hold Phi*(x_i), received from their own x token.
"""
from __future__ import annotations

import numpy as np
import torch

from lab.model import build_model
from lab.runs import read_safetensors, write_safetensors

from .. import representation as rep
from ..icl_curve import EVAL_SEED, icl_curve
from ..metrics import bootstrap_curve
from .common import Training, claim, experiment, pyplot, save_figure

NAME = "guo-representation"
# quick: d = D = 5, Phi* of depth 2 (residual, leaky ReLU), noise 0.1, 3D + 1 examples, a 4-layer width-64 model:
# 328 s alone on 2 cores, 3/5.
# Measured with 6 layers, 4D + 1 examples and 6000 steps (23 min beside another job): 0.047 vs the oracle's 0.026,
# Phi* decoded after block 1 (R^2 0.99); pasting with fresh positions and 1500 steps missed (0.42)
SCALES = {
    "quick": {"overrides": {"task.d": 5, "task.D": 5, "task.n_points": 16, "model.n_layers": 4, "model.d_model": 64,
                            "model.n_heads": 4, "train.steps": 5000, "train.lr": 1e-3, "train.warmup_steps": 200,
                            "train.schedule": "cosine", "train.min_lr_ratio": 0.1, "train.grad_clip": 1.0,
                            "train.checkpoint_every": 500, "curriculum.dims_start": 2, "curriculum.dims_end": 5,
                            "curriculum.dims_interval": 600, "curriculum.points_start": 0,
                            "curriculum.points_end": 0},
              "n_eval": 1280, "n_probe": 512, "paste_steps": 2000, "margin": 0.05, "paste_margin": 0.1, "r2": 0.9},
    "paper": {"overrides": {}, "n_eval": 1280, "n_probe": 2048, "paste_steps": 20000, "margin": 0.02,
              "paste_margin": 0.05, "r2": 0.95},
    "smoke": {"overrides": {"task.d": 3, "task.D": 3, "task.n_points": 7, "model.n_layers": 2, "model.d_model": 16,
                            "model.n_heads": 2, "train.steps": 5, "curriculum.enabled": False},
              "n_eval": 32, "n_probe": 32, "paste_steps": 3, "margin": 0.05, "paste_margin": 0.1, "r2": 0.9}}


def trainings(s: dict) -> list[Training]:
    return [Training("representation", "guo-representation", s["overrides"])]


def untrained_like(run):
    """The run's architecture with fresh initial weights (another seed): the probes' control."""
    model = build_model(run.model.cfg, seed=run.config.train.seed + 10_000)
    return model.to(dtype=next(run.model.parameters()).dtype).eval()


PASTED = "pasted"  # RUN/pasted/: the read-ins and positions the pasting trained (the zoo ships its model's)


def pasted_module(run, model, who: str, layer: int, steps: int) -> rep.PastedModel:
    """rep.paste of `model` (the run's, or its untrained control: `who`) from block `layer`, trained once per run:
    its trained read-in and positions are kept in RUN/pasted/ (read from the run folder, where a zoo model ships
    them, or from run.out; written to run.out), so a re-analysis (`lab zoo verify`) recomputes from weights. The
    file names the run's checkpoint step: a run trained on since then pastes again."""
    task, n, seed = run.task, run.config.task.n_points, run.config.train.seed
    run.model  # noqa: B018 - loading it sets run.step
    name = f"{who}-from-block{layer}-{steps}steps-seed{seed}-model-step{run.step}.safetensors"
    found = next((f / PASTED / name for f in (run.path, run.out) if (f / PASTED / name).is_file()), None)
    if found is None:
        pasted = rep.paste(model, layer, task, n, steps=steps, seed=seed)
        write_safetensors(run.out / PASTED / name, {k: v for k, v in pasted.state_dict().items()
                                                    if not k.startswith("upper.")}, {"steps": steps})
        return pasted
    dtype = next(model.parameters()).dtype
    pasted = rep.PastedModel(model, layer, task.D, 2 * n, seed).to(dtype)
    trained, _ = read_safetensors(found)
    missing, unexpected = pasted.load_state_dict(trained, strict=False)
    if unexpected or any(not k.startswith("upper.") for k in missing):
        raise ValueError(f"{found} does not hold a pasted read-in and positions: {sorted(unexpected or missing)}")
    return pasted.requires_grad_(False)


def split_layer(r2_by_layer: list[float]) -> int:
    """Where the upper module starts: the first block whose input already holds Phi* (x-token probe R^2 within 5% of
    its best), leaving at least one block above it."""
    best = max(r2_by_layer)
    first = next(l for l, v in enumerate(r2_by_layer) if v >= 0.95 * best)
    return int(min(max(first, 1), len(r2_by_layer) - 2))


@experiment(NAME, SCALES, trainings)
def analyse(ctx):
    """Guo et al.: near-oracle ICL with a representation; Phi*(x) in the lower layers; linear ICL in the upper ones."""
    s, run = ctx.s, ctx.runs["representation"]
    task, fmt, n = run.task, run.format, run.config.task.n_points
    model, control = run.model.eval(), untrained_like(run)
    D = task.D
    dtype = next(model.parameters()).dtype

    curve = icl_curve(run, n_prompts=s["n_eval"])
    tail = {name: float(np.mean(c["mean"][D:])) for name, c in curve["curves"].items()}  # mean error over k >= D

    train = task.sample(s["n_probe"], n, seed=EVAL_SEED + 1, dtype=dtype)
    test = task.sample(s["n_probe"] // 2, n, seed=EVAL_SEED + 2, dtype=dtype)
    probes_r2 = {(who, tokens): rep.token_probe(m, fmt, train, test, tokens=tokens)
                 for who, m in (("trained", model), ("untrained", control)) for tokens in ("x", "y")}
    floor = rep.linear_in_x_r2(train, test)
    attention = rep.previous_token_attention(model, fmt, test)  # [L, H]

    layer = split_layer(probes_r2["trained", "x"])
    p_eval = task.sample(s["n_eval"], n, seed=EVAL_SEED, dtype=torch.float64)  # the ICL curve's prompts
    pasted_err = {}
    for who, m in (("trained", run.model), ("untrained", untrained_like(run))):
        pasted = pasted_module(run, m, who, layer, s["paste_steps"])
        preds = rep.pasted_predictions(pasted, p_eval).double()
        pasted_err[who] = bootstrap_curve((preds - p_eval.ys) ** 2 / task.y_variance())
    paste_tail = {who: float(np.mean(c["mean"][D:])) for who, c in pasted_err.items()}
    oracle_tail = tail["oracle"]
    on_x = tail.get("ridge-x", tail["ols"])  # noiseless: least squares on x

    x_tr, x_un = probes_r2["trained", "x"], probes_r2["untrained", "x"]
    y_tr, y_un = probes_r2["trained", "y"], probes_r2["untrained", "y"]
    claims = [
        claim(f"the model's error is close to the oracle's (mean over k >= D; passes within {s['margin']})",
              "near-optimal", round(tail["model"] - tail["oracle"], 4), tail["model"] - tail["oracle"] <= s["margin"]),
        claim("the model's error is far below ridge on x (passes below half of it; mean over k >= D)", "far below",
              round(tail["model"] / on_x, 4), tail["model"] <= 0.5 * on_x),
        claim(f"linear probes decode Phi*(x_i) at the x tokens, rising through the layers to near 1 (best R^2; passes "
              f">= {s['r2']}, above the read-in's and the untrained model's best by 0.02)", "near 1", max(x_tr),
              max(x_tr) >= s["r2"] and max(x_tr) >= x_tr[0] + 0.02 and max(x_tr) >= max(x_un) + 0.02),
        claim(f"pasting: the frozen upper layers (from block {layer}) do linear ICL on (Phi*(x), y) near the oracle "
              f"(excess error over k >= D; passes within {s['paste_margin']} and below the untrained module's)",
              "near-optimal", round(paste_tail["trained"] - oracle_tail, 4),
              paste_tail["trained"] - oracle_tail <= s["paste_margin"]
              and paste_tail["trained"] < paste_tail["untrained"]),
        claim(f"copying: the y tokens hold Phi*(x_i) (best R^2 at the y tokens; passes >= {s['r2']} and above the "
              "untrained model's by 0.02)", "near 1", max(y_tr),
              max(y_tr) >= s["r2"] and max(y_tr) >= max(y_un) + 0.02),
    ]
    _figure(curve, probes_r2, floor, pasted_err, layer, ctx.figures / "representation.png")
    metrics = {"mean_error_k_ge_D": tail, "probe_r2": {f"{who}_{tokens}": v for (who, tokens), v in probes_r2.items()},
               "linear_in_x_r2": floor, "split_layer": layer, "pasted_mean_error_k_ge_D": paste_tail,
               "oracle_mean_error_k_ge_D": oracle_tail, "previous_token_attention": attention.tolist(),
               "curve": {name: c["mean"] for name, c in curve["curves"].items()}}
    return claims, metrics


def _figure(curve, probes_r2, floor, pasted_err, layer, path):
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.9))
    ax = axes[0]
    for name, c in curve["curves"].items():
        ax.plot(curve["k"], c["mean"], label=name, lw=2.5 if name == "model" else 1.2,
                color="black" if name == "model" else None)
    ax.set(title="ICL curve", xlabel="k", ylabel="squared error / E[y^2]", ylim=(-0.02, 1.5))
    ax.legend(fontsize=7)
    ax = axes[1]
    for (who, tokens), v in probes_r2.items():
        ax.plot(range(len(v)), v, marker="o", ls="-" if who == "trained" else ":",
                label=f"{who}, {tokens} tokens")
    ax.axhline(floor, color="grey", lw=1, ls="--", label="affine in x")
    ax.axvline(layer, color="tab:red", lw=1, ls=":", label="paste point")
    ax.set(title="linear probe of Phi*(x_i)", xlabel="layer (0 = read-in)", ylabel="held-out R^2", ylim=(-0.05, 1.02))
    ax.legend(fontsize=7)
    ax = axes[2]
    k = range(len(pasted_err["trained"]["mean"]))
    for who, c in pasted_err.items():
        ax.plot(k, c["mean"], label=f"pasted, {who} upper layers", lw=2 if who == "trained" else 1.2)
    ax.plot(k, curve["curves"]["oracle"]["mean"], label="oracle ridge on Phi*", color="black", ls="--")
    ax.set(title=f"pasting from block {layer}", xlabel="k", ylim=(-0.02, 1.5))
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)
