"""Sweeps: a grid or random draws of overrides of one preset, over seeds, trained by the executor (lab/executor.py),
with one results row per trial and each setting's mean and 90% bootstrap interval over its seeds.

A spec (a TOML file, or a preset name with inline `key=v1,v2` and `seeds=0..4` arguments):

    name = "depth-lr"                    # the folder: $LAB_RUNS/sweep-NAME (default: the file's name)
    preset = "tiny-linreg"
    seeds = "0..2"                       # or a list [0, 1, 2]
    metrics = ["loss", "curves.model.mean[d]"]
    eval_prompts = 640                   # prompts for the metrics read from `lab eval --json`
    [fixed]                              # overrides every trial shares
    "train.steps" = 500
    [grid]                               # the Cartesian product of these values
    "model.n_layers" = [1, 2]
    [random]                             # `draws` settings drawn from these distributions (times the grid)
    draws = 4
    seed = 0
    "train.lr" = {log_uniform = [1e-4, 1e-2]}   # also uniform = [a, b], int = [a, b], choice = [...]

A metric is `loss` (the last logged training loss) or a field of `lab eval --json`, as a dotted path with the k of
the curve in brackets: `curves.model.mean[d]` (k = d), `curves.ols.mean[2d]`, `curves.model.hi[5]`,
`curves.model.mean[last]`. The engine measures the loss; a curve metric, and the figures, need the science's
`Measures` (probes/sweeps.py hands them down: `probes.sweeps.sweep`, which `lab sweep` runs).
"""
from __future__ import annotations

import functools
import hashlib
import itertools
import json
import math
import re
import time
import tomllib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from . import runlock
from .config import ConfigError, make_config
from .executor import Trial, run_trials, trial
from .folders import claim_out_folder
from .runs import RUN_NAME, atomic_write_bytes, atomic_write_json, read_json_file, read_jsonl, runs_root
from .stats import mean_interval

RESULTS, SUMMARY, SPEC = "results.jsonl", "summary.json", "sweep.json"
DISTRIBUTIONS = ("uniform", "log_uniform", "int", "choice")
SPEC_KEYS = {"name", "preset", "seeds", "metrics", "eval_prompts", "fixed", "grid", "random"}
MAX_TRIALS = 10_000
METRIC = re.compile(r"(loss)|(?!loss\b)([A-Za-z_]\w*(?:\.[A-Za-z0-9_+-]+)*)(?:\[(d|\d+d|\d+|last)\])?")
STATS = ("mean", "lo", "hi")


@dataclass
class SweepSpec:
    preset: str
    fixed: dict = field(default_factory=dict)
    grid: dict = field(default_factory=dict)
    random: dict = field(default_factory=dict)  # key -> {distribution: args}
    draws: int = 0
    draw_seed: int = 0
    seeds: list[int] = field(default_factory=lambda: [0])
    metrics: list[str] = field(default_factory=lambda: ["loss"])
    eval_prompts: int = 1280
    name: str = ""

    def swept_keys(self) -> list[str]:
        return list(self.grid) + [k for k in self.random if k not in self.grid]

    def n_trials(self) -> int:
        """How many (setting, seed) pairs the spec asks for, counted without building them (equal ones included)."""
        return math.prod(len(v) for v in self.grid.values()) * (self.draws if self.random else 1) * len(self.seeds)

    def settings(self) -> list[dict]:
        """Every distinct setting (the swept overrides, without the seed): the grid's product, times the random
        draws; a setting equal to an earlier one (`train.lr=1e-3,0.001`) is the same trial, listed once."""
        grid = [dict(zip(self.grid, values)) for values in itertools.product(*self.grid.values())]
        if self.random:
            rng = np.random.default_rng(self.draw_seed)
            draws = [{k: _draw(rng, k, dist) for k, dist in self.random.items()} for _ in range(self.draws)]
            grid = [{**g, **d} for g in grid for d in draws]
        distinct = {json.dumps(setting, sort_keys=True): setting for setting in reversed(grid)}
        return list(reversed(distinct.values()))


class SpecError(ConfigError):
    """A sweep spec that cannot be used; one line naming the key and what is allowed."""


def _need(ok: bool, what: str, allowed: str, got) -> None:
    if not ok:
        raise SpecError(f"sweep spec: {what} must be {allowed}; got {got!r}")


def parse_seeds(value) -> list[int]:
    """`0..4` (inclusive), `0,2,5`, an int, or a list of ints."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if isinstance(value, str):
        m = re.fullmatch(r"\s*(\d+)\s*\.\.\s*(\d+)\s*", value)
        if m:
            lo, hi = int(m[1]), int(m[2])
            _need(lo <= hi, "seeds", "a range LO..HI with LO <= HI", value)
            _need(hi - lo < MAX_TRIALS, "seeds", f"at most {MAX_TRIALS} of them", value)
            value = list(range(lo, hi + 1))
        else:
            value = [v.strip() for v in value.split(",") if v.strip()]
    _need(isinstance(value, list) and value != [], "seeds", "a range like 0..4 or a list of integers", value)
    whole = [int(v) if isinstance(v, str) and v.isdigit() else v for v in value]  # inline seeds=0,2,5 are text
    _need(all(isinstance(v, int) and not isinstance(v, bool) for v in whole), "seeds",
          "a range like 0..4 or a list of whole numbers (not 0.5, not true)", value)
    seeds = whole
    _need(len(set(seeds)) == len(seeds) and all(0 <= s < 2**32 for s in seeds), "seeds",
          "distinct integers in 0..2^32 - 1", value)
    return seeds


def _flatten(table: dict, prefix: str = "", stop=lambda v: False) -> dict:
    """TOML's `train.steps = 5` (unquoted) is a nested table; overrides are dotted keys."""
    out = {}
    for k, v in table.items():
        if isinstance(v, dict) and not stop(v):
            out.update(_flatten(v, f"{prefix}{k}.", stop))
        else:
            out[prefix + k] = v
    return out


def _is_distribution(v) -> bool:
    return isinstance(v, dict) and len(v) == 1 and next(iter(v)) in DISTRIBUTIONS


def _draw(rng: np.random.Generator, key: str, dist: dict):
    (kind, args), = dist.items()
    if kind == "choice":
        return args[int(rng.integers(len(args)))]
    lo, hi = args
    if kind == "int":
        return int(rng.integers(lo, hi + 1))
    value = math.exp(rng.uniform(math.log(lo), math.log(hi))) if kind == "log_uniform" else rng.uniform(lo, hi)
    return float(f"{value:.6g}")  # six significant digits: the trial's name and its override agree


def _check_distribution(key: str, dist) -> None:
    _need(_is_distribution(dist), f"random.{key}", "one of {uniform = [a, b]}, {log_uniform = [a, b]}, "
          "{int = [a, b]}, {choice = [...]}", dist)
    (kind, args), = dist.items()
    _need(isinstance(args, list) and args != [], f"random.{key}.{kind}", "a non-empty list", args)
    if kind != "choice":
        _need(len(args) == 2 and all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in args) and
              args[0] <= args[1], f"random.{key}.{kind}", "[low, high] with low <= high", args)
        _need(kind != "log_uniform" or args[0] > 0, f"random.{key}.log_uniform", "positive bounds", args)


def spec_from_dict(data: dict, name: str = "") -> SweepSpec:
    unknown = set(data) - SPEC_KEYS
    _need(not unknown, f"key {sorted(unknown)[0] if unknown else ''!r}", "one of " + ", ".join(sorted(SPEC_KEYS)),
          sorted(unknown))
    _need(isinstance(data.get("preset"), str) and data["preset"] != "", "preset", "a preset name or config file",
          data.get("preset"))
    for section in ("fixed", "grid", "random"):
        _need(isinstance(data.get(section, {}), dict), section, "a table of overrides", data.get(section))
    grid = _flatten(data.get("grid", {}))
    for k, v in grid.items():
        _need(isinstance(v, list) and v != [], f"grid.{k}", "a non-empty list of values", v)
    random = dict(data.get("random", {}))
    draws, draw_seed = random.pop("draws", 0 if not random else None), random.pop("seed", 0)
    random = _flatten(random, stop=lambda v: not all(isinstance(x, dict) for x in v.values()))  # at {kind: args}
    for k, v in random.items():
        _check_distribution(k, v)
    _need(not random or (isinstance(draws, int) and draws >= 1), "random.draws", "an integer >= 1", draws)
    fixed = _flatten(data.get("fixed", {}))
    both = sorted((set(fixed) & (set(grid) | set(random))) | (set(grid) & set(random)))
    _need(not both, f"key {both[0] if both else ''!r}", "in one of [fixed], [grid] and [random], not two of them",
          both)
    metrics = data.get("metrics", ["loss"])
    metrics = [m for m in metrics.split(",") if m.strip()] if isinstance(metrics, str) else metrics
    _need(isinstance(metrics, list) and metrics != [], "metrics", "a non-empty list", metrics)
    for m in metrics:
        _need(isinstance(m, str) and METRIC.fullmatch(m.strip()) is not None, "each metric",
              "loss or a field of `lab eval --json` like curves.model.mean[d] (a curve with its k in brackets)", m)
    eval_prompts = data.get("eval_prompts", 1280)
    _need(isinstance(eval_prompts, int) and eval_prompts >= 1, "eval_prompts", "an integer >= 1", eval_prompts)
    for k in set(fixed) | set(grid) | set(random):
        _need(k not in ("train.seed", "ensemble", "ensemble.size", "ensemble.seeds"), k,
              "left to the sweep (use seeds = ...; trials are packed into ensembles by the sweep)", k)
    _need(isinstance(draw_seed, int) and not isinstance(draw_seed, bool) and draw_seed >= 0, "random.seed",
          "an integer >= 0", draw_seed)
    given = data.get("name")
    _need(given is None or (isinstance(given, str) and RUN_NAME.fullmatch(given) is not None and len(given) <= 200),
          "name", "one folder name (letters, digits, '.', '_', '+', '-'; starting with a letter or digit): no '/', "
          "no '..'", given)
    spec = SweepSpec(preset=data["preset"], fixed=fixed, grid=grid, random=random, draws=draws or 0,
                     draw_seed=draw_seed, seeds=parse_seeds(data.get("seeds", [0])),
                     metrics=[m.strip() for m in metrics], eval_prompts=eval_prompts,
                     name=given or _folder_name(name) or "sweep")
    n = spec.n_trials()  # counted before any setting is built
    _need(n <= MAX_TRIALS, "the number of trials", f"at most {MAX_TRIALS}", n)
    return spec


def _folder_name(text: str) -> str:
    """A default name (a spec file's stem) as one folder name of the run store."""
    return re.sub(r"[^A-Za-z0-9._+-]", "_", text).lstrip("._+-")[:200]


def parse_spec(spec: str | Path | dict | SweepSpec, args: list[str] | tuple = ()) -> SweepSpec:
    """A SweepSpec from a TOML file, a dict, or a preset name with inline `key=v1,v2,...`, `seeds=0..4` and
    `metrics=a,b` arguments (a comma makes a grid axis; list-valued keys belong in a TOML spec)."""
    if isinstance(spec, SweepSpec):
        return spec
    if isinstance(spec, dict):
        return spec_from_dict(spec)
    path = Path(spec)
    if path.suffix == ".toml":
        if not path.is_file():
            raise SpecError(f"sweep spec {path} does not exist")
        _need(not args, "a TOML spec", "given alone (put overrides in its [fixed] or [grid] table)", list(args))
        try:
            data = tomllib.loads(path.read_text())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise SpecError(f"sweep spec {path} is not valid TOML: {e}") from None
        return spec_from_dict(data, name=path.stem)
    data: dict = {"preset": str(spec), "fixed": {}, "grid": {}}
    for arg in args:
        key, eq, value = arg.partition("=")
        _need(bool(eq and key), "each argument", "key=value or key=v1,v2,... (e.g. train.lr=1e-3,3e-3)", arg)
        key, value = key.strip(), value.strip()
        if key in ("seeds", "metrics", "eval_prompts", "name"):
            data[key] = int(value) if key == "eval_prompts" and value.isdigit() else value
        elif "," in value:
            data["grid"][key] = [_literal(v) for v in value.split(",") if v.strip()]
        else:
            data["fixed"][key] = _literal(value)
    text = json.dumps(data, sort_keys=True)
    return spec_from_dict(data, name=f"{Path(str(spec)).stem}-{hashlib.sha1(text.encode()).hexdigest()[:8]}")


def _literal(text: str):
    """An inline value as TOML would read it: 1e-3 a float, 2 an int, true a bool, anything else a string."""
    text = text.strip()
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _short_keys(keys: list[str]) -> dict[str, str]:
    """Each swept key by its last part (model.n_layers -> n_layers) unless two keys share it."""
    last = [k.rsplit(".", 1)[-1] for k in keys]
    return {k: s if last.count(s) == 1 else k for k, s in zip(keys, last)}


def _slug(setting: dict, short: dict) -> str:
    parts = [f"{short[k]}{v}" for k, v in setting.items()]
    text = re.sub(r"[^A-Za-z0-9._+-]", "_", "_".join(parts)) or "base"
    if len(text) > 150:
        text = text[:100] + "-" + hashlib.sha1(text.encode()).hexdigest()[:10]
    return text


def trials_of(spec: SweepSpec, folder: Path) -> list[Trial]:
    """Every (setting, seed) as a Trial in folder/trials/SETTING_seedS; each config is checked here."""
    short = _short_keys(spec.swept_keys())
    out: dict[str, Trial] = {}  # by resolved config: settings that resolve alike (1 and 1.0) are one trial
    folders: set[Path] = set()
    for setting in spec.settings():
        group = _slug(setting, short)
        for seed in spec.seeds:
            t = trial(folder / "trials" / f"{group}_seed{seed}", spec.preset,
                      {**spec.fixed, **setting, "train.seed": seed}, group=group, label={"overrides": setting,
                                                                                          "seed": seed})
            key = json.dumps(t.config, sort_keys=True)
            if key in out:
                continue
            _need(t.out not in folders, "the swept values", "distinct once written as a folder name",
                  t.out.name)
            folders.add(t.out)
            out[key] = t
    return list(out.values())


# ---- metrics ----------------------------------------------------------------------------------------------------
def metric_value(name: str, curve: dict | None, run) -> float:
    """One metric of a finished run: `loss`, or a field of its `lab eval --json` object (see the module docstring)."""
    m = METRIC.fullmatch(name)
    if m[1]:
        rows = [r for r in run.metrics if r.get("loss") is not None]
        return float(rows[-1]["loss"]) if rows else float("nan")
    obj = curve
    for part in m[2].split("."):
        if not isinstance(obj, dict) or part not in obj:
            fields = ", ".join(obj) if isinstance(obj, dict) else "none"
            raise ValueError(f"metric {name!r}: `lab eval --json` has no field {part!r} here (fields: {fields})")
        obj = obj[part]
    if m[3] is None:
        if isinstance(obj, list):
            raise ValueError(f"metric {name!r} is a curve; pick its k with [d], [2d], [last] or [5]")
        return float(obj)
    ks = curve["k"]
    k = _k_value(m[3], ks, curve.get("d", 0))
    if k not in ks:
        raise ValueError(f"metric {name!r}: k = {k} is not on the curve (k runs {ks[0]}..{ks[-1]})")
    return float(obj[ks.index(k)])


@dataclass(frozen=True)
class Measures:
    """What a sweep measures beyond the training loss, handed down by the science (probes/sweeps.py): the engine
    trains the trials and reads `loss` itself; a metric of `lab eval --json` needs the run's ICL curve."""
    curve: Callable  # (run, n_prompts) -> the `lab eval --json` object of a finished run
    shape: Callable  # (task, n_points) -> {"curves": names, "k": [k], "d": d, "scalars": other numbers' paths}
    plot: Callable  # (settings, metric, swept keys, title, path) -> None: a figure of one metric over the settings


def check_metrics(metrics: list[str], trials: list[Trial], measures: Measures | None) -> None:
    """Before anything trains: a metric the sweep cannot compute, for any trial's task, stops it with one line."""
    if not needs_eval(metrics):
        return
    if measures is None:
        m = next(m for m in metrics if not METRIC.fullmatch(m)[1])
        raise SpecError(f"sweep spec: metric {m!r} is read from `lab eval`, which lab.sweep cannot compute alone; "
                        "run the sweep with probes.sweeps.sweep (as `lab sweep` does) or use metrics = loss")
    tasks_seen = {json.dumps(t.config["task"], sort_keys=True): t for t in trials}
    for t in tasks_seen.values():
        task = make_config(t.config).task
        shape = measures.shape(task.build(), task.n_points)
        for m in metrics:
            problem = _metric_problem(m, shape)
            if problem:
                raise SpecError(f"sweep spec: metric {m!r} {problem}")


def _metric_problem(metric: str, shape: dict) -> str:
    """Why `metric` is not a number of this `lab eval --json` shape ({"curves", "k", "d", "scalars"}), "" if it is."""
    m = METRIC.fullmatch(metric)
    if m[1]:
        return ""
    parts, k = m[2].split("."), m[3]
    if parts[0] != "curves":
        if m[2] in shape["scalars"] and k is None:
            return ""
        fields = ", ".join(["curves.NAME.mean|lo|hi[k]", *shape["scalars"]])
        return f"is no number of this task's `lab eval --json`; metrics: loss, {fields}"
    if len(parts) != 3 or parts[1] not in shape["curves"] or parts[2] not in STATS:
        return (f"must be curves.NAME.STAT[k] with NAME one of {', '.join(shape['curves'])} and STAT one of "
                f"{', '.join(STATS)}")
    ks = shape["k"]
    if k is None:
        return "is a curve; pick its k with [d], [2d], [last] or a number"
    value = _k_value(k, ks, shape["d"])
    if value not in ks:
        return f"asks for k = {value}, which is not on this task's curve (k runs {ks[0]}..{ks[-1]})"
    return ""


def _k_value(k: str, ks: list[int], d: int) -> int:
    """The k a bracket names: `last`, `d` or `2d` (multiples of the task's d), or a number."""
    return ks[-1] if k == "last" else int(k[:-1] or 1) * d if k.endswith("d") else int(k)


def needs_eval(metrics: list[str]) -> bool:
    return any(not METRIC.fullmatch(m)[1] for m in metrics)


def run_metrics(run, metrics: list[str], eval_prompts: int, measures: Measures | None = None) -> dict:
    """The metrics of a finished run, cached in RUN/eval/sweep_metrics.json for its checkpoint (a re-run sweep
    reads them back instead of evaluating again). The ICL curve comes from `measures` (the science's)."""
    cache_path = run.out / "eval" / "sweep_metrics.json"
    key = {"metrics": metrics, "eval_prompts": eval_prompts, "step": run.status.get("step")}
    if cache_path.is_file():
        try:
            cached = read_json_file(cache_path)
            if cached.get("key") == key:
                return cached["values"]
        except ValueError:
            pass
    curve = measures.curve(run, eval_prompts) if needs_eval(metrics) else None
    values = {m: metric_value(m, curve, run) for m in metrics}
    atomic_write_json(cache_path, {"key": key, "values": values})
    return values


# ---- results ----------------------------------------------------------------------------------------------------
def _row(record: dict) -> dict:
    label = record["label"]
    return {"trial": Path(record["trial"]).name, "run_dir": record["run_dir"], "overrides": label["overrides"],
            "seed": label["seed"], "status": record["status"], "error": record["error"], "step": record["step"],
            "metrics": record["metrics"], "wall_s": record["wall_s"], "packed_in": record["packed_in"]}


def summarize(metrics: list[str], rows: list[dict]) -> list[dict]:
    """Per setting: its seeds, how many trials finished or failed, and each metric's mean and 90% interval."""
    settings: dict[str, dict] = {}
    for row in rows:
        key = json.dumps(row["overrides"], sort_keys=True)
        s = settings.setdefault(key, {"overrides": row["overrides"], "seeds": [], "done": 0, "failed": 0,
                                      "values": {m: [] for m in metrics}})
        s["seeds"].append(row["seed"])
        if row["status"] == "done" and row["metrics"]:
            s["done"] += 1
            for m in metrics:
                s["values"][m].append(row["metrics"].get(m))
        elif row["status"] not in ("pending", "done"):
            s["failed"] += 1
    return [{**{k: v for k, v in s.items() if k != "values"},
             "metrics": {m: {**mean_interval(vals), "values": vals} for m, vals in s["values"].items()}}
            for s in settings.values()]


def metric_filename(metric: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", metric).strip("_") + ".png"


def sweep(spec, args=(), out=None, *, measures: Measures | None = None, address: str | None = None,
          cpus: int | None = None, threads: int = 1, gpus_per_trial: float | None = None, pack: bool = True,
          pack_lr: bool = False, quiet: bool = False) -> dict:
    """Run a sweep (see the module docstring) into `out` (default $LAB_RUNS/sweep-NAME) and return its summary.
    Metrics other than `loss`, and the figures, need the `measures` of the science (probes.sweeps.sweep hands them).

    Re-running skips finished trials and resumes interrupted ones from their checkpoints; a failed or diverged
    trial is reported in its row and does not stop the others. Writes SWEEP/sweep.json, results.jsonl (one row per
    trial, rewritten as trials finish), summary.json and, with measures, figures/METRIC.png."""
    t0 = time.time()
    spec = parse_spec(spec, args)
    folder = Path(out) if out else runs_root() / f"sweep-{spec.name}"
    trials = trials_of(spec, folder)  # every config checked before anything is written
    check_metrics(spec.metrics, trials, measures)
    record = {**asdict(spec), "swept": spec.swept_keys(), "n_trials": len(trials)}
    claim_sweep_folder(folder, record)
    with runlock.hold(folder, doing="swept", advice="or sweep into another --out"):
        claim_sweep_folder(folder, record)  # again with the lock held: another sweep may have just written it
        atomic_write_json(folder / SPEC, record)
        return _sweep_held(spec, folder, trials, measures, t0, address=address, cpus=cpus, threads=threads,
                           gpus_per_trial=gpus_per_trial, pack=pack, pack_lr=pack_lr, quiet=quiet)


TRIALS_KEYS = ("preset", "fixed", "grid", "random", "draws", "draw_seed", "seeds")  # what decides the trials


def claim_sweep_folder(folder: Path, record: dict) -> None:
    """A new or empty folder, or one holding a sweep of these same trials (resumed, its metrics free to change);
    anything else is refused in one line."""
    def same(path: Path) -> bool:
        try:
            saved = read_json_file(path / SPEC)
        except (OSError, ValueError):
            return False
        return {k: saved.get(k) for k in TRIALS_KEYS} == json.loads(json.dumps({k: record[k] for k in TRIALS_KEYS}))

    claim_out_folder(folder, "sweep", same, differs=" with other trials (preset, overrides or seeds)")


def _sweep_held(spec: SweepSpec, folder: Path, trials: list[Trial], measures, t0: float, *, quiet: bool,
                **options) -> dict:
    """The sweep proper, with its folder's lock held and its sweep.json written."""
    rows: dict[str, dict] = {}

    def write_rows() -> None:
        atomic_write_bytes(folder / RESULTS, "".join(json.dumps(r) + "\n" for r in rows.values()).encode())

    def on_record(record: dict) -> None:  # live: the dashboard's table reads this file while trials run
        rows[record["trial"]] = _row(record)
        write_rows()

    evaluate = functools.partial(run_metrics, metrics=spec.metrics, eval_prompts=spec.eval_prompts, measures=measures)
    records = run_trials(trials, evaluate=evaluate, quiet=quiet, desc=f"sweep {spec.name}", on_record=on_record,
                         **options)
    rows = {r["trial"]: _row(r) for r in records}  # in the trials' order
    write_rows()
    settings = summarize(spec.metrics, list(rows.values()))
    summary = {"sweep": spec.name, "folder": str(folder), "preset": spec.preset, "swept": spec.swept_keys(),
               "seeds": spec.seeds, "metrics": spec.metrics, "trials": len(records),
               "done": sum(r["status"] == "done" for r in records),
               "failed": [{"trial": Path(r["trial"]).name, "status": r["status"], "error": r["error"]}
                          for r in records if r["status"] != "done"],
               "wall_s": time.time() - t0, "settings": settings}
    atomic_write_json(folder / SUMMARY, summary)
    if measures is not None:
        title = f"sweep {spec.name}: mean over seeds {', '.join(map(str, spec.seeds))} with a 90% bootstrap band"
        for metric in spec.metrics:
            measures.plot(settings, metric, spec.swept_keys(), title, folder / "figures" / metric_filename(metric))
    return summary


def list_sweeps(root: Path | None = None) -> list[Path]:
    """The sweep folders under the run store (those with a sweep.json), oldest first."""
    root = Path(root) if root else runs_root()
    found = [p for p in root.iterdir() if (p / SPEC).is_file()] if root.is_dir() else []
    return sorted(found, key=lambda p: (p / SPEC).stat().st_mtime)


ROW_TYPES = {"trial": str, "run_dir": str, "overrides": dict, "seed": int, "status": str, "error": (str, type(None)),
             "step": (int, type(None)), "metrics": (dict, type(None)), "wall_s": (int, float),
             "packed_in": (str, type(None))}


def is_row(row) -> bool:
    """A results.jsonl row as `sweep` writes it: every field there, of its type (a corrupt or foreign line is not)."""
    return isinstance(row, dict) and all(isinstance(row.get(k), t) and not isinstance(row.get(k), bool)
                                         for k, t in ROW_TYPES.items()) and \
        all(v is None or isinstance(v, (int, float)) for v in (row["metrics"] or {}).values())


def read_rows(folder: Path) -> list[dict]:
    """results.jsonl's rows; a line that is not one (corrupt, half-written, another program's) is skipped."""
    return read_jsonl(Path(folder) / RESULTS, is_row)


def format_summary(summary: dict) -> str:
    """A plain-text table: one row per setting, each metric as mean [lo, hi] over its seeds."""
    lines = [f"sweep {summary['sweep']}: {summary['done']}/{summary['trials']} trials done in "
             f"{summary['wall_s']:.0f} s ({summary['folder']})"]
    for s in summary["settings"]:
        setting = ", ".join(f"{k}={v}" for k, v in s["overrides"].items()) or "(base)"
        stats = "; ".join(f"{m} {_interval(v)}" for m, v in s["metrics"].items())
        failed = f"; {s['failed']} failed" if s["failed"] else ""
        lines.append(f"  {setting}: {stats} over {len(s['seeds'])} seeds{failed}")
    for f in summary["failed"]:
        lines.append(f"  {f['trial']}: {f['status']}: {f['error']}")
    return "\n".join(lines)


def _interval(v: dict) -> str:
    if v["mean"] is None:
        return "n/a"
    return f"{v['mean']:.4g} [{v['lo']:.4g}, {v['hi']:.4g}]"
