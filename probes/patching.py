"""Looking inside a run on single prompts: attention patterns, edited examples, activation patching, its
gradient estimate (attribution patching), and path patching between heads.

Activation patching (Meng et al. 2022; Heimersheim & Nanda 2024): run a corrupted prompt while one residual-
stream vector (layer l, position t) is replaced by its value on the clean prompt, and measure how much of the
clean prediction comes back: effect = (patched - corrupt) / (clean - corrupt), 1 = fully restored.
"""
from __future__ import annotations

import math

import torch

from lab.cache import act_name
from tasks import Prompts


def _inputs(run, p: Prompts) -> torch.Tensor:
    dtype = next(run.model.parameters()).dtype
    return run.format.encode(p.to(device=run.device, dtype=dtype))


def query_prediction(run, p: Prompts) -> torch.Tensor:
    """The model's prediction [B] for each prompt's last point, from all the pairs before it."""
    with torch.no_grad():
        return run.format.predict_last(run.model, p.to(device=run.device,
                                                       dtype=next(run.model.parameters()).dtype)).cpu()


def attention_patterns(run, p: Prompts) -> torch.Tensor:
    """Attention weights of every layer and head for the first prompt: [L, H, T, T] (query rows, key columns)."""
    names = [f"blocks.{l}.attn.hook_pattern" for l in range(run.config.model.n_layers)]
    with torch.no_grad():
        _, cache = run.model.run_with_cache(_inputs(run, p)[:1], names_filter=names)
    return torch.stack([cache[n][0] for n in names]).cpu()


def token_labels(run, n_points: int) -> list[str]:
    """A short label per token position of the run's format (x1, y1, x2, ...), for figure axes."""
    fmt = run.format.name
    if fmt == "stacked":
        return [f"(x{i + 1},y{i + 1})" for i in range(n_points - 1)] + [f"(x{n_points},?)"]
    if fmt == "paired":
        return [t for i in range(n_points) for t in (f"x{i + 1}", f"(x{i + 1},y{i + 1})")]
    return [t for i in range(n_points) for t in (f"x{i + 1}", f"y{i + 1}")]


def edit_example(p: Prompts, index: int, y: float | None = None, x_scale: float | None = None) -> Prompts:
    """A copy of the first prompt with in-context example `index` changed: its label set to y and/or its x
    multiplied by x_scale. Ground truth (w) is kept, so the edit is a counterfactual for the same task."""
    if not 0 <= index < p.n_points:
        raise ValueError(f"example index must be in 0..{p.n_points - 1}; got {index}")
    for name, value in (("label y", y), ("x_scale", x_scale)):
        if value is not None and not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number; got {value!r}")
    xs, ys = p.xs[:1].clone(), p.ys[:1].clone()
    if y is not None:
        ys[0, index] = y
    if x_scale is not None:
        xs[0, index] *= x_scale
    return Prompts(xs, ys, {k: v[:1] for k, v in p.params.items()})


def label_range(task) -> tuple[float, float]:
    """The labels an edited example may take: -1 and +1 for Boolean tasks; for regression, 10 standard deviations
    of the task's y (E[y^2] ** 0.5) either side of 0, beyond which an edit is no counterfactual of this task (and
    float32 models overflow: an edit of -1e30 gives NaN)."""
    if getattr(task, "metric", "") == "accuracy":
        return -1.0, 1.0
    bound = float(f"{10 * math.sqrt(task.y_variance()):.2g}")
    return -bound, bound


def _query_output(run, inputs: torch.Tensor) -> torch.Tensor:
    """The prediction for the last point, [B], from model outputs on encoded inputs."""
    return run.format.decode(run.model(inputs))[:, -1]


def _pair(run, clean: Prompts, corrupt: Prompts, min_gap: float):
    """Encoded first prompts of each and their query predictions; refuses pairs with nothing to patch."""
    if clean.xs.shape[1:] != corrupt.xs.shape[1:]:
        raise ValueError("clean and corrupt prompts must have the same number of points and dimension")
    clean_in, corrupt_in = _inputs(run, clean)[:1], _inputs(run, corrupt)[:1]
    with torch.no_grad():
        clean_pred, corrupt_pred = _query_output(run, clean_in).item(), _query_output(run, corrupt_in).item()
    if abs(clean_pred - corrupt_pred) < min_gap:
        raise ValueError("the two prompts give the same prediction: there is no effect to patch "
                         "(change an example the prediction depends on)")
    return clean_in, corrupt_in, clean_pred, corrupt_pred


def activation_patching(run, clean: Prompts, corrupt: Prompts, activation: str = "resid_pre",
                        min_gap: float = 1e-6) -> dict:
    """Patch blocks.l.<activation> (a short name: resid_pre, attn_out, z, v, ...) at each position of the corrupt
    run with the clean value (every head at once for per-head activations).

    Returns {"effect": [L, T] (fraction of the clean - corrupt gap restored), "clean": float, "corrupt": float}
    for the first prompt of each (same length). The prediction read is the last point's.
    """
    clean_in, corrupt_in, clean_pred, corrupt_pred = _pair(run, clean, corrupt, min_gap)
    L, model = run.config.model.n_layers, run.model
    names = [act_name(activation, l) for l in range(L)]
    T = clean_in.shape[1]
    effect = torch.zeros(L, T, dtype=torch.float64)
    with torch.no_grad():
        _, cache = model.run_with_cache(clean_in, names_filter=names)
        for l, name in enumerate(names):
            for t in range(T):
                def patch(x, *, hook, t=t, name=name):
                    x = x.clone()
                    x[:, t] = cache[name][:, t]
                    return x

                with model.hooks([(name, patch)]):
                    effect[l, t] = (_query_output(run, corrupt_in).item() - corrupt_pred) / (clean_pred - corrupt_pred)
    return {"effect": effect.tolist(), "clean": clean_pred, "corrupt": corrupt_pred, "layers": L, "tokens": T,
            "activation": activation}


def attribution_patching(run, clean: Prompts, corrupt: Prompts, activation: str = "resid_pre",
                         min_gap: float = 1e-6) -> dict:
    """Attribution patching (Nanda 2023; Syed et al. 2023): the first-order estimate of `activation_patching` from
    one forward and one backward pass of the corrupt prompt, for every layer and position at once:
    effect[l, t] ~ <d prediction / d a_l[t], a_l^clean[t] - a_l^corrupt[t]> / (clean - corrupt).
    Exact wherever the prediction is linear in the activation (e.g. the last layer's v or z of an LSA model)."""
    clean_in, corrupt_in, clean_pred, corrupt_pred = _pair(run, clean, corrupt, min_gap)
    L, model = run.config.model.n_layers, run.model
    names = [act_name(activation, l) for l in range(L)]
    with torch.no_grad():
        _, clean_cache = model.run_with_cache(clean_in, names_filter=names)
    if corrupt_in.is_floating_point():  # so that activations equal to the input (an identity read-in) have a gradient
        corrupt_in = corrupt_in.clone().requires_grad_(True)
    with torch.enable_grad():
        out, cache = model.run_with_cache(corrupt_in, names_filter=names, detach=False)
        grads = torch.autograd.grad(run.format.decode(out)[:, -1].sum(), [cache[n] for n in names])
    effect = torch.stack([(g * (clean_cache[n] - cache[n].detach())).flatten(2).sum(-1)[0]
                          for n, g in zip(names, grads)])  # [L, T]
    return {"effect": (effect.double() / (clean_pred - corrupt_pred)).tolist(), "clean": clean_pred,
            "corrupt": corrupt_pred, "layers": L, "tokens": clean_in.shape[1], "activation": activation}


def agreement(exact: dict, approx: dict) -> dict:
    """How well attribution patching reproduces exact patching: Pearson correlation over the (layer, position)
    cells, and the largest absolute difference."""
    a, b = torch.tensor(exact["effect"]).flatten(), torch.tensor(approx["effect"]).flatten()
    corr = torch.corrcoef(torch.stack([a, b]))[0, 1].item() if a.std() > 0 and b.std() > 0 else None  # JSON: no NaN
    return {"correlation": corr, "max_abs_difference": (a - b).abs().max().item()}


def path_patching(run, clean: Prompts, corrupt: Prompts, min_gap: float = 1e-6) -> dict:
    """Path patching (Wang et al. 2022; Goldowsky-Dill et al. 2023) between heads: for each sender head (l, h)
    and each receiver, the corrupt run with only the sender's direct contribution to the receiver's input set to
    its clean value, every other path left corrupt. Receivers: each head of a later layer (through its own copy
    of the residual stream, hook_attn_in) and the read-out (the final residual stream).

    Returns {"effect": `[senders][receivers]` fractions of the clean - corrupt gap, "senders", "receivers"}."""
    clean_in, corrupt_in, clean_pred, corrupt_pred = _pair(run, clean, corrupt, min_gap)
    model = run.model
    L, H = model.cfg.n_layers, model.cfg.n_heads
    heads = [(l, h) for l in range(L) for h in range(H)]
    with torch.no_grad():
        _, c_clean = model.run_with_cache(clean_in, names_filter=lambda n: n.endswith("hook_z"))
        _, c_corrupt = model.run_with_cache(corrupt_in, names_filter=lambda n: n.endswith("hook_z"))
        effect = torch.full((len(heads), len(heads) + 1), float("nan"), dtype=torch.float64)
        was_on = model.blocks[0].use_attn_in
        model.set_use_attn_in(True)
        try:
            for i, (ls, hs) in enumerate(heads):
                attn = model.blocks[ls].attn
                delta = (attn.head_results(c_clean["z", ls]) - attn.head_results(c_corrupt["z", ls]))[..., hs, :]
                for j, (lr, hr) in enumerate(heads + [(L, None)]):
                    if lr <= ls:
                        continue
                    if hr is None:  # the read-out: the sender's output added to the final residual stream only
                        name, hook = f"blocks.{L - 1}.hook_resid_post", (lambda x, *, hook, d=delta: x + d)
                    else:
                        def hook(x, *, hook, d=delta, h=hr):  # [1, T, H, D]: head h's input only
                            x = x.clone()
                            x[:, :, h] += d
                            return x
                        name = f"blocks.{lr}.hook_attn_in"
                    with model.hooks([(name, hook)]):
                        patched = _query_output(run, corrupt_in).item()
                    effect[i, j] = (patched - corrupt_pred) / (clean_pred - corrupt_pred)
        finally:
            model.set_use_attn_in(was_on)
    return {"effect": [[None if v != v else v for v in row] for row in effect.tolist()],
            "senders": [f"L{l}H{h}" for l, h in heads], "receivers": [f"L{l}H{h}" for l, h in heads] + ["read-out"],
            "clean": clean_pred, "corrupt": corrupt_pred}


def relabelled(task, p: Prompts, seed: int) -> Prompts:
    """The same inputs labelled by another task vector (linear regression: y = <w', x> with a fresh w'): a
    counterfactual prompt that changes every label but no x, for patching."""
    if "w" not in p.params:
        raise ValueError("relabelling needs a task with a weight vector w (linear regression)")
    w = task.sample(p.xs.shape[0], p.n_points, seed=seed, dtype=p.xs.dtype).params["w"]  # [B, d]
    return Prompts(p.xs.clone(), (p.xs * w[:, None]).sum(-1), {**p.params, "w": w})


def patterns_figure(patterns: torch.Tensor, labels: list[str], title: str):
    """Attention patterns as a grid of heatmaps, layers down, heads across; returns the matplotlib figure."""
    from .figures import pyplot

    L, H, T, _ = patterns.shape
    fig, axes = pyplot().subplots(L, H, figsize=(3.2 * H + 0.6, 3.0 * L + 0.4), squeeze=False)
    ticks = range(0, T, max(1, T // 12))
    for l in range(L):
        for h in range(H):
            ax = axes[l][h]
            ax.imshow(patterns[l, h].numpy(), cmap="magma", vmin=0, aspect="auto")
            ax.set_title(f"layer {l}, head {h}", fontsize=9)
            ax.set_xticks(list(ticks), [labels[i] for i in ticks], rotation=90, fontsize=6)
            ax.set_yticks(list(ticks), [labels[i] for i in ticks], fontsize=6)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def patching_figure(res: dict, labels: list[str]):
    """The activation-patching effects [L, T] as a heatmap (layers down, token positions across)."""
    import numpy as np

    from .figures import pyplot

    effect = np.array(res["effect"])
    fig, ax = pyplot().subplots(figsize=(max(5.0, 0.28 * effect.shape[1] + 2), 1.0 + 0.55 * effect.shape[0]))
    lim = max(1.0, float(np.abs(effect).max()))
    im = ax.imshow(effect, cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto")
    ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7)
    ax.set_yticks(range(effect.shape[0]), [f"layer {l}" for l in range(effect.shape[0])], fontsize=8)
    ax.set_title(f"fraction of the clean prediction restored (clean {res['clean']:.3f}, "
                 f"corrupt {res['corrupt']:.3f})", fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.03)
    fig.tight_layout()
    return fig


def patching_probe(run, seed: int = 424_242, activation: str = "resid_pre") -> dict:
    """`lab probe RUN patching`: on one fresh prompt and its relabelled counterfactual, exact activation patching
    and attribution patching of `activation` side by side with their agreement, and path patching between heads."""
    n = run.config.task.n_points
    clean = run.task.sample(1, n, seed=seed, dtype=torch.float64)
    corrupt = relabelled(run.task, clean, seed=seed + 1)
    exact = activation_patching(run, clean, corrupt, activation)
    approx = attribution_patching(run, clean, corrupt, activation)
    return {"kind": "patching", "run": str(run.path), "activation": activation, "labels": token_labels(run, n),
            "exact": exact, "attribution": approx, "agreement": agreement(exact, approx),
            "path": path_patching(run, clean, corrupt)}


def format_patching(res: dict) -> str:
    a, path = res["agreement"], res["path"]
    best = max(((s, r, v) for s, row in zip(path["senders"], path["effect"]) for r, v in zip(path["receivers"], row)
                if v is not None), key=lambda t: abs(t[2]), default=None)
    lines = [f"activation patching of {res['activation']} (clean {res['exact']['clean']:.4f}, corrupt "
             f"{res['exact']['corrupt']:.4f}): attribution patching agrees with exact patching at correlation "
             f"{_corr(a)} (largest difference {a['max_abs_difference']:.3f})"]
    if best:
        lines.append(f"strongest path: {best[0]} -> {best[1]} restores {best[2]:+.3f} of the gap")
    return "\n".join(lines)


def _corr(agreement: dict) -> str:
    c = agreement["correlation"]
    return "undefined (a constant map)" if c is None else f"{c:.3f}"


def patching_comparison_figure(res: dict):
    """Exact and attribution patching heatmaps [layer x token] side by side, and one against the other."""
    import numpy as np

    from .figures import pyplot

    exact, approx = np.array(res["exact"]["effect"]), np.array(res["attribution"]["effect"])
    labels = res["labels"]
    fig, axes = pyplot().subplots(1, 3, figsize=(15, 1.6 + 0.5 * exact.shape[0]),
                                  gridspec_kw={"width_ratios": [4, 4, 1.6]})
    lim = max(1.0, float(np.abs(exact).max()), float(np.abs(approx).max()))
    for ax, grid, title in ((axes[0], exact, "exact activation patching"), (axes[1], approx, "attribution patching")):
        im = ax.imshow(grid, cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto")
        ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=6)
        ax.set_yticks(range(grid.shape[0]), [f"layer {l}" for l in range(grid.shape[0])], fontsize=8)
        ax.set_title(f"{title} ({res['activation']})", fontsize=9)
    fig.colorbar(im, ax=axes[1], fraction=0.04)
    axes[2].scatter(exact.ravel(), approx.ravel(), s=10)
    axes[2].plot([-lim, lim], [-lim, lim], "k--", lw=0.8)
    axes[2].set(xlabel="exact", ylabel="attribution", title=f"r = {_corr(res['agreement'])}")
    fig.tight_layout()
    return fig


def path_figure(path: dict):
    """Path patching effects, sender heads (rows) x receivers (columns); blank where no path exists."""
    import numpy as np

    from .figures import pyplot

    grid = np.array([[np.nan if v is None else v for v in row] for row in path["effect"]])
    fig, ax = pyplot().subplots(figsize=(1.5 + 0.45 * grid.shape[1], 1.2 + 0.4 * grid.shape[0]))
    lim = max(1e-6, float(np.nanmax(np.abs(grid))) if np.isfinite(grid).any() else 1.0)
    im = ax.imshow(grid, cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto")
    ax.set_xticks(range(grid.shape[1]), path["receivers"], rotation=70, fontsize=8)
    ax.set_yticks(range(grid.shape[0]), path["senders"], fontsize=8)
    ax.set(xlabel="receiver", ylabel="sender", title="path patching: gap restored through one path")
    fig.colorbar(im, ax=ax, fraction=0.04)
    fig.tight_layout()
    return fig
