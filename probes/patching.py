"""Looking inside a run on single prompts: attention patterns, edited examples, and activation patching.

Activation patching (Meng et al. 2022; Heimersheim & Nanda 2024): run a corrupted prompt while one residual-
stream vector (layer l, position t) is replaced by its value on the clean prompt, and measure how much of the
clean prediction comes back: effect = (patched - corrupt) / (clean - corrupt), 1 = fully restored.
"""
from __future__ import annotations

import torch

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
    xs, ys = p.xs[:1].clone(), p.ys[:1].clone()
    if y is not None:
        ys[0, index] = y
    if x_scale is not None:
        xs[0, index] *= x_scale
    return Prompts(xs, ys, {k: v[:1] for k, v in p.params.items()})


def activation_patching(run, clean: Prompts, corrupt: Prompts, min_gap: float = 1e-6) -> dict:
    """Patch blocks.l.hook_resid_pre at each position of the corrupt run with the clean value.

    Returns {"effect": [L, T] (fraction of the clean - corrupt gap restored), "clean": float, "corrupt": float}
    for the first prompt of each (same length). The prediction read is the last point's.
    """
    if clean.xs.shape[1:] != corrupt.xs.shape[1:]:
        raise ValueError("clean and corrupt prompts must have the same number of points and dimension")
    L = run.config.model.n_layers
    names = [f"blocks.{l}.hook_resid_pre" for l in range(L)]
    clean_in, corrupt_in = _inputs(run, clean)[:1], _inputs(run, corrupt)[:1]
    fmt, model = run.format, run.model
    with torch.no_grad():
        _, cache = model.run_with_cache(clean_in, names_filter=names)
        clean_pred = fmt.decode(model(clean_in))[0, -1].item()
        corrupt_pred = fmt.decode(model(corrupt_in))[0, -1].item()
        gap = clean_pred - corrupt_pred
        if abs(gap) < min_gap:
            raise ValueError("the two prompts give the same prediction: there is no effect to patch "
                             "(change an example the prediction depends on)")
        T = clean_in.shape[1]
        effect = torch.zeros(L, T, dtype=torch.float64)
        for l, name in enumerate(names):
            for t in range(T):
                def patch(x, *, hook, t=t, name=name):
                    x = x.clone()
                    x[:, t] = cache[name][:, t]
                    return x

                patched = fmt.decode(model.run_with_hooks(corrupt_in, fwd_hooks=[(name, patch)]))[0, -1].item()
                effect[l, t] = (patched - corrupt_pred) / gap
    return {"effect": effect.tolist(), "clean": clean_pred, "corrupt": corrupt_pred, "layers": L, "tokens": T}


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
