"""The standard in-context learning curve (Garg et al., fig. 2): normalised squared error against the
number of in-context examples k, with 90% bootstrap confidence intervals, for a model and the baselines
on the same prompts.
"""
from __future__ import annotations

import dataclasses

import torch

import tasks
from lab.runs import atomic_write_bytes, atomic_write_json

from .boolean_learners import accuracy
from .figures import png_bytes, pyplot
from .metrics import bootstrap_curve
from .solvers import solve

EVAL_SEED = 1_234_567  # eval prompts; training streams use seed * 1_000_003 + step


EXACT_LEARNER = {"conjunction": ("elimination", {"kind": "conjunction"}),
                 "disjunction": ("elimination", {"kind": "disjunction"}),
                 "sparse_disjunction": ("elimination", {"kind": "disjunction"}),
                 "parity": ("gf2", {}), "sparse_parity": ("gf2", {})}


def baselines_for(task) -> dict[str, tuple[str, dict]]:
    """The reference learners shown beside a model: Garg's (OLS, 3-NN, averaging) and the zero predictor,
    plus Lasso for sparse w and Bayes-optimal ridge (lam = sigma^2 / tau^2) for noisy y; a greedy tree (decision
    trees) or a per-prompt 2-layer net (ReLU networks) for Garg's nonlinear classes; for Guo's representation task the
    oracle ridge on Phi*(x) and ridge on x. Boolean tasks
    (Bhattamishra et al.): 1-NN, 3-NN, feature-wise averaging, their null classifier (always -1), the majority label,
    and the exact learner of the class where there is one (literal elimination, GF(2) elimination)."""
    if getattr(task, "metric", "") == "accuracy":
        out = {"1-nn": ("knn", {"k": 1}), "3-nn": ("knn", {"k": 3}), "averaging": ("averaging", {}),
               "null (-1)": ("null", {}), "majority": ("majority", {})}
        if task.fn in EXACT_LEARNER:
            out["exact"] = EXACT_LEARNER[task.fn]
        return out
    out = {"ols": ("ols", {}), "averaging": ("averaging", {}), "3-nn": ("knn", {"k": 3}), "zero": ("zero", {})}
    name = getattr(task, "name", "")
    if name == "decision_tree":  # Garg et al. sec. 4; boosted trees (slow) are in `lab reproduce garg-classes`
        out["tree"] = ("tree", {"max_depth": task.depth})
    if name == "relu_net":
        out["2-layer net"] = ("relu_net", {"hidden": task.hidden})
    if name == "representation":  # Guo et al.: the Bayes-optimal ridge on Phi*(x), and ridge on x with the same lambda
        lam = task.bayes_lambda()
        out["oracle"] = ("ridge", {"lam": lam, "features": "phi"}) if lam > 0 else ("ols", {"features": "phi"})
        if lam > 0:
            out["ridge-x"] = ("ridge", {"lam": lam})
        return out
    if getattr(task, "sparsity", 0):
        out["lasso"] = ("lasso", {"alpha": 0.01})  # a light penalty: close to min-norm OLS plus sparsity
    if getattr(task, "noise_std", 0):
        out["ridge"] = ("ridge", {"lam": task.noise_std**2 / task.w_std**2})
    return out


def curve_for_predictions(task, prompts: tasks.Prompts, predictions: dict, n_boot: int = 1000,
                          d_active: int | None = None) -> dict:
    """The eval JSON object (DESIGN.md) for named predictions [B, n] on `prompts` (drawn with `d_active`):
    normalised squared error, or accuracy (the sign of the prediction against a label in {-1, +1}) for tasks
    whose metric is accuracy."""
    ys = prompts.ys.double()
    if getattr(task, "metric", "") == "accuracy":
        score, metric = (lambda preds: accuracy(preds, ys)), "accuracy"
    else:
        scale = task.y_variance(d_active) if d_active else task.y_variance()
        metric = "squared error / E[y^2] (zero predictor = 1)"

        def score(preds):
            return (preds.double() - ys) ** 2 / scale

    curves = {name: bootstrap_curve(score(preds), n_boot) for name, preds in predictions.items()}
    return {"task": getattr(task, "name", type(task).__name__), "d": task.d, "k": list(range(prompts.n_points)),
            "metric": metric, "curves": curves}


def shifted_task(task, **changes):
    """The run's task with some of its arguments changed (Garg's out-of-distribution prompts: noise_std, x_scale,
    w_std, x_cov); an unknown or invalid argument raises ValueError naming it."""
    fields = {f.name for f in dataclasses.fields(task)}
    unknown = sorted(set(changes) - fields)
    if unknown:
        raise ValueError(f"unknown task argument {unknown[0]!r}; arguments: {', '.join(sorted(fields))}")
    return dataclasses.replace(task, **changes)


def icl_curve(run, n_prompts: int = 1280, seed: int = EVAL_SEED, n_boot: int = 1000, task=None,
              d_active: int | None = None) -> dict:
    """Model and baselines on the same `n_prompts` fresh prompts of the run's task (or `task`, e.g. a
    `shifted_task`), at full dimension or with only the first `d_active` coordinates of x."""
    task = task or run.task
    p = task.sample(n_prompts, run.config.task.n_points, seed=seed, d_active=d_active, dtype=torch.float64)
    predictions = {"model": run.predict(p)}
    for label, (name, kw) in baselines_for(task).items():
        predictions[label] = solve(name, p, **kw)
    curve = curve_for_predictions(task, p, predictions, n_boot, d_active)
    if d_active:
        curve["d"] = d_active
    return curve


def plot_curve(curve: dict) -> bytes:
    """The ICL curve as PNG bytes: mean with its CI band per predictor, and a dashed line at k = d."""
    fig, ax = pyplot().subplots(figsize=(6, 4))
    k = curve["k"]
    for name, c in curve["curves"].items():
        style = {"lw": 2.5, "color": "black"} if name == "model" else {"lw": 1.4}
        (line,) = ax.plot(k, c["mean"], label=name, **style)
        ax.fill_between(k, c["lo"], c["hi"], alpha=0.2, color=line.get_color(), lw=0)
    accuracy = curve["metric"] == "accuracy"
    if curve.get("k_name"):  # graph search: accuracy by lookahead, no chance line
        ax.set(xlabel=curve["k_name"], ylabel="accuracy", ylim=(-0.02, 1.02), title=f"{curve['task']}, "
               f"{curve['d']} vertices")
        ax.legend(fontsize=8)
        fig.tight_layout()
        return png_bytes(fig)
    if accuracy:
        ax.axhline(0.5, ls=":", color="grey", lw=1)
    else:
        ax.axvline(curve["d"], ls="--", color="grey", lw=1)
    ax.set(xlabel="in-context examples k", ylabel=curve["metric"] if accuracy else "squared error / E[y^2]",
           ylim=(0.3, 1.02) if accuracy else (-0.02, 1.3), title=f"{curve['task']}, d = {curve['d']}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return png_bytes(fig)


def format_table(curve: dict, ks=None) -> str:
    """A plain-text table: one row per k, one column per predictor (mean error)."""
    names = list(curve["curves"])
    ks = ks if ks is not None else curve["k"]
    lines = ["k".rjust(4) + "".join(n.rjust(11) for n in names)]
    for k in ks:
        lines.append(f"{k:4d}" + "".join(f"{curve['curves'][n]['mean'][k]:11.4f}" for n in names))
    return "\n".join(lines)


def evaluate_run(run, n_prompts: int = 1280) -> dict:
    """Compute the curve, write RUN/eval/icl_curve.json and RUN/figures/icl_curve.png; return the curve. A graph
    search run's curve is its accuracy by lookahead (probes/search.py)."""
    if run.config.task.name == "graph_search":
        from .search import search_curve

        curve = search_curve(run.model, run.task, min(n_prompts, 1000))
    else:
        curve = icl_curve(run, n_prompts=n_prompts)
    atomic_write_json(run.out / "eval" / "icl_curve.json", curve)
    atomic_write_bytes(run.out / "figures" / "icl_curve.png", plot_curve(curve))
    return curve
