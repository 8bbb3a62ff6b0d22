"""`lab bench sweep`: the executor against the obvious alternative (lab/bench.py holds the engine's benchmarks; this
one runs an experiment, so it lives with the experiments). The result has DESIGN.md's benchmark shape."""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

from lab.executor import execute, pack_trials, ray_cluster, run_trials, trial
from lab.trainer import train

from .common import get, reproduce, seed_trials


def _same_claims(a: dict, b: dict) -> bool:
    return [(c["claim"], c["ours"], c["passed"]) for c in a["claims"]] == \
        [(c["claim"], c["ours"], c["passed"]) for c in b["claims"]]


def bench_sweep(experiment: str = "teaching-sequences", scale: str = "quick", seeds: int = 8, steps: int = 500,
                folder=None, quiet: bool = True) -> dict:
    """The executor against the obvious alternative, on this machine (lab/executor.py):
    1. `lab reproduce EXPERIMENT`: its trainings one after another in this process (as before the executor, the
       trainer's default threads) vs through the executor (one trial per core); the claims must come out the same.
    2. `seeds` seeds of tiny-linreg (`steps` steps): separate trials on every core vs packed into one ensemble
       trial (one batched computation; on a GPU the lab's 20-50x, on CPUs about neutral).
    Each case trains from scratch in a fresh folder (removed afterwards unless `folder` is given)."""
    root = Path(folder) if folder else Path(tempfile.mkdtemp(prefix="lab-bench-sweep-"))
    cores = os.cpu_count() or 1
    try:
        seq_dir, par_dir = root / "sequential", root / "executor"
        t0 = time.perf_counter()
        for t in seed_trials(get(experiment), scale, seq_dir, seq_dir, 1):
            train(t.config, out=t.out, quiet=quiet)
        sequential = reproduce(experiment, scale, out=seq_dir, quiet=quiet)  # all trained: the analysis only
        seq_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        parallel = reproduce(experiment, scale, out=par_dir, quiet=quiet)
        par_s = time.perf_counter() - t0
        rows = [{"case": f"lab reproduce {experiment} --scale {scale}: executor on {cores} cores", "ours_s": par_s,
                 "baseline": "its trainings one after another in one process", "baseline_s": seq_s,
                 "ratio": seq_s / par_s, "same_results": _same_claims(sequential, parallel), "cores": cores}]
        overrides = {"train.steps": steps, "train.checkpoint_every": steps}
        timings = {}
        for packed in (False, True):
            trials = [trial(root / f"seeds-{'packed' if packed else 'separate'}" / f"seed{s}", "tiny-linreg",
                            {**overrides, "train.seed": s}, group="tiny-linreg") for s in range(seeds)]
            t0 = time.perf_counter()
            records = _run_one_pack(trials, quiet) if packed else run_trials(trials, pack=False, quiet=quiet)
            timings[packed] = time.perf_counter() - t0
            assert all(r["status"] == "done" for r in records), records
        rows.append({"case": f"{seeds} seeds of tiny-linreg ({steps} steps): one packed ensemble trial",
                     "ours_s": timings[True], "baseline": f"{seeds} separate trials on {cores} cores",
                     "baseline_s": timings[False], "ratio": timings[False] / timings[True], "cores": cores})
    finally:
        if folder is None:
            shutil.rmtree(root, ignore_errors=True)
    return {"benchmark": "sweep", "device": "cpu", "rows": rows}


def _run_one_pack(trials, quiet: bool) -> list[dict]:
    """All `trials` as one ensemble job on the executor (the plan a GPU gets; on CPUs the executor would split it
    into one pack per core)."""
    with ray_cluster() as ray:
        return execute([pack_trials(trials)], ray=ray, quiet=quiet)
