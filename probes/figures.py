"""Figures shared by `lab probe` and the experiments, written atomically as PNG."""
from __future__ import annotations

import io
import json
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
    panels = [(axes[0], "sim_newton", r["newton_steps"], r["best_newton"], "Newton iterations"),
              (axes[1], "sim_gd", r["gd_steps"], r["best_gd"], "GD steps (lr 0.01)")]
    for ax, key, steps, best, label in panels:
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


def integer_ticks(axis) -> None:
    """Ticks at whole numbers only, for an axis of layers, depths or counts."""
    from matplotlib.ticker import MaxNLocator

    axis.set_major_locator(MaxNLocator(integer=True))


def probe_figure(res: dict):
    """`lab probe RUN probe`: R^2 by layer of the w_OLS and X^T y probes, trained model vs untrained control."""
    fig, axes = pyplot().subplots(1, 2, figsize=(9, 3.4), sharey=True)
    for ax, target in zip(axes, ("w_ols", "xty")):
        for kind, style in (("linear", "-"), ("mlp", "--")):
            for which, color in (("trained", "C0"), ("control", "C7")):
                values = res[target][which][kind]
                ax.plot(range(len(values)), values, style, color=color, label=f"{which}, {kind} probe")
        ax.set(xlabel="layer (0 = embedding)", title=f"probe for {target}", ylim=(-0.1, 1.05))
        integer_ticks(ax.xaxis)
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
    for step, text in curriculum_steps(rows):
        ax.axvline(step, color="grey", lw=0.8, ls=":")
        ax.annotate(text, (step, 1), xycoords=("data", "axes fraction"), rotation=90, fontsize=6, va="top",
                    ha="right", color="grey")
    ax.set(xlabel="step", ylabel="training loss", yscale="log", title=title)
    fig.tight_layout()
    return fig


CURRICULUM_KEYS = {"d_active": "d", "n_points": "points", "lookahead": "lookahead"}


def curriculum_steps(rows: list[dict]) -> list[tuple[int, str]]:
    """(step, "d 3->4") where a curriculum stage changed between logged rows of metrics.jsonl (Garg et al.'s
    dimension and points curriculum, the graph task's lookahead)."""
    marks = []
    for before, after in zip(rows, rows[1:]):
        changed = [f"{short} {before[key]}->{after[key]}" for key, short in CURRICULUM_KEYS.items()
                   if key in before and key in after and before[key] != after[key]]
        if changed:
            marks.append((after["step"], ", ".join(changed)))
    return marks


def lookahead_figure(curves: dict, title: str = "accuracy by lookahead"):
    """Graph search: accuracy against lookahead (balanced test sets), one line with its band per model."""
    fig, ax = pyplot().subplots(figsize=(6, 3.6))
    for label, c in curves.items():
        (line,) = ax.plot(c["k"], c["curves"]["model"]["mean"], "o-", lw=2, label=label)
        ax.fill_between(c["k"], c["curves"]["model"]["lo"], c["curves"]["model"]["hi"], alpha=0.2,
                        color=line.get_color(), lw=0)
    ax.set_xticks(next(iter(curves.values()))["k"] if curves else [])
    ax.set(xlabel="lookahead (edges past the children needed to find the goal)", ylabel="accuracy",
           ylim=(-0.02, 1.02), title=title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def reach_figure(res: dict, control: dict | None = None, circuit: dict | None = None):
    """Reachable-set decoding (Saparov et al.): recall per layer x hop distance, and the decoded reach per layer
    beside 2^(layer - 1) and, where given, the traced circuits' path-merge length (`search.circuit_reach`)."""
    fig, axes = pyplot().subplots(1, 2, figsize=(10, 3.8))
    grid = np.array(res["recall_by_distance"], dtype=float)
    im = axes[0].imshow(grid, aspect="auto", origin="lower", cmap="viridis", vmin=0, vmax=1)
    for (l, k), v in np.ndenumerate(grid):
        if np.isfinite(v):
            axes[0].text(k, l, f"{v:.2f}", ha="center", va="center", fontsize=7, color="w" if v < 0.6 else "k")
    axes[0].set_xticks(range(len(res["distances"])), res["distances"])
    axes[0].set(xlabel="hop distance from u", ylabel="layer (0 = embedding)",
                title="decoded share of the vertices reachable from u\n(false positives in the y labels)")
    axes[0].set_yticks(res["layers"], [f"{l} ({fp:.2f})" for l, fp in zip(res["layers"], res["false_positive_rate"])])
    fig.colorbar(im, ax=axes[0], fraction=0.046)
    layers = res["layers"]
    axes[1].plot(layers, res["reach"], "o-", color="C0", lw=2, label="trained: decoded reach")
    if control is not None:
        axes[1].plot(layers, control["reach"], "s--", color="C7", label="untrained control")
    if circuit is not None:
        axes[1].plot(circuit["layers"], circuit["merge_length"], "^-", color="C2", lw=2,
                     label=f"traced circuit: path-merge length ({circuit['explained_share']:.0%} explained)")
        axes[1].plot(circuit["layers"], circuit["control"], "v:", color="C2", label="circuit with random keys")
    axes[1].plot(layers[1:], [2 ** (l - 1) for l in layers[1:]], ":", color="C3", label="2^(layer - 1)")
    integer_ticks(axes[1].xaxis)
    axes[1].set(xlabel="layer", ylabel="reach (hops decoded)", ylim=(-0.3, max(res["distances"] or [1]) + 0.5),
                title=f"F1 by layer: {' '.join(f'{f:.2f}' for f in res['f1'])}")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    return fig


def trace_figure(trace: dict):
    """Attention-perturbation trace: the prompt's tokens along x, layers up y; each kept attention entry is a line
    from its key (below) to its query (above), darker for a larger effect on the output logit."""
    fig, ax = pyplot().subplots(figsize=(max(6, 0.28 * len(trace["tokens"])), 3.8))
    n_layers = len(trace["layers"])
    biggest = max([abs(e["effect"]) for lay in trace["layers"] for e in lay["entries"]] or [1.0])
    for lay in trace["layers"]:
        l = lay["layer"]
        for e in lay["entries"]:
            ax.plot([e["key"], e["query"]], [l, l + 1], "-", color="C3", alpha=0.25 + 0.75 * abs(e["effect"]) / biggest)
        ax.plot(lay["positions"], [l] * len(lay["positions"]), "k.", ms=4)
    last = len(trace["tokens"]) - 1
    ax.plot([last], [n_layers], "r*", ms=12, label=f"output: vertex {trace['prediction']}")
    ax.set_xticks(range(len(trace["labels"])), trace["labels"], fontsize=7)
    ax.set(ylabel="layer", yticks=range(n_layers + 1), ylim=(-0.3, n_layers + 0.3),
           title=f"attention entries that move the output logit by > {trace['threshold']}")
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    return fig


def graph_figure(p, i: int = 0, probs: dict | None = None):
    """Graph-search prompt i drawn in layers of its topological order: start (blue), goal (green), the path so
    far (bold), the target children (green ring); `probs` {vertex: model probability} labels the children."""
    import networkx as nx

    from tasks.graph_search import to_networkx

    graph = to_networkx(p, i)
    for layer, nodes in enumerate(nx.topological_generations(graph)):
        for n in nodes:
            graph.nodes[n]["layer"] = layer
    pos = nx.multipartite_layout(graph, subset_key="layer")
    start, goal, current = (int(p.params[k][i]) for k in ("start", "goal", "current"))
    path = [int(v) for v in p.params["path"][i, :int(p.params["path_len"][i])]]
    targets = set(p.ys[i].nonzero().flatten().tolist())
    fig, ax = pyplot().subplots(figsize=(7, 4.2))
    colors = ["C0" if n == start else "C2" if n == goal else "#dddddd" for n in graph.nodes]
    edge_colors = ["black" if (u, v) in zip(path, path[1:]) or (u == current and v in targets) else "#aaaaaa"
                   for u, v in graph.edges]
    nx.draw_networkx(graph, pos, ax=ax, node_color=colors, edge_color=edge_colors, node_size=380, font_size=8,
                     arrowsize=10, edgecolors=["C2" if n in targets else "black" for n in graph.nodes],
                     linewidths=[3 if n in targets else 0.5 for n in graph.nodes])
    for n, prob in (probs or {}).items():
        if n in pos:
            ax.annotate(f"{prob:.2f}", pos[n], xytext=(0, 13), textcoords="offset points", ha="center", fontsize=8,
                        color="C3")
    ax.set_title(f"start {start} (blue), goal {goal} (green), at {current}: lookahead {int(p.params['lookahead'][i])}"
                 f"; right answers ringed", fontsize=9)
    ax.axis("off")
    fig.tight_layout()
    return fig


def svm_convergence_figure(curves: dict, paper: dict, title: str):
    """Tarzanagh et al.: corr(W_k, W_svm) per iteration (mean, 10-90% band) with the paper's re-run points, and the
    softmax mass on the selected token (mean, and the mean over problems of the smallest over samples)."""
    fig, axes = pyplot().subplots(1, 2, figsize=(11, 3.8))
    for label, c in curves.items():
        (line,) = axes[0].plot(c["step"], c["corr_mean"], lw=2, label=f"{label} vs {c['svm']} SVM")
        axes[0].fill_between(c["step"], c["corr_lo"], c["corr_hi"], alpha=0.15, color=line.get_color(), lw=0)
        axes[1].plot(c["step"], c["mass_mean"], lw=2, color=line.get_color(), label=f"{label}: mean")
        axes[1].plot(c["step"], c["mass_min"], lw=1, ls="--", color=line.get_color(), label=f"{label}: worst sample")
    if paper:
        axes[0].plot(list(paper), list(paper.values()), "k*", ms=10, label="paper (W, normalised GD)")
    axes[0].set(xlabel="iteration", ylabel="corr(W, W_svm)", ylim=(-0.05, 1.02), title=title)
    axes[1].set(xlabel="iteration", ylabel="softmax on the selected token", ylim=(-0.02, 1.02),
                title="attention on the selected token")
    for ax in axes:
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def svm_rank_figure(by_n: dict, by_d: dict, s: dict):
    """Mean rank of the Frobenius and nuclear-norm Att-SVM solutions against n (fixed d) and against d (fixed n)."""
    fig, axes = pyplot().subplots(1, 2, figsize=(10, 3.6))
    for ax, table, xlabel, fixed in [(axes[0], by_n, "samples n", f"d = {s['d']}, T = {s['T']}"),
                                     (axes[1], by_d, "dimension d", f"n = {s['n']}, T = {s['T']}")]:
        xs = [x for x, r in table.items() if r["feasible"]]
        ax.plot(xs, [table[x]["fro_mean"] for x in xs], "o-", lw=2, label="Frobenius (W)")
        ax.plot(xs, [table[x]["nuclear_mean"] for x in xs], "s--", lw=2, label="nuclear (W = K Q^T)")
        ax.set(xlabel=xlabel, ylabel="rank of the SVM solution", title=fixed)
        ax.legend(fontsize=8)
    axes[0].plot(list(by_n), list(by_n), ":", color="gray", label="rank = n")
    fig.tight_layout()
    return fig


def token_attention_figure(summary: dict, title: str):
    """Scan and snap, one run: attention on the common tokens and on each distinct token against the step."""
    fig, ax = pyplot().subplots(figsize=(6, 3.8))
    _token_attention(ax, summary, title)
    fig.tight_layout()
    return fig


def scan_snap_figure(m: dict):
    """Tian et al.: attention per token over training (base ratio), the attention entropy over training for every
    learning-rate ratio, and the final entropy against the ratio."""
    fig, axes = pyplot().subplots(1, 3, figsize=(14, 3.8))
    _token_attention(axes[0], m["base"], f"attention per token, eta_Y / eta_Z = {m['base_ratio']}")
    steps = np.maximum(m["base"]["record_steps"], 1)
    for r, curve in m["entropy_curves"].items():
        axes[1].plot(steps, curve, lw=1.5, label=f"ratio {r}")
    axes[1].set(xscale="log", xlabel="step", ylabel="attention entropy (nats)", title="entropy over training")
    axes[1].legend(fontsize=7)
    ratios = [float(r) for r in m["final_entropy"]]
    axes[2].plot(ratios, list(m["final_entropy"].values()), "o-", lw=2)
    axes[2].axhline(m["initial_entropy"], color="gray", ls=":", label="uniform attention (start)")
    axes[2].set(xscale="log", xlabel="learning-rate ratio eta_Y / eta_Z", ylabel="final attention entropy",
                title="larger ratio: attention snaps earlier")
    axes[2].legend(fontsize=7)
    fig.tight_layout()
    return fig


def _token_attention(ax, summary: dict, title: str) -> None:
    steps = np.maximum(summary["record_steps"], 1)  # step 0 drawn at 1 on the log axis
    ax.plot(steps, summary["common_mass"], "k-", lw=2.5, label="common tokens (all)")
    for j, mass in enumerate(summary["distinct_mass"]):
        ax.plot(steps, mass, lw=2, label=f"distinct token {j}" + (" (most frequent)" if j == 0 else ""))
    ax.set(xscale="log", xlabel="step", ylabel="attention mass", ylim=(0, 1), title=title)
    ax.legend(fontsize=7)


def sweep_figure(settings: list[dict], metric: str, keys: list[str], title: str = ""):
    """A sweep (lab/sweeps.py): the metric against each swept key (one panel per key, one line per value of the
    other keys), the seeds' 90% bootstrap interval as a band; returns the matplotlib figure."""
    keys = keys or ["seed"]
    plt = pyplot()
    fig, axes = plt.subplots(1, len(keys), figsize=(4.6 * len(keys), 3.5), squeeze=False)
    for ax, key in zip(axes[0], keys):
        lines: dict[str, list] = {}
        for s in settings:
            rest = {k: v for k, v in s["overrides"].items() if k != key}
            stats = s["metrics"][metric]
            if stats["mean"] is not None:
                lines.setdefault(json.dumps(rest), []).append((s["overrides"].get(key, 0), stats))
        for i, (rest, points) in enumerate(sorted(lines.items())):
            points.sort(key=lambda p: (isinstance(p[0], str), p[0]))
            xs = [str(p[0]) if isinstance(p[0], str) else p[0] for p in points]
            mean = [p[1]["mean"] for p in points]
            label = ", ".join(f"{k}={v}" for k, v in json.loads(rest).items()) or None
            ax.plot(xs, mean, "o-", color=f"C{i % 10}", label=label, lw=1.5)
            ax.fill_between(xs, [p[1]["lo"] for p in points], [p[1]["hi"] for p in points], color=f"C{i % 10}",
                            alpha=0.2)
        numeric = all(isinstance(s["overrides"].get(key), (int, float)) for s in settings)
        if numeric and key.endswith("lr") and min(s["overrides"][key] for s in settings) > 0:
            ax.set_xscale("log")
        elif all(isinstance(s["overrides"].get(key, 0), int) for s in settings):  # layers, seeds, points: whole
            integer_ticks(ax.xaxis)
        ax.set(xlabel=key, ylabel=metric)
        if len(lines) > 1:
            ax.legend(fontsize=7)
    fig.suptitle(title or "mean over seeds with a 90% bootstrap band", fontsize=10)
    fig.tight_layout()
    return fig
