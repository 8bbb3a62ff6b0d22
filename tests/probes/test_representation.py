"""Guo et al.'s probes and pasting: the pasted upper module is wired exactly like the model, probes recover a
planted linear code, the previous-token attention is read at the right entries."""
import pytest
import torch

import tasks
from fresh import fresh_seeds
from lab.config import ModelConfig
from lab.model import build_model
from probes import representation as rep


def _model(seed=0, **kw):
    cfg = ModelConfig(**{**dict(n_layers=3, n_heads=2, d_model=16, d_in=4, max_len=40, backend="reference"), **kw})
    return build_model(cfg, seed=seed).double()


def _prompts(B=6, n=7, seed=None):
    task = tasks.get("representation", d=4, D=5, phi_depth=2, noise_std=0.1)
    return task, task.sample(B, n, seed=int(torch.randint(0, 10**6, ())) if seed is None else seed,
                             dtype=torch.float64)


@pytest.mark.parametrize("layer", [0, 1, 2, 3])
def test_upper_module_fed_the_models_own_activations_reproduces_its_output(layer):
    model, (_, p) = _model(seed=int(torch.randint(0, 999, ()))), _prompts()
    fmt = tasks.formats.get("interleaved")
    x = fmt.encode(p)
    out, cache = model.run_with_cache(x)
    resid = cache[f"blocks.{layer}.hook_resid_pre"] if layer < 3 else cache["blocks.2.hook_resid_post"]
    torch.testing.assert_close(rep.run_from_layer(model, resid, layer), out, rtol=0, atol=1e-12)
    if 0 < layer < 3:  # feeding another layer's stream gives another output: the test sees miswiring
        assert (rep.run_from_layer(model, cache[f"blocks.{layer - 1}.hook_resid_pre"], layer) - out).abs().max() > 1e-6


def test_pasted_model_equals_the_model_when_given_its_read_in_and_positions():
    model, (_, p) = _model(), _prompts()
    fmt = tasks.formats.get("interleaved")
    pasted = rep.PastedModel(model, 0, d_in=4, max_len=40).double()  # positions start as the model's
    torch.testing.assert_close(pasted.pos, model.pos_embed.weight)
    with torch.no_grad():
        pasted.read_in.weight.copy_(model.embed.weight)
        pasted.read_in.bias.copy_(model.embed.bias)
    torch.testing.assert_close(pasted(fmt.encode(p)), model(fmt.encode(p)), rtol=0, atol=1e-12)
    assert not any(q.requires_grad for q in model.parameters())  # the upper module is frozen
    assert {n for n, q in pasted.named_parameters() if q.requires_grad} == {"read_in.weight", "read_in.bias", "pos"}
    assert rep.PastedModel(model, 0, 4, 40, positions="none").pos is None
    with pytest.raises(ValueError, match="positions must be one of"):
        rep.PastedModel(model, 0, 4, 40, positions="learned")


def test_paste_takes_adam_steps_on_the_new_embedding_alone():
    """paste(steps=2) equals two hand-written Adam steps on the read-in and positions, on the feature prompts of the
    documented data stream, with the MSE over all prefixes; the upper module's weights do not move."""
    model, (task, _) = _model(), _prompts()
    before = {n: q.clone() for n, q in model.named_parameters()}
    fmt = tasks.formats.get("interleaved")
    pasted = rep.paste(model, 1, task, 7, steps=2, lr=1e-2, seed=3)
    by_hand = rep.PastedModel(model, 1, task.D, 14, seed=3).double()
    opt = torch.optim.Adam([by_hand.read_in.weight, by_hand.read_in.bias, by_hand.pos], lr=1e-2)
    for step in range(2):
        p = rep.feature_prompts(task.sample(64, 7, seed=3 * 1_000_003 + step + 1, dtype=torch.float64))
        loss = ((fmt.predict(by_hand, p) - p.ys) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    for name in ("read_in.weight", "read_in.bias", "pos"):
        torch.testing.assert_close(dict(pasted.named_parameters())[name], dict(by_hand.named_parameters())[name])
    assert not torch.equal(pasted.pos, model.pos_embed.weight[:14])  # the positions trained
    assert all(torch.equal(q, before[n]) for n, q in model.named_parameters())


def test_token_probe_decodes_phi_exactly_where_it_is_planted():
    """No read-in writes Phi*(x) (Phi* is nonlinear), so plant it: after block 1 a hook writes Phi*(x_i) into the first
    coordinates of the x tokens (computed from the model's input, recorded by a pre-hook on the read-in). The probe's
    R^2 is 1 from there on and, at the read-in, that of the best affine function of x; the y tokens never see it."""
    model, (task, train) = _model(), _prompts(B=200)
    _, test = _prompts(B=100)
    fmt = tasks.formats.get("interleaved")
    seen = {}
    model.embed.register_forward_pre_hook(lambda module, args: seen.update(x=args[0][:, 0::2]))

    def write_phi(resid, hook):
        resid = resid.clone()
        resid[:, 0::2, :5] = task.phi(seen["x"])
        return resid

    model.add_hook("blocks.1.hook_resid_post", write_phi)
    scores = rep.token_probe(model, fmt, train, test, tokens="x")
    assert len(scores) == 4
    assert scores[2] == pytest.approx(1.0, abs=1e-6) and scores[3] == pytest.approx(1.0, abs=1e-3)
    # the read-in is affine in x (plus a position term per token, which one probe bias cannot remove)
    assert scores[0] == pytest.approx(rep.linear_in_x_r2(train, test), abs=0.01) and scores[0] < 0.999
    assert rep.token_probe(model, fmt, train, test, tokens="y")[2] < 0.999  # planted at the x tokens only


def test_previous_token_attention_reads_the_y_to_own_x_entries():
    model, (_, p) = _model(), _prompts(n=5)
    fmt = tasks.formats.get("interleaved")
    _, cache = model.run_with_cache(fmt.encode(p))
    got = rep.previous_token_attention(model, fmt, p)  # [L, H]
    for l in range(3):
        pattern = cache[f"blocks.{l}.attn.hook_pattern"]  # [B, H, T, T]
        by_hand = torch.stack([pattern[:, :, 2 * i + 1, 2 * i] for i in range(5)], -1).mean((0, 2))
        torch.testing.assert_close(got[l], by_hand)


def test_a_runs_pasting_is_trained_once_kept_beside_it_and_read_back_exactly(tmp_path):
    """guo-representation's pasting (the analysis's one training) is kept in RUN/pasted/: a second analysis reads the
    trained read-in and positions back (lab zoo verify recomputes from them) and predicts exactly as the first."""
    import lab
    from probes.experiments.guo import PASTED, pasted_module

    overrides = ["model.d_model=16", "model.n_layers=3", "model.n_heads=2", "task.n_points=5",
                 "curriculum.enabled=false"]
    run = lab.train("guo-representation", ["train.steps=2", *overrides], out=tmp_path / "rep", quiet=True)
    n = run.config.task.n_points
    p = run.task.sample(4, n, seed=fresh_seeds(1, __name__)[0])
    first = pasted_module(run, run.model, "trained", 1, steps=3)
    again = pasted_module(lab.load_run(run.path), run.model, "trained", 1, steps=3)
    name = "trained-from-block1-3steps-seed0-model-step2.safetensors"
    assert [f.name for f in (run.path / PASTED).iterdir()] == [name]
    assert torch.equal(rep.pasted_predictions(first, p), rep.pasted_predictions(again, p))
    untrained = rep.PastedModel(run.model, 1, run.task.D, 2 * n, seed=0)
    assert not torch.equal(untrained.read_in.weight, again.read_in.weight)  # what was read back had trained
    pasted_module(run, run.model, "trained", 1, steps=2)  # other settings: another training, its own file
    assert len(list((run.path / PASTED).iterdir())) == 2
    (run.path / PASTED / name).write_bytes((run.path / "model.safetensors").read_bytes())  # foreign: one line
    with pytest.raises(ValueError, match="does not hold a pasted read-in"):
        pasted_module(run, run.model, "trained", 1, steps=3)
    on = lab.train("guo-representation", ["train.steps=4", *overrides], out=run.path, quiet=True)
    pasted_module(on, on.model, "trained", 1, steps=3)  # trained on since: pasted again, not read back
    assert (run.path / PASTED / name.replace("step2", "step4")).is_file()
