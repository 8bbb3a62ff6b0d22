"""Sweeps on real Ray (an embedded cluster shared by these tests; a separately started head for --address): trial
folders equal solo `lab train` runs, packing gives the same members, a re-run trains nothing, a killed worker's
trial is retried from its checkpoint to the same weights, a diverging trial is reported and the rest finish."""
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import scipy.stats
import torch

import lab
from lab.cli import main
from lab.config import ConfigError
from lab.executor import plan_jobs, trial
from lab.runlock import LOCK, holder
from lab.runs import safe_torch_load
from lab.stats import mean_interval
from lab.sweeps import SpecError, metric_value, parse_spec, trials_of
from owned import alive, cmdline, descendants, started_by_session, wait_for, wait_gone
from probes.sweeps import sweep

TINY = {"task.d": 3, "task.n_points": 6, "model.n_layers": 1, "model.d_model": 16, "train.batch_size": 16,
        "train.steps": 50, "train.checkpoint_every": 10, "train.log_every": 10}
INLINE = [f"{k}={v}" for k, v in TINY.items() if k != "model.n_layers"] + ["model.n_layers=1,2",
                                                                            "train.lr=1e-3,3e-3", "seeds=0..1"]
LAB = str(Path(sys.executable).with_name("lab"))


def _weights(run_dir) -> dict:
    return safe_torch_load(Path(run_dir) / "checkpoint.pt")["model"]


def _equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _solo(tmp_path, row: dict) -> dict:
    """The trial's run trained alone with `lab train`, from the same preset and overrides."""
    out = tmp_path / "alone" / row["trial"]
    if not (out / "checkpoint.pt").is_file():
        overrides = [f"{k}={v}" for k, v in {**TINY, **row["overrides"], "train.seed": row["seed"]}.items()]
        assert main(["train", "tiny-linreg", *overrides, "--out", str(out), "--quiet"]) == 0
    return _weights(out)


def _rows(folder) -> list[dict]:
    return [json.loads(line) for line in (Path(folder) / "results.jsonl").read_text().splitlines()]


# ---- the spec, without Ray ---------------------------------------------------------------------------------------
def test_a_toml_spec_and_the_same_inline_arguments_give_the_same_trials(tmp_path):
    toml = tmp_path / "s.toml"
    fixed = "\n".join(f'"{k}" = {v}' for k, v in TINY.items() if k != "model.n_layers")
    toml.write_text(f'preset = "tiny-linreg"\nseeds = "0..1"\n[fixed]\n{fixed}\n[grid]\n"model.n_layers" = [1, 2]\n'
                    f'train.lr = [1e-3, 3e-3]\n')  # unquoted: TOML's nested table, read as the dotted key
    a, b = parse_spec(toml), parse_spec("tiny-linreg", INLINE)
    ta, tb = trials_of(a, tmp_path / "x"), trials_of(b, tmp_path / "x")
    assert len(ta) == 8 and [t.config for t in ta] == [t.config for t in tb]
    assert {t.out.name for t in ta} == {f"n_layers{n}_lr{lr}_seed{s}" for n in (1, 2) for lr in ("0.001", "0.003")
                                        for s in (0, 1)}
    assert {(t.config["model"]["n_layers"], t.config["train"]["lr"], t.seed) for t in ta} == \
        {(n, lr, s) for n in (1, 2) for lr in (1e-3, 3e-3) for s in (0, 1)}


def test_random_draws_are_seeded_within_their_bounds_and_crossed_with_the_grid():
    spec = {"preset": "tiny-linreg", "seeds": [3], "grid": {"model.n_layers": [1, 2]},
            "random": {"draws": 5, "seed": 7, "train.lr": {"log_uniform": [1e-4, 1e-2]},
                       "train.warmup_steps": {"int": [0, 10]}, "model.n_heads": {"choice": [1, 2]}}}
    settings = parse_spec(spec).settings()
    assert len(settings) == 10 and settings == parse_spec(spec).settings()
    assert settings != parse_spec({**spec, "random": {**spec["random"], "seed": 8}}).settings()
    assert all(1e-4 <= s["train.lr"] <= 1e-2 and 0 <= s["train.warmup_steps"] <= 10 and s["model.n_heads"] in (1, 2)
               for s in settings)
    assert [s["train.lr"] for s in settings[:5]] == [s["train.lr"] for s in settings[5:]]  # same draws per grid point


@pytest.mark.parametrize("spec, args, match", [
    ("tiny-linreg", ["train.stepz=5"], "unknown key 'train.stepz'"),
    ("tiny-linreg", ["seeds=4..1"], "seeds must be a range LO..HI"),
    ("tiny-linreg", ["seeds=1,1"], "distinct integers"),
    ("tiny-linreg", ["train.seed=1,2"], "left to the sweep"),
    ("tiny-linreg", ["metrics=curves.model.mean[x]"], "each metric must be"),
    ("tiny-linreg", ["nonsense"], "key=value"),
    ({"preset": "tiny-linreg", "grid": {"train.lr": []}}, [], "grid.train.lr must be a non-empty list"),
    ({"preset": "tiny-linreg", "random": {"train.lr": {"normal": [0, 1]}}}, [], "random.train.lr must be one of"),
    ({"preset": "tiny-linreg", "random": {"train.lr": {"log_uniform": [0, 1]}}}, [], "positive bounds"),
    ({"preset": "tiny-linreg", "grdi": {}}, [], "key 'grdi' must be one of"),
])
def test_bad_specs_stop_with_one_line_naming_the_key(tmp_path, spec, args, match):
    with pytest.raises(ConfigError, match=match) as e:
        trials_of(parse_spec(spec, args), tmp_path / "s")
    assert "\n" not in str(e.value)
    assert not (tmp_path / "s").exists()


def test_the_engine_alone_measures_the_loss_and_refuses_a_curve_metric_before_writing(tmp_path):
    """lab.sweep without the science's measures: `loss` is its own; a metric of `lab eval` stops it in one line
    naming the way to measure it, before any folder is made."""
    args = [f"{k}={v}" for k, v in TINY.items()]
    with pytest.raises(SpecError, match=r"curves.model.mean\[d\].*probes.sweeps.sweep") as e:
        lab.sweep("tiny-linreg", [*args, "metrics=loss,curves.model.mean[d]"], out=tmp_path / "s", quiet=True)
    assert "\n" not in str(e.value) and not (tmp_path / "s").exists()


def test_metric_values_are_read_at_the_named_k():
    curve = {"d": 3, "k": list(range(8)), "curves": {"model": {"mean": [float(10 + k) for k in range(8)]}}}
    assert metric_value("curves.model.mean[d]", curve, None) == 13.0
    assert metric_value("curves.model.mean[2d]", curve, None) == 16.0
    assert metric_value("curves.model.mean[last]", curve, None) == 17.0
    assert metric_value("curves.model.mean[5]", curve, None) == 15.0
    assert metric_value("d", curve, None) == 3.0
    for bad, match in [("curves.model.mean[3d]", "k = 9 is not on the curve"), ("curves.ols.mean[d]", "no field 'ols'"),
                       ("curves.model.mean", "is a curve")]:
        with pytest.raises(ValueError, match=match):
            metric_value(bad, curve, None)


def test_the_seed_interval_agrees_with_scipys_percentile_bootstrap():
    x = np.random.default_rng(int(time.time())).normal(2.0, 0.5, size=40)
    ours = mean_interval(x, n_boot=20_000)
    ref = scipy.stats.bootstrap((x,), np.mean, confidence_level=0.9, n_resamples=20_000, method="percentile")
    assert ours["mean"] == pytest.approx(x.mean()) and ours["n"] == 40
    assert ours["lo"] == pytest.approx(ref.confidence_interval.low, abs=0.02)
    assert ours["hi"] == pytest.approx(ref.confidence_interval.high, abs=0.02)
    assert mean_interval([0.5]) == {"mean": 0.5, "lo": 0.5, "hi": 0.5, "n": 1}
    assert mean_interval([None, float("nan")])["n"] == 0


def test_packing_groups_seeds_per_setting_and_keeps_the_cores_busy(tmp_path):
    def trials(overrides_list):
        return [trial(tmp_path / f"t{i}", "tiny-linreg", o, group=str(sorted((k, v) for k, v in o.items()
                                                                             if k != "train.seed")))
                for i, o in enumerate(overrides_list)]

    five = trials([{"train.seed": s} for s in range(5)])
    assert [len(j.trials) for j in plan_jobs(five, slots=2)] == [3, 2]  # CPU: two packs for two cores
    assert [len(j.trials) for j in plan_jobs(five, slots=2, gpu=True)] == [5]  # a GPU: one ensemble
    assert [len(j.trials) for j in plan_jobs(five, pack=False, slots=2)] == [1] * 5
    job = plan_jobs(five, slots=1)[0]
    assert job.config["ensemble"] == {"size": 5, "seeds": [0, 1, 2, 3, 4], "lrs": []}
    mixed = trials([{"train.seed": s, "train.lr": lr} for s in (0, 1) for lr in (1e-3, 2e-3)])
    assert sorted(len(j.trials) for j in plan_jobs(mixed, slots=1)) == [2, 2]  # lr differs: separate packs
    (both,) = plan_jobs(mixed, slots=1, pack_lr=True)  # --pack-lr: one ensemble, each member its own lr
    assert both.config["ensemble"] == {"size": 4, "seeds": [0, 0, 1, 1], "lrs": [1e-3, 2e-3, 1e-3, 2e-3]}
    lstm = trials([{"train.seed": s, "model.arch": "lstm"} for s in (0, 1)])
    assert [len(j.trials) for j in plan_jobs(lstm, slots=1)] == [1, 1]  # cannot be stacked: trained one by one


# ---- on Ray ------------------------------------------------------------------------------------------------------
def test_a_grid_sweep_equals_solo_runs_packing_gives_the_same_members_and_a_rerun_trains_nothing(
        tmp_path, ray_session, capsys):
    args = INLINE + ["metrics=loss,curves.model.mean[d]", "eval_prompts=64"]
    unpacked = sweep("tiny-linreg", args, out=tmp_path / "unpacked", pack=False, quiet=True)
    rows = _rows(tmp_path / "unpacked")
    assert unpacked["trials"] == 8 and unpacked["done"] == 8 and not unpacked["failed"]
    for row in rows:
        assert row["status"] == "done" and row["step"] == 50 and row["packed_in"] is None
        assert _equal(_weights(row["run_dir"]), _solo(tmp_path, row)), row["trial"]  # bit for bit
        assert set(row["metrics"]) == {"loss", "curves.model.mean[d]"}
        curve = json.loads((Path(row["run_dir"]) / "eval" / "icl_curve.json").read_text())
        assert row["metrics"]["curves.model.mean[d]"] == curve["curves"]["model"]["mean"][curve["d"]]
    assert len(unpacked["settings"]) == 4 and all(s["seeds"] == [0, 1] for s in unpacked["settings"])
    for s in unpacked["settings"]:
        values = [r["metrics"]["loss"] for r in rows if r["overrides"] == s["overrides"]]
        assert s["metrics"]["loss"]["mean"] == pytest.approx(np.mean(values))
        assert min(values) <= s["metrics"]["loss"]["lo"] <= s["metrics"]["loss"]["hi"] <= max(values)
    assert (tmp_path / "unpacked" / "figures" / "curves.model.mean_d.png").read_bytes()[:4] == b"\x89PNG"

    packed = sweep("tiny-linreg", args, out=tmp_path / "packed", quiet=True)
    assert packed["done"] == 8
    for p, u in zip(_rows(tmp_path / "packed"), rows):
        assert p["trial"] == u["trial"] and p["packed_in"] and p["run_dir"].startswith(p["packed_in"])
        a, b = _weights(p["run_dir"]), _weights(u["run_dir"])
        for name in a:  # an ensemble member equals its solo run to round-off (tests/lab/test_ensemble.py)
            if not name.endswith("W_K.bias"):  # softmax ignores key biases: their round-off steps are free
                torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=1e-5, msg=name)

    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "unpacked").rglob("checkpoint.pt")}
    t0 = time.perf_counter()
    again = sweep("tiny-linreg", args, out=tmp_path / "unpacked", pack=False, quiet=True)
    took = time.perf_counter() - t0
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # nothing trained again
    assert [s["metrics"] for s in again["settings"]] == [s["metrics"] for s in unpacked["settings"]]
    with capsys.disabled():
        print(f"\n  re-running the finished 8-trial sweep took {took:.2f} s")


def test_a_worker_killed_mid_trial_is_retried_from_its_checkpoint_to_the_same_weights(tmp_path, ray_session):
    long = {**TINY, "train.steps": 400, "train.checkpoint_every": 20}
    spec = {"preset": "tiny-linreg", "fixed": long, "grid": {"train.lr": [1e-3, 2e-3]}, "seeds": [0]}
    folder = tmp_path / "sweep"
    done = {}
    worker = threading.Thread(target=lambda: done.update(sweep(spec, out=folder, pack=False, quiet=True)))
    worker.start()
    victim = folder / "trials" / "lr0.001_seed0"

    found = {}

    def training_mid_way() -> bool:  # past step 60, with its trainer's pid in the run lock
        rows = [json.loads(x) for x in (victim / "metrics.jsonl").read_text().splitlines()] \
            if (victim / "metrics.jsonl").is_file() else []
        lock = (victim / ".lock").read_text() if (victim / ".lock").is_file() else ""
        if lock and rows and rows[-1]["step"] >= 60:
            found["pid"] = json.loads(lock)["pid"]
        return "pid" in found

    assert wait_for(training_mid_way, timeout=120)
    pid = found["pid"]
    assert pid != os.getpid()  # a Ray worker's process, not this one
    os.kill(pid, signal.SIGKILL)
    worker.join(timeout=300)
    assert not alive(pid) and done["done"] == 2 and not done["failed"]
    steps = [json.loads(x)["step"] for x in (victim / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)) and steps[-1] == 400  # resumed: no step logged twice
    reference = lab.train("tiny-linreg", {**long, "train.lr": 1e-3}, out=tmp_path / "uninterrupted", quiet=True)
    assert _equal(_weights(victim), _weights(reference.path))
    assert safe_torch_load(victim / "checkpoint.pt")["step"] == 400


def test_a_diverging_trial_is_reported_in_one_line_and_the_others_finish(tmp_path, ray_session):
    spec = {"preset": "tiny-linreg", "fixed": {**TINY, "train.grad_clip": 0.0, "train.warmup_steps": 0},
            "grid": {"train.lr": [1e-3, 1e12]}, "seeds": "0..1"}
    summary = sweep(spec, out=tmp_path / "s", pack=False, quiet=True)
    rows = {(r["overrides"]["train.lr"], r["seed"]): r for r in _rows(tmp_path / "s")}
    assert summary["done"] == 2 and len(summary["failed"]) == 2
    for seed in (0, 1):
        assert rows[1e-3, seed]["status"] == "done"
        bad = rows[1e12, seed]
        assert bad["status"] == "diverged" and "\n" not in bad["error"] and "training stopped at step" in bad["error"]
    bad_setting = [s for s in summary["settings"] if s["overrides"] == {"train.lr": 1e12}][0]
    assert bad_setting["failed"] == 2 and bad_setting["metrics"]["loss"]["n"] == 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_sweep_by_address_on_a_separately_started_ray_head_gives_the_same_trials(tmp_path):
    port = _free_port()
    head = subprocess.Popen([str(Path(sys.executable).with_name("ray")), "start", "--head", f"--port={port}",
                             "--num-cpus=2", "--include-dashboard=false", "--disable-usage-stats", "--block"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        def listening():
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", port)) == 0
        assert wait_for(listening, timeout=60)
        time.sleep(2)  # the head's raylet registers just after its GCS listens
        args = [f"{k}={v}" for k, v in TINY.items()] + ["train.lr=1e-3,3e-3", "seeds=0..1"]
        out = subprocess.run([LAB, "sweep", "tiny-linreg", *args, "--address", f"127.0.0.1:{port}", "--out",
                              str(tmp_path / "by-address"), "--no-pack", "--json", "--quiet"],
                             capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        summary = json.loads(out.stdout.strip().splitlines()[-1])
        assert summary["done"] == 4 and not summary["failed"]
    finally:
        os.killpg(head.pid, signal.SIGTERM)  # `ray start --block` stops the head's processes on SIGTERM
        head.wait(timeout=60)
    assert wait_for(lambda: not any(alive(p) for p in _group(head.pid)), timeout=60)
    for row in _rows(tmp_path / "by-address"):
        assert _equal(_weights(row["run_dir"]), _solo(tmp_path, row))


def _group(pgid: int) -> list[int]:
    found = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if os.getpgid(int(p.name)) == pgid:
                    found.append(int(p.name))
            except OSError:
                pass
    return found


KILLED_VAR = "LAB_TEST_KILLED_SWEEP"  # marks a `lab sweep` a test kills: every process it starts inherits it


def _marked_env() -> dict:
    return {**os.environ, KILLED_VAR: uuid.uuid4().hex}


def _files(folder: Path):
    for root, _, names in os.walk(folder):
        for name in names:
            yield Path(root) / name


def _cluster_up_no_trainer_yet(out: Path, proc) -> bool:
    names = {cmdline(p) for p in descendants(proc.pid)}
    return any("raylet" in n for n in names) and not (out / "trials").exists()


def _writing_a_checkpoint(out: Path, proc) -> bool:
    return any(f.name.endswith(".tmp") and f.parent.parent.name == "trials" for f in _files(out))  # lab.runs


def _packed_ensemble_training(out: Path, proc) -> bool:
    for f in _files(out):
        if f.name == "status.json" and (f.parent / "config.json").is_file():
            packed = json.loads((f.parent / "config.json").read_text())["ensemble"]["size"] > 1
            if packed and json.loads(f.read_text() or "{}").get("step", 0) >= 20:
                return True
    return False


KILL_POINTS = {  # where the driver dies: its sweep settings and the moment
    "before-the-first-trial-starts": (["--no-pack"], {}, _cluster_up_no_trainer_yet),
    "mid-checkpoint": (["--no-pack"], {"train.checkpoint_every": 1, "model.d_model": 64, "model.n_layers": 2},
                       _writing_a_checkpoint),
    "while-packed-seeds-train": (["seeds=0..3", "--cpus", "1"], {}, _packed_ensemble_training),
}


@pytest.mark.parametrize("point", KILL_POINTS)
def test_kill_9_of_lab_sweep_at_any_point_leaves_no_process_of_it_and_no_lock_held(tmp_path, point, tally):
    """Wherever kill -9 finds the driver (cluster starting, a trial writing its checkpoint, seeds training packed
    into one ensemble), 10 s later no process the sweep started is alive, however it was started or re-parented
    (found by a mark in its environment, not by the process tree), and no run lock is held: the next sweep can
    take every trial over."""
    extra, changed, moment = KILL_POINTS[point]
    out = tmp_path / "sweep"
    settings = [f"{k}={v}" for k, v in {**TINY, "train.steps": 100000, **changed}.items()]
    cmd = [LAB, "sweep", "tiny-linreg", *settings, "train.lr=1e-3,2e-3", *extra, "--out", str(out), "--quiet"]
    mark = _marked_env()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=mark)
    seen, looked = set(), [0.0]

    def at_the_moment() -> bool:
        if time.monotonic() - looked[0] > 0.2:  # the process tree now and then: the moment itself is polled fast
            seen.update(descendants(proc.pid))
            looked[0] = time.monotonic()
        return moment(out, proc)

    try:
        assert wait_for(at_the_moment, timeout=180, every=0.002), proc.poll()
        seen.update(descendants(proc.pid))
        tally["faults injected"] += 1
        proc.kill()
        proc.wait(timeout=30)
        # found by the mark in their environment (Ray's process titles can overwrite it: also all the test saw)
        left = wait_gone(seen | set(started_by_session(mark[KILLED_VAR], KILLED_VAR)), timeout=10)
        assert not left, [cmdline(p) for p in left]
        held = lambda: [str(f.parent) for f in _files(out) if f.name == LOCK and holder(f.parent) is not None]  # noqa: E731
        assert wait_for(lambda: not held(), timeout=5), held()
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_stopping_lab_sweep_stops_its_cluster_and_the_same_command_resumes_the_trials(tmp_path, sig):
    """SIGTERM to `lab sweep` (as Ctrl-C) or kill -9: its embedded Ray cluster and workers stop with it (SIGTERM:
    it says how to resume), and the same command then finishes every trial with an uninterrupted run's weights."""
    long = {**TINY, "train.steps": 400, "train.checkpoint_every": 20}
    out = tmp_path / "sweep"
    cmd = [LAB, "sweep", "tiny-linreg", *[f"{k}={v}" for k, v in long.items()], "train.lr=1e-3,2e-3", "--no-pack",
           "--out", str(out), "--quiet"]
    mark = _marked_env()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=mark)
    started = set()

    def training() -> bool:
        started.update(descendants(proc.pid))
        status = out / "trials" / "lr0.001_seed0" / "status.json"
        return status.is_file() and json.loads(status.read_text() or "{}").get("step", 0) >= 40

    assert wait_for(training, timeout=120)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    if sig == signal.SIGTERM:
        assert proc.returncode == 130 and "run the same command again to resume" in err, err
    else:
        assert proc.returncode == -signal.SIGKILL
    assert len(started) >= 3  # the cluster's processes and the trial workers, all below `lab sweep`
    assert wait_for(lambda: not any(alive(p) for p in started), timeout=30), [p for p in started if alive(p)]
    left = wait_gone(started_by_session(mark[KILLED_VAR], KILLED_VAR), timeout=10)  # seen by the test or not
    assert not left, [cmdline(p) for p in left]
    # a killed trainer reads as dead (a zombie) while its last threads still exit, holding the run lock a moment
    assert wait_for(lambda: lab.load_run(out / "trials" / "lr0.001_seed0").status["status"] == "interrupted",
                    timeout=10)

    again = subprocess.run(cmd + ["--json"], capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout.strip().splitlines()[-1])["done"] == 2
    reference = lab.train("tiny-linreg", {**long, "train.lr": 1e-3}, out=tmp_path / "uninterrupted", quiet=True)
    assert _equal(_weights(out / "trials" / "lr0.001_seed0"), _weights(reference.path))
