"""Model support for graph search: token read-in, class read-out, padding mask, set loss, sign-of-momentum."""
import math

import pytest
import torch

import lab
import tasks
from lab.config import ConfigError, make_config
from lab.losses import set_cross_entropy
from lab.model import build_model
from lab.optimizers import SignMomentum
from tasks.graph_search import PAD, encode_tokens, lengths

SMALL = {"task.n_vertices": 8, "model.n_layers": 2, "model.d_model": 32, "train.steps": 6, "train.batch_size": 8,
         "train.log_every": 2, "train.checkpoint_every": 3}


def _model(seed=0, **over):
    cfg = make_config("graph-search", {**SMALL, **over})
    return cfg, build_model(cfg.model, seed=seed).eval()


@pytest.mark.parametrize("backend", ["sdpa", "reference"])
def test_padding_never_changes_the_output(backend):
    cfg, model = _model(**{"model.backend": backend, "model.init_std": 0.3})
    task, fmt = cfg.task.build(), tasks.formats.get("graph")
    p = task.sample(16, seed=int(torch.randint(0, 10**6, ()).item()))
    tight = fmt.predict(model, p)  # [B, C], padded to the longest prompt in the batch
    tokens = encode_tokens(p)
    T = tokens.shape[1]
    wide = torch.cat([tokens, torch.full((16, task.seq_len() - T), PAD)], 1)  # padded to the longest possible
    real = wide != PAD
    garbage = torch.where(real, wide, torch.randint(4, cfg.model.vocab_size, wide.shape))  # padding with content
    rows, last = torch.arange(16), lengths(p) - 1
    for padded in (wide, garbage):
        out = model(padded, key_padding=real)[rows, last]
        assert torch.allclose(out, tight, atol=1e-5), (out - tight).abs().max()
    alone = fmt.predict(model, tasks.Prompts(p.xs[:1], p.ys[:1], {k: v[:1] for k, v in p.params.items()}))
    assert torch.allclose(alone, tight[:1], atol=1e-5)
    # without the mask the garbage would change the answer: the check above can fail
    assert not torch.allclose(model(garbage)[rows, last], tight, atol=1e-3)


def test_set_cross_entropy_is_minus_log_target_mass():
    logits = torch.randn(5, 7, dtype=torch.float64)
    targets = (torch.rand(5, 7) < 0.4).double()
    targets[:, 0] = 1
    probs = torch.softmax(logits, -1)
    expected = -torch.log((probs * targets).sum(-1))
    assert torch.allclose(set_cross_entropy(logits, targets), expected, atol=1e-12)
    one = torch.zeros(5, 7, dtype=torch.float64)
    one[torch.arange(5), torch.arange(5)] = 1
    assert torch.allclose(set_cross_entropy(logits, one),
                          torch.nn.functional.cross_entropy(logits, torch.arange(5), reduction="none"), atol=1e-12)


def test_sign_momentum_matches_its_formula():
    torch.manual_seed(int(torch.randint(0, 10**6, ()).item()))
    w = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    x, lr, b1, wd = torch.randn(9, 3, dtype=torch.float64), 0.01, 0.8, 0.1
    opt = SignMomentum([w], lr=lr, beta1=b1, weight_decay=wd)
    ref, m = w.detach().clone(), torch.zeros(4, 3, dtype=torch.float64)
    for _ in range(4):
        opt.zero_grad()
        (x @ w.T).pow(3).sum().backward()
        g = 3 * ((x @ ref.T) ** 2).T @ x  # the gradient in closed form
        m = b1 * m + (1 - b1) * g
        ref = ref * (1 - lr * wd) - lr * torch.sign(m)
        opt.step()
        assert torch.allclose(w.detach(), ref, atol=1e-12)


def test_graph_run_trains_resumes_and_predicts(tmp_path):
    over = {**SMALL, "train.optimizer": "signum", "train.lr": 1e-3}
    run = lab.train("graph-search", over, out=tmp_path / "g", quiet=True)
    assert len(run.metrics) == 3 and all(math.isfinite(r["loss"]) for r in run.metrics)
    assert run.config.model.vocab_size == 12 and run.config.model.n_classes == 8
    full = run.model.state_dict()
    lab.train("graph-search", {**over, "train.steps": 3}, out=tmp_path / "h", quiet=True)
    resumed = lab.train("graph-search", over, out=tmp_path / "h", quiet=True)
    for k, v in resumed.model.state_dict().items():
        assert torch.allclose(v, full[k], atol=1e-6), k
    p = run.task.sample(10, seed=1)
    assert run.predict(p).shape == (10, 8)


@pytest.mark.parametrize("over, key", [({"task.format": "interleaved"}, "task.format"),
                                       ({"model.input": "vector"}, "model.input"),
                                       ({"ensemble": 2}, "ensemble.size"), ({"model.arch": "lstm"}, "model.arch"),
                                       ({"model.max_len": 20}, "model.max_len"),
                                       ({"model.d_model": 33, "model.n_heads": 1}, "model.pos"),
                                       ({"task.distribution": "tree"}, "distribution"),
                                       ({"task.distribution": "naive"}, "curriculum.lookahead_start"),
                                       ({"curriculum.lookahead_start": 5}, "curriculum.lookahead_start")])
def test_bad_graph_configs_are_refused(over, key):
    with pytest.raises(ConfigError, match=key):
        make_config("graph-search", over)


def test_other_tasks_refuse_the_graph_format():
    with pytest.raises(ConfigError, match="task.format"):
        make_config("tiny-linreg", {"task.format": "graph"})
    with pytest.raises(ConfigError, match="model.input"):
        make_config("tiny-linreg", {"model.input": "tokens"})


def test_lookahead_curriculum_fixes_then_grows_the_lookahead():
    cfg = make_config("graph-search", {"task.n_vertices": 12, "curriculum.lookahead_interval": 100})
    task = cfg.task.build()  # largest lookahead 5
    seen = {}
    for step in (0, 99, 100, 250, 350, 1000):
        p = cfg.curriculum.task_at(task, step).sample(400, seed=step)
        seen[step] = set(p.params["lookahead"].tolist())
    assert seen[0] == seen[99] == {2}  # stage 0: exactly the preset's lookahead 2
    assert seen[100] == {0, 1, 2, 3} and seen[250] == {0, 1, 2, 3, 4} and seen[350] == seen[1000] == set(range(6))
    off = make_config("graph-search", {"curriculum.lookahead_start": -1})
    assert off.curriculum.task_at(task, 0) is task


ONEHOT = {"model.features": "onehot", "model.pos": "learned", "model.max_len": 29, "model.d_model": 41}


def test_onehot_features_are_their_fixed_features_and_stay_fixed(tmp_path):
    """Saparov et al.'s features: the residual stream starts as [one-hot token id, one-hot position] (12 ids and 29
    positions at 8 vertices), the logits are the class tokens' coordinates after the final LayerNorm, and training
    (sign-of-momentum with weight decay) moves every other weight but never these."""
    seed = int(torch.randint(0, 10**6, ()).item())
    run = lab.train("graph-search", {**SMALL, **ONEHOT, "train.optimizer": "signum", "train.weight_decay": 0.1,
                                     "train.lr": 1e-2, "train.seed": seed}, out=tmp_path / "r", quiet=True)
    model, V = run.model.eval(), run.config.model.vocab_size
    p = run.task.sample(8, seed=seed + 1)
    tokens = encode_tokens(p)
    T = tokens.shape[1]
    with torch.no_grad():
        logits, cache = model.run_with_cache(tokens, key_padding=tokens != PAD)
    ids = torch.nn.functional.one_hot(tokens, 41).float()  # token id t -> coordinate t
    positions = torch.nn.functional.one_hot(torch.arange(T) + V, 41).float()  # position i -> coordinate V + i
    assert torch.equal(cache["hook_embed"], ids)
    assert torch.equal(cache["hook_pos_embed"].expand(8, T, 41), positions.expand(8, T, 41))
    last = cache[f"blocks.{len(model.blocks) - 1}.hook_resid_post"]
    normed = torch.nn.functional.layer_norm(last, (41,), model.ln_final.weight, model.ln_final.bias)
    assert torch.allclose(logits, normed[..., V - run.task.ids:V], atol=1e-5)  # vertex v is token FIRST_VERTEX + v
    fresh = build_model(run.config.model, seed=seed)
    moved = [n for n, w in model.named_parameters() if not torch.equal(w, fresh.state_dict()[n])]
    assert set(moved).isdisjoint({"embed.weight", "pos_embed.weight", "unembed.weight", "unembed.bias"})
    assert any(n.startswith("blocks.0.attn") for n in moved) and any(n.startswith("ln_final") for n in moved)


@pytest.mark.parametrize("over, key", [({"model.features": "onehot"}, "model.features"),
                                       ({**ONEHOT, "model.d_model": 40}, "model.d_model")])
def test_onehot_features_name_what_they_need(over, key):
    with pytest.raises(ConfigError, match=key):
        make_config("graph-search", over)
