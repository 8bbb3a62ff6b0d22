"""Export to the real TransformerLens: every shared hook equal in float64, a patching experiment equal, refusals in
one line; safetensors weights for checkpoints and shared runs."""
import io
import json
from contextlib import redirect_stderr, redirect_stdout

import pytest
import torch

import lab
from lab import export
from lab.cli import main
from lab.config import ModelConfig
from lab.model import build_model

ARCHITECTURES = {
    "garg": {},
    "rotary": {"pos": "rotary"},
    "attention-only": {"d_mlp": 0},
    "no-mask-relu-no-bias": {"mask": "none", "act": "relu", "bias": False},
    "gelu-tanh": {"act": "gelu_tanh"},
    "no-layernorm-no-positions": {"layernorm": False, "pos": "none"},
    "tokens-classes": {"input": "tokens", "vocab_size": 11, "output": "classes", "n_classes": 3},
    "tied": {"tied": True, "n_layers": 3},
}


def _model(seed=0, **kw):
    cfg = ModelConfig(**{**dict(n_layers=2, n_heads=2, d_model=16, d_in=5, max_len=32, backend="reference"), **kw})
    model = build_model(cfg, seed=seed).double()
    with torch.no_grad():  # nonzero biases and LayerNorm affines, so every term is compared
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, dtype=p.dtype, generator=torch.Generator().manual_seed(p.numel())))
    return model


def _inputs(model, seed, B=3, T=9):
    g = torch.Generator().manual_seed(seed)
    if model.cfg.input == "tokens":
        return torch.randint(0, model.cfg.vocab_size, (B, T), generator=g)
    return torch.randn(B, T, model.cfg.d_in, generator=g, dtype=torch.float64)


def _tl_run(tl, model, x, **kw):
    tokens, hooks = export.read_in(model, x)
    with tl.hooks(fwd_hooks=hooks):
        return tl.run_with_cache(tokens, **kw)


@pytest.mark.parametrize("kw", ARCHITECTURES.values(), ids=ARCHITECTURES.keys())
def test_every_shared_hook_equals_transformerlens_in_float64(kw):
    model = _model(**kw)
    tl = export.to_transformer_lens(model)
    for setter in ("set_use_attn_result", "set_use_attn_in"):
        getattr(model, setter)(True)
        getattr(tl, setter)(True)
    x = _inputs(model, seed=int(torch.randint(0, 10**6, ())))  # fresh inputs every run
    out, cache = model.run_with_cache(x)
    tl_out, tl_cache = _tl_run(tl, model, x)
    shared = set(cache) & set(tl_cache.keys())
    assert set(cache) - shared == set(), "a hook of ours has no TransformerLens namesake"
    assert {"blocks.0.attn.hook_result", "blocks.0.hook_attn_in"} <= shared
    assert ("ln_final.hook_scale" in shared) == model.cfg.layernorm
    for name in shared:
        assert cache[name].shape == tl_cache[name].shape, name
        torch.testing.assert_close(cache[name], tl_cache[name], rtol=0, atol=1e-10, msg=name)
    torch.testing.assert_close(out if out.dim() == 3 else out[..., None], tl_out, rtol=0, atol=1e-10)


def test_a_patching_experiment_gives_the_same_numbers_in_both():
    """Activation patching of head 1's z at each position of layer 1, clean -> corrupt, in ours and in TL."""
    model = _model()
    tl = export.to_transformer_lens(model)
    clean, corrupt = _inputs(model, 1, B=1), _inputs(model, 2, B=1)
    _, clean_cache = model.run_with_cache(clean)
    tokens, embed_hooks = export.read_in(model, corrupt)
    for t in range(clean.shape[1]):
        def patch(z, hook, t=t):
            z = z.clone()
            z[:, t, 1] = clean_cache["z", 1][:, t, 1]
            return z

        ours = model.run_with_hooks(corrupt, fwd_hooks=[("blocks.1.attn.hook_z", patch)])
        theirs = tl.run_with_hooks(tokens, fwd_hooks=embed_hooks + [("blocks.1.attn.hook_z", patch)])
        torch.testing.assert_close(ours, theirs[..., 0], rtol=0, atol=1e-10)
    assert not torch.allclose(ours, model(corrupt))  # the patch did something


@pytest.mark.parametrize("kw,what", [({"attn": "linear"}, "linear attention"), ({"mask": "context"}, "context mask"),
                                     ({"output": "minus_last"}, "von Oswald read-out")])
def test_what_transformerlens_cannot_express_is_refused_in_one_line(kw, what):
    with pytest.raises(export.ExportError, match=what) as e:
        export.to_transformer_lens(_model(**kw))
    assert "\n" not in str(e.value)


SMALL = ["task.d=3", "task.n_points=5", "model.n_layers=2", "model.d_model=16", "train.batch_size=8",
         "train.steps=10", "train.checkpoint_every=10"]


def _cli(args):
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(args)
    return code, out.getvalue(), err.getvalue()


def test_lab_export_writes_what_loads_back(tmp_path):
    run = lab.train("tiny-linreg", SMALL, out=tmp_path / "run", quiet=True)
    code, out, _ = _cli(["export", str(run.path), "--json"])
    assert code == 0
    folder = json.loads(out.strip().splitlines()[-1])["out"]
    tl = export.load_transformer_lens(folder)
    p = run.task.sample(4, 5, seed=3)
    x = run.format.encode(p)
    tokens, hooks = export.read_in_from_export(folder, x)  # the folder alone: no lab model needed
    torch.testing.assert_close(tl.run_with_hooks(tokens, fwd_hooks=hooks)[..., 0], run.model(x), rtol=1e-5, atol=1e-6)
    # a shareable copy with no pickle: config.json + model.safetensors, read by lab.load_run
    code, out, _ = _cli(["export", str(run.path), "--to", "safetensors", "--out", str(tmp_path / "shared"), "--json"])
    assert code == 0 and sorted(q.name for q in (tmp_path / "shared").iterdir()) == ["config.json", "model.safetensors"]
    shared = lab.load_run(tmp_path / "shared")
    torch.testing.assert_close(shared.predict(p), run.predict(p), rtol=0, atol=0)
    assert shared.step == 10


def test_the_trainer_writes_safetensors_weights_equal_to_the_checkpoint(tmp_path):
    run = lab.train("tiny-linreg", SMALL, out=tmp_path / "run", quiet=True)
    weights, meta = lab.runs.read_safetensors(run.path / "model.safetensors")
    ckpt = lab.runs.safe_torch_load(run.path / "checkpoint.pt")
    assert meta["step"] == str(ckpt["step"]) == "10"
    assert weights.keys() == ckpt["model"].keys()
    assert all(torch.equal(weights[k], ckpt["model"][k]) for k in weights)


def test_export_refusals_are_one_line_and_write_nothing(tmp_path):
    run = lab.train("vo-lsa-1layer", ["train.steps=5", "train.checkpoint_every=5", "train.batch_size=8"],
                    out=tmp_path / "lsa", quiet=True)
    code, _, err = _cli(["export", str(run.path)])
    assert code == 2 and len(err.strip().splitlines()) == 1 and "linear attention" in err
    assert not (run.path / "export").exists()
    before = {p.name: p.read_bytes() for p in run.path.iterdir() if p.is_file()}
    for out in (run.path, tmp_path / "lsa-copy"):  # the run itself, and another training run's folder
        if out != run.path:
            lab.train("vo-lsa-1layer", ["train.steps=1", "train.batch_size=8"], out=out, quiet=True)
        code, _, err = _cli(["export", str(run.path), "--to", "safetensors", "--out", str(out)])
        assert code == 2 and "holds a training run" in err and len(err.strip().splitlines()) == 1
    assert {p.name: p.read_bytes() for p in run.path.iterdir() if p.is_file()} == before
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text((run.path / "config.json").read_text())
    (tmp_path / "bad" / "model.safetensors").write_bytes(b"\x00" * 40)
    code, _, err = _cli(["eval", str(tmp_path / "bad")])
    assert code == 2 and "model.safetensors is not a readable safetensors file" in err
