"""Logit lens, direct logit attribution, attribution / path patching and head ablations against independent
references: the model's own output, exact sums, exact patching where the model is linear, edited weights."""
import json

import pytest
import torch

import lab
from probes import patching
from probes.ablation import head_ablations
from probes.dla import query_attributions
from probes.inspect import probe_run
from probes.lens import lens, logit_lens_predictions

SMALL = {"task.d": 3, "task.n_points": 6, "model.n_layers": 2, "model.d_model": 16, "train.batch_size": 16,
         "train.steps": 30, "curriculum.enabled": False, "train.lr": 3e-3}


def _float64(run, jitter: float = 0.0, seed: int = 0):
    """The run with its model in float64 (weights moved off the init by `jitter`, so biases are nonzero)."""
    model = run.model.double()
    with torch.no_grad():
        for p in model.parameters():
            g = torch.Generator().manual_seed(seed + p.numel())
            p.add_(jitter * torch.randn(p.shape, dtype=p.dtype, generator=g))
    run._model = model
    return run


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return _float64(lab.train("tiny-linreg", SMALL, out=tmp_path_factory.mktemp("r") / "run", quiet=True), 0.1)


@pytest.fixture(scope="module")
def lsa(tmp_path_factory):
    """von Oswald's one linear self-attention layer (no LayerNorm, no MLP): linear in its values."""
    return _float64(lab.train("vo-lsa-1layer", {"train.steps": 20, "train.batch_size": 64},
                              out=tmp_path_factory.mktemp("v") / "lsa", quiet=True), 0.3)


def test_logit_lens_at_the_last_layer_is_the_model_output(run):
    p = run.task.sample(16, 6, seed=int(torch.randint(0, 10**6, ())), dtype=torch.float64)
    lens_preds = logit_lens_predictions(run.model, run.format, p)  # [L+1, B, n]
    assert lens_preds.shape == (3, 16, 6)
    torch.testing.assert_close(lens_preds[-1], run.predict(p), rtol=0, atol=1e-12)
    assert not torch.allclose(lens_preds[0], lens_preds[-1])
    res = lens(run, n_prompts=64, n_train=128)
    assert res["logit_lens"][-1] == pytest.approx(res["model"], abs=1e-12)
    assert len(res["tuned_lens"]) == 3 and len(res["tuned_lens"][0]) == 6


def test_dla_contributions_sum_to_the_prediction_minus_the_readout_bias(run):
    p = run.task.sample(32, 6, seed=int(torch.randint(0, 10**6, ())), dtype=torch.float64)
    attrs, labels, bias, preds = query_attributions(run.model, run.format, p)
    assert labels[:2] == ["embed", "pos_embed"] and "L1H1" in labels and "L0 MLP" in labels
    torch.testing.assert_close(attrs.sum(0), preds - bias, rtol=0, atol=1e-6)
    torch.testing.assert_close(preds, run.predict(p)[:, -1], rtol=0, atol=1e-12)


def test_attribution_patching_is_exact_where_the_model_is_linear_in_the_activation(lsa):
    """One LSA layer's output is linear in its values v (and in z): the gradient estimate equals exact patching."""
    clean = lsa.task.sample(1, 11, seed=int(torch.randint(0, 10**6, ())), dtype=torch.float64)
    corrupt = patching.relabelled(lsa.task, clean, seed=7)
    for activation in ("v", "z"):
        exact = patching.activation_patching(lsa, clean, corrupt, activation)
        approx = patching.attribution_patching(lsa, clean, corrupt, activation)
        torch.testing.assert_close(torch.tensor(approx["effect"]), torch.tensor(exact["effect"]), rtol=0, atol=1e-9)
        assert torch.tensor(exact["effect"]).abs().max() > 0.01  # something was patched
    # not linear in the queries and keys' input: there the estimate is only approximate
    exact = patching.activation_patching(lsa, clean, corrupt, "resid_pre")
    approx = patching.attribution_patching(lsa, clean, corrupt, "resid_pre")
    assert not torch.allclose(torch.tensor(approx["effect"]), torch.tensor(exact["effect"]), atol=1e-6)


def test_path_patching_to_the_readout_equals_the_direct_attribution_difference(tmp_path):
    """Without LayerNorm the read-out is linear: the sender -> read-out path restores exactly the change in the
    sender's direct attribution, divided by the clean - corrupt gap."""
    run = _float64(lab.train("tiny-linreg", {**SMALL, "model.layernorm": False}, out=tmp_path / "noln", quiet=True),
                   0.1)
    clean = run.task.sample(1, 6, seed=int(torch.randint(0, 10**6, ())), dtype=torch.float64)
    corrupt = patching.relabelled(run.task, clean, seed=3)
    res = patching.path_patching(run, clean, corrupt)
    a_clean, labels, _, p_clean = query_attributions(run.model, run.format, clean)
    a_corrupt, _, _, p_corrupt = query_attributions(run.model, run.format, corrupt)
    gap = (p_clean - p_corrupt).item()
    for i, sender in enumerate(res["senders"]):
        j = labels.index(sender)
        expected = ((a_clean[j] - a_corrupt[j]) / gap).item()
        assert res["effect"][i][-1] == pytest.approx(expected, abs=1e-9), sender
    assert res["effect"][0][0] is None  # no path from a head to itself or an earlier layer
    assert res["effect"][0][2] is not None  # L0H0 -> L1H0 exists


def test_zero_ablating_a_head_equals_zeroing_its_output_weights(run):
    res = head_ablations(run, n_prompts=64, mode="zero")
    attn = run.model.blocks[1].attn
    dh = attn.d_head
    saved = attn.W_O.weight.detach().clone()
    with torch.no_grad():
        attn.W_O.weight[:, dh:2 * dh] = 0.0  # head 1 of layer 1 writes nothing
    try:
        edited = head_ablations(run, n_prompts=64, mode="zero")["intact"]
    finally:
        with torch.no_grad():
            attn.W_O.weight.copy_(saved)
    assert res["ablated"]["L1H1"] == pytest.approx(edited, abs=1e-12)
    assert res["ablated"]["L1H0"] != pytest.approx(res["intact"], abs=1e-6)
    assert sorted(res["ranked"]) == sorted(res["increase"]) and len(res["ranked"]) == 4
    mean = head_ablations(run, n_prompts=64, mode="mean")
    assert mean["ablated"]["L0H0"] != pytest.approx(res["ablated"]["L0H0"], abs=1e-6)


@pytest.mark.parametrize("kind", ["lens", "dla", "patching", "ablation"])
def test_each_probe_writes_its_result_and_figures(tmp_path, kind):
    trained = lab.train("tiny-linreg", SMALL, out=tmp_path / "run", quiet=True)
    res = probe_run(trained, kind, n_prompts=64)
    assert json.loads((trained.path / "eval" / f"{kind}.json").read_text())["kind"] == kind == res["kind"]
    assert (trained.path / "figures" / f"{kind}.png").stat().st_size > 1000
    if kind == "patching":
        assert (trained.path / "figures" / "path_patching.png").is_file()
        assert -1 <= res["agreement"]["correlation"] <= 1
