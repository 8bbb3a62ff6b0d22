"""What every paper reproduction shares: the registry, the trainings an experiment declares, the executor that runs
them (lab/executor.py, on Ray: in parallel on every core, or on a cluster), claims computed from the finished runs,
the result JSON, and claims over seeds.

An experiment is data plus analysis: `@experiment(NAME, SCALES, trainings)` registers `analyse(ctx)`, where
`trainings(s)` lists the Trainings of scale settings `s` and `analyse` turns the finished runs (`ctx.runs`, by
training name) into (claims, metrics), writing its figures under `ctx.figures`.

Result shape (DESIGN.md): {"name", "scale", "wall_s", "run_dirs", "claims": [{"claim", "paper", "ours",
"passed"}], "metrics"}; written to <folder>/result.json. With --seeds N > 1 each claim adds "passed_seeds" (m of N),
"seeds", "ours_mean", "ours_lo", "ours_hi" (90% bootstrap over seeds, numeric claims) and "ours_per_seed"; its
"passed" is true only when it passed in every seed. The result adds "seeds" and "per_seed" (each seed's claims and
metrics); "metrics" stays the first seed's.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from lab.config import make_config
from lab.executor import run_trials, trial
from lab.folders import EXPERIMENT, RESULT, claim_out_folder
from lab.runs import Run, atomic_write_json, make_out_folder, read_json_file, runs_root
from lab.stats import mean_interval
from lab.sweeps import MAX_TRIALS
from lab.trainer import TrainingDiverged

from ..figures import pyplot, save_figure  # noqa: F401  (the experiments' figure helpers)

SCALES = ("quick", "paper", "zoo")  # zoo: the recipe of the models shipped in lab/zoo/ (quick unless it says more)


@dataclass(frozen=True)
class Training:
    """One training an experiment needs: its run folder's name, a preset and overrides. `home` names another
    experiment whose default folder holds it: a training two experiments share is trained once."""

    name: str
    preset: str
    overrides: dict = field(default_factory=dict)
    home: str | None = None


@dataclass
class Context:
    """What an analysis gets: the scale's settings `s`, the experiment's folder, the finished runs by training
    name, which seed replica this is (0 is the experiment as declared) and where its figures go."""

    name: str
    scale: str
    s: dict
    folder: Path
    runs: dict[str, Run]
    seed_index: int = 0
    quiet: bool = False

    @property
    def figures(self) -> Path:
        return self.folder / "figures" / (f"seed-{self.seed_index}" if self.seed_index else "")


@dataclass
class Experiment:
    name: str
    scales: dict
    trainings: Callable[[dict], list[Training]]
    analyse: Callable[[Context], tuple[list, dict]]
    doc: str = ""


EXPERIMENTS: dict[str, Experiment] = {}


def experiment(name: str, scales: dict, trainings: Callable[[dict], list[Training]] | None = None):
    """Register `analyse(ctx) -> (claims, metrics)` as experiment `name`, with its scales and its trainings. Its
    "zoo" scale (what the shipped models of lab/zoo/ were trained at) is its quick scale unless it names one."""
    def register(analyse):
        zoo = {"zoo": scales["quick"]} if "quick" in scales else {}
        EXPERIMENTS[name] = Experiment(name, {**zoo, **scales}, trainings or (lambda s: []), analyse,
                                       analyse.__doc__ or "")
        return analyse
    return register


def names() -> list[str]:
    """The registered experiments, in the order probes/experiments/__init__.py imports them."""
    return list(EXPERIMENTS)


def get(name: str) -> Experiment:
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; choose one of: {', '.join(names())}")
    return EXPERIMENTS[name]


def experiment_dir(name: str, scale: str, out=None) -> Path:
    """Default folder: $LAB_RUNS/reproduce-NAME-SCALE (re-running resumes its training runs)."""
    return Path(out) if out else runs_root() / f"reproduce-{name}-{scale}"


def claim(text: str, paper, ours, passed: bool) -> dict:
    """One paper claim checked against our numbers."""
    return {"claim": text, "paper": paper, "ours": ours, "passed": bool(passed)}


def result(name: str, scale: str, wall_s: float, run_dirs, claims: list, metrics: dict) -> dict:
    return {"name": name, "scale": scale, "wall_s": wall_s, "run_dirs": [str(r) for r in run_dirs],
            "claims": claims, "metrics": metrics}


def save_result(folder: Path, res: dict) -> None:
    atomic_write_json(Path(folder) / "result.json", res)


def claim_experiment_folder(folder: Path, name: str, scale: str, given: bool = True) -> None:
    """A `given` --out must be new or empty, or hold this experiment at this scale (resumed); anything else
    (another experiment's results, a run, a sweep) is refused in one line. The default folder, named for the
    experiment, may already hold trainings another experiment shares with it. Either is marked experiment.json."""
    def same(path: Path) -> bool:
        for marker in (EXPERIMENT, RESULT):
            try:
                saved = read_json_file(path / marker)
                return (saved.get("name"), saved.get("scale")) == (name, scale)
            except (OSError, ValueError):
                continue
        return False

    if given:
        claim_out_folder(folder, "experiment", same)
    else:
        make_out_folder(folder)
    if not (folder / EXPERIMENT).is_file():
        atomic_write_json(folder / EXPERIMENT, {"name": name, "scale": scale})


def replicas(exp: Experiment, scale: str, n_seeds: int) -> list[tuple[int, Training, int, str]]:
    """(k, training, seed, folder name) of each training of seed replicas 0..n_seeds-1: replica k trains with
    train.seed + k * stride (stride: the span of the seeds the experiment itself uses, so replicas never share a
    seed) in NAME-seedS (replica 0 in NAME)."""
    trainings = exp.trainings(exp.scales[scale])
    names = [t.name for t in trainings]
    if len(set(names)) != len(names):
        raise ValueError(f"experiment {exp.name} declares two trainings with one name")  # pragma: no cover
    base = {t.name: make_config(t.preset, t.overrides).train.seed for t in trainings}
    stride = max(base.values()) - min(base.values()) + 1 if base else 1
    return [(k, t, base[t.name] + k * stride, t.name if k == 0 else f"{t.name}-seed{base[t.name] + k * stride}")
            for k in range(n_seeds) for t in trainings]


def seed_trials(exp: Experiment, scale: str, folder: Path, out, n_seeds: int, homes=None) -> list:
    """The executor's trials of seed replicas 0..n_seeds-1 (see `replicas`). A training another experiment holds
    (its `home`) goes to `homes(home)`, by default that experiment's default folder (or `folder` under a given
    --out)."""
    def home_of(t: Training) -> Path:
        if not t.home:
            return folder
        if homes is not None:
            return Path(homes(t.home))
        return experiment_dir(t.home, scale) if out is None else folder

    return [trial(home_of(t) / name, t.preset, {**t.overrides, "train.seed": seed}, group=t.name,
                  label={"training": t.name, "seed_index": k})
            for k, t, seed, name in replicas(exp, scale, n_seeds)]


def reproduce(name: str, scale: str = "quick", out=None, quiet: bool = False, seeds: int = 1,
              address: str | None = None, cpus: int | None = None, threads: int | None = None,
              gpus_per_trial: float | None = None, pack: bool = True, homes=None) -> dict:
    """Run experiment `name` at `scale` ("quick": a CPU in minutes; "paper": the original setting) on `seeds` seed
    replicas: its trainings all go to the executor at once (packed into ensembles where they differ only in seed),
    then each replica's runs are analysed. A replica whose training failed is left out and reported."""
    exp = get(name)
    if scale not in exp.scales:
        raise ValueError(f"scale must be one of {', '.join(SCALES)}; got {scale!r}")
    n_trainings = len(exp.trainings(exp.scales[scale]))
    if not isinstance(seeds, int) or isinstance(seeds, bool) or not 1 <= seeds * max(1, n_trainings) <= MAX_TRIALS:
        raise ValueError(f"--seeds must be an integer from 1 to {MAX_TRIALS // max(1, n_trainings)} for {name} (at "
                         f"most {MAX_TRIALS} trainings in all; it trains {n_trainings} per seed); got {seeds}")
    t0 = time.time()
    folder = experiment_dir(name, scale, out)
    trials = seed_trials(exp, scale, folder, out, seeds, homes)
    claim_experiment_folder(folder, name, scale, given=out is not None)
    if threads is None:  # on this machine, fewer trainings than cores share the cores out (one alone gets them all)
        threads = max(1, (cpus or os.cpu_count() or 1) // max(1, len(trials))) if address is None else 1
    records = run_trials(trials, address=address, cpus=cpus, threads=threads, gpus_per_trial=gpus_per_trial,
                         pack=pack, quiet=quiet,
                         desc=f"{name} trainings") if trials else []
    by_seed: dict[int, dict] = {k: {} for k in range(seeds)}
    failed: dict[int, list[str]] = {}
    for r in records:
        k = r["label"]["seed_index"]
        if r["status"] == "done":
            by_seed[k][r["label"]["training"]] = Run(r["run_dir"])
        else:
            failed.setdefault(k, []).append(f"{r['run_dir']}: {r['status']}: {r['error']}")
    if len(failed) == seeds:
        raise TrainingDiverged(f"{name}: no seed finished its trainings; " + "; ".join(failed[0]))
    per_seed = [analyse_replica(exp, scale, folder, by_seed[k], k, quiet) for k in range(seeds) if k not in failed]
    res = assemble(name, scale, time.time() - t0, per_seed, seeds, failed)
    save_result(folder, res)
    return res


def analyse_replica(exp: Experiment, scale: str, folder: Path, runs: dict[str, Run], k: int, quiet: bool) -> dict:
    """Seed replica k's claims and metrics from its finished runs (by training name)."""
    ctx = Context(exp.name, scale, exp.scales[scale], folder, runs, k, quiet)
    claims, metrics = exp.analyse(ctx)
    return {"seed_index": k, "run_dirs": [str(r.path) for r in ctx.runs.values()], "claims": claims,
            "metrics": metrics}


def assemble(name: str, scale: str, wall_s: float, per_seed: list[dict], seeds: int, failed: dict | None = None):
    """The result of the replicas analysed (`analyse_replica`); one seed gives the plain result shape."""
    first, failed = per_seed[0], failed or {}
    if seeds == 1:
        return result(name, scale, wall_s, first["run_dirs"], first["claims"], first["metrics"])
    res = result(name, scale, wall_s, [d for p in per_seed for d in p["run_dirs"]],
                 claims_over_seeds([p["claims"] for p in per_seed], seeds), first["metrics"])
    res.update(seeds=seeds, per_seed=per_seed,
               failed_seeds=[{"seed_index": k, "errors": e} for k, e in sorted(failed.items())])
    return res


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def claims_over_seeds(claims_by_seed: list[list[dict]], n_seeds: int) -> list[dict]:
    """Each claim over the seeds that finished: passed in m of N (N = n_seeds: a failed seed counts as a miss),
    its number's mean and 90% bootstrap interval where it is a number."""
    out = []
    for i, c in enumerate(claims_by_seed[0]):
        same = [cs[i] for cs in claims_by_seed if i < len(cs) and cs[i]["claim"] == c["claim"]]
        values = [x["ours"] for x in same]
        passed = sum(x["passed"] for x in same)
        row = {**c, "passed": passed == n_seeds, "passed_seeds": passed, "seeds": n_seeds,
               "ours_per_seed": values}
        if all(_number(v) for v in values):
            stats = mean_interval(values)
            row.update(ours=stats["mean"], ours_mean=stats["mean"], ours_lo=stats["lo"], ours_hi=stats["hi"])
        else:
            row.update(ours="; ".join(map(str, values)), ours_mean=None, ours_lo=None, ours_hi=None)
        out.append(row)
    return out


def format_claims(res: dict) -> str:
    lines = [f"{res['name']} ({res['scale']}), {res['wall_s']:.0f} s" +
             (f", {res['seeds']} seeds" if res.get("seeds") else "")]
    for c in res["claims"]:
        mark = "PASS" if c["passed"] else "MISS"
        if "passed_seeds" in c:
            band = f" [{_fmt(c['ours_lo'])}, {_fmt(c['ours_hi'])}]" if c["ours_mean"] is not None else ""
            lines.append(f"  [{c['passed_seeds']}/{c['seeds']}] {c['claim']}: paper {_fmt(c['paper'])}, ours "
                         f"{_fmt(c['ours'])}{band}")
        else:
            lines.append(f"  [{mark}] {c['claim']}: paper {_fmt(c['paper'])}, ours {_fmt(c['ours'])}")
    for f in res.get("failed_seeds", []):
        lines.append(f"  seed replica {f['seed_index']} failed: {'; '.join(f['errors'])}")
    return "\n".join(lines)


def _fmt(v):
    return f"{v:.4g}" if isinstance(v, float) else str(v)
