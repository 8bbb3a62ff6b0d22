"""What `lab reproduce` and `lab sweep` show of each running trial: its step, loss and time left, read from its folder
while its training holds the run lock."""
import json

from fresh import fresh_seeds
from lab import runlock
from lab.config import make_config
from lab.executor import Job, job_progress


def test_a_running_trial_shows_its_step_loss_and_time_left(tmp_path):
    seed = fresh_seeds(1, __name__)[0]
    steps, step, rate = 1000 + seed % 5000, 100 + seed % 700, 4.0 + seed % 7
    config = make_config("tiny-linreg", [f"train.steps={steps}"]).to_dict()
    out = tmp_path / "trial"
    out.mkdir()
    job = Job(out, config, [])
    assert job_progress(job) is None  # not training: nothing to show
    losses = [0.5 + seed % 3, 0.25]
    rows = [{"step": step // 2, "loss": 9.0, "steps_per_s": 1.0},
            {"step": step, "losses": losses, "steps_per_s": rate}]  # an ensemble's row: its members' losses
    (out / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with runlock.hold(out):
        shown = job_progress(job)
    left = (steps - step) / rate
    want = f"{left / 60:.0f} min" if left >= 90 else f"{left:.0f} s"
    assert shown == f"trial {step}/{steps}, loss {sum(losses) / 2:.3g}, {want} left"
    assert job_progress(job) is None
