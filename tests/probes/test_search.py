import networkx as nx
import pytest
import torch

import tasks
from lab.config import make_config
from lab.model import build_model
from probes.search import (TEST_SEED, _reach_labels, _vertex_tokens, accuracy_by_lookahead, decode_reach, f1_score,
                           trace_attention)
from tasks.graph_search import PAD, encode_tokens, lengths, to_networkx


@pytest.fixture(scope="module")
def model_and_task():
    cfg = make_config("graph-search", {"task.n_vertices": 8, "model.n_layers": 3, "model.d_model": 32,
                                       "model.init_std": 0.4})
    return build_model(cfg.model, seed=int(torch.randint(0, 1000, ()).item())).eval(), cfg.task.build()


def test_tracing_effects_equal_single_perturbations(model_and_task):
    model, task = model_and_task
    p = task.sample(3, seed=int(torch.randint(0, 10**6, ()).item()))
    res = trace_attention(model, p, i=1, threshold=0.05, chunk=7)  # small chunks: batching must not matter
    tokens = encode_tokens(tasks.Prompts(p.xs[1:2], p.ys[1:2], {k: v[1:2] for k, v in p.params.items()}))
    last = len(res["tokens"]) - 1
    assert res["layers"][0]["layer"] == 2 and last in res["layers"][0]["positions"]
    with torch.no_grad():
        base = model(tokens, key_padding=tokens != PAD)[0, last, res["prediction"]]
    checked = 0
    for layer in res["layers"]:
        for e in layer["entries"][:3]:
            def zero(pattern, hook, e=e):
                pattern = pattern.clone()
                pattern[0, e["head"], e["query"], e["key"]] = 0
                return pattern

            with torch.no_grad():
                out = model.run_with_hooks(tokens, key_padding=tokens != PAD,
                                           fwd_hooks=[(f"blocks.{layer['layer']}.attn.hook_pattern", zero)])
            assert abs(float(out[0, last, res["prediction"]] - base) - e["effect"]) < 1e-4
            assert abs(e["effect"]) > 0.05
            checked += 1
    assert checked > 0
    # the positions that matter only grow going down, and every kept key joins them
    for upper, lower in zip(res["layers"], res["layers"][1:]):
        assert set(upper["positions"]) <= set(lower["positions"])
        assert {e["key"] for e in lower["entries"]} <= set(lower["positions"])


def test_reach_labels_are_the_descendants(model_and_task):
    model, task = model_and_task
    p = task.sample(20, seed=4)
    feats, owners = _vertex_tokens(model, p, chunk=6)
    assert feats.shape == (4, int(p.params["n_edges"].sum()), 32)
    labels, dist = _reach_labels(p, owners, task.ids)
    for row, (b, u) in enumerate(owners[:60]):
        graph = to_networkx(p, b)
        assert set(labels[row].nonzero().flatten().tolist()) == nx.descendants(graph, u)
        for v in nx.descendants(graph, u):
            assert dist[row, v] == nx.shortest_path_length(graph, u, v)
        assert set((dist[row] == -1).nonzero().flatten().tolist()) == set(graph.nodes) - nx.descendants(graph, u)
    # the same features as a plain forward's residual stream at the u token of each edge
    tokens = encode_tokens(p)
    _, cache = model.run_with_cache(tokens, key_padding=tokens != PAD)
    b, u = owners[5]
    e = [i for i, (bb, _) in enumerate(owners) if bb == b].index(5)
    assert torch.allclose(feats[2, 5], cache["blocks.1.hook_resid_post"][b, 3 * e + 1], atol=1e-5)
    target_feats, target_owners = _vertex_tokens(model, p, "target")
    assert target_owners[5] == (b, int(p.xs[b, e, 1]))
    assert torch.allclose(target_feats[2, 5], cache["blocks.1.hook_resid_post"][b, 3 * e + 2], atol=1e-5)


def test_decoded_reach_follows_what_the_features_hold():
    """Layer 0: noise; layer 1: the distance-1 set; layer 2: everything. Reach must read 0, 1, all."""
    task = tasks.get("graph_search", n_vertices=10, distribution="naive")
    p = task.sample(400, seed=int(torch.randint(0, 10**6, ()).item()))
    owners = [(b, int(u)) for b in range(p.batch_size) for u in p.xs[b, :int(p.params["n_edges"][b]), 0]]
    labels, dist = _reach_labels(p, owners, task.ids)
    noise = torch.randn(len(owners), task.ids)
    feats = torch.stack([noise, ((dist == 1).float() + 0.1 * noise), labels + 0.1 * noise])
    half = len(owners) // 2
    res = decode_reach(feats[:, :half], labels[:half], feats[:, half:], labels[half:], dist[half:])
    assert res["reach"][0] == 0 and res["reach"][1] == 1 and res["reach"][2] == len(res["distances"]) >= 3
    assert res["f1"][0] < 0.6 < res["f1"][1] < res["f1"][2] and res["f1"][2] > 0.95


def test_f1_score():
    pred = torch.tensor([[1.0, 1, 0, 0], [0, 1, 1, 0]])
    truth = torch.tensor([[1.0, 0, 0, 1], [0, 1, 1, 0]])
    # tp = 3, predicted 4, true 4
    assert f1_score(pred, truth) == pytest.approx(2 * 3 / 8)


def test_accuracy_by_lookahead_counts_correct_answers(model_and_task):
    model, task = model_and_task
    res = accuracy_by_lookahead(model, task, n=64, lookaheads=[0, 1])
    assert set(res) == {0, 1}
    for L, r in res.items():
        test = tasks.get("graph_search", n_vertices=8, distribution="balanced", lookahead=L)
        p = test.sample(64, seed=TEST_SEED + 1 + L)
        tokens = encode_tokens(p)
        logits = model(tokens, key_padding=tokens != PAD)[torch.arange(64), lengths(p) - 1]
        right = [bool(p.ys[i, logits[i].argmax()]) for i in range(64)]
        assert r["mean"] == pytest.approx(sum(right) / 64) and r["lo"] <= r["mean"] <= r["hi"]
