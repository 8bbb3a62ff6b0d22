"""The second fault audit (sweeps, reproduce, export, the Python API, the embedded Ray cluster): one test or more per
defect, each failing on the code before its fix: the line a user sees, the exit code, and that nothing was written,
overwritten or left listening."""
import io
import json
import subprocess
import sys
import textwrap
import tracemalloc
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
import torch

import lab
import probes
import tasks
from lab import export, runlock
from lab.cli import finite_json, main
from lab.config import machine_memory, make_config
from lab.executor import MAX_PACK, Trial, pack_limit, plan_jobs, trial
from lab.runs import safe_torch_load
from lab.sweeps import SpecError, parse_spec, spec_from_dict, trials_of
from probes.experiments.common import claim_experiment_folder
from probes.sweeps import sweep

SMALL = ["task.d=3", "task.n_points=5", "model.n_layers=1", "model.d_model=16", "train.batch_size=8",
         "train.steps=10", "train.checkpoint_every=10", "train.log_every=5"]


def _cli(args):
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = main([str(a) for a in args])
        except SystemExit as e:
            code = e.code
    return code, out.getvalue(), err.getvalue()


def _refused(result, *needles):
    code, _, err = result
    assert code == 2 and err.startswith("lab: error:") and err.count("\n") == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err


def _snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return lab.train("tiny-linreg", SMALL, out=tmp_path_factory.mktemp("trained") / "run", quiet=True).path


# 1. a folder that holds something else is refused before anything is written ----------------------------------
def _other_sweep(folder: Path) -> dict:
    """A folder as another sweep left it (its spec, rows, summary, figure)."""
    folder.mkdir(parents=True)
    (folder / "sweep.json").write_text(json.dumps({"preset": "tiny-boolean", "seeds": [0], "name": "other"}))
    (folder / "results.jsonl").write_text('{"trial": "a_seed0"}\n')
    (folder / "summary.json").write_text('{"sweep": "other"}')
    (folder / "figures").mkdir()
    (folder / "figures" / "loss.png").write_bytes(b"png")
    return _snapshot(folder)


def test_a_sweep_over_another_sweeps_folder_is_refused_and_changes_nothing(tmp_path, tally):
    before = _other_sweep(tmp_path / "sw1")
    tally["bad inputs tried"] += 1
    _refused(_cli(["sweep", "tiny-linreg", *SMALL, "train.lr=1e-3,3e-3", "--out", tmp_path / "sw1", "--quiet"]),
             "already holds a sweep with other trials", "choose a new or empty folder")
    assert _snapshot(tmp_path / "sw1") == before  # sweep.json included: nothing rewritten before the refusal


@pytest.mark.parametrize("holds", ["another experiment", "a run", "a sweep", "other files"])
def test_reproduce_into_a_folder_holding_something_else_is_refused(tmp_path, holds, run_dir, tally):
    folder = tmp_path / "F"
    if holds == "another experiment":
        folder.mkdir()
        (folder / "result.json").write_text(json.dumps({"name": "garg-classes", "scale": "quick", "claims": []}))
    elif holds == "a run":
        folder = run_dir
    elif holds == "a sweep":
        _other_sweep(folder)
    else:
        folder.mkdir()
        (folder / "notes.txt").write_text("mine")
    before = _snapshot(folder)
    tally["bad inputs tried"] += 1
    _refused(_cli(["reproduce", "svm-rank", "--out", folder, "--quiet"]), "already holds")
    assert _snapshot(folder) == before


def test_an_experiment_folder_of_the_same_experiment_is_resumed(tmp_path):
    claim_experiment_folder(tmp_path / "F", "svm-rank", "quick")
    claim_experiment_folder(tmp_path / "F", "svm-rank", "quick")  # the same experiment again: resumed
    assert json.loads((tmp_path / "F" / "experiment.json").read_text()) == {"name": "svm-rank", "scale": "quick"}
    with pytest.raises(ValueError, match="already holds the results of experiment 'svm-rank' at scale 'quick'"):
        claim_experiment_folder(tmp_path / "F", "svm-rank", "paper")


def test_an_export_over_another_export_or_run_is_refused_and_load_run_still_reads_it(tmp_path, run_dir, tally):
    shared = tmp_path / "shared"
    assert _cli(["export", run_dir, "--to", "safetensors", "--out", shared])[0] == 0
    assert _cli(["export", run_dir, "--to", "safetensors", "--out", shared])[0] == 0  # the same export again
    before = _snapshot(shared)
    tally["bad inputs tried"] += 2
    _refused(_cli(["export", run_dir, "--out", shared]), "already holds a shared run")
    assert _snapshot(shared) == before
    p = tasks.get("linear_regression", d=3).sample(4, 5, seed=1)
    torch.testing.assert_close(lab.load_run(shared).predict(p), lab.load_run(run_dir).predict(p), rtol=0, atol=0)
    other = lab.train("tiny-linreg", SMALL + ["train.seed=7"], out=tmp_path / "other", quiet=True)
    _refused(_cli(["export", other.path, "--to", "safetensors", "--out", shared]), "of another run")
    tally["bad inputs tried"] += 1
    _refused(_cli(["train", "tiny-linreg", *SMALL, "--out", shared]), "already holds a shared run")
    assert _snapshot(shared) == before


# 2. one sweep per folder; equal settings are one trial -----------------------------------------------------------
def test_a_second_sweep_on_a_held_folder_is_refused_naming_the_holder(tmp_path, tally):
    folder = tmp_path / "sw"
    folder.mkdir()
    tally["faults injected"] += 1
    with runlock.hold(folder, doing="swept"):  # a live sweep holds it (this process)
        _refused(_cli(["sweep", "tiny-linreg", *SMALL, "train.lr=1e-3,3e-3", "--out", folder, "--quiet"]),
                 "is being swept by process", "kill -INT")
    assert not (folder / "sweep.json").exists() and not (folder / "results.jsonl").exists()


def test_equal_settings_are_one_trial(tmp_path):
    spec = parse_spec("tiny-linreg", [*SMALL, "train.lr=1e-3,0.001,2e-3", "seeds=0..1"])
    trials = trials_of(spec, tmp_path / "s")
    assert len(trials) == 4 and len({t.out for t in trials}) == 4
    assert sorted({t.config["train"]["lr"] for t in trials}) == [1e-3, 2e-3]


# 3. a padded graph-search model exports with the masking hooks ---------------------------------------------------
def test_a_padded_graph_model_gives_the_same_numbers_in_transformer_lens(tmp_path):
    run = lab.train("graph-search", ["task.n_vertices=7", "train.steps=5", "model.d_model=16", "model.n_layers=2",
                                     "train.checkpoint_every=5"], out=tmp_path / "graph", quiet=True)
    p = run.task.sample(64, seed=int(torch.randint(0, 10**6, ())))
    tokens = run.format.encode(p)
    assert (tokens == tasks.graph_search.PAD).any(), "the prompts must be padded for this test to mean anything"
    with torch.no_grad():
        ours = run.model(tokens, key_padding=tokens != tasks.graph_search.PAD)
        tl = export.to_transformer_lens(run)
        unmasked = tl(tokens)
        toks, hooks = export.read_in(run.model, tokens, pad_token=tasks.graph_search.PAD)
        masked = tl.run_with_hooks(toks, fwd_hooks=hooks)
    assert (unmasked - ours).abs().max() > 1e-4  # TransformerLens alone attends to the padding
    torch.testing.assert_close(masked, ours, rtol=1e-5, atol=1e-5)
    folder = export.write_transformer_lens(run, tmp_path / "tl")
    toks, hooks = export.read_in_from_export(folder, tokens)  # the folder alone: padding.json names the pad token
    with torch.no_grad():
        torch.testing.assert_close(export.load_transformer_lens(folder).run_with_hooks(toks, fwd_hooks=hooks), ours,
                                   rtol=1e-5, atol=1e-5)


# 4. NaN weights are refused; JSON is always JSON; every exported tensor is finite, an unused one zero -----------
def _poisoned(tmp_path: Path) -> Path:
    """A trained run whose checkpoint's first weight tensor is all NaN (a diverged run's last checkpoint)."""
    copy = tmp_path / "nan-run"
    lab.train("tiny-linreg", SMALL, out=copy, quiet=True)
    ckpt = safe_torch_load(copy / "checkpoint.pt")
    name = next(iter(ckpt["model"]))
    ckpt["model"][name] = torch.full_like(ckpt["model"][name], float("nan"))
    torch.save(ckpt, copy / "checkpoint.pt")
    return copy


def test_nan_weights_are_refused_in_one_line_by_eval_and_export(tmp_path, tally):
    nan_run = _poisoned(tmp_path)
    before = _snapshot(nan_run)
    tally["faults injected"] += 1
    for args in (["eval", nan_run], ["eval", nan_run, "--json"], ["export", nan_run],
                 ["export", nan_run, "--to", "safetensors", "--out", tmp_path / "x"]):
        code, out, err = _cli(args)
        _refused((code, out, err), "NaN or infinite weights", "diverged")
        assert out == ""
    assert _snapshot(nan_run) == before and not (tmp_path / "x").exists()
    with pytest.raises(export.ExportError, match="NaN or infinite weights"):
        export.write_transformer_lens(lab.load_run(nan_run), tmp_path / "y")


def test_json_output_is_valid_json_with_non_finite_numbers_as_null():
    obj = {"curves": {"model": {"mean": [1.0, float("nan"), float("inf"), -float("inf")]}}, "k": [0, 1], "t": "x"}
    text = json.dumps(finite_json(obj), allow_nan=False)
    assert json.loads(text, parse_constant=lambda c: pytest.fail(f"bare {c}")) == \
        {"curves": {"model": {"mean": [1.0, None, None, None]}}, "k": [0, 1], "t": "x"}


def test_every_exported_tensor_is_finite_and_the_unused_embedding_is_zero(tmp_path, run_dir):
    run = lab.load_run(run_dir)
    assert run.config.model.input == "vector"
    for i in range(3):  # fresh memory each time: torch.empty would show in one of them
        folder = export.write_transformer_lens(run, tmp_path / f"tl{i}")
        weights, meta = lab.runs.read_safetensors(folder / "model.safetensors")
        assert meta["format"] == "transformer_lens"
        assert all(torch.isfinite(w).all() for w in weights.values())
        assert torch.equal(weights["embed.W_E"], torch.zeros_like(weights["embed.W_E"]))
        tl = export.load_transformer_lens(folder)
        assert all(torch.isfinite(p).all() for p in tl.parameters())
        assert torch.equal(tl.embed.W_E, torch.zeros_like(tl.embed.W_E))


# 5. counted before built; packs bounded by memory ----------------------------------------------------------------
@pytest.mark.parametrize("data, match", [
    ({"preset": "tiny-linreg", "grid": {f"k{i}": list(range(12)) for i in range(8)}}, "at most 10000"),
    ({"preset": "tiny-linreg", "random": {"draws": 100_000_000, "train.lr": {"log_uniform": [1e-4, 1e-2]}}},
     "at most 10000"),
    ({"preset": "tiny-linreg", "seeds": "0..99999999"}, "at most 10000"),
    ({"preset": "tiny-linreg", "seeds": "0..9999", "grid": {"train.lr": [1e-3, 2e-3]}}, "at most 10000"),
])
def test_a_huge_spec_is_refused_before_it_is_built(data, match, tally):
    tally["bad inputs tried"] += 1
    tracemalloc.start()
    try:
        with pytest.raises(SpecError, match=match):
            spec_from_dict(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20 * 2**20, f"{peak / 2**20:.0f} MiB built before the refusal"


def test_ensembles_are_packed_within_the_memory_bound(tmp_path):
    first = trial(tmp_path / "t0", "tiny-linreg", {}, group="g")
    trials = [Trial(tmp_path / f"t{s}", {**first.config, "train": {**first.config["train"], "seed": s}}, "g", {})
              for s in range(600)]  # 600 seeds of one config (built once: the check of 600 configs is slow)
    jobs = plan_jobs(trials, slots=2, gpu=True)  # a GPU packs a whole group, up to the bound
    assert sum(len(j.trials) for j in jobs) == 600 and max(len(j.trials) for j in jobs) <= MAX_PACK
    big = {"model.d_model": 128, "model.n_layers": 4, "train.batch_size": 256, "task.n_points": 64,
           "model.max_len": 256}  # ~270 MB per member by the config check's estimate
    first = trial(tmp_path / "b0", "tiny-linreg", big, group="b")
    trials = [Trial(tmp_path / f"b{s}", {**first.config, "train": {**first.config["train"], "seed": s}}, "b", {})
              for s in range(60)]
    member_bytes, budget = make_config(trials[0].config).memory_bytes(), machine_memory() // 2
    limit = pack_limit(trials[0], slots=2)
    assert 1 <= limit < MAX_PACK and limit * member_bytes * 2 <= budget < (limit + 1) * member_bytes * 2
    jobs = plan_jobs(trials, slots=2, gpu=True)
    assert sum(len(j.trials) for j in jobs) == 60 and max(len(j.trials) for j in jobs) <= limit < 60


def test_reproduce_seeds_are_bounded(tally):
    tally["bad inputs tried"] += 1
    _refused(_cli(["reproduce", "svm-rank", "--seeds", "1000000000", "--quiet"]), "--seeds must be",
             "at most 10000 trainings")


# 6. the embedded cluster listens on loopback only ----------------------------------------------------------------
def test_the_embedded_ray_cluster_listens_on_loopback_only(tmp_path):
    script = textwrap.dedent("""
        import json, os, psutil
        from lab.executor import ray_cluster
        from lab.processes import descendants
        with ray_cluster(cpus=1, gpus=0) as ray:
            ray.get(ray.remote(lambda: os.getpid()).remote())  # a worker started too
            pids = [os.getpid(), *descendants(os.getpid())]
            found = []
            for c in psutil.net_connections(kind="inet"):
                if c.status == psutil.CONN_LISTEN and c.pid in pids:
                    found.append([c.pid, c.laddr.ip, c.laddr.port])
        print(json.dumps(found))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-2000:]
    listening = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(listening) >= 3, listening  # GCS, raylet, workers: the check saw them
    assert all(ip in ("127.0.0.1", "::1", "::ffff:127.0.0.1") for _, ip, _ in listening), listening


# 7. one name check for every entry point -------------------------------------------------------------------------
def test_a_sweep_name_cannot_leave_the_run_store(tmp_path, monkeypatch, tally):
    monkeypatch.setenv("LAB_RUNS", str(tmp_path / "store" / "runs"))
    spec = tmp_path / "esc.toml"
    spec.write_text('name = "x/../../../outside/esc"\npreset = "tiny-linreg"\n[fixed]\n"train.steps" = 5\n')
    tally["bad inputs tried"] += 2
    _refused(_cli(["sweep", spec, "--quiet"]), "name must be one folder name")
    with pytest.raises(SpecError, match="name must be one folder name"):
        lab.sweep({"preset": "tiny-linreg", "name": "../esc"}, quiet=True)
    assert not (tmp_path / "outside").exists() and not (tmp_path / "store").exists()
    odd = tmp_path / "my sweep (v2).toml"  # a default name from an odd file name becomes one folder name
    odd.write_text('preset = "tiny-linreg"\n')
    assert parse_spec(odd).name == "my_sweep__v2_"


# 9. sweep specs: no silent coercion, no silent override, no metric that cannot exist -----------------------------
@pytest.mark.parametrize("data, match", [
    ({"seeds": [0.5, 1.7]}, "seeds must be a range like 0..4 or a list of whole numbers"),
    ({"seeds": [True, False]}, "seeds must be a range like 0..4 or a list of whole numbers"),
    ({"fixed": {"train.lr": 1e-3}, "grid": {"train.lr": [1e-3, 2e-3]}}, "key 'train.lr' must be in one of"),
    ({"grid": {"train.lr": [1e-3]}, "random": {"draws": 2, "train.lr": {"uniform": [0.1, 0.2]}}},
     "key 'train.lr' must be in one of"),
    ({"metrics": ["loss[d]"]}, "each metric must be"),
])
def test_bad_specs_are_refused_not_coerced(data, match, tally):
    tally["bad inputs tried"] += 1
    with pytest.raises(SpecError, match=match):
        spec_from_dict({"preset": "tiny-linreg", **data})


@pytest.mark.parametrize("metric, match", [
    ("foo.bar", "is no number of this task's `lab eval --json`"),
    ("curves.model.mean[99]", r"k = 99, which is not on this task's curve \(k runs 0..4\)"),
    ("curves.model", "must be curves.NAME.STAT"),
    ("curves.model.mean", "is a curve; pick its k"),
    ("curves.nope.mean[d]", "NAME one of model, "),
])
def test_metrics_that_cannot_exist_are_refused_before_training(tmp_path, metric, match, tally):
    tally["bad inputs tried"] += 1
    with pytest.raises(SpecError, match=match) as e:
        sweep("tiny-linreg", [*SMALL, f"metrics={metric}"], out=tmp_path / "s", quiet=True)
    assert "\n" not in str(e.value) and not (tmp_path / "s").exists()


# 10. the Python API names the bad argument -----------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, match", [
    ({"seed": 1.2}, "seed must be an integer in 0..2\\^63 - 1"),
    ({"seed": -1}, "seed must be an integer"),
    ({"seed": 2**70}, "seed must be an integer"),
    ({"seed": True}, "seed must be an integer"),
    ({"seed": 0, "n_points": 2.0}, "n_points must be an integer >= 1"),
    ({"seed": 0, "batch": 0}, "batch must be an integer >= 1"),
])
def test_task_sample_refuses_bad_seeds_and_counts(kwargs, match, tally):
    tally["bad inputs tried"] += 1
    kwargs = {"batch": 2, "n_points": 4, **kwargs}
    for name in ("linear_regression", "boolean", "relu_net"):
        with pytest.raises(ValueError, match=match):
            tasks.get(name).sample(**kwargs)


def test_a_model_and_a_run_refuse_prompts_of_another_shape(run_dir, tally):
    run = lab.load_run(run_dir)  # d = 3
    other = tasks.get("linear_regression", d=5).sample(2, 5, seed=0)
    tally["bad inputs tried"] += 3
    with pytest.raises(ValueError, match=r"prompts must be xs \[B, n, 3\]"):
        run.predict(other)
    with pytest.raises(ValueError, match=rf"this model reads vectors \[B, T, {run.config.model.d_in}\]"):
        run.model.run_with_cache(torch.randn(2, 7, 6))
    with pytest.raises(ValueError, match="this model reads vectors"):
        run.model(torch.randn(7, 4))


@pytest.mark.parametrize("solver, kw", [("ridge", {"lam": 0.1}), ("gd", {"steps": 2, "lr": 0.1}), ("knn", {"k": 1}),
                                        ("ols", {})])
def test_solve_refuses_mismatched_or_non_finite_prompts(solver, kw, tally):
    p = tasks.get("linear_regression", d=3).sample(4, 6, seed=int(torch.randint(0, 10**6, ())))
    tally["bad inputs tried"] += 2
    with pytest.raises(ValueError, match=r"xs \[B, n, d\] and ys \[B, n\] with the same B and n"):
        probes.solve(solver, tasks.Prompts(p.xs, p.ys[:, :4], p.params), **kw)
    xs = p.xs.clone()
    xs[1, 2, 0] = float("nan")
    with pytest.raises(ValueError, match="xs must be finite; 1 entries"):
        probes.solve(solver, tasks.Prompts(xs, p.ys, p.params), **kw)
    assert torch.isfinite(probes.solve(solver, p, **kw)).all()


# 11. Ray's raylet messages never reach stdout -------------------------------------------------------------------
@pytest.mark.parametrize("quiet", [True, False], ids=["quiet", "verbose"])
def test_raylet_messages_go_to_stderr_in_plain_text_or_nowhere(quiet, capsys, ray_session):
    from ray._private import worker

    from lab.executor import ray_cluster

    message = "\x1b[33m(raylet)\x1b[0m A worker died or was killed while executing a task"
    with ray_cluster(quiet=quiet):
        worker.print_to_stdstream({"lines": [message], "pid": "raylet", "is_err": False}, ignore_prefix=False)
    out, err = capsys.readouterr()
    assert out == ""
    assert err == ("" if quiet else "ray: (raylet) A worker died or was killed while executing a task\n")
    assert worker.print_to_stdstream.__name__ == "print_to_stdstream"  # Ray's own printer put back

