import json
import os
import subprocess
import sys

import pytest
import torch

from lab import kernels
from lab.cli import main

SMALL = ["task.d=3", "task.n_points=5", "model.n_layers=1", "model.d_model=16", "train.batch_size=8",
         "train.steps=20", "train.checkpoint_every=10", "train.log_every=5", "train.warmup_steps=0"]


@pytest.mark.parametrize("args, key", [
    (["train", "tiny-linreg", "train.steps=abc"], "train.steps"),
    (["train", "tiny-linreg", "model.attn=cosine"], "model.attn"),
    (["train", "tiny-linreg", "nosuch.key=1"], "nosuch.key"),
    (["train", "no-such-preset"], "no-such-preset"),
    (["eval", "/no/such/run"], "/no/such/run"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, args, key):
    out = tmp_path / "out"
    code = main(args + (["--out", str(out)] if args[0] == "train" else []))
    err = capsys.readouterr().err.strip()
    assert code == 2 and key in err and err.startswith("lab: error:") and "\n" not in err
    assert not out.exists()


def test_console_script_exit_code(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "lab.cli", "train", "tiny-linreg", "train.lr=-3",
                           "--out", str(tmp_path / "x")], capture_output=True, text=True)
    assert proc.returncode == 2 and "train.lr must be > 0" in proc.stderr
    assert not (tmp_path / "x").exists()


def test_train_eval_runs_json(tmp_path, capsys):
    run_dir = tmp_path / "runs" / "r"
    assert main(["train", "tiny-linreg", *SMALL, "--out", str(run_dir), "--quiet", "--json"]) == 0
    trained = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert trained["run_dir"] == str(run_dir) and trained["step"] == 20

    assert main(["eval", str(run_dir), "--json", "--n-prompts", "64"]) == 0
    curve = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(curve) == {"task", "d", "k", "metric", "curves"}
    assert curve["d"] == 3 and curve["k"] == [0, 1, 2, 3, 4]
    assert {"model", "ols", "averaging", "3-nn", "zero"} <= set(curve["curves"])
    assert set(curve["curves"]["model"]) == {"mean", "lo", "hi"}
    assert json.loads((run_dir / "eval" / "icl_curve.json").read_text()) == curve
    assert (run_dir / "figures" / "icl_curve.png").read_bytes()[:4] == b"\x89PNG"

    assert main(["runs", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [r["run_dir"] for r in rows] == [str(run_dir)] and rows[0]["status"] == "done"


def test_demo_summary_checks_every_k_at_or_above_d():
    from lab.cli import _curve_summary

    curve = {"d": 2, "k": [0, 1, 2, 3], "curves": {
        "model": {"mean": [1.0, 0.9, 0.3, 0.2]}, "ols": {"mean": [1.0, 0.5, 0.0, 0.0]},
        "averaging": {"mean": [1.0, 0.2, 0.6, 0.5]}, "3-nn": {"mean": [1.0, 0.8, 0.7, 0.1]}}}
    s = _curve_summary(curve)
    assert s["ks"] == [2, 3] and s["beats"] == {"averaging": True, "3-nn": False}
    assert s["gap_to_ols_mean"] == 0.25 and s["gap_to_ols_max"] == 0.3


@pytest.mark.parametrize("load, omp, threads", [(0.0, None, "all"), (64.0, None, 1), (0.0, "1", None)])
def test_the_demo_trains_on_the_idle_cores_unless_told_otherwise(monkeypatch, tmp_path, load, omp, threads):
    """A single interactive training takes the cores nothing else uses (on 2 idle cores 18.2 steps/s against 11.9
    on one thread); on a loaded machine one thread; $OMP_NUM_THREADS, when set, decides (the trainer reads it)."""
    import lab.cli

    seen = {}

    def train(preset, overrides, **kw):
        seen["overrides"] = overrides
        raise KeyboardInterrupt  # stop before training: what it was asked to do is the point

    monkeypatch.setattr(lab.cli, "train", train)
    monkeypatch.setattr("os.getloadavg", lambda: (load, load, load))
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    if omp:
        monkeypatch.setenv("OMP_NUM_THREADS", omp)
    main(["demo", "--out", str(tmp_path / "demo"), "--quiet"])
    cores = os.cpu_count()
    expected = [] if threads is None else [f"train.threads={cores if threads == 'all' else threads}"]
    assert seen["overrides"] == expected


def test_bench_json_shape(capsys):
    assert main(["bench", "model", "--preset", "tiny-linreg", "--steps", "1", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["benchmark"] == "model" and result["device"] == "cpu"
    (row,) = result["rows"]
    assert row["baseline"] == "torch.nn.TransformerEncoder"
    assert row["ratio"] == row["baseline_s"] / row["ours_s"]


def test_bench_hyena_times_both_convolutions_against_the_alternatives(capsys):
    assert main(["bench", "hyena", "--steps", "1", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["benchmark"] == "hyena" and len(result["rows"]) == 6
    assert {r["baseline"] for r in result["rows"]} == {"FFT at every length", "nn.Conv1d, trimmed to causal"}
    assert all(r["ratio"] == r["baseline_s"] / r["ours_s"] > 0 for r in result["rows"])


def test_bench_train_compares_ensembles_with_solo_runs(capsys):
    assert main(["bench", "train", "--sizes", "1,3", "--steps", "2", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [r["case"].split(":")[1].split()[0] for r in result["rows"]] == ["E=1", "E=3"]
    for row in result["rows"]:
        assert row["ratio"] == row["baseline_s"] / row["ours_s"] > 0
        assert row["ours_prompts_per_s"] / row["baseline_prompts_per_s"] == pytest.approx(row["ratio"])
    assert main(["bench", "train", "--sizes", "0,x"]) == 2
    assert "--sizes must be ensemble sizes" in capsys.readouterr().err


def test_bench_attention_needs_cuda_or_the_interpreter(capsys, monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert main(["bench", "attention"]) == 2
    assert "needs a CUDA device" in capsys.readouterr().err


def test_bench_attention_rows_under_the_interpreter():
    from lab.bench import bench_attention

    if not kernels.triton_available():
        pytest.skip("triton is not installed")
    result = bench_attention(shapes=[(4, 9, 8)], dtypes=("float32",), reps=1, warmup=0)
    baselines = [r["baseline"] for r in result["rows"]]
    assert baselines[0].startswith("sdpa (") and baselines[1] == "materialised reference"


def test_train_ensemble_and_eval_a_member(capsys, tmp_path):
    out = tmp_path / "ens"
    assert main(["train", "tiny-linreg", "ensemble=2", "train.steps=3", "train.log_every=1", "--out", str(out),
                 "--quiet", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["members"] == 2 and len(result["losses"]) == 2
    assert main(["eval", str(out), "--n-prompts", "64"]) == 2
    assert "add --member i" in capsys.readouterr().err
    assert main(["eval", str(out), "--member", "1", "--n-prompts", "64", "--json"]) == 0
    curve = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (out / "members" / "1" / "eval" / "icl_curve.json").is_file() and len(curve["curves"]["model"]["mean"]) > 1
    assert main(["eval", str(out), "--member", "5"]) == 2
    assert "member must be in 0..1" in capsys.readouterr().err


def test_reproduce_and_probe_refuse_bad_input(capsys, tmp_path):
    assert main(["reproduce", "no-such-experiment"]) == 2
    assert "vo-1layer" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["reproduce", "vo-1layer", "--scale", "huge"])
    assert e.value.code == 2
    assert main(["probe", str(tmp_path / "none"), "match"]) == 2


def test_probe_match_json(tmp_path, capsys):
    run_dir = tmp_path / "r"
    assert main(["train", "tiny-linreg", *SMALL, "--out", str(run_dir), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["probe", str(run_dir), "match", "--json", "--n-prompts", "50"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["kind"] == "match" and set(res["families"]) == {"gd", "ridge", "ols"}
    assert res["best_family"] in res["families"]


def test_layer_probes_refuse_a_stacked_run(tmp_path, capsys):
    run_dir = tmp_path / "vo"
    assert main(["train", "vo-lsa-1layer", "train.steps=2", "train.batch_size=8", "--out", str(run_dir),
                 "--quiet"]) == 0
    assert main(["probe", str(run_dir), "readout"]) == 2
    assert "stacked format" in capsys.readouterr().err
    assert main(["probe", str(run_dir), "match", "--n-prompts", "20"]) == 0
