"""`lab probe RUN KIND`: what is a trained run computing? Three analyses on fresh prompts of its task.

match:   which of GD (one step, line-searched lr), ridge (lambda grid) and OLS its predictions are closest to,
         by SPD (Akyurek et al.).
readout: per-layer linear read-outs matched to Newton iterations and to GD steps by SimE (Fu et al.).
probe:   R^2 per layer of linear and MLP probes for w_OLS and X^T y, beside an untrained control (Akyurek).
construction: a linear self-attention run's W_KQ and W_PV beside the one-GD-step construction (von Oswald).
search:  a graph-search run's reachable-set decoding per layer and attention trace (Saparov; probes/search.py).
lens:    the logit lens (the read-out on every layer) beside trained per-layer read-outs, error by layer and k.
dla:     direct attribution of the query prediction to each head, MLP and embedding.
patching: exact activation patching beside attribution patching (their agreement), and path patching.
ablation: each head zero-ablated, the ICL curve without it, heads ranked.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from lab.model import build_model
from lab.runs import atomic_write_json

from . import readout
from .ablation import ablation_figure, format_ablation, head_ablations
from .constructions import gd_layer_weights, kq_pv, kq_pv_products
from .dla import direct_attribution, dla_figure, format_dla
from .figures import layer_iteration_heatmaps, save_figure
from .lens import format_lens, lens, lens_figure
from .lsa import cosine, line_search_grid, products_figure, projection_scale
from .match import line_search_lr, match
from .metrics import sime, spd
from .patching import format_patching, patching_comparison_figure, patching_probe, path_figure
from .search import format_search, search_probe
from .solvers import path, solve

EVAL_SEED, TRAIN_SEED = 424_242, 434_343
GD_LRS = [float(v) for v in np.round(np.linspace(0.05, 2.0, 40), 4)]
RIDGE_LAMS = [0.001, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0]
NEWTON_STEPS = list(range(1, 31))
GD_STEPS = sorted({int(v) for v in np.unique(np.round(np.logspace(0, np.log10(5000), 40)))})


def match_algorithms(run, n_prompts: int = 1000, seed: int = EVAL_SEED) -> dict:
    """SPD (averaged over k >= 1) of the run's predictions to the best GD, ridge and OLS settings."""
    p = run.task.sample(n_prompts, run.config.task.n_points, seed=seed, dtype=torch.float64)
    preds = run.predict(p).double()
    results = {"gd": match(preds, p, "gd", {"steps": [1], "lr": GD_LRS}),
               "ridge": match(preds, p, "ridge", {"lam": RIDGE_LAMS}),
               "ols": match(preds, p, "ols", {})}
    families = {}
    for name, r in results.items():
        best_preds = solve(r.family, p, **r.best)
        families[name] = {"best": r.best, "spd": r.best_score, "spd_curve": spd(preds, best_preds, p.d).tolist()}
    best = min(families, key=lambda f: families[f]["spd"])
    return {"kind": "match", "run": str(run.path), "d": p.d, "families": families, "best_family": best}


def layer_iterations(run, n_train: int = 2000, n_test: int = 1000, newton_steps=NEWTON_STEPS, gd_steps=GD_STEPS,
                     gd_lr: float = 0.01, task=None) -> dict:
    """Fu et al.: per-layer read-outs, each matched by SimE to Newton iterations and to un-normalised GD
    steps (lr 0.01); `task` overrides the run's task for the prompts (e.g. ill-conditioned data)."""
    task = task or run.task
    n = run.config.task.n_points
    train = task.sample(n_train, n, seed=TRAIN_SEED, dtype=torch.float64)
    test = task.sample(n_test, n, seed=EVAL_SEED, dtype=torch.float64)
    preds = readout.readout_predictions(run.model, run.format, train, test)  # [L+1, B, n]
    newton, gd = path("newton", test, newton_steps), path("gd", test, gd_steps, lr=gd_lr, normalize=False)
    sim_newton = np.array([[sime(h, newton[k], test.ys) for k in newton_steps] for h in preds])
    sim_gd = np.array([[sime(h, gd[k], test.ys) for k in gd_steps] for h in preds])
    best_newton = [newton_steps[i] for i in sim_newton.argmax(1)]
    best_gd = [gd_steps[i] for i in sim_gd.argmax(1)]
    layers = np.arange(1, len(preds))
    slope = float(np.polyfit(layers, best_newton[1:], 1)[0]) if len(layers) > 1 else None  # JSON has no NaN
    final = run.predict(test).double()
    return {"kind": "readout", "run": str(run.path), "layers": list(range(len(preds))),
            "newton_steps": list(newton_steps), "gd_steps": list(gd_steps), "gd_lr": gd_lr,
            "best_newton": best_newton, "best_gd": best_gd, "newton_slope_per_layer": slope,
            "best_newton_similarity": sim_newton.max(1).tolist(), "best_gd_similarity": sim_gd.max(1).tolist(),
            "final_model_similarity": {"newton": max(sime(final, newton[k], test.ys) for k in newton_steps),
                                       "gd": max(sime(final, gd[k], test.ys) for k in gd_steps)},
            "sim_newton": sim_newton.tolist(), "sim_gd": sim_gd.tolist()}


def layer_probes(run, n_train: int = 1000, n_test: int = 500, mlp_steps: int = 500) -> dict:
    """Akyurek et al.: R^2 per layer of probes for w_OLS and X^T y, trained model vs its untrained initial weights."""
    task, n = run.task, run.config.task.n_points
    train = task.sample(n_train, n, seed=TRAIN_SEED)
    test = task.sample(n_test, n, seed=EVAL_SEED)
    control = build_model(run.config.model, seed=run.config.train.seed).eval()
    out = {"kind": "probe", "run": str(run.path)}
    for target in ("w_ols", "xty"):
        out[target] = {"trained": readout.probe_layers(run.model, run.format, train, test, target, mlp_steps=mlp_steps),
                       "control": readout.probe_layers(control, run.format, train, test, target, mlp_steps=mlp_steps)}
    return out


def construction_match(run, n_prompts: int = 2000, seed: int = EVAL_SEED) -> dict:
    """von Oswald et al. Prop. 1: each layer's W_KQ = W_K^T W_Q and W_PV = W_O W_V beside the one-GD-step
    construction at the line-searched learning rate (cosine, and the scale that best maps one onto the other);
    writes RUN/figures/kq_pv.png for layer 0."""
    cfg = run.config.model
    d, n_context = run.task.d, run.config.task.n_points - 1
    p = run.task.sample(n_prompts, n_context + 1, seed=seed, dtype=torch.float64)
    eta = float(line_search_lr(p, 1, line_search_grid()))
    kq_ref, pv_ref = kq_pv(**gd_layer_weights(d, n_context, eta))
    layers = []
    for layer in range(cfg.n_layers):
        kq, pv = kq_pv_products(run.model, layer)
        layers.append({"kq_cosine": cosine(kq, kq_ref), "pv_cosine": cosine(pv, pv_ref),
                       "kq_scale": projection_scale(kq, kq_ref), "pv_scale": projection_scale(pv, pv_ref)})
    products_figure(*kq_pv_products(run.model, 0), kq_ref, pv_ref, run.out / "figures" / "kq_pv.png",
                    "one GD step")
    return {"kind": "construction", "run": str(run.path), "gd_lr": eta, "layers": layers}


def _format_construction(res: dict) -> str:
    lines = [f"one-GD-step construction at the line-searched lr {res['gd_lr']:.3f}:"]
    for l, r in enumerate(res["layers"]):
        lines.append(f"  layer {l}: cosine W_KQ {r['kq_cosine']:.4f}, W_PV {r['pv_cosine']:.4f} "
                     f"(scales {r['kq_scale']:.3g}, {r['pv_scale']:.3g})")
    return "\n".join(lines)


def _format_match(res: dict) -> str:
    lines = [f"SPD / d to the best setting of each algorithm (averaged over k >= 1), d = {res['d']}:"]
    for name, f in res["families"].items():
        lines.append(f"  {name:6s} {f['spd']:.5f}  {f['best']}")
    return "\n".join(lines + [f"closest: {res['best_family']}"])


def _format_readout(res: dict) -> str:
    lines = ["layer  newton-iters (SimE)   gd-steps (SimE)"]
    for l in res["layers"]:
        lines.append(f"{l:5d}  {res['best_newton'][l]:5d} ({res['best_newton_similarity'][l]:.3f})"
                     f"     {res['best_gd'][l]:6d} ({res['best_gd_similarity'][l]:.3f})")
    slope = res["newton_slope_per_layer"]
    return "\n".join(lines + [f"Newton iterations per layer (slope): {'-' if slope is None else f'{slope:.2f}'}"])


def _format_probe(res: dict) -> str:
    lines = []
    for target in ("w_ols", "xty"):
        for kind in ("linear", "mlp"):
            t, c = res[target]["trained"][kind], res[target]["control"][kind]
            lines.append(f"{target:5s} {kind:6s} R^2 by layer: trained " + " ".join(f"{v:5.2f}" for v in t)
                         + " | control " + " ".join(f"{v:5.2f}" for v in c))
    return "\n".join(lines)


@dataclass
class Probe:
    run: Callable  # (run, n_prompts) -> result dict
    format: Callable  # result dict -> text


PROBES = {"match": Probe(lambda run, n: match_algorithms(run, n_prompts=n), _format_match),
          "readout": Probe(lambda run, n: layer_iterations(run, n_test=n), _format_readout),
          "probe": Probe(lambda run, n: layer_probes(run, n_test=n), _format_probe),
          "construction": Probe(lambda run, n: construction_match(run, n_prompts=n), _format_construction),
          "search": Probe(lambda run, n: search_probe(run, n_prompts=n), format_search),
          "lens": Probe(lambda run, n: lens(run, n_prompts=n), format_lens),
          "dla": Probe(lambda run, n: direct_attribution(run, n_prompts=n), format_dla),
          "patching": Probe(lambda run, n: patching_probe(run), format_patching),
          "ablation": Probe(lambda run, n: head_ablations(run, n_prompts=n), format_ablation)}
# the figures each of these writes, RUN/figures/NAME.png
FIGURES = {"lens": {"lens": lens_figure}, "dla": {"dla": dla_figure}, "ablation": {"ablation": ablation_figure},
           "patching": {"patching": patching_comparison_figure, "path_patching": lambda res: path_figure(res["path"])}}
HEAD_PROBES = ("lens", "dla", "patching", "ablation")


def not_applicable(run, kind: str) -> str | None:
    """Why analysis `kind` cannot run on `run` (None when it can)."""
    if kind not in PROBES:
        return f"is not a probe; choose one of: {', '.join(PROBES)}"
    cfg = run.config
    if kind == "search" or cfg.task.name == "graph_search":
        if (kind == "search") != (cfg.task.name == "graph_search"):
            return (f"looks for breadth-first search in a graph-search run, and this run learns {cfg.task.name}"
                    if kind == "search" else "compares a model with regression algorithms, and this run learns "
                    "graph search (use: search)")
        return None
    if kind in HEAD_PROBES and cfg.model.arch != "transformer":
        return f"reads a transformer's residual stream and heads, and this run is a {cfg.model.arch} model"
    if cfg.task.name != "linear_regression":
        return f"compares a model with regression algorithms, and this run learns {cfg.task.name} functions"
    if kind in ("readout", "probe") and cfg.task.format == "stacked":
        return ("reads every prefix's state, and this run's stacked format predicts only its last point (use "
                "match, or a run with an interleaved/disjoint/paired format)")
    if kind == "construction" and not (cfg.model.input == "identity" and cfg.model.attn == "linear"
                                       and cfg.task.format == "stacked"):
        return ("compares linear self-attention on stacked tokens with von Oswald's GD construction, and this run "
                "is not such a model (one is: lab train vo-lsa-1layer)")
    return None


def probe_run(run, kind: str, n_prompts: int = 1000) -> dict:
    """Run analysis `kind` on a run; writes RUN/eval/KIND.json (and RUN/figures/readout.png for readout)."""
    reason = not_applicable(run, kind)
    if reason:
        raise ValueError(f"probe {kind!r} {reason}")
    res = PROBES[kind].run(run, n_prompts)
    atomic_write_json(run.out / "eval" / f"{kind}.json", res)
    if kind == "readout":
        layer_iteration_heatmaps(res, run.out / "figures" / "readout.png", title=run.path.name)
    for name, figure in FIGURES.get(kind, {}).items():
        save_figure(figure(res), run.out / "figures" / f"{name}.png")
    return res
