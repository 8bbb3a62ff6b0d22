"""Logit lens for in-context regression: the model's own read-out applied to every layer's residual stream
(nostalgebraist 2020; no training), beside Fu et al.'s trained per-layer read-outs (a "tuned lens" for a scalar
output: a fresh linear read-out fitted on each layer, probes/readout.py). Both scored as the ICL curve is:
squared error / E[y^2] at each number of in-context examples k, one row per layer."""
from __future__ import annotations

import numpy as np
import torch

from tasks import Prompts

from .readout import readout_predictions

EVAL_SEED, TRAIN_SEED = 424_242, 434_343


@torch.no_grad()
def logit_lens_predictions(model, fmt, p: Prompts) -> torch.Tensor:
    """Predictions [L+1, B, m] of the read-out applied to the residual stream after the embeddings (row 0) and
    after each block (row l): row L is the model's own output."""
    param = next(model.parameters())
    inputs = fmt.encode(p.to(device=param.device, dtype=param.dtype))
    L = model.cfg.n_layers
    names = [f"blocks.{l}.hook_resid_pre" for l in range(L)] + [f"blocks.{L - 1}.hook_resid_post"]
    _, cache = model.run_with_cache(inputs, names_filter=names)
    stack = cache.accumulated_resid()  # [L+1, B, T, D]
    return torch.stack([fmt.decode(model.readout(resid)) for resid in stack]).cpu()


def lens(run, n_prompts: int = 1000, n_train: int = 2000, seed: int = EVAL_SEED) -> dict:
    """Error / E[y^2] per layer and k of the logit lens and of the trained per-layer read-outs (the latter where
    the format predicts every prefix), with the model's own curve for reference."""
    task, fmt, n = run.task, run.format, run.config.task.n_points
    test = task.sample(n_prompts, n, seed=seed, dtype=torch.float64)
    targets = fmt.targets(test).double()  # [B, m]
    scale = task.y_variance()

    def errors(preds: torch.Tensor) -> list[list[float]]:  # [L+1, B, m] -> [L+1][m]
        return ((preds.double() - targets) ** 2 / scale).mean(1).tolist()

    logit = logit_lens_predictions(run.model, fmt, test)
    tuned = None
    if fmt.name != "stacked":  # the stacked format predicts its last point only: no prefix-wise states to fit on
        train = task.sample(n_train, n, seed=TRAIN_SEED, dtype=torch.float64)
        tuned = errors(readout_predictions(run.model, fmt, train, test))
    ks = list(range(targets.shape[1])) if targets.shape[1] == n else [n - 1]
    return {"kind": "lens", "run": str(run.path), "layers": ["embeddings"] + [f"after block {l}" for l in
                                                                              range(run.config.model.n_layers)],
            "k": ks, "d": task.d, "logit_lens": errors(logit), "tuned_lens": tuned,
            "model": errors(run.predict(test)[None] if fmt.name != "stacked" else logit[-1:])[0]}


def format_lens(res: dict) -> str:
    ks = res["k"]
    shown = sorted({ks[0], ks[len(ks) // 2], ks[-1], min(res["d"], ks[-1])})
    lines = ["error / E[y^2] by layer at k = " + ", ".join(map(str, shown)) + "   (logit lens | trained read-out)"]
    for l, name in enumerate(res["layers"]):
        lens_vals = " ".join(f"{res['logit_lens'][l][ks.index(k)]:7.3f}" for k in shown)
        tuned = " ".join(f"{res['tuned_lens'][l][ks.index(k)]:7.3f}" for k in shown) if res["tuned_lens"] else "-"
        lines.append(f"  {name:15s} {lens_vals} | {tuned}")
    return "\n".join(lines)


def lens_figure(res: dict):
    """Heatmaps layer x k of the logit lens and of the trained read-outs (log colour scale, shared)."""
    from matplotlib.colors import LogNorm

    from .figures import pyplot

    panels = [("logit lens (the model's read-out, untrained)", res["logit_lens"])]
    if res["tuned_lens"]:
        panels.append(("trained per-layer read-outs (Fu et al.)", res["tuned_lens"]))
    grids = [np.clip(np.array(g), 1e-4, None) for _, g in panels]
    norm = LogNorm(vmin=min(g.min() for g in grids), vmax=max(1.5, max(g.max() for g in grids)))
    fig, axes = pyplot().subplots(1, len(panels), figsize=(5.6 * len(panels), 2.2 + 0.45 * len(res["layers"])),
                                  squeeze=False)
    for i, (ax, (title, _), grid) in enumerate(zip(axes[0], panels, grids)):
        im = ax.imshow(grid, aspect="auto", origin="lower", cmap="viridis_r", norm=norm)
        ax.set_yticks(range(len(res["layers"])), res["layers"] if i == 0 else [], fontsize=8)
        ticks = range(len(res["k"])) if len(res["k"]) <= 21 else np.linspace(0, len(res["k"]) - 1, 11).astype(int)
        ax.set_xticks(ticks, [str(res["k"][i]) for i in ticks])
        ax.set(xlabel="in-context examples k", title=title)
        if res["d"] in res["k"]:
            ax.axvline(res["k"].index(res["d"]), color="w", ls="--", lw=1)
    fig.colorbar(im, ax=axes[0].tolist(), fraction=0.03, label="error / E[y^2]")
    return fig
