"""Saparov et al. 2024, "Transformers struggle to learn to search" (REFERENCES.md section 6).

saparov-distributions: the same model trained on the naive and on the balanced distribution, each tested on
held-out balanced graphs of every lookahead and on the three test distributions.
saparov-scaling: accuracy and the share of seeds that learn, against the graph size, for a fixed model.
saparov-mechanism: the paper's own procedure, aggregated over held-out prompts: each prompt's output traced back
through the attention entries whose zeroing or maxing lowers it by more than 0.4, the merges their rule explains
(token matching, position steps), the share of prompts whose last token links start to goal through them, and
those circuits' path-merge length per block (vs 2^(layer-1), beside random-key circuits); then the balanced-trained
model's reachable sets decoded per layer by linear probes, beside its untrained initialisation, and one prompt's
attention trace.
"""
from __future__ import annotations

import numpy as np

from lab.config import load_preset

from ..figures import lookahead_figure
from ..search import accuracy_on, held_out_task, mechanism, reach_probe, search_curve
from .common import Training, claim, experiment, pyplot, save_figure

# Their optimiser at every scale (item 9 of issue 28): SophiaG with its Hessian never updated, i.e. sign-of-momentum
# descent, beta1 0.965, weight decay 0.1, constant learning rate (theirs 1e-5 at batch 256). The quick scale keeps
# batch 32 and 8500 steps (each experiment within 10 minutes on 2 cores) and takes a larger rate, 1e-4 (width 48,
# 5 layers, 8 vertices, one seed; held-out lookahead 1/2/3 accuracy): 1e-4: 1.00/0.82/0.45; 3e-4: 0.98/0.88/0.38;
# 1e-3 never leaves loss ~1.8.
SCALES = {
    "quick": {"n_vertices": 8, "n_layers": 5, "d_model": 48, "steps": 8500, "batch_size": 32, "lr": 1e-4,
              "n_eval": 500, "sizes": (6, 8, 10), "seeds": (0, 1), "scaling_steps": 3000, "probe_prompts": 1000,
              "circuit_prompts": 40},
    "paper": {"n_vertices": 41, "n_layers": 8, "d_model": 256, "steps": 100_000, "batch_size": 256, "lr": 1e-5,
              "n_eval": 2000, "sizes": (11, 21, 31, 41, 51), "seeds": (0, 1, 2, 3, 4), "scaling_steps": 100_000,
              "probe_prompts": 4000, "circuit_prompts": 200},
    "smoke": {"n_vertices": 7, "n_layers": 2, "d_model": 16, "steps": 4, "batch_size": 8, "lr": 1e-3,
              "n_eval": 32, "sizes": (6, 7), "seeds": (0,), "scaling_steps": 4, "probe_prompts": 60,
              "circuit_prompts": 2},  # tests only
}
THEIR_OPTIMISER = {"train.optimizer": "signum", "train.beta1": 0.965, "train.weight_decay": 0.1,
                   "train.schedule": "constant", "train.warmup_steps": 0}
LEARNED = 0.9  # a seed "learns" when its accuracy on held-out balanced graphs reaches this


def _max_len(n_vertices: int, distribution: str) -> int:
    """The preset's position table (256), or the longest prompt where the graphs need more (41 vertices: 365)."""
    cfg = load_preset("graph-search")
    cfg.task.params |= {"n_vertices": n_vertices, "distribution": distribution}
    return max(cfg.model.max_len, cfg.task.build().seq_len())


def _overrides(s: dict, n_vertices: int, distribution: str, steps: int, seed: int = 0) -> dict:
    """The graph-search preset at this scale with their optimiser. Balanced runs keep the preset's lookahead
    curriculum (its first stage is balanced graphs of lookahead 2); naive graphs cannot fix a lookahead, so naive
    runs train without it."""
    return {**THEIR_OPTIMISER, "task.n_vertices": n_vertices, "task.distribution": distribution,
            "model.n_layers": s["n_layers"],
            "model.max_len": _max_len(n_vertices, distribution),
            "model.d_model": s["d_model"], "train.steps": steps, "train.batch_size": s["batch_size"],
            "train.lr": s["lr"], "train.seed": seed, "train.checkpoint_every": max(1, min(1000, steps)),
            **({"curriculum.lookahead_start": -1} if distribution == "naive" else {})}


def distribution_trainings(s: dict) -> list[Training]:
    return [Training(dist, "graph-search", _overrides(s, s["n_vertices"], dist, s["steps"]))
            for dist in ("naive", "balanced")]


@experiment("saparov-distributions", SCALES, distribution_trainings)
def analyse_distributions(ctx):
    s, runs = ctx.s, ctx.runs
    curves = {dist: search_curve(runs[dist].model, runs[dist].task, s["n_eval"]) for dist in ("naive", "balanced")}
    save_figure(lookahead_figure({f"trained on {d}": c for d, c in curves.items()},
                                 f"held-out balanced graphs, {s['n_vertices']} vertices"),
                ctx.figures / "lookahead.png")
    acc = {d: dict(zip(c["k"], c["curves"]["model"]["mean"])) for d, c in curves.items()}
    top = max(curves["balanced"]["k"])
    hard = [L for L in curves["balanced"]["k"] if L >= max(1, top - 1)]  # the two largest lookaheads
    gap = float(np.mean([acc["balanced"][L] - acc["naive"][L] for L in hard]))
    worst_balanced = min(curves["balanced"]["distributions"][d]["mean"] for d in ("naive", "star", "balanced"))
    first = min(curves["naive"]["k"])
    naive_drop = acc["naive"][first] - acc["naive"][top]
    claims = [
        claim(f"balanced training beats naive training on the largest lookaheads {hard} (mean accuracy gap > 0)",
              "balanced robust, naive fails", round(gap, 4), gap > 0),
        claim("balanced training: near-perfect on every test distribution (min accuracy >= 0.95)", "near-perfect",
              round(worst_balanced, 4), worst_balanced >= 0.95),
        claim(f"naive training: accuracy falls with lookahead (lookahead {first} minus {top} > 0.1)", "falls",
              round(naive_drop, 4), naive_drop > 0.1),
    ]
    metrics = {"accuracy_by_lookahead": {d: {str(k): v for k, v in a.items()} for d, a in acc.items()},
               "curves": curves, "n_vertices": s["n_vertices"],
               "accuracy_by_distribution": {d: {t: c["distributions"][t]["mean"] for t in c["distributions"]}
                                            for d, c in curves.items()}}
    return claims, metrics


def scaling_figure(sizes, accs: dict, learned: list, path) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for seed, a in accs.items():
        axes[0].plot(sizes, a, "o-", lw=1.2, label=f"seed {seed}")
    axes[0].axhline(LEARNED, ls=":", color="grey")
    axes[0].set(xlabel="vertices in the graph", ylabel="accuracy (held-out balanced)", ylim=(-0.02, 1.02))
    axes[0].legend(fontsize=7)
    axes[1].plot(sizes, learned, "o-", color="C3", lw=2)
    axes[1].set(xlabel="vertices in the graph", ylabel=f"share of seeds with accuracy >= {LEARNED}",
                ylim=(-0.05, 1.05))
    fig.tight_layout()
    save_figure(fig, path)


def scaling_trainings(s: dict) -> list[Training]:
    return [Training(f"n{n}-seed{seed}", "graph-search", _overrides(s, n, "balanced", s["scaling_steps"], seed))
            for n in s["sizes"] for seed in s["seeds"]]


@experiment("saparov-scaling", SCALES, scaling_trainings)
def analyse_scaling(ctx):
    s = ctx.s
    accs = {seed: [] for seed in s["seeds"]}
    for n in s["sizes"]:
        for seed in s["seeds"]:
            run = ctx.runs[f"n{n}-seed{seed}"]
            accs[seed].append(accuracy_on(run.model, held_out_task(run.task), s["n_eval"])["mean"])
    learned = [float(np.mean([accs[seed][i] >= LEARNED for seed in s["seeds"]])) for i in range(len(s["sizes"]))]
    mean_acc = [float(np.mean([accs[seed][i] for seed in s["seeds"]])) for i in range(len(s["sizes"]))]
    scaling_figure(list(s["sizes"]), accs, learned, ctx.figures / "scaling.png")
    claims = [claim("the share of seeds that learn falls as the graph grows (largest size < smallest size)",
                    "falls towards 0", f"{learned[0]:.2f} -> {learned[-1]:.2f}", learned[-1] < learned[0]),
              claim("mean accuracy falls as the graph grows (largest size < smallest size)", "falls",
                    f"{mean_acc[0]:.3f} -> {mean_acc[-1]:.3f}", mean_acc[-1] < mean_acc[0])]
    metrics = {"sizes": list(s["sizes"]), "accuracy": {str(k): v for k, v in accs.items()}, "learned_share": learned,
               "mean_accuracy": mean_acc, "steps": s["scaling_steps"]}
    return claims, metrics


def mechanism_trainings(s: dict) -> list[Training]:
    """saparov-distributions' balanced-trained model, in that experiment's folder (trained once for both)."""
    return [Training("balanced", "graph-search", _overrides(s, s["n_vertices"], "balanced", s["steps"]),
                     home="saparov-distributions")]


@experiment("saparov-mechanism", SCALES, mechanism_trainings)
def analyse_mechanism(ctx):
    s, run = ctx.s, ctx.runs["balanced"]
    n_test = max(50, s["probe_prompts"] // 2)
    found = mechanism(run, s["probe_prompts"], n_test, ctx.figures, s["circuit_prompts"])
    reach, control, trace, circuit = found["reach"], found["control"], found["trace"], found["circuit"]
    merged, top = circuit["merge_length"], len(circuit["merge_length"]) - 1
    doubling = [2 ** (l - 1) for l in circuit["layers"]]
    explained = circuit["explained_share"]
    claims = [claim("their path-merge rule explains most traced circuits (the last token links start to goal "
                    "through explained merges; share of prompts >= 0.5)", "most", round(explained, 4),
                    explained >= 0.5),
              claim("the explained circuits' path-merge length grows with depth (mean over those prompts; "
                    "non-decreasing over blocks, last > first)", "about 2^(layer-1)",
                    " ".join(f"{m:.2f}" for m in merged),
                    merged[top] > merged[0] and all(b >= a - 1e-9 for a, b in zip(merged, merged[1:]))),
              claim("at block l the explained circuit has merged a path of min(2^(l-1), the graph's longest) hops "
                    "(share of those prompts, >= 0.5 at every block)", " ".join(map(str, doubling)),
                    " ".join(f"{x:.2f}" for x in circuit["doubling_share"]), min(circuit["doubling_share"]) >= 0.5),
              claim("the merges follow the graph: top-block path-merge length above the same circuits with random keys "
                    "(by > 0.25 hops)", "yes", round(merged[top] - circuit["control"][top], 4),
                    merged[top] - circuit["control"][top] > 0.25),
              claim("reachable sets are decodable beyond the untrained control (linear probe at the edge source "
                    "tokens, F1 at the last layer, trained - control > 0.1)", "yes",
                    round(reach["f1"][-1] - control["f1"][-1], 4), reach["f1"][-1] - control["f1"][-1] > 0.1)]
    # not a claim, recorded beside it: the other direction at the other edge token (which vertices reach v). When
    # balanced graphs had no ancestors of the start, the start reached every vertex: with the start left out of the
    # labels this decoded nothing (F1 <= 0.18 at the quick scale), so what it showed was that the tokens know the start
    ancestors = reach_probe(run.model, run.task, s["probe_prompts"], n_test, position="target", direction="ancestors")
    metrics = {"circuit": circuit, "reach": reach, "control": control, "ancestors_at_target": ancestors,
               "trace_entries_per_layer": [len(lay["entries"]) for lay in trace["layers"]],
               "accuracy": accuracy_on(run.model, held_out_task(run.task), s["n_eval"])["mean"]}
    return claims, metrics
