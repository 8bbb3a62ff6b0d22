"""Inside a run: attention patterns, edited examples, activation patching (exact identities on a small run)."""
import pytest
import torch

import lab
from probes import patching
from probes.inspect import probe_run

SMALL = {"task.d": 3, "task.n_points": 6, "model.n_layers": 2, "model.d_model": 16, "train.batch_size": 16,
         "train.steps": 30, "curriculum.enabled": False, "train.lr": 3e-3}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return lab.train("tiny-linreg", SMALL, out=tmp_path_factory.mktemp("r") / "run", quiet=True)


def test_patterns_are_causal_distributions(run):
    p = run.task.sample(2, 6, seed=1)
    pat = patching.attention_patterns(run, p)  # [L, H, T, T]
    assert pat.shape == (2, 2, 12, 12)
    torch.testing.assert_close(pat.sum(-1), torch.ones(2, 2, 12))
    assert (pat.triu(1) == 0).all()
    assert len(patching.token_labels(run, 6)) == 12


def test_editing_an_example_moves_the_prediction_and_keeps_the_rest(run):
    p = run.task.sample(1, 6, seed=2)
    edited = patching.edit_example(p, 2, y=p.ys[0, 2].item() + 5.0)
    assert torch.equal(edited.xs, p.xs) and (edited.ys != p.ys).sum() == 1
    before, after = patching.query_prediction(run, p), patching.query_prediction(run, edited)
    torch.testing.assert_close(before, run.predict(p)[:, -1])
    assert abs(after.item() - before.item()) > 1e-4
    with pytest.raises(ValueError, match="example index must be in 0..5"):
        patching.edit_example(p, 6, y=0.0)


def test_patching_restores_exactly_where_the_prompts_differ(run):
    """Clean and corrupt differ only in y_3 (token 2*3+1 = 7). At layer 0 the residual is the embedding, so
    patching token 7 restores the clean prediction exactly and any other token restores nothing; under the
    causal mask no layer's residual before token 7 differs, so those effects are 0 at every layer."""
    clean = run.task.sample(1, 6, seed=3)
    corrupt = patching.edit_example(clean, 3, y=clean.ys[0, 3].item() - 4.0)
    res = patching.activation_patching(run, clean, corrupt)
    effect = torch.tensor(res["effect"], dtype=torch.float64)
    assert effect.shape == (2, 12)
    expected_row0 = torch.zeros(12, dtype=torch.float64)
    expected_row0[7] = 1.0
    torch.testing.assert_close(effect[0], expected_row0, atol=1e-5, rtol=0)
    torch.testing.assert_close(effect[:, :7], torch.zeros(2, 7, dtype=torch.float64), atol=1e-6, rtol=0)
    assert res["clean"] == pytest.approx(patching.query_prediction(run, clean).item(), abs=1e-6)
    with pytest.raises(ValueError, match="same prediction"):
        patching.activation_patching(run, clean, clean)


def test_construction_probe_recognises_the_gd_construction(tmp_path):
    """A vo-lsa-1layer run whose weights ARE the one-GD-step construction (lr 1): cosines 1."""
    from lab.runs import atomic_torch_save
    from probes.constructions import gd_layer_weights

    run = lab.train("vo-lsa-1layer", {"train.steps": 1, "train.batch_size": 8}, out=tmp_path / "lsa", quiet=True)
    state = run.model.state_dict()
    for name, w in gd_layer_weights(10, 10, lr=1.0, dtype=torch.float32).items():
        state[f"blocks.0.attn.{name}.weight"] = w
    atomic_torch_save(run.path / "checkpoint.pt", {"step": 1, "model": state, "optimizer": {}})
    res = probe_run(lab.load_run(run.path), "construction", n_prompts=200)
    layer = res["layers"][0]
    assert layer["kq_cosine"] == pytest.approx(1.0, abs=1e-6) and layer["pv_cosine"] == pytest.approx(1.0, abs=1e-6)
    assert (run.path / "figures" / "kq_pv.png").is_file()


def test_construction_probe_refuses_other_models(run):
    with pytest.raises(ValueError, match="lab train vo-lsa-1layer"):
        probe_run(run, "construction", n_prompts=50)


def test_regression_probes_refuse_boolean_runs(tmp_path):
    run = lab.train("boolean-tiny", {"task.n": 5, "task.n_points": 6, "train.steps": 2, "model.d_model": 16},
                    out=tmp_path / "b", quiet=True)
    with pytest.raises(ValueError, match="learns boolean functions"):
        probe_run(run, "match", n_prompts=20)
