import pytest
import torch

import tasks
from lab.config import ModelConfig
from lab.model import attention_mask, build_model

TL_NAMES = ["hook_embed", "hook_pos_embed", "blocks.0.hook_resid_pre", "blocks.0.attn.hook_q", "blocks.0.attn.hook_k",
            "blocks.0.attn.hook_v", "blocks.0.attn.hook_attn_scores", "blocks.0.attn.hook_pattern",
            "blocks.0.attn.hook_z", "blocks.0.hook_attn_out", "blocks.0.hook_resid_mid", "blocks.0.mlp.hook_pre",
            "blocks.0.mlp.hook_post", "blocks.0.hook_mlp_out", "blocks.0.hook_resid_post"]


def _cfg(**kw):
    base = dict(n_layers=2, n_heads=2, d_model=16, d_mlp=32, d_in=4, max_len=32)
    return ModelConfig(**{**base, **kw})


def _inputs(B=3, T=10, d=4, seed=0):
    return torch.randn(B, T, d, generator=torch.Generator().manual_seed(seed))


def test_output_shapes_for_each_read_in_and_read_out():
    x = _inputs()
    assert build_model(_cfg())(x).shape == (3, 10)
    assert build_model(_cfg(output="classes", n_classes=5))(x).shape == (3, 10, 5)
    ids = torch.randint(0, 7, (3, 10), generator=torch.Generator().manual_seed(1))
    assert build_model(_cfg(input="tokens", vocab_size=7))(ids).shape == (3, 10)


def test_seed_fixes_initial_weights_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a, b, c = build_model(_cfg(), seed=1), build_model(_cfg(), seed=1), build_model(_cfg(), seed=2)
    assert torch.rand(1) == before
    for (n, pa), pb in zip(a.named_parameters(), b.parameters()):
        assert torch.equal(pa, pb), n
    assert any(not torch.equal(pa, pc) for pa, pc in zip(a.parameters(), c.parameters()))


def test_cache_has_transformerlens_names_and_shapes():
    model = build_model(_cfg())
    out, cache = model.run_with_cache(_inputs())
    for name in TL_NAMES:
        assert name in cache, name
    assert cache["blocks.1.attn.hook_q"].shape == (3, 10, 2, 8)
    assert cache["blocks.1.attn.hook_pattern"].shape == (3, 2, 10, 10)
    assert cache["blocks.1.mlp.hook_post"].shape == (3, 10, 32)
    pattern = cache["blocks.0.attn.hook_pattern"]
    torch.testing.assert_close(pattern.sum(-1), torch.ones(3, 2, 10))
    assert (pattern.triu(1) == 0).all()  # causal
    torch.testing.assert_close(out, model(_inputs()))  # caching does not change the output


def test_names_filter_and_unknown_hook():
    model = build_model(_cfg())
    _, cache = model.run_with_cache(_inputs(), names_filter=lambda n: n.endswith("hook_pattern"))
    assert sorted(cache) == ["blocks.0.attn.hook_pattern", "blocks.1.attn.hook_pattern"]
    with pytest.raises(ValueError, match="unknown hook"):
        model.run_with_cache(_inputs(), names_filter=["blocks.9.hook_resid_pre"])


def test_patching_the_residual_stream_transplants_the_other_input():
    """Replacing the last block's resid_post with input B's makes the output equal model(B)."""
    model = build_model(_cfg(n_layers=1))
    a, b = _inputs(seed=1), _inputs(seed=2)
    _, cache_b = model.run_with_cache(b)
    patched = model.run_with_hooks(a, fwd_hooks=[("blocks.0.hook_resid_post",
                                                  lambda x, hook: cache_b[hook.name])])
    torch.testing.assert_close(patched, model(b))
    assert not torch.allclose(model(a), model(b))
    assert all(not h.fns for h in model.hook_dict.values())  # hooks removed afterwards


def test_zero_ablating_attention_equals_a_model_without_that_attention():
    model = build_model(_cfg(n_layers=1, d_mlp=0))
    x = _inputs()
    ablated = model.run_with_hooks(x, fwd_hooks=[("blocks.0.hook_attn_out", lambda t, hook: torch.zeros_like(t))])
    expected = model.unembed(model.ln_final(model.embed(x) + model.pos_embed.weight[:10])).squeeze(-1)
    torch.testing.assert_close(ablated, expected)


def test_sdpa_and_materialised_paths_agree():
    x = _inputs()
    fast, slow = build_model(_cfg(backend="auto")), build_model(_cfg(backend="reference"))
    torch.testing.assert_close(fast(x), slow(x), rtol=1e-5, atol=1e-6)


def test_linear_attention_layer_by_hand():
    """One linear self-attention layer, no LN/MLP/bias: out = W_out(h + W_O sum_{j<=i} (q_i.k_j) v_j)."""
    cfg = _cfg(n_layers=1, n_heads=1, d_mlp=0, layernorm=False, pos="none", attn="linear", bias=False)
    model = build_model(cfg).double()
    x = _inputs().double()
    attn = model.blocks[0].attn
    h = model.embed(x)
    q, k, v = attn.W_Q(h), attn.W_K(h), attn.W_V(h)
    scores = (q @ k.mT).tril()
    expected = model.unembed(h + attn.W_O(scores @ v)).squeeze(-1)
    torch.testing.assert_close(model(x), expected, rtol=0, atol=1e-12)


def test_context_mask_reads_context_tokens_only():
    mask = attention_mask("context", 4)
    assert mask.tolist() == [[True, True, True, False]] * 4
    model = build_model(_cfg(mask="context", pos="none"))
    x = _inputs()
    y = x.clone()
    y[:, -1] += 5.0  # change the query token: no other token may change
    torch.testing.assert_close(model(x)[:, :-1], model(y)[:, :-1])
    assert not torch.allclose(model(x)[:, -1], model(y)[:, -1])


def test_query_with_no_context_gives_finite_output_and_gradient():
    for attn in ("softmax", "linear"):
        model = build_model(_cfg(mask="context", pos="none", attn=attn))
        x = _inputs(T=1).requires_grad_()
        out = model(x)
        out.sum().backward()
        assert torch.isfinite(out).all() and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("fmt_name", ["interleaved", "disjoint", "paired"])
def test_causal_model_prediction_for_x_i_never_sees_y_i(fmt_name):
    task = tasks.get("linear_regression", d=4)
    fmt = tasks.formats.get(fmt_name)
    model = build_model(_cfg(d_in=fmt.input_dim(4)))
    p = task.sample(3, 6, seed=0)
    q = tasks.Prompts(p.xs, p.ys.clone(), p.params)
    q.ys[:, 3] += 10.0
    a, b = fmt.predict(model, p), fmt.predict(model, q)
    torch.testing.assert_close(a[:, :4], b[:, :4], rtol=0, atol=0)
    assert (a[:, 4] - b[:, 4]).abs().max() > 1e-6


def test_garg_standard_model_has_9_5m_parameters():
    from lab.config import make_config

    model = build_model(make_config("garg-linreg").model)
    n_without_pos = model.n_params() - model.pos_embed.weight.numel()
    assert 9.4e6 < n_without_pos < 9.6e6


def test_identity_read_in_and_minus_last_read_out():
    cfg = _cfg(input="identity", output="minus_last", d_model=4, n_heads=1, d_in=4)
    model = build_model(cfg)
    assert not any("embed.weight" == n or n.startswith("unembed") for n, _ in model.named_parameters())
    x = _inputs()
    _, cache = model.run_with_cache(x)
    torch.testing.assert_close(cache["hook_embed"], x)
    torch.testing.assert_close(model(x), -model.ln_final(cache["blocks.1.hook_resid_post"])[..., -1])


def test_tied_blocks_share_weights_but_keep_their_own_hooks():
    tied, untied = build_model(_cfg(n_layers=3, tied=True)), build_model(_cfg(n_layers=3))
    assert tied.blocks[2].attn.W_Q.weight is tied.blocks[0].attn.W_Q.weight
    assert tied.blocks[1].ln2.weight is tied.blocks[0].ln2.weight
    per_block = sum(p.numel() for p in untied.blocks[0].parameters())
    assert tied.n_params() == untied.n_params() - 2 * per_block
    _, cache = tied.run_with_cache(_inputs(), names_filter=lambda n: n.endswith("hook_resid_post"))
    assert len(cache) == 3 and not torch.allclose(cache["blocks.0.hook_resid_post"], cache["blocks.1.hook_resid_post"])
    # applying block 0 three times by hand gives the same output
    x = tied.embed(_inputs()) + tied.pos_embed.weight[:10]
    for _ in range(3):
        x = tied.blocks[0](x)
    torch.testing.assert_close(tied(_inputs()), tied.unembed(tied.ln_final(x)).squeeze(-1))


def test_rotary_is_a_complex_rotation_and_scores_depend_on_offsets_only():
    from lab.model import rotary

    x = torch.randn(2, 9, 3, 8, dtype=torch.float64)  # [B, T, H, dh]
    out = rotary(x)
    theta = torch.arange(9, dtype=torch.float64)[:, None] * 10000.0 ** (-torch.arange(0, 8, 2, dtype=torch.float64) / 8)
    z = torch.complex(x[..., 0::2], x[..., 1::2]) * torch.polar(torch.ones_like(theta), theta)[:, None]  # [B,T,H,4]
    assert torch.allclose(out[..., 0::2], z.real, atol=1e-12) and torch.allclose(out[..., 1::2], z.imag, atol=1e-12)
    q, k = torch.randn(8, dtype=torch.float64), torch.randn(8, dtype=torch.float64)
    rq, rk = rotary(q.expand(1, 9, 1, 8))[0, :, 0], rotary(k.expand(1, 9, 1, 8))[0, :, 0]  # [T, dh]
    scores = rq @ rk.T  # [T, T]
    for offset in (-3, 0, 2):
        diag = torch.diagonal(scores, offset)
        assert torch.allclose(diag, diag[0].expand_as(diag), atol=1e-12)
    assert not torch.allclose(torch.diagonal(scores, 0)[0], torch.diagonal(scores, 2)[0])


def test_torch_io_init_is_nn_linear_default_on_read_in_and_read_out_only():
    """io_init = "torch" (Garg et al.'s code): read-in and read-out weights and biases U(+-1/sqrt(fan_in)), std
    1/sqrt(3 fan_in) (0.129 for d = 20); every other parameter exactly as the GPT-2 init draws it."""
    kw = dict(n_layers=2, n_heads=2, d_model=64, d_in=20, max_len=32)
    gpt2, torch_io = build_model(ModelConfig(**kw), seed=3), build_model(ModelConfig(**kw, io_init="torch"), seed=3)
    for layer in (torch_io.embed, torch_io.unembed):
        bound = 1 / layer.in_features ** 0.5
        assert bound >= layer.weight.abs().max() > 0.9 * bound  # fills the interval
        assert bound >= layer.bias.abs().max() and (layer.bias != 0).all()  # nonzero biases
        assert layer.weight.std().item() == pytest.approx(bound / 3**0.5, rel=0.15)
    assert torch_io.embed.weight.std().item() == pytest.approx(0.129, abs=0.01)
    assert gpt2.embed.bias.abs().max() == 0 and gpt2.embed.weight.std().item() == pytest.approx(0.02, rel=0.15)
    for name, p in torch_io.named_parameters():  # the blocks and positions keep the GPT-2 init
        if name.startswith("blocks.") and name.endswith(".bias") and ".ln" not in name:
            assert p.abs().max() == 0, name
    assert torch_io.blocks[0].attn.W_Q.weight.std().item() == pytest.approx(0.02, rel=0.15)
    assert torch_io.pos_embed.weight.std().item() == pytest.approx(0.02, rel=0.15)


def test_gelu_tanh_is_gpt2_tanh_approximation():
    x = torch.randn(1000, dtype=torch.float64) * 3
    model = build_model(ModelConfig(n_layers=1, n_heads=1, d_model=8, d_in=3, act="gelu_tanh"), seed=0).double()
    by_formula = 0.5 * x * (1 + torch.tanh((2 / torch.pi) ** 0.5 * (x + 0.044715 * x**3)))
    torch.testing.assert_close(model.blocks[0].mlp.act(x), by_formula, rtol=0, atol=1e-12)
    assert (model.blocks[0].mlp.act(x) - torch.nn.functional.gelu(x)).abs().max() > 1e-5  # not the exact GELU
