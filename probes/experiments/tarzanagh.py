"""Tarzanagh et al. 2023, "Transformers as Support Vector Machines" (REFERENCES.md section 7).

svm-convergence: normalised GD on W (and on K, Q) for many random problems at once, beside the Att-SVM of the
tokens each problem ends up selecting: corr(W_k, W_svm) against the iteration, the softmax mass on the selected
token, and the share of problems that end at the globally (not only locally) optimal tokens.
svm-rank: the rank of the Frobenius and of the nuclear-norm Att-SVM solutions as the number of samples n and the
dimension d vary.
"""
from __future__ import annotations

import numpy as np

from tasks.token_selection import TokenSelection

from ..attention_gd import LR, PLAIN_LR, compare_with_svm
from ..figures import svm_convergence_figure, svm_rank_figure
from ..svm import InfeasibleSelection, att_svm
from .common import claim, experiment, save_figure

SCALES = {
    "quick": {"n": 6, "T": 8, "d": 10, "n_seeds": 100, "steps": 2000, "rank_seeds": 10,
              "rank_n": (1, 2, 3, 4, 6, 8, 10, 12), "rank_d": (4, 6, 8, 10, 14, 20)},
    "paper": {"n": 6, "T": 8, "d": 10, "n_seeds": 1000, "steps": 2000, "rank_seeds": 50,
              "rank_n": (1, 2, 3, 4, 6, 8, 10, 12, 16, 20), "rank_d": (4, 6, 8, 10, 14, 20, 30)},
    "smoke": {"n": 3, "T": 4, "d": 4, "n_seeds": 3, "steps": 120, "rank_seeds": 2,
              "rank_n": (1, 3), "rank_d": (3, 5)},  # tests only
}
PAPER_CORR = {100: 0.76, 500: 0.984, 1000: 0.996, 2000: 0.997}  # W, normalised GD, 10 seeds (REFERENCES.md)
CURVE_EVERY = 5  # steps between recorded curve points in the JSON


def _seeds(ctx, n: int) -> range:
    """Problem seeds of seed replica k: the next n after replica k - 1's."""
    return range(ctx.seed_index * n, (ctx.seed_index + 1) * n)


@experiment("svm-convergence", SCALES)
def analyse_convergence(ctx):
    s = ctx.s
    P = TokenSelection(s["n"], s["T"], s["d"]).sample(_seeds(ctx, s["n_seeds"]))
    runs = {"W": compare_with_svm(P, "W", steps=s["steps"], lr=LR),
            "KQ": compare_with_svm(P, "KQ", steps=s["steps"], lr=LR),
            "W plain GD": compare_with_svm(P, "W", norms=("fro",), steps=s["steps"], lr=PLAIN_LR, normalized=False)}
    own = {"W": "fro", "KQ": "nuclear", "W plain GD": "fro"}  # the SVM each parametrisation converges to
    curves = {name: c.curves(own[name], CURVE_EVERY) for name, c in runs.items()}
    checkpoints = [k for k in PAPER_CORR if k < s["steps"]] + [s["steps"]]
    at = {name: {str(k): _mean(c.trajectory.corr[own[name]][k]) for k in checkpoints} for name, c in runs.items()}
    kq_fro = _mean(runs["KQ"].trajectory.corr["fro"][-1])
    optimality = {name: _optimality(c.solutions[own[name]]) for name, c in runs.items()}
    save_figure(svm_convergence_figure(curves, PAPER_CORR, f"n = {s['n']}, T = {s['T']}, d = {s['d']}, "
                                       f"{s['n_seeds']} problems"), ctx.figures / "convergence.png")

    final = at["W"][str(s["steps"])]
    claims = [claim(f"normalised GD on W: mean corr with the Frobenius Att-SVM after {s['steps']} steps >= 0.99",
                    PAPER_CORR[2000], round(final, 4), final >= 0.99)]
    for k in (100, 500, 1000):
        if k < s["steps"]:
            ours = at["W"][str(k)]
            claims.append(claim(f"normalised GD on W: mean corr after {k} steps within 0.05 of the paper's re-run",
                                PAPER_CORR[k], round(ours, 4), abs(ours - PAPER_CORR[k]) <= 0.05))
    kq = at["KQ"][str(s["steps"])]
    claims += [
        claim("normalised GD on (K, Q): corr with the nuclear-norm SVM >= 0.95 and above its corr with the "
              "Frobenius SVM", "nuclear, not Frobenius", f"{kq:.4f} vs {kq_fro:.4f}", kq >= 0.95 and kq > kq_fro),
        claim("normalised GD on W ends at locally optimal tokens (share of problems, Def. 2)", 1.0,
              optimality["W"]["local"], optimality["W"]["local"] == 1.0),
        claim("...and sometimes not at the globally optimal ones (share at the global optimum < 1)", "< 1",
              optimality["W"]["global"], optimality["W"]["global"] < 1.0),
    ]
    metrics = {"n": s["n"], "T": s["T"], "d": s["d"], "n_seeds": s["n_seeds"], "steps": s["steps"], "lr": LR,
               "plain_lr": PLAIN_LR, "corr_at": at, "paper_corr": {str(k): v for k, v in PAPER_CORR.items()},
               "kq_corr_with_frobenius": kq_fro, "optimality": optimality,
               "svm_rank": {name: _mean([sol.rank for sol in c.solutions[own[name]] if sol])
                            for name, c in runs.items()},
               "curves": curves}
    return claims, metrics


@experiment("svm-rank", SCALES)
def analyse_rank(ctx):
    s = ctx.s
    seeds = _seeds(ctx, s["rank_seeds"])
    by_n = {n: _ranks(TokenSelection(n, s["T"], s["d"]).sample(seeds)) for n in s["rank_n"]}
    by_d = {d: _ranks(TokenSelection(s["n"], s["T"], d).sample(seeds)) for d in s["rank_d"]}
    save_figure(svm_rank_figure(by_n, by_d, s), ctx.figures / "rank.png")
    rows = [r for table in (by_n, by_d) for r in table.values()]
    fro_le_n = all(r["fro_max"] <= n for n, r in by_n.items() if r["fro_max"] is not None)
    lower = [r["nuclear_mean"] < r["fro_mean"] for n, r in by_n.items() if n >= 2 and r["feasible"]]
    claims = [
        claim("the Frobenius Att-SVM solution has rank <= n (every feasible problem)", "rank <= n",
              "yes" if fro_le_n else "no", fro_le_n),
        claim("the nuclear-norm solution has lower rank (mean, every n >= 2)", "lower",
              f"{sum(lower)}/{len(lower)} sizes", bool(lower) and all(lower)),
    ]
    metrics = {"T": s["T"], "d": s["d"], "n": s["n"], "seeds": s["rank_seeds"],
               "by_n": {str(k): v for k, v in by_n.items()}, "by_d": {str(k): v for k, v in by_d.items()},
               "infeasible": sum(r["infeasible"] for r in rows)}
    return claims, metrics


def _ranks(P) -> dict:
    """Ranks of both Att-SVM solutions for the globally optimal tokens of every problem (infeasible ones counted)."""
    fro, nuc, infeasible = [], [], 0
    for k in range(len(P)):
        try:
            fro.append(att_svm(P.X[k], P.z[k], P.optimal[k], "fro").rank)
            nuc.append(att_svm(P.X[k], P.z[k], P.optimal[k], "nuclear").rank)
        except InfeasibleSelection:
            infeasible += 1
    return {"fro_mean": _mean(fro), "nuclear_mean": _mean(nuc), "fro_max": max(fro, default=None),
            "nuclear_max": max(nuc, default=None), "feasible": len(fro), "infeasible": infeasible}


def _optimality(solutions) -> dict:
    feasible = [s for s in solutions if s is not None]
    return {"global": _mean([s.globally_optimal for s in feasible]),
            "local": _mean([s.locally_optimal for s in feasible]),
            "infeasible": len(solutions) - len(feasible)}


def _mean(values) -> float | None:
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    return float(values.mean()) if len(values) else None
