"""Figures shared by `lab probe` and the experiments, written atomically as PNG."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from lab.runs import atomic_write_bytes


def pyplot():
    """matplotlib.pyplot with the file-only Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def png_bytes(fig) -> bytes:
    """A matplotlib figure as PNG bytes; the figure is closed."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    pyplot().close(fig)
    return buf.getvalue()


def save_figure(fig, path) -> None:
    """Write a figure as PNG, atomically (a dashboard never sees half a file), and close it."""
    atomic_write_bytes(Path(path), png_bytes(fig))


def layer_iteration_heatmaps(r: dict, path, title: str):
    """Two heatmaps, layers x Newton iterations and layers x GD steps (similarity of errors), best marked."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, key, steps, best, label in [(axes[0], "sim_newton", r["newton_steps"], r["best_newton"], "Newton iterations"),
                                        (axes[1], "sim_gd", r["gd_steps"], r["best_gd"], "GD steps (lr 0.01)")]:
        grid = np.array(r[key])
        im = ax.imshow(grid, aspect="auto", origin="lower", cmap="viridis")
        ax.plot([steps.index(b) for b in best], r["layers"], "r.", ms=8, label="best match")
        ticks = np.linspace(0, len(steps) - 1, min(8, len(steps))).astype(int)
        ax.set_xticks(ticks, [str(steps[i]) for i in ticks])
        ax.set(xlabel=label, ylabel="layer (0 = embedding)", title=f"{title}: similarity of errors")
        fig.colorbar(im, ax=ax, fraction=0.046)
        ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


def spd_figure(res: dict):
    """`lab probe RUN match`: SPD to the best GD, ridge and OLS against the number of examples k."""
    fig, ax = pyplot().subplots(figsize=(6, 3.6))
    for name, f in res["families"].items():
        curve = f["spd_curve"]
        ax.plot(range(len(curve)), curve, lw=2.5 if name == res["best_family"] else 1.3,
                label=f"{name} {f['best']}" if f["best"] else name)
    ax.set(xlabel="in-context examples k", ylabel="SPD / d", yscale="log",
           title=f"closest algorithm: {res['best_family']}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def probe_figure(res: dict):
    """`lab probe RUN probe`: R^2 by layer of the w_OLS and X^T y probes, trained model vs untrained control."""
    fig, axes = pyplot().subplots(1, 2, figsize=(9, 3.4), sharey=True)
    for ax, target in zip(axes, ("w_ols", "xty")):
        for kind, style in (("linear", "-"), ("mlp", "--")):
            for which, color in (("trained", "C0"), ("control", "C7")):
                values = res[target][which][kind]
                ax.plot(range(len(values)), values, style, color=color, label=f"{which}, {kind} probe")
        ax.set(xlabel="layer (0 = embedding)", title=f"probe for {target}", ylim=(-0.1, 1.05))
    axes[0].set_ylabel("R^2 on held-out prompts")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    return fig


def training_curve(rows: list[dict], title: str):
    """Training loss against step from metrics.jsonl rows (one line per member for an ensemble run)."""
    fig, ax = pyplot().subplots(figsize=(6, 3))
    steps = [r["step"] for r in rows]
    if rows and "losses" in rows[0]:
        for i in range(len(rows[0]["losses"])):
            ax.plot(steps, [float("nan") if r["losses"][i] is None else r["losses"][i] for r in rows], ".-", lw=1,
                    label=f"member {i}")
        ax.legend(fontsize=7, ncol=4)
    else:
        ax.plot(steps, [r["loss"] for r in rows], ".-", lw=1.5)
    ax.set(xlabel="step", ylabel="training loss", yscale="log", title=title)
    fig.tight_layout()
    return fig
