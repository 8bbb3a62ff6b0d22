"""The TransformerLens-style toolkit: hook shapes, persistent and backward hooks, the ActivationCache algebra."""
import pytest
import torch

from lab.cache import act_name
from lab.config import ModelConfig
from lab.ensemble import stack_models
from lab.model import build_model


def _model(seed=0, **kw):
    base = dict(n_layers=2, n_heads=2, d_model=16, d_mlp=32, d_in=4, max_len=32, backend="reference")
    model = build_model(ModelConfig(**{**base, **kw}), seed=seed).double()
    with torch.no_grad():  # away from the init (zero biases, unit LayerNorms) so every term is exercised
        for p in model.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=torch.Generator().manual_seed(seed + p.numel()),
                                     dtype=p.dtype))
    return model


def _x(seed=1, B=3, T=9, d=4):
    return torch.randn(B, T, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_hook_shapes_follow_transformerlens():
    model = _model(pos="learned")
    _, cache = model.run_with_cache(_x())
    assert cache["hook_pos_embed"].shape == (3, 9, 16)  # [B, T, D], so x[:, t] indexes a position
    assert cache["blocks.0.ln1.hook_scale"].shape == (3, 9, 1)
    assert cache["blocks.1.ln2.hook_normalized"].shape == (3, 9, 16)
    assert cache["ln_final.hook_normalized"].shape == (3, 9, 16)
    assert "blocks.0.attn.hook_result" not in cache and "blocks.0.hook_attn_in" not in cache  # opt-in
    attn_only = _model(d_mlp=0)
    assert "blocks.0.hook_resid_mid" not in attn_only.hook_names  # as in TransformerLens
    assert "blocks.0.attn.hook_rot_q" in _model(pos="rotary").hook_names


def test_patching_pos_embed_at_one_position_changes_only_that_and_later_outputs():
    model, x = _model(), _x()
    out = model(x)
    patched = model.run_with_hooks(x, fwd_hooks=[("hook_pos_embed", lambda p, hook: p.index_fill(1, torch.tensor([4]),
                                                                                                 0.0))])
    assert torch.equal(patched[:, :4], out[:, :4])  # causal: earlier positions untouched
    assert not torch.allclose(patched[:, 4], out[:, 4])


def test_ln_normalized_is_centred_unit_and_affine_gives_the_output():
    model = _model()
    _, cache = model.run_with_cache(_x())
    n = cache["ln_final.hook_normalized"]
    torch.testing.assert_close(n.mean(-1), torch.zeros(3, 9, dtype=torch.float64))
    ln = model.ln_final
    ref = torch.nn.functional.layer_norm(cache["blocks.1.hook_resid_post"], (16,), ln.weight, ln.bias, ln.eps)
    torch.testing.assert_close(n * ln.weight + ln.bias, ref, rtol=0, atol=1e-12)


def test_short_names_equal_full_names():
    model = _model()
    _, cache = model.run_with_cache(_x())
    assert cache["resid_pre", 0] is cache["blocks.0.hook_resid_pre"]
    assert cache["pattern", 1] is cache["blocks.1.attn.hook_pattern"]
    assert cache["attn", 1] is cache["blocks.1.attn.hook_pattern"]
    assert cache["scale", 0, "ln2"] is cache["blocks.0.ln2.hook_scale"]
    assert cache["scale"] is cache["ln_final.hook_scale"]
    assert cache["mlp_out", -1] is cache["blocks.1.hook_mlp_out"]
    assert cache["embed"] is cache["hook_embed"] and ("post", 0) in cache
    assert act_name("q", 3) == "blocks.3.attn.hook_q"
    with pytest.raises(KeyError, match="unknown activation"):
        cache["bogus", 0]
    assert set(cache.keys()) == set(dict(cache))
    assert cache.to("cpu")["z", 0].device.type == "cpu"


@pytest.mark.parametrize("kw", [{}, {"d_mlp": 0}, {"layernorm": False}, {"pos": "rotary"}])
def test_decompose_and_accumulated_resid_add_up_to_the_residual_stream(kw):
    model = _model(**kw)
    _, cache = model.run_with_cache(_x())
    final = cache["blocks.1.hook_resid_post"]
    parts, labels = cache.decompose_resid(return_labels=True)
    torch.testing.assert_close(parts.sum(0), final, rtol=0, atol=1e-6)
    assert labels[0] == "embed" and labels[-1] == ("1_attn_out" if kw.get("d_mlp") == 0 else "1_mlp_out")
    torch.testing.assert_close(cache.decompose_resid(layer=1).sum(0), cache["resid_pre", 1], rtol=0, atol=1e-6)
    if "d_mlp" not in kw:
        torch.testing.assert_close(cache.decompose_resid(layer=1, mlp_input=True).sum(0), cache["resid_mid", 1],
                                   rtol=0, atol=1e-6)
    acc, acc_labels = cache.accumulated_resid(return_labels=True)
    assert acc_labels == ["0_pre", "1_pre", "final_post"]
    torch.testing.assert_close(acc[-1], final)
    heads = cache.stack_head_results(incl_remainder=True)
    assert heads.shape == (5, 3, 9, 16)
    torch.testing.assert_close(heads.sum(0), final, rtol=0, atol=1e-6)


def test_head_results_equal_the_cached_hook_result_and_sum_to_attn_out():
    model = _model()
    model.set_use_attn_result(True)
    _, cache = model.run_with_cache(_x())
    model.set_use_attn_result(False)
    _, plain = model.run_with_cache(_x())
    torch.testing.assert_close(cache.stack_head_results(), plain.stack_head_results(), rtol=0, atol=1e-12)
    result = cache["result", 1]  # [B, T, H, D]
    torch.testing.assert_close(result.sum(-2) + model.blocks[1].attn.W_O.bias, cache["attn_out", 1],
                               rtol=0, atol=1e-12)


@pytest.mark.parametrize("kw", [{}, {"output": "classes", "n_classes": 3}, {"layernorm": False}])
def test_logit_attrs_sum_to_the_prediction_minus_the_readout_bias(kw):
    model = _model(**kw)
    out, cache = model.run_with_cache(_x())
    stack = cache.decompose_resid()
    attrs = cache.logit_attrs(stack, classes=None)
    bias = cache.readout_bias()
    torch.testing.assert_close(attrs.sum(0), out - bias, rtol=0, atol=1e-6)
    heads = cache.stack_head_results(incl_remainder=True)
    torch.testing.assert_close(cache.logit_attrs(heads).sum(0), out - bias, rtol=0, atol=1e-6)
    if kw.get("output") == "classes":
        picked = cache.logit_attrs(stack, classes=torch.tensor([0, 2, 1]), incorrect=0)
        torch.testing.assert_close(picked.sum(0)[1], (out - bias)[1, :, 2] - (out - bias)[1, :, 0])


def test_persistent_hooks_stay_until_reset_hooks():
    model, x = _model(), _x()
    clean = model(x)
    model.add_hook("blocks.0.hook_attn_out", lambda t, hook: torch.zeros_like(t))
    assert not torch.allclose(model(x), clean)
    assert not torch.allclose(model(x), clean)  # still there on the next call
    model.reset_hooks()
    assert torch.equal(model(x), clean)
    assert all(not h.fns and not h.bwd_fns for h in model.hook_dict.values())
    with model.hooks(fwd_hooks=[(lambda n: n.endswith("hook_attn_out"), lambda t, hook: 0 * t)]):
        ablated = model(x)
    assert not torch.allclose(ablated, clean) and torch.equal(model(x), clean)


def test_backward_hooks_see_the_gradient_autograd_gives():
    model, x = _model(), _x()
    grads = {}

    def keep(g, *, hook):
        grads[hook.name] = g

    out = model.run_with_hooks(x, bwd_hooks=[("blocks.1.hook_resid_pre", keep)], reset_hooks_end=False)
    out.sum().backward()
    model.reset_hooks()
    # the same gradient from autograd directly
    _, cache = model.run_with_cache(x, names_filter=["blocks.1.hook_resid_pre"], detach=False)
    resid = cache["resid_pre", 1]
    ref = torch.autograd.grad(model.run_with_hooks(x, fwd_hooks=[("blocks.1.hook_resid_pre",
                                                                  lambda t, hook: resid)]).sum(), resid)[0]
    torch.testing.assert_close(grads["blocks.1.hook_resid_pre"], ref, rtol=0, atol=1e-12)
    doubled = model.run_with_hooks(x, bwd_hooks=[("blocks.1.hook_resid_pre", lambda g, hook: 2 * g)],
                                   reset_hooks_end=False)
    model.zero_grad()
    doubled.sum().backward()
    model.reset_hooks()
    w = model.blocks[0].attn.W_V.weight.grad.clone()
    model.zero_grad()
    model(x).sum().backward()
    torch.testing.assert_close(w, 2 * model.blocks[0].attn.W_V.weight.grad)


def test_attn_in_patch_reaches_one_head_only():
    """A patch at blocks.l.hook_attn_in[:, :, h] changes head h's z and no other head's."""
    model, x = _model(), _x()
    model.set_use_attn_in(True)
    _, base = model.run_with_cache(x)
    torch.testing.assert_close(model(x), _model()(x), rtol=0, atol=1e-12)  # same function as without

    def bump(t, *, hook):
        t = t.clone()
        t[:, :, 1] += torch.linspace(-1, 1, t.shape[-1], dtype=t.dtype)  # not a constant: LayerNorm would remove it
        return t

    with model.hooks(fwd_hooks=[("blocks.1.hook_attn_in", bump)]):
        _, patched = model.run_with_cache(x)
    model.set_use_attn_in(False)
    assert torch.equal(patched["z", 1][:, :, 0], base["z", 1][:, :, 0])
    assert not torch.allclose(patched["z", 1][:, :, 1], base["z", 1][:, :, 1])


def test_stack_hooks_see_models_and_prompts_apart():
    models = [_model(seed=s) for s in range(3)]
    stack = stack_models(models)
    xs = torch.stack([_x(seed=s) for s in range(3)])  # [E, B, T, d]
    _, cache = stack.run_with_cache(xs)
    assert cache["pattern", 0].shape == (3, 3, 2, 9, 9)  # [E, B, H, T, T]
    for i, m in enumerate(models):
        _, own = m.run_with_cache(xs[i])
        torch.testing.assert_close(cache["pattern", 1][i], own["pattern", 1], rtol=0, atol=1e-12)
        torch.testing.assert_close(cache.logit_attrs(cache.decompose_resid())[:, i],
                                   own.logit_attrs(own.decompose_resid()), rtol=0, atol=1e-10)
        torch.testing.assert_close(cache.readout_bias()[i], own.readout_bias(), rtol=0, atol=1e-12)
