"""The third fault audit (the largest requests a user can make by mistake, sweep and reproduce arguments): one test
or more per defect, each failing on the code before its fix: the line a user sees, the exit code, and that nothing
was written."""
import json
import math
import subprocess
import sys

import pytest

from lab.cli import main
from lab.config import BYTES_PER_WEIGHT, MEMORY_SHARE, ConfigError, machine_memory, make_config
from lab.executor import run_trials, trial

# One step of a training that keeps ~2.5 GiB: activation-bound (a batch of 8000 prompts of 22 tokens).
PEAK = """
import json, resource, shutil, sys
import lab
from lab.config import make_config
cfg = make_config("tiny-linreg", json.loads(sys.argv[1]))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
lab.train(cfg, out=sys.argv[2], quiet=True)
print(json.dumps({"peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before,
                  "estimate": cfg.memory_bytes()}))
"""
BIG_BATCH = {"train.batch_size": 8000, "train.steps": 1, "train.checkpoint_every": 1, "train.log_every": 1,
             "curriculum.enabled": False, "train.device": "cpu", "train.threads": 1}


@pytest.mark.skipif(machine_memory() < 8 * 2**30, reason="needs 8 GiB of memory to measure a 2.5 GiB training")
def test_the_memory_estimate_is_not_below_what_a_training_really_keeps(tmp_path, tally):
    """The size check refuses what does not fit before anything is allocated: it must count what a training keeps.
    Before: one layer's largest activation, a fifth of the measured peak, so a batch five times too big trained
    into swap."""
    got = subprocess.run([sys.executable, "-c", PEAK, json.dumps(BIG_BATCH), str(tmp_path / "run")],
                         capture_output=True, text=True, timeout=300)
    assert got.returncode == 0, got.stderr
    measured = json.loads(got.stdout.strip().splitlines()[-1])
    tally["faults injected"] += 1
    assert measured["estimate"] >= 0.75 * measured["peak"], measured  # measured: 0.95-1.0; before: 0.2
    assert measured["estimate"] <= 2.0 * measured["peak"], measured  # and not so high that fitting runs are refused


def _batch_over_the_machine(factor: float) -> int:
    """A batch whose estimated training needs `factor` times the memory a training may plan on."""
    per_prompt = make_config("tiny-linreg", {"train.batch_size": 1000}).memory_bytes() / 1000
    return int(factor * MEMORY_SHARE * machine_memory() / per_prompt)


def test_a_batch_the_machine_cannot_hold_is_refused_before_anything_is_written(tmp_path, capsys, tally):
    """A batch needing twice the memory (which the old lower bound, a fifth of the real need, let through) stops
    in one line naming train.batch_size, exit 2, no run folder; one needing a fifth of it passes the check."""
    batch = _batch_over_the_machine(2.0)
    tally["bad inputs tried"] += 1
    with pytest.raises(ConfigError, match="more than this machine's .* of memory can hold for a training; lower "
                                          "train.batch_size"):
        make_config("tiny-linreg", {"train.batch_size": batch})
    out = tmp_path / "run"
    assert main(["train", "tiny-linreg", f"train.batch_size={batch}", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and not out.exists()
    make_config("tiny-linreg", {"train.batch_size": _batch_over_the_machine(0.2)})


def test_weights_and_activations_that_fit_apart_but_not_together_are_refused(tally):
    """Weights taking about 0.3 of what a training may use, a batch's activations 0.9: each fits, their sum does
    not, and it is refused (before: each was checked alone)."""
    usable = MEMORY_SHARE * machine_memory()
    d_model = 2 * int(math.sqrt(0.3 * usable / (BYTES_PER_WEIGHT * 36)) / 2)  # tiny-linreg: ~36 d_model^2 weights

    def need(batch: int) -> int:
        return make_config("tiny-linreg", {"model.d_model": d_model, "train.batch_size": batch}).memory_bytes()

    weights, per_prompt = 2 * need(1) - need(2), need(2) - need(1)  # the batch's part is linear in its size
    batch = int(0.9 * usable / per_prompt)
    assert weights < usable and batch * per_prompt < usable < weights + batch * per_prompt
    tally["bad inputs tried"] += 1
    with pytest.raises(ConfigError, match="with the weights"):
        make_config("tiny-linreg", {"model.d_model": d_model, "train.batch_size": batch})


@pytest.mark.parametrize("command", [["sweep", "tiny-linreg", "train.lr=1e-3,2e-3"], ["reproduce", "vo-1layer"]])
def test_more_threads_per_trial_than_the_cluster_has_cores_is_refused_before_anything_is_written(
        command, tmp_path, capsys, tally):
    """Ray would queue such a trial for good (before: the command hung, its folder claimed)."""
    out = tmp_path / "out"
    tally["bad inputs tried"] += 1
    assert main([*command, "--cpus", "2", "--threads", "3", "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--threads 3 is more than the 2 cores" in err and "1..2" in err
    assert not out.exists()


def test_the_python_api_refuses_more_threads_than_cores_too(tmp_path, tally):
    t = trial(tmp_path / "t", "tiny-linreg", {"train.steps": 2})
    tally["bad inputs tried"] += 1
    with pytest.raises(ValueError, match="--threads 5 is more than the 2 cores"):
        run_trials([t], cpus=2, threads=5, quiet=True)
    assert not (tmp_path / "t").exists()
