"""Ensembles: member i of a stacked ensemble is the solo run with seed train.seed + i."""
import json

import pytest
import torch

from lab import ConfigError, load_run, train
from lab.config import ModelConfig, make_config
from lab.ensemble import StackedAdam, flat_grads, member_config, stack_models
from lab.model import build_model

SMALL = {"train.steps": 20, "train.log_every": 1, "model.d_model": 32, "model.n_layers": 2, "train.batch_size": 16,
         "curriculum.dims_interval": 5, "train.checkpoint_every": 10}


def _curve(run):
    return torch.tensor([r["loss"] for r in run.metrics], dtype=torch.float64)


def _assert_same_run(member, solo):
    """Same loss at every step, same predictions, same weights. Key biases are left out of the weights: softmax
    is invariant to them, so their gradient is round-off and Adam turns round-off into full-size steps."""
    assert [r["step"] for r in member.metrics] == [r["step"] for r in solo.metrics]
    torch.testing.assert_close(_curve(member), _curve(solo), rtol=1e-5, atol=1e-7)
    p = solo.task.sample(64, solo.config.task.n_points, seed=99)
    torch.testing.assert_close(member.predict(p), solo.predict(p), rtol=1e-4, atol=1e-5)
    for (name, a), b in zip(member.model.named_parameters(), solo.model.parameters()):
        if not name.endswith("W_K.bias"):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6, msg=name)


def test_each_member_of_an_ensemble_equals_the_solo_run_with_its_seed(tmp_path):
    ens = train("tiny-linreg", {**SMALL, "ensemble": 4}, out=tmp_path / "ens", quiet=True)
    assert ens.n_members == 4 and len(ens.metrics[-1]["losses"]) == 4
    for i in range(4):
        solo = train("tiny-linreg", {**SMALL, "train.seed": i}, out=tmp_path / f"solo{i}", quiet=True)
        _assert_same_run(ens.member(i), solo)
    losses = ens.metrics[-1]["losses"]
    assert len(set(losses)) == 4  # four different models, not one copied


def test_members_with_their_own_seeds_equal_the_solo_runs_of_those_seeds(tmp_path):
    ens = train("tiny-linreg", {**SMALL, "ensemble.size": 2, "ensemble.seeds": "7,3"}, out=tmp_path / "e", quiet=True)
    for i, seed in enumerate((7, 3)):
        _assert_same_run(ens.member(i), train("tiny-linreg", {**SMALL, "train.seed": seed}, out=tmp_path / f"s{seed}",
                                              quiet=True))
    with pytest.raises(ConfigError, match="ensemble.seeds must be empty or 2 seeds"):
        make_config("tiny-linreg", {"ensemble.size": 2, "ensemble.seeds": "1,2,3"})


def test_members_with_their_own_learning_rates_query_loss_and_adamw(tmp_path):
    ov = {**SMALL, "train.loss": "query", "train.optimizer": "adamw", "train.weight_decay": 0.1,
          "train.schedule": "constant", "train.seed": 7}
    ens = train("tiny-linreg", {**ov, "ensemble.size": 2, "ensemble.lrs": "3e-3,5e-4"}, out=tmp_path / "e", quiet=True)
    for i, lr in enumerate((3e-3, 5e-4)):
        solo = train("tiny-linreg", {**ov, "train.seed": 7 + i, "train.lr": lr}, out=tmp_path / f"s{i}", quiet=True)
        _assert_same_run(ens.member(i), solo)


def test_a_diverging_member_is_frozen_and_reported_and_the_others_are_untouched(tmp_path, capsys):
    ov = {**SMALL, "train.grad_clip": 0.0, "train.warmup_steps": 0}
    ens = train("tiny-linreg", {**ov, "ensemble.size": 2, "ensemble.lrs": [1e-3, 1e6]}, out=tmp_path / "e")
    assert "member 1 diverged" in capsys.readouterr().err
    last = ens.metrics[-1]
    assert last["losses"][1] is None and "1" in {str(k) for k in last["diverged"]}
    assert json.loads((ens.member(1).path / "status.json").read_text())["status"] == "diverged"
    solo = train("tiny-linreg", {**ov, "train.seed": 0, "train.lr": 1e-3}, out=tmp_path / "s0", quiet=True)
    _assert_same_run(ens.member(0), solo)


def test_a_member_folder_is_a_solo_run_that_resumes(tmp_path):
    """Extending member 1's folder by 10 steps gives the 30-step solo run: weights and Adam state carried over."""
    ens = train("tiny-linreg", {**SMALL, "ensemble": 2}, out=tmp_path / "e", quiet=True)
    member = ens.member(1)
    assert member.path == ens.path / "members" / "1" and member.config.train.seed == 1
    longer = {**SMALL, "train.seed": 1, "train.steps": 30}
    extended = train(member.config, {"train.steps": 30}, out=member.path, quiet=True)
    solo = train("tiny-linreg", longer, out=tmp_path / "solo", quiet=True)
    _assert_same_run(extended, solo)


def test_ensemble_resumes_from_its_checkpoint(tmp_path):
    cfg = {**SMALL, "ensemble": 3}
    whole = train("tiny-linreg", cfg, out=tmp_path / "whole", quiet=True)
    train("tiny-linreg", {**cfg, "train.steps": 10}, out=tmp_path / "part", quiet=True)
    resumed = train("tiny-linreg", cfg, out=tmp_path / "part", quiet=True)
    assert [r["losses"] for r in resumed.metrics] == [r["losses"] for r in whole.metrics]


def test_ensemble_run_refuses_model_access_without_a_member(tmp_path):
    ens = train("tiny-linreg", {**SMALL, "train.steps": 2, "ensemble": 2}, out=tmp_path / "e", quiet=True)
    with pytest.raises(ValueError, match="ensemble of 2 models"):
        _ = load_run(ens.path).model
    with pytest.raises(ValueError, match="member must be in 0..1"):
        ens.member(2)


@pytest.mark.parametrize("kw", [{}, {"input": "tokens", "vocab_size": 9, "output": "classes", "n_classes": 3},
                                {"tied": True, "layernorm": False, "mask": "none", "attn": "linear"}])
def test_stacked_forward_equals_each_members_forward_in_float64(kw):
    cfg = ModelConfig(**{**dict(n_layers=2, n_heads=2, d_model=16, d_mlp=32, d_in=4, max_len=32), **kw})
    models = [build_model(cfg, seed=s).double() for s in (3, 4, 5)]
    stack = stack_models(models)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 9, (3, 5, 10), generator=g) if kw.get("input") == "tokens" else \
        torch.randn(3, 5, 10, 4, generator=g, dtype=torch.float64)
    out = stack(x)
    for i, m in enumerate(models):
        torch.testing.assert_close(out[i], m(x[i]), rtol=0, atol=1e-12)


def test_stacked_adam_equals_torch_adam_per_member():
    """Two members, different learning rates, AdamW decay, member 1 frozen for step 2: each follows torch's."""
    g = torch.Generator().manual_seed(1)
    params = [torch.randn(2, 3, 4, generator=g, dtype=torch.float64),
              torch.randn(2, 5, generator=g, dtype=torch.float64)]
    grads = [[torch.randn(p.shape, generator=g, dtype=torch.float64) for p in params] for _ in range(3)]
    stacked = [p.clone() for p in params]
    opt = StackedAdam(stacked, 2, lr=0.0, betas=(0.8, 0.99), weight_decay=0.1, decoupled=True)
    opt.lr.copy_(torch.tensor([1e-2, 3e-2], dtype=torch.float64))
    updates = [torch.tensor([True, True]), torch.tensor([True, False]), torch.tensor([True, True])]
    for grad, update in zip(grads, updates):
        opt.step(flat_grads(grad), update)
    for i, lr in enumerate((1e-2, 3e-2)):
        solo = [p[i].clone().requires_grad_() for p in params]
        ref = torch.optim.AdamW(solo, lr=lr, betas=(0.8, 0.99), weight_decay=0.1)
        for grad, update in zip(grads, updates):
            if update[i]:
                for p, gr in zip(solo, grad):
                    p.grad = gr[i].clone()
                ref.step()
        for a, b in zip(stacked, solo):
            torch.testing.assert_close(a[i], b.detach(), rtol=1e-12, atol=1e-14)


def test_member_config_and_ensemble_overrides_are_checked():
    cfg = make_config("tiny-linreg", ["ensemble=3", "train.seed=5", "ensemble.lrs=1e-3,2e-3,3e-3"])
    solo = member_config(cfg, 2)
    assert (solo.train.seed, solo.train.lr, solo.ensemble.size) == (7, 3e-3, 1)
    from lab.config import ConfigError
    with pytest.raises(ConfigError, match="ensemble.lrs must be empty or 3"):
        make_config("tiny-linreg", ["ensemble=3", "ensemble.lrs=1e-3"])
    with pytest.raises(ConfigError, match="ensemble.size must be an integer >= 1"):
        make_config("tiny-linreg", ["ensemble=0"])


def _engine_losses(cfg, device, steps, **attrs):
    from lab.ensemble import EnsembleTrainer

    engine = EnsembleTrainer(cfg, torch.device(device), cuda_graphs=attrs.pop("cuda_graphs", True))
    for name, value in attrs.items():
        setattr(engine, name, value)
    curve = []
    for step in range(steps):
        dims, n_points = cfg.curriculum.at(step)
        engine.step(step, dims, n_points)
        curve.append(engine.losses.cpu().clone())
    return torch.stack(curve), engine


def test_length_buckets_pad_prompts_without_changing_the_training():
    """Causal formats padded to a bucketed length (what CUDA graphs use) train exactly as unpadded prompts:
    the padding sits after every real token and is left out of the loss. Points curriculum 5 -> 11."""
    cfg = make_config("tiny-linreg", {**SMALL, "ensemble": 2, "curriculum.points_start": 5,
                                      "curriculum.points_interval": 4})
    plain, _ = _engine_losses(cfg, "cpu", 14)
    padded, engine = _engine_losses(cfg, "cpu", 14, bucketed=True)
    inputs, _, weights = engine.batch(0, 2, 5)
    assert inputs.shape[2] == 2 * 8 and weights.sum() == pytest.approx(1.0) and (weights[5:] == 0).all()
    torch.testing.assert_close(padded, plain, rtol=1e-5, atol=1e-7)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
def test_cuda_graph_steps_equal_eager_steps_and_capture_once_per_bucket():
    cfg = make_config("tiny-linreg", {**SMALL, "ensemble": 3, "curriculum.points_start": 5,
                                      "curriculum.points_interval": 4})
    eager, _ = _engine_losses(cfg, "cuda", 14, cuda_graphs=False)
    graphed, engine = _engine_losses(cfg, "cuda", 14)
    assert engine.use_graphs and engine.graph_captures == 2  # buckets of 8 and 16 points, not 4 lengths
    torch.testing.assert_close(graphed, eager, rtol=1e-4, atol=1e-6)


def test_ensemble_members_equal_solo_runs_on_a_boolean_task_too(tmp_path):
    """The binary cross-entropy objective goes through the stacked path the same way."""
    ov = {"task.n": 5, "task.n_points": 8, "model.d_model": 16, "train.steps": 12, "train.log_every": 1}
    ens = train("boolean-tiny", {**ov, "ensemble": 2}, out=tmp_path / "e", quiet=True)
    for i in range(2):
        solo = train("boolean-tiny", {**ov, "train.seed": i}, out=tmp_path / f"s{i}", quiet=True)
        torch.testing.assert_close(_curve(ens.member(i)), _curve(solo), rtol=1e-5, atol=1e-7)
