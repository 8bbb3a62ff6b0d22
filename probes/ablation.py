"""Head ablations: remove one attention head at a time and measure the ICL curve without it (Michel et al. 2019;
Olsson et al. 2022). Zero ablation sets the head's z to 0; mean ablation to its mean over the evaluation
prompts at each position (so what the head writes on average stays, what depends on the prompt goes)."""
from __future__ import annotations

import numpy as np
import torch

EVAL_SEED = 424_242


def ablate_head(head: int, mode: str):
    """A hook on attn.hook_z [B, T, H, dh] that removes head `head` (zero, or mean over the prompts)."""
    if mode not in ("zero", "mean"):
        raise ValueError(f"ablation must be zero or mean; got {mode!r}")

    def hook(z, *, hook):
        z = z.clone()
        z[..., head, :] = 0.0 if mode == "zero" else z[..., head, :].mean(0, keepdim=True)
        return z

    return hook


@torch.no_grad()
def head_ablations(run, n_prompts: int = 500, mode: str = "zero", seed: int = EVAL_SEED) -> dict:
    """The ICL curve (error / E[y^2] at each k) with each head ablated, ranked by the mean increase in error over
    k >= 1 against the intact model on the same prompts."""
    model, fmt, task = run.model, run.format, run.task
    p = task.sample(n_prompts, run.config.task.n_points, seed=seed, dtype=torch.float64)
    param = next(model.parameters())
    p_model = p.to(device=param.device, dtype=param.dtype)
    scale = task.y_variance()

    def curve(hooks) -> list[float]:
        with model.hooks(hooks):
            preds = fmt.predict(model, p_model).double().cpu()
        return ((preds - p.ys) ** 2 / scale).mean(0).tolist()

    base = curve([])
    heads = {}
    for l in range(model.cfg.n_layers):
        for h in range(model.cfg.n_heads):
            heads[f"L{l}H{h}"] = curve([(f"blocks.{l}.attn.hook_z", ablate_head(h, mode))])
    increase = {k: float(np.mean(np.array(c[1:]) - np.array(base[1:]))) for k, c in heads.items()}
    ranked = sorted(increase, key=increase.get, reverse=True)
    return {"kind": "ablation", "run": str(run.path), "mode": mode, "d": task.d, "k": list(range(len(base))),
            "intact": base, "ablated": heads, "increase": increase, "ranked": ranked}


def format_ablation(res: dict) -> str:
    lines = [f"{res['mode']} ablation of each head: mean increase of error / E[y^2] over k >= 1 (intact model "
             f"{np.mean(res['intact'][1:]):.4f})"]
    for name in res["ranked"]:
        lines.append(f"  {name:6s} {res['increase'][name]:+.4f}")
    return "\n".join(lines)


def ablation_figure(res: dict, top: int = 4):
    """The intact ICL curve beside the curves with the `top` most important heads ablated, and the ranking."""
    from .figures import pyplot

    fig, (ax, bars) = pyplot().subplots(1, 2, figsize=(11, 3.8), gridspec_kw={"width_ratios": [3, 2]})
    ax.plot(res["k"], res["intact"], "k-", lw=2.5, label="intact")
    for name in res["ranked"][:top]:
        ax.plot(res["k"], res["ablated"][name], lw=1.4, label=f"without {name}")
    ax.axvline(res["d"], color="grey", ls="--", lw=1)
    ax.set(xlabel="in-context examples k", ylabel="error / E[y^2]", yscale="log",
           title=f"ICL curve with one head {res['mode']}-ablated")
    ax.legend(fontsize=8)
    names = res["ranked"]
    bars.barh(range(len(names)), [res["increase"][n] for n in names], color="tab:red")
    bars.set_yticks(range(len(names)), names, fontsize=8)
    bars.invert_yaxis()
    bars.set(xlabel="mean error increase (k >= 1)", title="heads ranked")
    fig.tight_layout()
    return fig
