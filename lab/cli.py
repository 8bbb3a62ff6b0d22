"""The `lab` command. The outermost shell: it may import probes (and app) lazily inside sub-commands."""
from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import signal
import sys
import threading
import time

from .config import ConfigError, preset_names
from .runs import RunFileError, load_run, require_finite_weights, resume_command, runs_root, scan_runs
from .trainer import TrainingDiverged, TrainingInterrupted, idle_cores, train

DEMO_PRESET = "tiny-linreg"


def _print_json(obj) -> None:
    """The command's JSON, always valid JSON: a NaN or infinite number (which json.dumps would print bare) is null."""
    print(json.dumps(finite_json(obj), allow_nan=False))


def finite_json(obj):
    """`obj` with every non-finite float replaced by None."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_json(v) for v in obj]
    return obj


def _curve_summary(curve: dict) -> dict:
    """Model vs baselines at k >= d: does it beat averaging and 3-NN everywhere, and its gap to OLS."""
    c, d = curve["curves"], curve["d"]
    ks = [k for k in curve["k"] if k >= d]
    model = c["model"]["mean"]
    beats = {b: all(model[k] < c[b]["mean"][k] for k in ks) for b in ("averaging", "3-nn")}
    gap = [model[k] - c["ols"]["mean"][k] for k in ks]
    return {"ks": ks, "beats": beats, "gap_to_ols_mean": sum(gap) / len(gap), "gap_to_ols_max": max(gap)}


def cmd_train(args) -> int:
    run = train(args.preset, args.overrides, out=args.out, quiet=args.quiet)
    last = run.metrics[-1] if run.metrics else {}
    result = {"run_dir": str(run.path), "step": last.get("step"), "loss": last.get("loss")}
    if run.n_members > 1:
        result.update(members=run.n_members, losses=last.get("losses"), diverged=last.get("diverged", {}))
    if args.json:
        _print_json(result)
    elif run.n_members > 1:
        losses = ", ".join("diverged" if x is None else f"{x:.4g}" for x in result["losses"] or [])
        print(f"trained {run.n_members} models in {run.path} to step {result['step']}; last losses: {losses}\n"
              f"each member is a run of its own: lab eval {run.path} --member i (i in 0..{run.n_members - 1})")
    else:
        print(f"trained {run.path} to step {result['step']}, last loss {result['loss']:.4g}")
    return 0


def _evaluate_and_print(run, n_prompts: int, as_json: bool):
    from probes.icl_curve import evaluate_run, format_table

    curve = evaluate_run(run, n_prompts=n_prompts)
    for name, c in curve["curves"].items():
        bad = [k for k, v in zip(curve["k"], c["mean"]) if not math.isfinite(v)]
        if bad:  # finite weights can still overflow on some prompts: said, and null in the JSON
            print(f"lab: note: the {name} curve is not finite at k = {', '.join(map(str, bad[:5]))}"
                  f"{' ...' if len(bad) > 5 else ''} (NaN or infinite predictions; null in --json)", file=sys.stderr)
    if not as_json:
        print(format_table(curve))
        print(f"curve: {run.out / 'eval' / 'icl_curve.json'}  figure: {run.out / 'figures' / 'icl_curve.png'}")
    return curve


def _load(args):
    """The run, or member --member of an ensemble run, with its model loaded (an unreadable checkpoint stops here,
    before anything is written) and a note on stderr about which checkpoint is scored."""
    run = load_run(args.run)
    if args.member is not None:
        run = run.member(args.member)
    elif run.n_members > 1:
        raise ValueError(f"{run.path} is an ensemble of {run.n_members} models; add --member i "
                         f"(i in 0..{run.n_members - 1})")
    require_finite_weights(run)  # loads the model
    _note_checkpoint(run)
    return run


def _note_checkpoint(run) -> None:
    """On stderr: which checkpoint a diverged, interrupted or unfinished run is scored at."""
    try:
        status, step = run.status, run.step
    except RunFileError:
        return  # an unreadable status.json does not stop an evaluation
    state = status.get("status")
    if state == "diverged":
        print(f"note: {run.path} diverged at step {status.get('step')}; this scores its last good checkpoint, "
              f"at step {step}", file=sys.stderr)
    elif state in ("interrupted", "running"):
        print(f"note: {run.path} is {'still training' if state == 'running' else 'interrupted'}; this scores its "
              f"checkpoint at step {step} of {run.config.train.steps}", file=sys.stderr)


def cmd_eval(args) -> int:
    run = _load(args)
    curve = _evaluate_and_print(run, args.n_prompts, args.json)
    if args.json:
        _print_json(curve)
    return 0


def cmd_demo(args) -> int:
    t0 = time.time()
    out = args.out or str(runs_root() / f"demo-{time.strftime('%Y%m%d-%H%M%S')}")
    threads = [] if os.environ.get("OMP_NUM_THREADS") else [f"train.threads={idle_cores()}"]  # one training: the cores
    run = train(DEMO_PRESET, threads, out=out, quiet=args.quiet)
    curve = _evaluate_and_print(run, args.n_prompts, args.json)
    s = _curve_summary(curve)
    if args.json:
        _print_json({**curve, "summary": s, "run_dir": str(run.path), "wall_s": time.time() - t0})
        return 0
    d, yes = curve["d"], lambda ok: "yes" if ok else "NO"
    print(f"\nAt every k >= d = {d}: model below averaging: {yes(s['beats']['averaging'])}; below 3-NN: "
          f"{yes(s['beats']['3-nn'])}. Gap to least squares: {s['gap_to_ols_mean']:.4f} on average over those k "
          f"(largest {s['gap_to_ols_max']:.4f}).")
    print(f"What to notice: least squares falls to 0 once k reaches d = {d} (d examples pin down w), while "
          "averaging and 3-NN stay far above. A transformer trained only on such prompts learns, with no weight "
          "update at test time, a learner much closer to least squares than to those simple rules: "
          "that is in-context learning.")
    print(f"({time.time() - t0:.0f} s in all)")
    return 0


def cmd_runs(args) -> int:
    """Every readable run, then every folder skipped with its reason (one bad folder never hides the others)."""
    runs, problems = scan_runs()
    rows = []
    for run in runs:
        st = run.status
        rows.append({"run_dir": str(run.path), "preset": run.config.preset, "status": st.get("status", "?"),
                     "step": st.get("step"), "steps": run.config.train.steps, "members": run.n_members,
                     **({"resume": resume_command(run.path)} if st.get("status") == "interrupted" else {})})
    skipped = [{"run_dir": str(path), "status": "skipped", "reason": why} for path, why in problems]
    if args.json:
        _print_json(rows + skipped)
        return 0
    if not rows and not skipped:
        print(f"no runs under {runs_root()}")
    for r in rows:
        members = f"  ({r['members']} models)" if r["members"] > 1 else ""
        resume = f"  resume: {r['resume']}" if "resume" in r else ""
        print(f"{r['run_dir']:50s} {r['preset']:16s} {r['status']:12s} {r['step']}/{r['steps']}{members}{resume}")
    for r in skipped:
        print(f"{r['run_dir']:50s} skipped: {r['reason']}")
    return 0


def _parse_sizes(text: str) -> list[int]:
    try:
        sizes = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 1:
        raise ValueError(f"--sizes must be ensemble sizes >= 1 separated by commas (e.g. 1,4,16); got {text!r}")
    return sizes


def cmd_bench(args) -> int:
    from . import bench

    if args.kind == "attention":
        result = bench.bench_attention(reps=args.steps)
    elif args.kind == "train":
        result = bench.bench_train(args.preset or "tiny-linreg", sizes=_parse_sizes(args.sizes), steps=args.steps,
                                   overrides=args.overrides)
    elif args.kind == "sweep":
        from probes.experiments.bench import bench_sweep

        result = bench_sweep(args.experiment, seeds=args.seeds, steps=args.trial_steps, quiet=args.json)
    elif args.kind == "threads":
        result = bench.bench_threads(args.preset or "tiny-linreg", steps=args.steps, overrides=args.overrides)
    elif args.kind == "hyena":
        result = bench.bench_hyena(reps=args.steps)
    else:
        result = bench.bench_model(args.preset or "garg-linreg", steps=args.steps)
    if args.json:
        _print_json(result)
    else:
        print(bench.format_rows(result))
    return 0


def cmd_reproduce(args) -> int:
    from probes.experiments import get, reproduce
    from probes.experiments.common import format_claims

    from .runs import make_out_folder

    get(args.name)  # an unknown name stops before any folder is made
    if args.out:
        make_out_folder(args.out)
    if args.zoo:
        from probes.zoo import reproduce_zoo

        if args.scale != "quick" or args.seeds != 1:
            raise ValueError("--zoo analyses the shipped models at the scale and seeds they were trained at (lab zoo "
                             "show NAME); leave out --scale and --seeds")

        res = reproduce_zoo(args.name, out=args.out, quiet=args.quiet or args.json)
    else:
        res = reproduce(args.name, args.scale, out=args.out, quiet=args.quiet or args.json, seeds=args.seeds,
                        address=args.address, cpus=args.cpus, threads=args.threads,
                        gpus_per_trial=args.gpus_per_trial, pack=not args.no_pack)
    if args.json:
        _print_json(res)
    else:
        print(format_claims(res))
    return 0


def cmd_zoo(args) -> int:
    """The shipped models: list, show one experiment's, build (train and ship), verify against the manifest."""
    from . import zoo

    if args.action in ("list", "show"):
        experiments = zoo.manifest()["experiments"]
        if args.action == "show":
            if len(args.names) != 1 or args.names[0] not in experiments:
                raise ValueError(f"lab zoo show takes one experiment of the zoo: {', '.join(experiments) or 'none'}")
            experiments = {args.names[0]: experiments[args.names[0]]}
        if args.json:
            _print_json(experiments)
            return 0
        for name, e in experiments.items():
            passed = " / ".join(f"{sum(c['passed'] for c in seed)}/{len(seed)}" for seed in e["claims"])
            train_min = sum(m["train_s"] for m in e["models"].values()) / 60
            print(f"{name:24s} scale {e['scale']:5s} {e['seeds']} seed(s), {len(e['models'])} models, claims "
                  f"{passed}, {train_min:.1f} min of training")
            if args.action == "show":
                print(f"  made by: {e['command']} (commit {e['commit']}, {e['built']})")
                for claims in e["claims"][:1]:
                    for c in claims:
                        print(f"  [{'PASS' if c['passed'] else 'MISS'}] {c['claim']}: ours {c['ours']}")
                for m, info in e["models"].items():
                    print(f"  {zoo.PREFIX}{m}: {info['command']}  ({info['steps']} steps, {info['train_s'] / 60:.1f} "
                          f"min on {info['threads']} thread(s))")
                for m in e["uses"]:
                    print(f"  {zoo.PREFIX}{m} (shipped with {m.split('/')[0]})")
        if args.action == "list":
            from probes.zoo import SEEDS

            missing = [n for n in SEEDS if n not in experiments]
            if missing:
                print(f"not shipped yet: {', '.join(missing)} (lab zoo build trains and ships them)")
        return 0
    from probes import zoo as zoo_maker

    if args.action == "build":
        results = zoo_maker.build(args.names or None, quiet=args.quiet or args.json, cpus=args.cpus)
        if args.json:
            _print_json([{"name": r["name"], "claims": r["claims"]} for r in results])
        else:
            from probes.experiments.common import format_claims

            print("\n".join(format_claims(r) for r in results) or "the zoo is complete: nothing to build")
        return 0
    problems = zoo_maker.verify(args.names or None, seeds=args.seeds)
    if args.json:
        _print_json({"ok": not problems, "problems": problems})
    else:
        print("\n".join(problems) if problems else f"the zoo holds: {len(zoo.models())} models reload and every "
                                                   "claim recomputes as the manifest says")
    return 1 if problems else 0


def cmd_sweep(args) -> int:
    from probes.sweeps import sweep

    from .sweeps import format_summary

    summary = sweep(args.spec, args.args, out=args.out, address=args.address, cpus=args.cpus, threads=args.threads or 1,
                    gpus_per_trial=args.gpus_per_trial, pack=not args.no_pack, pack_lr=args.pack_lr,
                    quiet=args.quiet or args.json)
    if args.json:
        _print_json(summary)
    else:
        print(format_summary(summary))
    return 1 if summary["failed"] else 0


def _add_executor_options(p, pack_lr: bool = True) -> None:
    """The executor's options, shared by `lab sweep` and `lab reproduce`."""
    p.add_argument("--address", help="an existing Ray cluster: auto, HOST:PORT or ray://HOST:PORT (default: an "
                                     "embedded local cluster; run folders must be on storage every node shares)")
    p.add_argument("--cpus", type=int, help="cores of the embedded cluster (default: all of this machine's)")
    p.add_argument("--threads", type=int, help="torch threads (and cores) per trial (default 1; lab reproduce: the "
                                               "cores shared out among its trainings when they are fewer)")
    p.add_argument("--gpus-per-trial", type=float, help="GPUs each trial asks Ray for (default: 1 where this machine "
                                                        "has a GPU, else 0; give it for a cluster with GPUs)")
    p.add_argument("--no-pack", action="store_true", help="train seeds as separate trials, not packed into ensembles")
    if pack_lr:
        p.add_argument("--pack-lr", action="store_true", help="also pack trials that differ in train.lr")


def cmd_probe(args) -> int:
    from probes.inspect import PROBES, probe_run

    res = probe_run(_load(args), args.kind, n_prompts=args.n_prompts)
    if args.json:
        _print_json(res)
    else:
        print(PROBES[args.kind].format(res))
    return 0


def cmd_export(args) -> int:
    """A run's model for other tools: TransformerLens (a HookedTransformer's config and weights) or a shareable
    run folder whose weights are safetensors (config.json + model.safetensors, loadable with lab.load_run)."""
    from pathlib import Path

    from . import export

    run = _load(args)
    default = "transformer-lens" if args.to == "transformer-lens" else "shared"
    out = Path(args.out) if args.out else run.out / "export" / default
    if args.to == "transformer-lens":
        folder = export.write_transformer_lens(run, out)  # refuses, in one line, before anything is written
        load = f"lab.export.load_transformer_lens({str(folder)!r})"
    else:
        folder = export.write_run_safetensors(run, out)
        load = f"lab.load_run({str(folder)!r})"
    if args.json:
        _print_json({"run": str(run.path), "to": args.to, "out": str(folder), "load": load})
    else:
        print(f"wrote {folder}; load it with {load}")
    return 0


def cmd_dashboard(args) -> int:
    """Serve the Streamlit dashboard on localhost (headless; the file watcher off: it trips over torch) until
    Ctrl-C or SIGTERM; the server, and any job started from its pages, is stopped with this command."""
    from pathlib import Path

    import app
    from app import jobs

    from .processes import run_owned

    main_py = Path(app.__file__).parent / "main.py"
    cmd = [sys.executable, "-m", "streamlit", "run", str(main_py), "--server.headless", "true",
           "--server.fileWatcherType", "none", "--server.address", args.address, "--server.port", str(args.port),
           "--browser.gatherUsageStats", "false", "--client.showErrorDetails", "type",  # no tracebacks on pages
           "--client.toolbarMode", "minimal"]  # a local lab, not an app to deploy: no Deploy button, no dev menu
    print(f"the lab's dashboard: http://{args.address}:{args.port}  (runs from {runs_root()}; Ctrl-C stops it)",
          flush=True)
    code = run_owned(cmd, env={**os.environ, jobs.OWNER_ENV: str(os.getpid())})
    stopped = jobs.stop_owned(os.getpid())
    if stopped:
        print(f"stopped the dashboard's jobs {', '.join(stopped)} (each resumes with its own command)",
              file=sys.stderr)
    return 0 if code in (130, 143) else code


class _Parser(argparse.ArgumentParser):
    """argparse with its usage errors as one line (what was wrong, where the choices are), exit code 2."""

    def error(self, message):
        self.exit(2, f"lab: error: {message} (see: {self.prog} --help)\n")


PROBE_KINDS = {"match": "best GD/ridge/OLS by SPD (Akyurek)", "readout": "per-layer Newton/GD iterations (Fu)",
               "probe": "R^2 of w_OLS and X^T y per layer (Akyurek)",
               "construction": "LSA weights vs the GD construction (von Oswald)",
               "search": "reachable sets per layer and the attention trace of a graph-search run (Saparov)",
               "lens": "logit lens and trained read-outs: error by layer and k",
               "dla": "direct attribution of the query prediction to heads, MLPs, embeddings",
               "patching": "exact vs attribution patching, and path patching between heads",
               "ablation": "each head zero-ablated: the ICL curve without it, heads ranked"}
N_PROMPTS_HELP = "fresh prompts to evaluate on (default %(default)s)"


def build_parser() -> argparse.ArgumentParser:
    from probes.experiments import names as experiment_names

    parser = _Parser(prog="lab", description="Train small transformers on in-context tasks and compare them with "
                     "the algorithms they might be running.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name, fn, help, json=True):
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(func=fn)
        if json:
            p.add_argument("--json", action="store_true", help="print the numbers as JSON, last on stdout")
        return p

    p = add("demo", cmd_demo, f"train {DEMO_PRESET} on the CPU, evaluate it, show the curve")
    p.add_argument("--out", help="run folder (default: a new folder under $LAB_RUNS or ./runs)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--n-prompts", type=int, default=1280, help=N_PROMPTS_HELP)

    p = add("train", cmd_train, "train a preset (ensemble=E: E models at once); an existing --out resumes")
    p.add_argument("preset", help=f"one of {', '.join(preset_names())}, or a .toml/.json config file (a run's "
                                  "config.json resumes that run with --out its folder)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. train.steps=500 model.n_layers=2 "
                   "train.threads=1 (keys: task.*, model.*, train.*, curriculum.*, ensemble.*)")
    p.add_argument("--out", help="run folder (default: a new folder under $LAB_RUNS or ./runs)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = add("eval", cmd_eval, "ICL curve of a run against the baselines; writes eval/ and figures/")
    p.add_argument("run", help="a run folder")
    p.add_argument("--member", type=int, help="member i of an ensemble run (its folder RUN/members/i)")
    p.add_argument("--n-prompts", type=int, default=1280, help=N_PROMPTS_HELP)

    add("runs", cmd_runs, "list the runs under $LAB_RUNS (default ./runs), and the folders skipped and why")

    names = experiment_names()
    p = add("reproduce", cmd_reproduce, "run a paper reproduction and check its claims")
    p.add_argument("name", metavar="NAME", help=f"one of {', '.join(names)}")
    p.add_argument("--scale", choices=["quick", "paper", "zoo"], default="quick",
                   help="quick: a CPU in minutes; paper: the original setting (a GPU); zoo: the recipe of the shipped "
                        "models (lab zoo show NAME)")
    p.add_argument("--out", help="folder (default $LAB_RUNS/reproduce-NAME-SCALE; re-running resumes)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--seeds", type=int, default=1, help="run the whole experiment on N seeds; each claim is reported "
                                                        "as passed in m of N, with its mean and 90%% interval")
    p.add_argument("--zoo", action="store_true", help="analyse the shipped models (lab zoo list) instead of "
                                                      "training: seconds; results to $LAB_RUNS/zoo/NAME")
    _add_executor_options(p, pack_lr=False)

    p = add("zoo", cmd_zoo, "the trained models shipped with the lab: list, show NAME, build [NAME ...], verify")
    p.add_argument("action", choices=["list", "show", "build", "verify"], metavar="ACTION",
                   help="list | show NAME | build [NAME ...] (train through the executor and ship into lab/zoo/; "
                        "resumes) | verify [NAME ...] (reload the models, recompute every claim; exit 1 naming what "
                        "differs)")
    p.add_argument("names", nargs="*", metavar="NAME", help="experiments (default: all)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--cpus", type=int, help="build: cores to train on (default: all of this machine's)")
    p.add_argument("--seeds", type=int, help="verify: recompute the first N seed replicas of each experiment "
                                             "(default: all)")

    p = add("sweep", cmd_sweep, "train a grid or random draws of overrides over seeds, in parallel on Ray")
    p.add_argument("spec", metavar="SPEC", help="a sweep spec .toml file, or a preset name followed by inline "
                   "key=v1,v2 (a grid axis), key=v (fixed), seeds=0..4, metrics=loss,curves.model.mean[d]")
    p.add_argument("args", nargs="*", metavar="key=values", help="inline spec arguments (after a preset name)")
    p.add_argument("--out", help="sweep folder (default $LAB_RUNS/sweep-NAME; re-running skips finished trials)")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    _add_executor_options(p)

    p = add("probe", cmd_probe, f"look inside a trained run: {', '.join(PROBE_KINDS)}")
    p.add_argument("run", help="a run folder")
    p.add_argument("--member", type=int, help="member i of an ensemble run (its folder RUN/members/i)")
    p.add_argument("kind", choices=list(PROBE_KINDS), metavar="KIND",
                   help="; ".join(f"{k}: {v}" for k, v in PROBE_KINDS.items()))
    p.add_argument("--n-prompts", type=int, default=1000, help=N_PROMPTS_HELP)

    p = add("export", cmd_export, "write a run's model for TransformerLens, or as a run folder with safetensors "
                                  "weights only (no pickle)")
    p.add_argument("run", help="a run folder")
    p.add_argument("--to", choices=["transformer-lens", "safetensors"], default="transformer-lens",
                   help="transformer-lens: config.json + model.safetensors for lab.export.load_transformer_lens "
                        "(softmax attention, causal or no mask); safetensors: config.json + model.safetensors, a run "
                        "folder lab.load_run reads (default %(default)s)")
    p.add_argument("--member", type=int, help="member i of an ensemble run (its folder RUN/members/i)")
    p.add_argument("--out", help="folder to write (default RUN/export/transformer-lens or RUN/export/shared; for a "
                                 "zoo model, under $LAB_RUNS/zoo/NAME)")

    p = add("dashboard", cmd_dashboard, "serve the Streamlit dashboard on localhost (reads $LAB_RUNS) until Ctrl-C",
            json=False)
    p.add_argument("--port", type=int, default=8501, help="TCP port to serve on (default %(default)s)")
    p.add_argument("--address", default="localhost",
                   help="address to listen on (default %(default)s; 0.0.0.0 serves every interface)")

    p = add("bench", cmd_bench, "benchmarks, ours vs the obvious alternative in the same process")
    p.add_argument("kind", choices=["attention", "train", "model", "threads", "sweep", "hyena"], metavar="KIND",
                   help="attention: Triton kernel fwd+bwd vs SDPA (CUDA; writes the table backend=auto reads); "
                        "train: ensembles of E models vs E solo runs; model: one training step vs "
                        "torch.nn.TransformerEncoder; threads: CPU training with the trainer's default threads vs "
                        "torch's, alone and beside a second training; sweep: `lab reproduce EXPERIMENT` through "
                        "the executor vs its trainings one after another, and N seeds packed vs separate trials; "
                        "hyena: Hyena's convolutions (Toeplitz below 64 tokens, FFT above) vs FFT and nn.Conv1d")
    p.add_argument("--preset", help=f"train, threads: tiny-linreg (default); model: garg-linreg (default); one of "
                                    f"{', '.join(preset_names())}")
    p.add_argument("--steps", type=int, default=20, help="timed steps (train, model) or repetitions (attention, hyena)")
    p.add_argument("--sizes", default="1,4,16,64", help="train: ensemble sizes E")
    p.add_argument("--experiment", default="teaching-sequences", help="sweep: the experiment (default %(default)s)")
    p.add_argument("--seeds", type=int, default=8, help="sweep: seeds of tiny-linreg, packed vs separate (default 8)")
    p.add_argument("--trial-steps", type=int, default=500, help="sweep: training steps per seed (default 500)")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="train, threads: config overrides, e.g. model.d_model=32 train.threads=2")
    return parser


def _interrupted(e: KeyboardInterrupt, argv: list[str]) -> str:
    """What to type to resume: the same command with --out naming the run folder it trained into."""
    if not isinstance(e, TrainingInterrupted):
        return "run the same command again to resume"
    args = list(argv)
    if "--out" not in args and not any(a.startswith("--out=") for a in args):
        args += ["--out", str(e.out)]
    return f"the last checkpoint of {e.out} is kept; resume: {shlex.join(['lab', *args])}"


def _sigterm_as_interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    for name in ("n_prompts", "steps", "cpus", "threads", "seeds", "trial_steps"):
        value = getattr(args, name, None)
        if value is not None and value < 1:
            print(f"lab: error: --{name.replace('_', '-')} must be an integer >= 1; got {getattr(args, name)}",
                  file=sys.stderr)
            return 2
    threads, cores = getattr(args, "threads", None), getattr(args, "cpus", None) or os.cpu_count() or 1
    if threads and not getattr(args, "address", None) and threads > cores:  # before any folder is claimed
        print(f"lab: error: --threads {threads} is more than the {cores} cores of the embedded cluster: no trial "
              f"could start; give --threads 1..{cores}", file=sys.stderr)
        return 2
    # SIGTERM stops a training like Ctrl-C (status written, checkpoint kept); the dashboard owns its own signals.
    # SIGINT is Ctrl-C even where the parent ignored it (a script's background job inherits SIGINT ignored, and
    # Python then leaves it so): the dashboard's stop button and `kill -INT` must still stop a training cleanly
    own_sigterm = args.func is not cmd_dashboard and threading.current_thread() is threading.main_thread()
    if own_sigterm:
        previous = signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
        previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return args.func(args)
    except (ConfigError, FileNotFoundError, ValueError, OSError) as e:  # RunFileError, RunLocked: ValueErrors
        if os.environ.get("LAB_DEBUG"):
            raise
        what = f"{e.filename}: {e.strerror}" if isinstance(e, OSError) and e.filename and e.strerror else e
        print(f"lab: error: {what}", file=sys.stderr)
        return 2
    except TrainingDiverged as e:
        print(f"lab: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as e:
        print(f"\nlab: interrupted; {_interrupted(e, argv)}", file=sys.stderr)
        return 130
    except Exception as e:  # a bug of ours: still one line, the traceback on request
        if os.environ.get("LAB_DEBUG"):
            raise
        print(f"lab: error: internal error ({type(e).__name__}: {e}); LAB_DEBUG=1 shows the traceback",
              file=sys.stderr)
        return 1
    finally:
        if own_sigterm:
            signal.signal(signal.SIGTERM, previous)
            signal.signal(signal.SIGINT, previous_int)


if __name__ == "__main__":
    sys.exit(main())
