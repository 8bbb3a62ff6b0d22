"""The lab's models in the field's other tools, as they are: an nnsight trace of a zoo model reads the same
activations as the lab's own hooks (run_with_cache) and its interventions change the output as run_with_hooks does."""
import pytest
import torch

import lab

nnsight = pytest.importorskip("nnsight", reason="the interop extra: pip install -e '.[interop]' (make setup does)")


@pytest.fixture(scope="module", params=["zoo:vo-1layer/train", "zoo:garg-curve/linreg"])
def zoo_model(request):
    run = lab.load_run(request.param)
    prompts = run.task.sample(8, n_points=run.config.task.n_points, seed=torch.randint(0, 2**31, ()).item())
    return run, run.format.encode(prompts)


def test_an_nnsight_trace_saves_what_the_labs_hooks_see(zoo_model):
    """Bit for bit: the lab's hooks on the attention and residual outputs (not on the pattern, which would switch
    the attention to its materialised path) and nnsight's saves read the same forward pass."""
    run, x = zoo_model
    traced = nnsight.NNsight(run.model)
    n_layers = run.config.model.n_layers
    saved = []
    with traced.trace(x):  # modules are read in the order they run
        for block in traced.blocks[:n_layers]:
            saved.append((block.attn.output.save(), block.output.save()))
        out = traced.output.save()
    seen = {}

    def keep(t, hook):
        seen[hook.name] = t.detach().clone()

    names = [f"blocks.{i}.hook_{k}" for i in range(n_layers) for k in ("attn_out", "resid_post")]
    logits = run.model.run_with_hooks(x, fwd_hooks=[(name, keep) for name in names])
    assert torch.equal(out, logits) and torch.equal(out, run.model(x))
    assert len(saved) == n_layers
    for i, (attn, resid) in enumerate(saved):
        assert torch.equal(attn, seen[f"blocks.{i}.hook_attn_out"]), i
        assert torch.equal(resid, seen[f"blocks.{i}.hook_resid_post"]), i


def test_an_nnsight_ablation_equals_the_same_ablation_through_run_with_hooks(zoo_model):
    run, x = zoo_model
    traced = nnsight.NNsight(run.model)
    with traced.trace(x):
        traced.blocks[0].attn.output[:] = 0
        ablated = traced.output.save()
    hooked = run.model.run_with_hooks(x, fwd_hooks=[("blocks.0.hook_attn_out", lambda t, hook: torch.zeros_like(t))])
    clean = run.model(x)
    assert torch.equal(ablated, hooked)
    assert (ablated - clean).abs().max() > 1e-3  # the ablation did something: the test can fail
