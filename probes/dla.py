"""Direct logit attribution for the query prediction (Elhage et al. 2021, "A mathematical framework for transformer
circuits": the residual stream is a sum of component outputs, and the read-out is linear once the final
LayerNorm's scale is frozen at its value on the prompt). The prediction splits exactly into the embeddings, each
head, each layer's attention output bias, each MLP, and the read-out bias."""
from __future__ import annotations

import numpy as np
import torch

from tasks import Prompts

EVAL_SEED = 424_242


@torch.no_grad()
def query_attributions(model, fmt, p: Prompts) -> tuple[torch.Tensor, list[str], torch.Tensor, torch.Tensor]:
    """(attributions [C, B], component labels, the read-out bias [], the predictions [B]) for each prompt's last
    prediction; the attributions sum to prediction - bias."""
    param = next(model.parameters())
    out, cache = model.run_with_cache(fmt.encode(p.to(device=param.device, dtype=param.dtype)))
    parts, labels = [], []
    for name in ("hook_embed", "hook_pos_embed"):
        if name in cache:
            parts.append(cache[name])
            labels.append(name[5:])
    heads, head_labels = cache.stack_head_results(return_labels=True)  # [L * H, B, T, D], layer by layer
    H = model.cfg.n_heads
    for l, block in enumerate(model.blocks):
        parts += list(heads[l * H:(l + 1) * H])
        labels += head_labels[l * H:(l + 1) * H]
        if block.attn.W_O.bias is not None:
            parts.append(block.attn.W_O.bias.expand_as(cache["attn_out", l]))
            labels.append(f"L{l} attn bias")
        if block.mlp is not None:
            parts.append(cache["mlp_out", l])
            labels.append(f"L{l} MLP")
    attrs = cache.logit_attrs(torch.stack(parts))  # [C, B, T]
    query = torch.stack([fmt.decode(a)[:, -1] for a in attrs])  # [C, B]
    return query.cpu(), labels, cache.readout_bias().cpu(), fmt.decode(out)[:, -1].cpu()


def direct_attribution(run, n_prompts: int = 1000, seed: int = EVAL_SEED) -> dict:
    """Mean and mean absolute contribution of each component to the query prediction over fresh prompts, and
    how exactly they add up (the largest |sum - (prediction - bias)|)."""
    p = run.task.sample(n_prompts, run.config.task.n_points, seed=seed)
    attrs, labels, bias, preds = query_attributions(run.model, run.format, p)
    target = p.ys[:, -1].to(attrs.dtype)
    # how much of the prediction each component explains: the correlation of its attribution with the target
    corr = [float(np.corrcoef(a.numpy(), target.numpy())[0, 1]) if a.std() > 1e-12 else 0.0 for a in attrs]
    return {"kind": "dla", "run": str(run.path), "components": labels, "mean": attrs.mean(1).tolist(),
            "mean_abs": attrs.abs().mean(1).tolist(), "corr_with_target": corr, "readout_bias": bias.item(),
            "sum_error": (attrs.sum(0) - (preds - bias)).abs().max().item(),
            "examples": attrs[:, :8].T.tolist(), "example_predictions": preds[:8].tolist()}


def format_dla(res: dict) -> str:
    order = np.argsort(res["mean_abs"])[::-1]
    lines = ["direct attribution to the query prediction (mean |contribution|, mean, correlation with y):"]
    for i in order:
        lines.append(f"  {res['components'][i]:14s} {res['mean_abs'][i]:8.4f} {res['mean'][i]:+8.4f} "
                     f"{res['corr_with_target'][i]:+6.2f}")
    lines.append(f"read-out bias {res['readout_bias']:+.4f}; the parts add up to the prediction within "
                 f"{res['sum_error']:.1e}")
    return "\n".join(lines)


def dla_figure(res: dict):
    """Bars: each component's mean |contribution| to the query prediction, coloured by its correlation with y."""
    from matplotlib import cm
    from matplotlib.colors import Normalize

    from .figures import pyplot

    labels, vals, corr = res["components"], np.array(res["mean_abs"]), np.array(res["corr_with_target"])
    fig, ax = pyplot().subplots(figsize=(max(5.0, 0.42 * len(labels) + 1.5), 3.6))
    norm = Normalize(-1, 1)
    ax.bar(range(len(labels)), vals, color=cm.RdBu_r(norm(corr)))
    ax.set_xticks(range(len(labels)), labels, rotation=70, fontsize=8)
    ax.set(ylabel="mean |contribution|", title="direct attribution to the query prediction")
    fig.colorbar(cm.ScalarMappable(norm=norm, cmap="RdBu_r"), ax=ax, fraction=0.03, label="correlation with y")
    fig.tight_layout()
    return fig
