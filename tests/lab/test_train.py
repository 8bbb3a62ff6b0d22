import json

import pytest
import torch

import lab
import tasks
from lab.config import ConfigError, TrainConfig
from lab.runs import safe_torch_load
from lab.trainer import data_seed, lr_at

SMALL = {"task.d": 3, "task.n_points": 5, "model.n_layers": 1, "model.d_model": 16, "train.batch_size": 8,
         "train.steps": 30, "train.checkpoint_every": 10, "train.log_every": 5, "train.warmup_steps": 0}


def _weights(run):
    return safe_torch_load(run.path / "checkpoint.pt")["model"]


def test_run_folder_contents_and_metrics(tmp_path):
    run = lab.train("tiny-linreg", SMALL, out=tmp_path / "r", quiet=True)
    assert {"config.json", "metrics.jsonl", "checkpoint.pt", "status.json"} <= {p.name for p in run.path.iterdir()}
    assert [r["step"] for r in run.metrics] == [5, 10, 15, 20, 25, 30]
    assert run.status["status"] == "done" and run.status["step"] == 30
    assert not list(run.path.glob(".*.tmp"))  # atomic writes leave no temporaries
    again = lab.load_run(run.path)
    assert again.config == run.config
    p = again.task.sample(4, 5, seed=9)
    assert again.predict(p).shape == (4, 5)


def test_same_config_and_seed_give_the_same_weights(tmp_path):
    a = lab.train("tiny-linreg", SMALL, out=tmp_path / "a", quiet=True)
    b = lab.train("tiny-linreg", SMALL, out=tmp_path / "b", quiet=True)
    c = lab.train("tiny-linreg", {**SMALL, "train.seed": 1}, out=tmp_path / "c", quiet=True)
    wa, wb, wc = _weights(a), _weights(b), _weights(c)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert any(not torch.equal(wa[k], wc[k]) for k in wa)


@pytest.mark.parametrize("overrides", [{}, {"train.schedule": "cosine", "train.warmup_steps": 5,
                                            "train.grad_clip": 0.5, "train.optimizer": "adamw",
                                            "train.weight_decay": 0.01, "task.format": "disjoint"}])
def test_interrupted_run_resumes_to_identical_weights(tmp_path, overrides):
    cfg = {**SMALL, **overrides}
    full = lab.train("tiny-linreg", cfg, out=tmp_path / "full", quiet=True)

    def kill_at_17(step):
        if step == 17:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        lab.train("tiny-linreg", cfg, out=tmp_path / "cut", quiet=True, callback=kill_at_17)
    assert json.loads((tmp_path / "cut" / "status.json").read_text())["status"] == "interrupted"
    assert safe_torch_load(tmp_path / "cut" / "checkpoint.pt")["step"] == 10
    resumed = lab.train("tiny-linreg", cfg, out=tmp_path / "cut", quiet=True)
    wf, wr = _weights(full), _weights(resumed)
    assert all(torch.equal(wf[k], wr[k]) for k in wf)
    assert [r["step"] for r in resumed.metrics] == [r["step"] for r in full.metrics]
    assert [r["loss"] for r in resumed.metrics] == [r["loss"] for r in full.metrics]


def test_more_steps_extends_a_finished_run(tmp_path):
    lab.train("tiny-linreg", SMALL, out=tmp_path / "r", quiet=True)
    run = lab.train("tiny-linreg", {**SMALL, "train.steps": 40}, out=tmp_path / "r", quiet=True)
    assert run.status["step"] == 40 and run.metrics[-1]["step"] == 40


def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    """Labels turn NaN from step 13 on: the run stops with a clear message; the step-10 checkpoint survives."""
    original = tasks.LinearRegression.sample

    def sample(self, batch, n_points, seed=None, **kw):
        p = original(self, batch, n_points, seed=seed, **kw)
        if seed is not None and seed >= data_seed(0, 13):
            p.ys[:] = float("nan")
        return p

    monkeypatch.setattr(tasks.LinearRegression, "sample", sample)
    diverged = "step 13: the loss became nan; the last good checkpoint \\(step 10\\)"
    with pytest.raises(lab.TrainingDiverged, match=diverged):
        lab.train("tiny-linreg", SMALL, out=tmp_path / "r", quiet=True)
    ckpt = safe_torch_load(tmp_path / "r" / "checkpoint.pt")
    assert ckpt["step"] == 10 and all(torch.isfinite(v).all() for v in ckpt["model"].values())
    assert json.loads((tmp_path / "r" / "status.json").read_text())["status"] == "diverged"


def test_a_different_config_never_overwrites_an_existing_run(tmp_path):
    lab.train("tiny-linreg", SMALL, out=tmp_path / "r", quiet=True)
    before = (tmp_path / "r" / "checkpoint.pt").read_bytes()
    with pytest.raises(ConfigError, match="different config \\(train.lr\\)"):
        lab.train("tiny-linreg", {**SMALL, "train.lr": 0.5}, out=tmp_path / "r", quiet=True)
    assert (tmp_path / "r" / "checkpoint.pt").read_bytes() == before


def test_bad_config_writes_nothing(tmp_path):
    with pytest.raises(ConfigError):
        lab.train("tiny-linreg", {"train.steps": -1}, out=tmp_path / "r", quiet=True)
    assert not (tmp_path / "r").exists()


def test_learning_rate_schedule():
    cfg = TrainConfig(steps=110, lr=1.0, warmup_steps=10, schedule="cosine", min_lr_ratio=0.1)
    assert lr_at(cfg, 0) == pytest.approx(0.1) and lr_at(cfg, 9) == pytest.approx(1.0)
    assert lr_at(cfg, 10) == pytest.approx(1.0)
    assert lr_at(cfg, 60) == pytest.approx(0.55)  # half way: 0.1 + 0.9 * 0.5
    assert lr_at(cfg, 110) == pytest.approx(0.1)
    assert lr_at(TrainConfig(lr=0.3), 500) == 0.3


def test_curriculum_zeroes_inactive_dims_and_shortens_prompts(tmp_path):
    cfg = {**SMALL, "task.d": 6, "task.n_points": 9, "curriculum.enabled": True, "curriculum.dims_start": 2,
           "curriculum.dims_end": 6, "curriculum.dims_interval": 10, "curriculum.points_start": 3,
           "curriculum.points_end": 9, "curriculum.points_interval": 10, "curriculum.points_inc": 2}
    run = lab.train("tiny-linreg", cfg, out=tmp_path / "r", quiet=True)
    rows = {r["step"]: r for r in run.metrics}
    assert (rows[5]["d_active"], rows[5]["n_points"]) == (2, 3)
    assert (rows[15]["d_active"], rows[15]["n_points"]) == (3, 5)
    assert (rows[25]["d_active"], rows[25]["n_points"]) == (4, 7)


def test_one_layer_lsa_learns_beyond_the_zero_predictor(tmp_path):
    """von Oswald's LSA on its own format: a few hundred steps get near one optimal GD step
    (the zero predictor scores 1.0 here; one line-searched GD step about 0.49)."""
    run = lab.train("vo-lsa-1layer", {"train.steps": 300, "train.batch_size": 1024}, out=tmp_path / "r", quiet=True)
    p = run.task.sample(4000, 11, seed=77)
    mse = ((run.predict(p)[:, -1] - p.ys[:, -1]) ** 2).mean().item()
    assert mse < 0.6 * run.task.y_variance()
