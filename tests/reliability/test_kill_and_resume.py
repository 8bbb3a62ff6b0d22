"""kill -9 a training at three points: the same command resumes, and weights, optimiser state and metrics equal
an uninterrupted run's bit for bit (CPU). Two trainers on one folder: the second refuses; a dead one's lock is
taken over. A killed run reads as interrupted, with the command that resumes it."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

import lab
from lab.cli import main
from lab.runs import safe_torch_load
from owned import wait_for

SMALL = ["task.d=3", "task.n_points=5", "model.n_layers=1", "model.d_model=16", "train.batch_size=8",
         "train.steps=30", "train.checkpoint_every=10", "train.log_every=5"]
TIMING = {"steps_per_s", "prompts_per_s"}  # wall-clock fields: the only ones allowed to differ
KILLED_AT = """
import os, signal, sys
import lab
kill_at, out, overrides = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
def callback(step):  # called after each optimiser step, after that step's checkpoint (if any) is written
    if step == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
lab.train("tiny-linreg", overrides, out=out, quiet=True, callback=callback)
"""


def _same(a, b) -> bool:
    """Nested dicts/lists of tensors and plain values, equal bit for bit."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def _metrics(run_dir):
    return [{k: v for k, v in row.items() if k not in TIMING} for row in lab.load_run(run_dir).metrics]


@pytest.fixture(scope="module", params=["solo", "ensemble"])
def setting(request, tmp_path_factory):
    overrides = SMALL + (["ensemble=2"] if request.param == "ensemble" else [])
    full = tmp_path_factory.mktemp("full") / "run"
    lab.train("tiny-linreg", overrides, out=full, quiet=True)
    return overrides, full


@pytest.mark.parametrize("kill_at, last_checkpoint", [(3, 0), (15, 10), (20, 20)],
                         ids=["before-the-first-checkpoint", "between-checkpoints", "right-after-one"])
def test_kill_9_then_the_same_command_resumes_bit_for_bit(setting, tmp_path, capsys, tally, kill_at, last_checkpoint):
    overrides, full = setting
    out = tmp_path / "cut"
    proc = subprocess.run([sys.executable, "-c", KILLED_AT, str(kill_at), str(out), *overrides],
                          capture_output=True, text=True)
    tally["faults injected"] += 1
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert safe_torch_load(out / "checkpoint.pt")["step"] == last_checkpoint
    assert json.loads((out / "status.json").read_text())["status"] == "running"  # what the killed process left

    os.environ["LAB_RUNS"] = str(tmp_path)  # (the autouse fixture puts it back after the test)
    assert main(["runs", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert row["status"] == "interrupted" and row["step"] == last_checkpoint
    assert row["resume"] == f"lab train {out / 'config.json'} --out {out}"

    assert main(["train", "tiny-linreg", *overrides, "--out", str(out), "--quiet"]) == 0  # the same command
    assert "is gone without finishing; taking over" in capsys.readouterr().err
    a, b = safe_torch_load(full / "checkpoint.pt"), safe_torch_load(out / "checkpoint.pt")
    equal = _same(a["model"], b["model"]) and _same(a["optimizer"], b["optimizer"]) and \
        _same({k: v for k, v in a.items() if k not in ("model", "optimizer")},
              {k: v for k, v in b.items() if k not in ("model", "optimizer")}) and _metrics(full) == _metrics(out)
    tally["runs lost"] += not equal
    assert _same(a["model"], b["model"]), "weights differ from the uninterrupted run"
    assert _same(a["optimizer"], b["optimizer"]), "optimiser state differs from the uninterrupted run"
    assert equal and _metrics(full) == _metrics(out)
    assert lab.load_run(out).status["status"] == "done"


def test_a_second_trainer_refuses_and_a_dead_trainers_lock_is_taken_over(tmp_path, tally):
    out = tmp_path / "shared"
    long = [*SMALL[:-3], "train.steps=1000000", "train.checkpoint_every=50", "train.log_every=10"]
    first = subprocess.Popen([sys.executable, "-m", "lab.cli", "train", "tiny-linreg", *long, "--out", str(out),
                              "--quiet"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_for(lambda: (out / "checkpoint.pt").is_file() and lab.load_run(out).metrics)
        second = subprocess.run([sys.executable, "-m", "lab.cli", "train", "tiny-linreg", *long, "--out", str(out)],
                                capture_output=True, text=True, timeout=120)
        tally["faults injected"] += 1
        assert second.returncode == 2 and second.stderr.count("\n") == 1 and "Traceback" not in second.stderr
        assert f"is being trained by process {first.pid}" in second.stderr
        assert lab.load_run(out).status["status"] == "running"
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    finally:
        first.kill()
        first.wait()
    tally["faults injected"] += 1
    status = lab.load_run(out).status
    assert status["status"] == "interrupted" and f"--out {out}" in status["message"]
    step = status["step"]
    # the next trainer takes the dead one's lock over, and is told so (extending the run by 20 steps)
    third = subprocess.run([sys.executable, "-m", "lab.cli", "train", "tiny-linreg", *long[:-3],
                            f"train.steps={step + 20}", "train.checkpoint_every=50", "train.log_every=10",
                            "--out", str(out), "--quiet", "--json"], capture_output=True, text=True, timeout=120)
    assert third.returncode == 0, third.stderr
    assert f"its last trainer (process {first.pid}) is gone without finishing; taking over" in third.stderr
    assert json.loads(third.stdout.strip().splitlines()[-1])["step"] == step + 20
    assert lab.load_run(out).status["status"] == "done"


def test_two_trainers_in_one_process_cannot_share_a_folder(tmp_path):
    """The lock is per open file, so it holds within one process too (two threads, two lab.train calls)."""
    from lab import runlock

    out = tmp_path / "r"
    out.mkdir()
    with runlock.hold(out):
        with pytest.raises(runlock.RunLocked, match=f"process {os.getpid()}"):
            lab.train("tiny-linreg", SMALL, out=out, quiet=True)
    assert not (out / "checkpoint.pt").exists()
    assert lab.train("tiny-linreg", SMALL, out=out, quiet=True).status["status"] == "done"


def _ignore_sigint():
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize("stop, inherited", [(signal.SIGINT, None), (signal.SIGTERM, None),
                                             (signal.SIGINT, _ignore_sigint)],
                         ids=["Ctrl-C", "SIGTERM", "Ctrl-C, started with SIGINT ignored"])
def test_a_stopped_training_names_the_exact_command_that_resumes_it(tmp_path, stop, inherited, tally):
    """Without --out the run folder is named by the clock: the hint must name it, or the same command would start
    a new run. A script's background job inherits SIGINT ignored (so does the dashboard's job, when the dashboard
    runs in the background): `lab` must still take SIGINT as Ctrl-C."""
    args = ["train", "tiny-linreg", *SMALL[:-3], "train.steps=1000000", "train.checkpoint_every=20", "--quiet"]
    proc = subprocess.Popen([sys.executable, "-m", "lab.cli", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=tmp_path, env={**os.environ, "LAB_RUNS": str(tmp_path / "runs")},
                            preexec_fn=inherited)
    try:
        assert wait_for(lambda: any((tmp_path / "runs").glob("*/checkpoint.pt")))
        time.sleep(0.5)
        proc.send_signal(stop)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.wait()
    tally["faults injected"] += 1
    (run,) = (tmp_path / "runs").iterdir()
    assert proc.returncode == 130 and "Traceback" not in err, err
    hint = err.strip().splitlines()[-1]
    assert hint.startswith(f"lab: interrupted; the last checkpoint of {run} is kept; resume: lab train tiny-linreg ")
    assert hint.endswith(f"--quiet --out {run}"), hint
    status = lab.load_run(run).status
    assert status["status"] == "interrupted" and status["message"].endswith(f"--out {run}")
