import networkx as nx
import numpy as np
import pytest
import torch

import tasks
from lab.config import make_config
from lab.model import build_model
from probes.search import (
    TEST_SEED,
    _random_keys,
    _reach_labels,
    _vertex_tokens,
    accuracy_by_lookahead,
    circuit_reach,
    decode_reach,
    f1_score,
    format_search,
    lookaheads_tested,
    merge_path_lengths,
    root_links_start_and_goal,
    search_probe,
    token_role,
    trace_attention,
)
from tasks.graph_search import EDGE, FIRST_VERTEX, PAD, PATH, QUERY, encode_tokens, lengths, to_networkx


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


def test_maxing_an_entry_and_the_drop_rule_match_a_hand_perturbation(model_and_task):
    """Saparov et al.'s second perturbation: the entry takes its row's largest weight and the row is renormalised;
    with drop_only, only entries that lower the predicted logit are kept."""
    model, task = model_and_task
    p = task.sample(2, seed=int(torch.randint(0, 10**6, ()).item()))
    res = trace_attention(model, p, i=0, threshold=0.02, chunk=5, perturbations=("zero", "max"), drop_only=True)
    tokens = encode_tokens(tasks.Prompts(p.xs[:1], p.ys[:1], {k: v[:1] for k, v in p.params.items()}))
    last = len(res["tokens"]) - 1
    with torch.no_grad():
        base = model(tokens, key_padding=tokens != PAD)[0, last, res["prediction"]]
    kinds = set()
    for layer in res["layers"]:
        for e in layer["entries"]:
            def perturb(pattern, hook, e=e):
                pattern = pattern.clone()
                row = pattern[0, e["head"], e["query"]]
                row[e["key"]] = 0.0 if e["perturbation"] == "zero" else row.max()
                if e["perturbation"] == "max":
                    row /= row.sum()
                return pattern

            with torch.no_grad():
                out = model.run_with_hooks(tokens, key_padding=tokens != PAD,
                                           fwd_hooks=[(f"blocks.{layer['layer']}.attn.hook_pattern", perturb)])
            assert float(out[0, last, res["prediction"]] - base) == pytest.approx(e["effect"], abs=1e-4)
            assert e["effect"] < -0.02
            kinds.add(e["perturbation"])
    assert kinds == {"zero", "max"}


def test_merge_path_lengths_follow_the_merged_vertices():
    """Chain 0 -> 1 -> 2 -> 3 -> 4 as tokens E 0 1 E 1 2 E 2 3 E 3 4 Q 0 4 (positions 0..14). Block 0 merges each of
    two edges' tokens (length 1); block 1 merges those two nodes (0 -> 1 -> 2: length 2); block 2 brings them into
    the last token (the goal, 4): vertices {0, 1, 2, 4} hold no longer path, still 2."""
    graph = nx.DiGraph([(0, 1), (1, 2), (2, 3), (3, 4)])
    tokens = []
    for u, v in graph.edges:
        tokens += [EDGE, FIRST_VERTEX + u, FIRST_VERTEX + v]
    tokens += [QUERY, FIRST_VERTEX + 0, FIRST_VERTEX + 4]
    entry = lambda q, k: {"head": 0, "query": q, "key": k}  # noqa: E731
    trace = {"tokens": tokens, "layers": [  # top first, as trace_attention lists them
        {"layer": 2, "entries": [entry(14, 4)], "positions": [4, 14]},
        {"layer": 1, "entries": [entry(4, 1)], "positions": [1, 4, 14]},
        {"layer": 0, "entries": [entry(1, 2), entry(4, 5)], "positions": [1, 2, 4, 5, 14]}]}
    assert merge_path_lengths(trace, graph) == [1, 2, 2]
    trace["layers"][0]["entries"].append(entry(14, 8))  # the token of 3 (edge (2, 3)) joins the last token too
    trace["layers"][0]["positions"].append(8)
    assert merge_path_lengths(trace, graph) == [1, 2, 4]
    shuffled = _random_keys(trace, np.random.default_rng(0))
    assert [[e["query"] for e in lay["entries"]] for lay in shuffled["layers"]] == \
        [[e["query"] for e in lay["entries"]] for lay in trace["layers"]]


def test_their_rule_merges_only_explained_entries_and_links_start_to_goal():
    """Chain 0 -> 1 -> 2 -> 3 as tokens E 0 1 E 1 2 E 2 3 Q 0 3 P 0 (positions 0..13; 10, 11: the query's start
    and goal; 13: the last token). Block 0: position steps inside the edges (2 <- 1, 5 <- 4, 8 <- 7) and 1 <- 8, which
    their rule cannot explain ({0} and {3} share no vertex, not adjacent). Block 1: token matches (5 <- 2 share 1,
    8 <- 5 share 2, 11 <- 8 share 3). Block 2: 11 <- 5 (shares 2) and 13 <- 1 (shares 0). Block 3: the last token
    reads the query's goal position (11), which holds the chain: the root links 0 to 3. Lengths by hand: blocks
    0..3 read {1, 2, 5, 8, 11, 13}, {1, 5, 11, 13}, {8, 11, 13}, {13}."""
    graph = nx.DiGraph([(0, 1), (1, 2), (2, 3)])
    tokens = []
    for u, v in graph.edges:
        tokens += [EDGE, FIRST_VERTEX + u, FIRST_VERTEX + v]
    tokens += [QUERY, FIRST_VERTEX + 0, FIRST_VERTEX + 3, PATH, FIRST_VERTEX + 0]
    entry = lambda q, k: {"head": 0, "query": q, "key": k}  # noqa: E731
    trace = {"tokens": tokens, "layers": [  # top first
        {"layer": 3, "entries": [entry(13, 11)], "positions": [8, 11, 13]},
        {"layer": 2, "entries": [entry(11, 5), entry(13, 1)], "positions": [1, 5, 11, 13]},
        {"layer": 1, "entries": [entry(5, 2), entry(8, 5), entry(11, 8)], "positions": [1, 2, 5, 8, 11, 13]},
        {"layer": 0, "entries": [entry(2, 1), entry(5, 4), entry(8, 7), entry(1, 8)],
         "positions": [1, 2, 4, 5, 7, 8, 11, 13]}]}
    assert merge_path_lengths(trace, graph) == merge_path_lengths(trace, graph, theirs=True) == [1, 2, 3, 3]
    assert root_links_start_and_goal(trace, graph)
    # the last token reads 8 instead: {4, 5, 7, 8} (vertices 1, 2, 3) share no vertex with the last token's {13, 1}
    # (vertex 0) under their rule, and hold no query position: no merge; over every entry, 1 <- 8 brought 3 in
    trace["layers"][0]["entries"] = [entry(13, 8)]
    assert merge_path_lengths(trace, graph) == [1, 2, 3, 3]
    assert merge_path_lengths(trace, graph, theirs=True) == [1, 2, 3, 0]
    assert not root_links_start_and_goal(trace, graph)


def test_token_roles_name_the_slot_and_the_vertex():
    """Graph s=0 -> 1 -> 3 = g, 0 -> 2, 4 -> 3: tokens E 0 1 E 0 2 E 1 3 E 4 3 Q 0 3 P 0."""
    graph = nx.DiGraph([(0, 1), (0, 2), (1, 3), (4, 3)])
    tokens = []
    for u, v in graph.edges:
        tokens += [EDGE, FIRST_VERTEX + u, FIRST_VERTEX + v]
    tokens += [QUERY, FIRST_VERTEX + 0, FIRST_VERTEX + 3, PATH, FIRST_VERTEX + 0]
    roles = [token_role(tokens, pos, graph, 0, 3) for pos in range(len(tokens))]
    assert roles == ["E", "src:s", "tgt:target child", "E", "src:s", "tgt:other child", "E", "src:target child",
                     "tgt:g", "E", "src:reaches g", "tgt:g", "Q", "qs:s", "qg:g", "P", "path:s"]


def test_circuit_reach_aggregates_per_block(model_and_task):
    model, task = model_and_task
    res = circuit_reach(model, task, n_prompts=4, threshold=0.02)
    assert res["layers"] == [1, 2, 3] and len(res["merge_length"]) == len(res["control"]) == 3
    # per prompt a merged path is never longer than the graph's longest path, so neither are the means; their rule
    # keeps a subset of the entries, so its lengths are never above those over every entry
    assert all(0 <= m <= res["longest_path"] + 1e-9 for m in res["merge_length_all"] + res["control_all"])
    assert 0 <= res["explained_share"] <= 1
    if res["explained_share"] == 0:
        assert all(np.isnan(res["merge_length"]))
    assert all(0 <= s <= 1 for s in res["doubling_share"]) and res["threshold"] == 0.02
    kept = sum(sum(r.values()) for r in res["roles"])  # the 6 most frequent per block, of entries_per_block x 4
    assert 0 < kept <= sum(res["entries_per_block"]) * 4 + 1e-9


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
    assert torch.allclose(feats[2, 5], cache["blocks.1.hook_resid_post"][b, 3 * e + 1], rtol=1e-4, atol=1e-4)
    target_feats, target_owners = _vertex_tokens(model, p, "target")
    assert target_owners[5] == (b, int(p.xs[b, e, 1]))
    assert torch.allclose(target_feats[2, 5], cache["blocks.1.hook_resid_post"][b, 3 * e + 2], rtol=1e-4, atol=1e-4)


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
    res = accuracy_by_lookahead(model, task, n=64, lookaheads=[0, 2])
    assert set(res) == {0, 2}
    assert lookaheads_tested(task) == [1, 2, 3]  # their test sets: lookahead 0 (a single child) has nothing to test
    for L, r in res.items():
        # their test filter beyond lookahead 0: >= 2 children at the start, exactly one of them leads to the goal
        test = tasks.get("graph_search", n_vertices=8, distribution="balanced", lookahead=L, unique_answer=L > 0)
        p = test.sample(64, seed=TEST_SEED + 1 + L)
        assert (p.ys.sum(1) == 1).all()
        tokens = encode_tokens(p)
        logits = model(tokens, key_padding=tokens != PAD)[torch.arange(64), lengths(p) - 1]
        right = [bool(p.ys[i, logits[i].argmax()]) for i in range(64)]
        assert r["mean"] == pytest.approx(sum(right) / 64) and r["lo"] <= r["mean"] <= r["hi"]


def test_search_probe_reports_the_circuits_and_draws_them(tmp_path):
    """`lab probe RUN search` on a briefly trained run: the traced circuits, the probes and both figures."""
    import lab

    run = lab.train("graph-search", {"task.n_vertices": 7, "model.n_layers": 2, "model.d_model": 16,
                                     "train.steps": 3}, out=tmp_path / "g", quiet=True)
    res = search_probe(run, n_prompts=12)
    assert res["circuit"]["n_prompts"] == 12 and len(res["circuit"]["merge_length"]) == 2
    assert res["circuit"]["threshold"] == 0.4  # their trace_circuit.py: a logit drop of more than 0.4
    assert "traced circuits (12 prompts" in format_search(res)
    assert (run.path / "figures" / "reach.png").stat().st_size > 0 and (run.path / "figures" / "trace.png").exists()
