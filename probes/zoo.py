"""The zoo's maker and checker: `lab zoo build` trains an experiment's models at its zoo scale through the executor
(`lab reproduce NAME --scale zoo`), ships them into lab/zoo/ (weights, config, loss curve, the result and figures) and
records in the manifest how each was made; `lab zoo verify` reloads every shipped model and recomputes every claim
from its weights; `lab reproduce NAME --zoo` is that analysis, written to the run store.

The reader (names, paths, the manifest) is lab/zoo/__init__.py: the engine opens zoo models without the science."""
from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from lab import zoo
from lab.config import make_config
from lab.runs import (
    CONFIG,
    METRICS,
    STATUS,
    WEIGHTS,
    Run,
    atomic_write_json,
    read_metrics,
    runs_root,
    write_safetensors,
)
from tasks.checks import check_counts

from .experiments import common
from .experiments.common import analyse_replica, assemble, claim_experiment_folder, save_result
from .experiments.guo import PASTED
from .inspect import probe_run

# Seeds each experiment ships (3 where its claims table reports 3 seeds and the budgets fit, else 1), in the order
# `lab zoo build` trains them: what the dashboard's pages and the tour open first. teaching-sequences ships one: its
# 3 seeds (12 models, 5.3 MB) and every other experiment came to 26.6 MB, over the zoo's 25 MB.
SEEDS = {"garg-curve": 1, "vo-1layer": 3, "vo-gdpp": 3, "svm-convergence": 3, "svm-rank": 3, "scan-and-snap": 3,
         "guo-representation": 1, "bhattamishra-table": 1, "saparov-distributions": 1, "saparov-mechanism": 1,
         "akyurek-depth": 1, "fu-newton": 1, "teaching-sequences": 1, "fu-illcond": 1, "garg-classes": 1,
         "saparov-scaling": 1}
# The probes (`lab probe`) shipped with a model, so the dashboard's pages show them at once on a fresh install
PROBED = {"garg-curve/linreg": ("match", "readout", "probe"), "saparov-distributions/balanced": ("search",)}
RTOL, ATOL = 1e-3, 1e-4  # how close a recomputed claim's number must be to the manifest's (thread counts differ)


def build_folder(name: str) -> Path:
    """Where `lab zoo build NAME` trains (re-running resumes it): $LAB_RUNS/zoo-build/NAME."""
    return runs_root() / "zoo-build" / name


def build_command(name: str) -> str:
    return f"lab reproduce {name} --scale zoo --seeds {SEEDS[name]} --no-pack --out $LAB_RUNS/zoo-build/{name}"


def _homes(root: Path):
    return lambda home: Path(root) / home


def config_hash(config: dict) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]


def _commit() -> str:
    """The lab's git commit (with "+changes" when its code differs from it: the zoo's own files, which a build
    rewrites, do not count), or "unknown" outside a clone."""
    here = Path(__file__).parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ":/",
                                ":(top,exclude)lab/zoo"], cwd=here, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head.stdout.strip() + ("+changes" if dirty.stdout.strip() else "") if head.returncode == 0 else "unknown"


def _train_seconds(rows: list[dict]) -> float:
    """A training's wall time from its logged throughput: the sum over logged intervals of steps / (steps/s)."""
    total, last = 0.0, 0
    for r in rows:
        if r.get("steps_per_s"):
            total += (r["step"] - last) / r["steps_per_s"]
        last = r["step"]
    return total


def _zoo_names(exp, root: Path, n_seeds: int) -> list[tuple[str, object]]:
    """(zoo name, executor trial) of each model the experiment's replicas read, shipped ones under `root`."""
    trials = common.seed_trials(exp, "zoo", root / exp.name, root / exp.name, n_seeds, _homes(root))
    return [(t.out.relative_to(root.absolute()).as_posix(), t) for t in trials]


def build(names: list[str] | None = None, quiet: bool = False, cpus: int | None = None) -> list[dict]:
    """Train and ship each named experiment (default: those not shipped yet, in SEEDS order); returns their results.
    Each experiment is shipped as soon as it finishes, so an interrupted build keeps what it finished."""
    shipped = zoo.manifest()["experiments"]
    todo = names or [n for n in SEEDS if n not in shipped]
    unknown = [n for n in todo if n not in SEEDS]
    if unknown:
        raise ValueError(f"no experiment {unknown[0]!r} in the zoo; choose from: {', '.join(SEEDS)}")
    results = []
    for name in todo:
        exp = common.get(name)
        n_trials = len(exp.trainings(exp.scales["zoo"])) * SEEDS[name]
        threads = max(1, (cpus or os.cpu_count() or 1) // max(1, n_trials))
        t0 = time.time()
        res = common.reproduce(name, "zoo", out=build_folder(name), quiet=quiet, seeds=SEEDS[name], cpus=cpus,
                               threads=threads, pack=False, homes=lambda home: build_folder(home))
        ship(name, res, threads, time.time() - t0)
        results.append(res)
    return results


def ship(name: str, res: dict, threads: int, wall_s: float) -> None:
    """Copy experiment `name`'s models from its build folder into lab/zoo/NAME (float32 weights, config, loss curve,
    status), with its result and figures, and record them in the manifest. The folder is replaced whole."""
    exp, n_seeds = common.get(name), SEEDS[name]
    stage = Path(tempfile.mkdtemp(dir=zoo.ROOT, prefix=f".{name}."))
    stage.chmod(0o755)  # mkdtemp's 0o700 would hide the shipped folder from other users of an installed lab
    models = {}
    try:
        for zoo_name, t in _zoo_names(exp, build_folder(name).parent, n_seeds):
            if not zoo_name.startswith(name + "/"):
                continue  # a training another experiment ships
            run = Run(t.out)
            dest = stage / zoo_name.split("/", 1)[1]
            dest.mkdir(parents=True)
            weights = {k: v.float() for k, v in run.model.state_dict().items()}
            write_safetensors(dest / WEIGHTS, weights, {"step": run.step})
            for f in (CONFIG, METRICS, STATUS):
                if (run.path / f).is_file():
                    shutil.copyfile(run.path / f, dest / f)
            for kind in PROBED.get(zoo_name, ()):  # written into the build folder, then shipped with the model
                probe_run(run, kind, n_prompts=1000)
            for folder in (("eval", "figures") if zoo_name in PROBED else ()) + (PASTED,):
                if (run.path / folder).is_dir():
                    shutil.copytree(run.path / folder, dest / folder)
            rows = read_metrics(run.path / METRICS)
            training = next(tr for tr in exp.trainings(exp.scales["zoo"]) if tr.name == t.group)
            overrides = {**training.overrides, "train.seed": t.seed}
            models[zoo_name] = {
                "training": t.group, "seed_index": t.label["seed_index"], "preset": training.preset,
                "overrides": overrides, "seed": t.seed, "steps": run.config.train.steps, "threads": threads,
                "train_s": round(_train_seconds(rows), 1), "device": f"cpu ({os.cpu_count()} cores, "
                f"{platform.machine()})", "config_hash": config_hash(run.config.to_dict()),
                "command": "lab train " + " ".join([training.preset, *(f"{k}={v}" for k, v in overrides.items()),
                                                    f"train.threads={threads}"])}
        build = build_folder(name)
        figures = build / "figures"
        if figures.is_dir():  # not the figures of seed replicas beyond n_seeds (left by a build with more seeds)
            shutil.copytree(figures, stage / "figures", ignore=lambda folder, names: [
                n for n in names if n.startswith("seed-") and n[5:].isdigit() and int(n[5:]) >= n_seeds])
        shipped_res = _shipped_result(res, build.parent)
        atomic_write_json(stage / "result.json", shipped_res)
        target = zoo.ROOT / name
        if target.exists():
            shutil.rmtree(target)
        stage.rename(target)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    entry = {"scale": "quick" if exp.scales["zoo"] is exp.scales["quick"] else "zoo", "seeds": n_seeds,
             "command": build_command(name), "wall_s": round(wall_s, 1), "commit": _commit(),
             "built": time.strftime("%Y-%m-%d %H:%M"),
             "uses": [m for m, _ in _zoo_names(exp, build.parent, n_seeds) if not m.startswith(name + "/")],
             "claims": claims_by_seed(shipped_res),
             "models": models}
    manifest = zoo.manifest()
    manifest["experiments"][name] = entry
    manifest["experiments"] = {n: manifest["experiments"][n] for n in SEEDS if n in manifest["experiments"]}
    atomic_write_json(zoo.MANIFEST, manifest)
    write_readme(manifest)


def claims_by_seed(res: dict) -> list[list[dict]]:
    """Each seed replica's claims of a reproduction's result."""
    return [p["claims"] for p in res["per_seed"]] if "per_seed" in res else [res["claims"]]


def _shipped_result(res: dict, build_root: Path) -> dict:
    """The result with its run folders named as zoo models ("zoo:NAME") instead of build paths."""
    def rename(path: str) -> str:
        try:
            return zoo.PREFIX + Path(path).relative_to(build_root.absolute()).as_posix()
        except ValueError:
            return path
    out = {**res, "run_dirs": [rename(p) for p in res["run_dirs"]]}
    if "per_seed" in res:
        out["per_seed"] = [{**p, "run_dirs": [rename(d) for d in p["run_dirs"]]} for p in res["per_seed"]]
    return out


def write_readme(manifest: dict) -> None:
    """lab/zoo/README.md: the table of what is shipped, at which scale, made how."""
    lines = ["# The zoo: the lab's trained reference models", "",
             "Made by `lab zoo build` (probes/zoo.py) and checked by `lab zoo verify` (also in the test suite). "
             "Each model folder is a run folder: `lab.load_run(\"zoo:EXPERIMENT/TRAINING\")`. The scale is the "
             "experiment's quick scale unless it says zoo (its `zoo` entry in probes/experiments/: longer or "
             "larger, where that closes a miss). `manifest.json` has each model's command, seed, steps, threads, "
             "training time (from its logged throughput), device, commit and config hash; `wall_s` is the last "
             "`lab zoo build`'s wall time for the experiment (a resumed build counts only what it did).", "",
             "| experiment | models | scale | steps | minutes of training (all models) | claims passed | MB |",
             "|---|---|---|---|---|---|---|"]
    for name, e in manifest["experiments"].items():
        steps = sorted({m["steps"] for m in e["models"].values()})
        passed = " / ".join(f"{sum(c['passed'] for c in seed)}/{len(seed)}" for seed in e["claims"])
        mb = sum(f.stat().st_size for f in (zoo.ROOT / name).rglob("*") if f.is_file()) / 1e6
        lines.append(f"| {name} | {len(e['models'])}{' + ' + ', '.join(e['uses']) if e['uses'] else ''} | "
                     f"{e['scale']} | {', '.join(map(str, steps)) or '-'} | "
                     f"{sum(m['train_s'] for m in e['models'].values()) / 60:.1f} | "
                     f"{passed} | {mb:.2f} |")
    (zoo.ROOT / "README.md").write_text("\n".join(lines) + "\n")


def replica_runs(name: str) -> dict[int, dict[str, Run]]:
    """The shipped models of experiment `name` by seed replica and training name, opened read-only."""
    exp, entry = common.get(name), zoo.manifest()["experiments"].get(name)
    if entry is None:
        raise ValueError(f"experiment {name} has no models in the zoo; shipped: "
                         f"{', '.join(zoo.manifest()['experiments']) or 'none'} (lab zoo build {name} makes them)")
    runs: dict[int, dict[str, Run]] = {k: {} for k in range(entry["seeds"])}
    for zoo_name, t in _zoo_names(exp, zoo.ROOT, entry["seeds"]):
        runs[t.label["seed_index"]][t.group] = Run(zoo.PREFIX + zoo_name)
    return runs


def reproduce_zoo(name: str, out=None, quiet: bool = False, seeds: int | None = None) -> dict:
    """`lab reproduce NAME --zoo`: the experiment's analysis on the shipped models (of the first `seeds` seed
    replicas; default all), no training; the result and figures go to `out` (default $LAB_RUNS/zoo/NAME)."""
    exp = common.get(name)
    runs = replica_runs(name)
    t0 = time.time()
    folder = Path(out) if out else zoo.out_folder(name, runs_root())
    claim_experiment_folder(folder, name, "zoo", given=out is not None)
    per_seed = [analyse_replica(exp, "zoo", folder, runs[k], k, quiet) for k in sorted(runs)[:seeds]]
    res = assemble(name, "zoo", time.time() - t0, per_seed, len(per_seed))
    save_result(folder, res)
    return res


def _differs(theirs, ours) -> bool:
    """Whether a recomputed claim value differs from the manifest's: numbers beyond RTOL/ATOL, anything else."""
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (theirs, ours))
    if not numbers:
        return theirs != ours
    if math.isnan(theirs) or math.isnan(ours):
        return not (math.isnan(theirs) and math.isnan(ours))
    return abs(theirs - ours) > ATOL + RTOL * abs(theirs)


def config_differences(shipped: dict, today: dict) -> list[str]:
    """The keys a shipped config holds whose value today's resolved config does not have (a key added to the lab
    since the model was shipped is not in `shipped`, so a new key at its default is no difference)."""
    out = []
    for section, values in shipped.items():
        pairs = values.items() if isinstance(values, dict) else [(None, values)]
        for key, value in pairs:
            now = today.get(section, {}).get(key) if key is not None else today.get(section)
            if now != value:
                out.append(f"{section}{'.' + key if key else ''} is {value!r} in the shipped config, {now!r} from its "
                           "command today")
    return out


def stale_configs(name: str) -> list[str]:
    """Where a shipped model's command (with the threads it trained on) resolves today to a different config (see
    `config_differences`), or its config.json no longer matches the manifest's hash."""
    out = []
    for zoo_name, m in zoo.manifest()["experiments"][name]["models"].items():
        shipped = json.loads((zoo.ROOT / zoo_name / CONFIG).read_text())
        today = make_config(m["preset"], {**m["overrides"], "train.threads": m["threads"]}).to_dict()
        out += [f"{zoo_name}: {d}" for d in config_differences(shipped, today)]
        if config_hash(shipped) != m["config_hash"]:
            out.append(f"{zoo_name}: config.json does not match the manifest's hash")
    return out


def verify(names: list[str] | None = None, quiet: bool = True, seeds: int | None = None) -> list[str]:
    """Every difference between the zoo and its manifest, one line each ([] when it holds): models that do not load,
    stale configs, claims recomputed from the weights that differ (passed, or the number beyond RTOL/ATOL). `seeds`:
    recompute the first that many seed replicas of each experiment (default all; every config is checked)."""
    experiments = zoo.manifest()["experiments"]
    missing = [n for n in names or [] if n not in experiments]
    if missing:
        raise ValueError(f"experiment {missing[0]!r} is not in the zoo; shipped: {', '.join(experiments) or 'none'}")
    if seeds is not None:
        check_counts(seeds=seeds)
    problems = []
    for name in names or list(experiments):
        problems += stale_configs(name)
        with tempfile.TemporaryDirectory() as tmp:
            try:
                res = reproduce_zoo(name, out=Path(tmp) / name, quiet=quiet, seeds=seeds)
            except Exception as e:  # noqa: BLE001 - a model that no longer loads is a finding, named
                problems.append(f"{name}: the analysis of the shipped models failed: {type(e).__name__}: {e}")
                continue
        for k, (want, got) in enumerate(zip(experiments[name]["claims"][:seeds], claims_by_seed(res))):
            for a, b in zip(want, got):
                if a["claim"] != b["claim"] or a["passed"] != b["passed"] or _differs(a["ours"], b["ours"]):
                    problems.append(f"{name} seed {k}: {a['claim']!r}: manifest {a['ours']!r} "
                                    f"({'passed' if a['passed'] else 'missed'}), recomputed {b['ours']!r} "
                                    f"({'passed' if b['passed'] else 'missed'})")
            if len(want) != len(got):
                problems.append(f"{name} seed {k}: {len(want)} claims in the manifest, {len(got)} recomputed")
    return problems
