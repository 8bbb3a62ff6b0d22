"""One test (or more) per defect of the reliability issue, each failing before the fix: the message a user sees,
the exit code, and that nothing was written, lost or left running."""
import io
import json
import os
import re
import signal
import stat
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
import torch

import lab
from lab.cli import build_parser, main
from owned import wait_for

SMALL = ["task.d=3", "task.n_points=5", "model.n_layers=1", "model.d_model=16", "train.batch_size=8",
         "train.steps=20", "train.checkpoint_every=10", "train.log_every=5"]


def _cli(args):
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = main(args)
        except SystemExit as e:
            code = e.code
    return code, out.getvalue(), err.getvalue()


def _one_line_error(code, err, *needles):
    assert code == 2 and err.startswith("lab: error:") and err.count("\n") == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err


# 1. lab dashboard owns its server -------------------------------------------------------------------------------
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_stopping_lab_dashboard_leaves_no_process(tmp_path, stop, tally):
    from dashboard_server import dashboard  # asserts, on leaving, that lab dashboard exited 0 and left nothing

    tally["faults injected"] += 1
    with dashboard(tmp_path / "runs", stop_signal=stop) as (base, _, proc):
        assert base.startswith("http://127.0.0.1:")


def test_kill_9_of_lab_dashboard_takes_its_server_with_it(tmp_path, tally):
    from dashboard_server import dashboard
    from owned import descendants, wait_gone

    tally["faults injected"] += 1
    with pytest.raises(AssertionError, match="exited -9"):  # the helper's own check: it did not exit 0
        with dashboard(tmp_path / "runs", stop_signal=signal.SIGKILL) as (_, _, proc):
            server = descendants(proc.pid)
    assert server and not wait_gone(server, timeout=5), "the streamlit server outlived a killed lab dashboard"


def test_the_dashboards_jobs_stop_with_it(tmp_path, monkeypatch):
    """A job started from a page (a training) belongs to the `lab dashboard` that served the page."""
    from app import jobs

    monkeypatch.setenv(jobs.OWNER_ENV, "4242")
    out = tmp_path / "runs" / "job-run"
    jobs.start("train-job-run", ["train", "tiny-linreg", *SMALL[:-3], "train.steps=1000000",
                                 "train.checkpoint_every=100", "--out", str(out), "--quiet"])
    # the first checkpoint's status written too (a stop between the two writes leaves no status to mark interrupted)
    assert wait_for(lambda: (out / "status.json").is_file()) and jobs.state("train-job-run")["running"]
    assert jobs.stop_owned(9999) == [] and jobs.state("train-job-run")["running"]  # another dashboard's: kept
    assert jobs.stop_owned(4242) == ["train-job-run"]
    assert not jobs.state("train-job-run")["running"]
    assert lab.load_run(out).status["status"] == "interrupted"  # SIGINT: it wrote its status on the way out


# 3. --out that cannot be a run folder ---------------------------------------------------------------------------
@pytest.mark.parametrize("where, needle", [("file", "is a file, not a folder"), ("under-file", "which is a file"),
                                           ("proc", "cannot be"), ("sys", "cannot be")])
def test_an_unusable_out_is_one_line_and_nothing_is_written(tmp_path, where, needle, tally):
    tally["bad inputs tried"] += 1
    (tmp_path / "a-file").write_text("mine")
    out = {"file": tmp_path / "a-file", "under-file": tmp_path / "a-file" / "run",
           "proc": Path("/proc/lab-no-such-run"), "sys": Path("/sys/lab-no-such-run/run")}[where]
    before = sorted(p.name for p in tmp_path.iterdir())
    for args in (["train", "tiny-linreg", *SMALL, "--out", str(out)], ["demo", "--out", str(out)],
                 ["reproduce", "vo-1layer", "--out", str(out)]):
        code, _, err = _cli(args)
        _one_line_error(code, err, str(out), needle)
    assert sorted(p.name for p in tmp_path.iterdir()) == before and (tmp_path / "a-file").read_text() == "mine"


# 4. one bad folder never hides the others -----------------------------------------------------------------------
def test_lab_runs_lists_every_good_run_and_each_bad_folder_with_its_reason(tmp_path):
    root = Path(os.environ["LAB_RUNS"])
    for name in ("a", "b", "c", "d"):
        lab.train("tiny-linreg", SMALL, out=root / name, quiet=True)
    (root / "b" / "status.json").write_text("")
    (root / "c" / "config.json").write_text('{"model": {"d_model": ')
    (root / "d" / "config.json").write_text('{"train": {"lr": "fast"}}')
    proc = subprocess.run([sys.executable, "-m", "lab.cli", "runs"], capture_output=True, text=True,
                          env={**os.environ, "PYTHONWARNINGS": "default"})
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr  # no raw UserWarning
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 4 and "done" in lines[0] and str(root / "a") in lines[0]
    assert f"skipped: {root / 'b' / 'status.json'} is empty" in proc.stdout
    assert f"skipped: {root / 'c' / 'config.json'} is not valid JSON" in proc.stdout
    assert f"skipped: {root / 'd' / 'config.json'} is not a config the lab can use: train.lr must be a number" \
        in proc.stdout
    code, out, _ = _cli(["runs", "--json"])
    rows = json.loads(out.strip().splitlines()[-1])
    assert [r["status"] for r in rows] == ["done", "skipped", "skipped", "skipped"]


# 7. values that pass a type check but cannot work; divergence advice that fits ----------------------------------
@pytest.mark.parametrize("override", ["train.lr=inf", "train.lr=nan", "model.init_std=inf", "task.noise_std=nan",
                                      "ensemble.lrs=1e-3,inf", "train.beta1=nan", "model.init_std=-inf",
                                      "model.d_model=1048576", "train.batch_size=1000000000",
                                      "train.lr=3.8e94", "task.w_std=1e39"])
def test_non_finite_or_impossible_values_are_refused(tmp_path, override, tally):
    tally["bad inputs tried"] += 1
    code, _, err = _cli(["train", "tiny-linreg", override, "--out", str(tmp_path / "r")])
    _one_line_error(code, err, override.split("=")[0].split(".")[-1])
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("clip", [0, 1])
def test_divergence_advice_fits_the_config_and_eval_names_the_checkpoint_it_scores(tmp_path, clip):
    out = tmp_path / "r"
    code, _, err = _cli(["train", "tiny-linreg", *SMALL, "train.lr=1e7", f"train.grad_clip={clip}",
                         "train.warmup_steps=0", "--out", str(out), "--quiet"])
    assert code == 1 and "training stopped at step" in err and "lower train.lr (now 1e+07; e.g. train.lr=1e+06)" in err
    assert ("train.grad_clip=1" in err) == (clip == 0), err
    assert "train.warmup_steps=" in err
    status = json.loads((out / "status.json").read_text())
    good = torch.load(out / "checkpoint.pt", weights_only=True)["step"]
    code, _, err = _cli(["eval", str(out), "--n-prompts", "32"])
    assert code == 0 and f"diverged at step {status['step']}; this scores its last good checkpoint, at step {good}" \
        in err


def test_an_init_too_large_for_float32_says_so_and_leaves_no_folder(tmp_path):
    code, _, err = _cli(["train", "tiny-linreg", *SMALL, "model.init_std=1e38", "--out", str(tmp_path / "r")])
    assert code == 1 and "model.init_std = 1e+38 gives weights float32 cannot hold; lower it" in err, err
    assert not (tmp_path / "r").exists()


# 8. run names from the dashboard stay inside the run store ------------------------------------------------------
@pytest.mark.parametrize("name", ["../escaped", "ABSOLUTE", "a/b", "..", ".hidden", "x" * 300])
def test_the_new_run_form_refuses_names_outside_the_store(tmp_path, name, tally):
    from streamlit.testing.v1 import AppTest

    tally["bad inputs tried"] += 1
    absolute = tmp_path / "absolute-run"
    name = str(absolute) if name == "ABSOLUTE" else name
    main_py = str(Path(__file__).parents[2] / "app" / "main.py")
    root = Path(os.environ["LAB_RUNS"])
    root.mkdir(parents=True)
    at = AppTest.from_file(main_py, default_timeout=60)
    at.run()
    at.switch_page("views/runs.py")  # the form is on the Runs page (the landing page comes first)
    at.run()
    at.text_input(key="overrides").input("train.steps=5")
    at.text_input(key="run_name").input(name)
    next(b for b in at.button if b.label == "Start training").click().run()
    assert not at.exception and any("must be one folder name" in e.value for e in at.error)
    assert not (root / ".dashboard").exists() and not absolute.exists()
    assert not (tmp_path / "escaped").exists() and not (root.parent / "escaped").exists()


# 9. files a shared run store can read --------------------------------------------------------------------------
@pytest.mark.parametrize("umask", [0o002, 0o022, 0o077])
def test_every_run_file_gets_the_umask_s_permissions(tmp_path, umask):
    old = os.umask(umask)
    try:
        run = lab.train("tiny-linreg", SMALL, out=tmp_path / "r", quiet=True)
        with redirect_stdout(io.StringIO()):
            assert main(["eval", str(run.path), "--n-prompts", "32"]) == 0
    finally:
        os.umask(old)
    modes = {str(p.relative_to(run.path)): stat.S_IMODE(p.stat().st_mode) for p in run.path.rglob("*") if p.is_file()}
    assert {"config.json", "status.json", "metrics.jsonl", "checkpoint.pt", "eval/icl_curve.json",
            "figures/icl_curve.png"} <= set(modes)
    assert set(modes.values()) == {0o666 & ~umask}, modes


# 10. help that lists the real choices ---------------------------------------------------------------------------
def _help(command: str) -> str:
    out = io.StringIO()
    with redirect_stdout(out), pytest.raises(SystemExit):
        build_parser().parse_args([command, "--help"])
    return re.sub(r"\s+", " ", out.getvalue())


def test_every_sub_command_s_help_lists_its_real_choices():
    from lab import preset_names
    from probes.experiments import names
    from probes.inspect import PROBES

    assert all(name in _help("reproduce").replace("- ", "-") for name in names())
    assert all(kind in _help("probe") for kind in PROBES) and all(p in _help("train") for p in preset_names())
    dashboard = _help("dashboard")
    assert "--json" not in dashboard and "TCP port" in dashboard and "address to listen on" in dashboard
    for command in ("demo", "eval", "probe"):
        assert "--n-prompts N_PROMPTS fresh prompts" in _help(command)
    assert "threads" in _help("bench")
    code, _, err = _cli(["train", "tiny-linreg", "task.name=boolean"])
    _one_line_error(code, err, "task.d (from the preset or an override) is not an argument of task boolean")
    assert "task.task" not in err


# 11. threads under load ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("setting, env, expected", [([], None, 1), (["train.threads=3"], None, 3),
                                                    ([], "2", 2), (["train.threads=1"], "2", 1)])
def test_the_trainer_sets_its_threads_and_puts_them_back(tmp_path, monkeypatch, setting, env, expected):
    if env is None:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("OMP_NUM_THREADS", env)
    torch.set_num_threads(2)
    seen = []
    lab.train("tiny-linreg", SMALL + setting, out=tmp_path / "r", quiet=True,
              callback=lambda step: seen.append(torch.get_num_threads()))
    assert set(seen) == {expected} and torch.get_num_threads() == 2
    lab.train("tiny-linreg", [*SMALL, "train.steps=25", "train.threads=2"], out=tmp_path / "r", quiet=True)  # resumes


def test_bench_threads_times_both_settings_and_stops_its_neighbour():
    from lab.bench import bench_threads

    result = bench_threads("tiny-linreg", steps=2, warmup=0, overrides=SMALL)
    assert [r["case"].split(", ")[-1] for r in result["rows"]] == ["alone", "beside a second training like it"]
    for row in result["rows"]:
        assert row["ratio"] == row["baseline_s"] / row["ours_s"] > 0 and "torch default" in row["baseline"]


# 12. backend=auto takes the faster path ------------------------------------------------------------------------
def test_auto_takes_sdpa_for_softmax_unless_triton_measured_faster(tmp_path, monkeypatch):
    from lab.kernels import choice

    rows = [{"T": 41, "dh": 32, "dtype": "bfloat16", "triton_s": 2.0, "sdpa_s": 1.0},
            {"T": 201, "dh": 64, "dtype": "float32", "triton_s": 1.0, "sdpa_s": 1.4}]

    def pick(**kw):
        return choice.choose(**{"kind": "softmax", "mask": "causal", "padded": False, "T": 41, "dh": 32,
                                "dtype": "bfloat16", "cuda": True, "triton": True, "rows": rows, **kw})

    assert pick() == "sdpa" and pick(rows=()) == "sdpa"  # measured slower / never measured: SDPA
    assert pick(T=180, dh=64, dtype="float32") == "triton"  # nearest measured shape: Triton 1.4x faster
    assert pick(T=180, dh=64, dtype="bfloat16") == "sdpa"  # that dtype was not measured
    assert pick(kind="linear") == "triton" and pick(mask="context", padded=True) == "triton"  # no SDPA equivalent
    assert pick(mask="context", padded=False) == "sdpa"
    assert pick(cuda=False) == "sdpa" and pick(cuda=False, kind="linear") == "reference"
    assert pick(triton=False, kind="linear") == "reference"
    # the table lab bench attention writes, read back per device
    monkeypatch.setenv("LAB_CACHE", str(tmp_path))
    choice.measured.cache_clear()
    path = choice.table_path("NVIDIA H100 80GB HBM3")
    assert path.parent == tmp_path and " " not in path.name
    path.write_text(json.dumps({"device": "NVIDIA H100 80GB HBM3", "rows": rows}))
    assert choice.measured("NVIDIA H100 80GB HBM3") == tuple(rows) and choice.measured("other") == ()
    path.write_text("{garbage")
    choice.measured.cache_clear()
    assert choice.measured("NVIDIA H100 80GB HBM3") == ()
    choice.measured.cache_clear()
