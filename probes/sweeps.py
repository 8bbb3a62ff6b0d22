"""What a sweep measures (the engine, lab/sweeps.py, trains its trials): the ICL curve of each finished trial, the
curve names a spec may ask for, and one figure per metric. `sweep` is lab.sweep with these measures: `lab sweep`."""
from __future__ import annotations

from lab.sweeps import Measures
from lab.sweeps import sweep as run_sweep

from .figures import save_figure, sweep_figure
from .icl_curve import baselines_for, evaluate_run
from .search import DISTRIBUTIONS, lookaheads_tested


def shape(task, n_points: int) -> dict:
    """What the task's `lab eval --json` holds, for checking a spec's metrics before anything trains: its curves
    (the model and its baselines), their k, the d that [d] means and the other numbers. Graph search: accuracy by
    lookahead (probes/search.py), and per test distribution."""
    if getattr(task, "objective", "") == "set":
        return {"curves": ["model"], "k": lookaheads_tested(task),
                "d": task.n_vertices, "scalars": ["d", *(f"distributions.{name}.{stat}" for name in DISTRIBUTIONS
                                                       for stat in ("mean", "lo", "hi"))]}
    return {"curves": ["model", *baselines_for(task)], "k": list(range(n_points)), "d": task.d, "scalars": ["d"]}


def curve(run, n_prompts: int) -> dict:
    """`lab eval RUN --json` of a finished trial (also written to RUN/eval/icl_curve.json)."""
    return evaluate_run(run, n_prompts=n_prompts)


def plot(settings: list[dict], metric: str, keys: list[str], title: str, path) -> None:
    save_figure(sweep_figure(settings, metric, keys, title), path)


MEASURES = Measures(curve=curve, shape=shape, plot=plot)


def sweep(spec, args=(), out=None, **options) -> dict:
    """lab.sweep (same arguments) measuring every metric of `lab eval --json` and drawing figures/METRIC.png."""
    return run_sweep(spec, args, out, measures=MEASURES, **options)
