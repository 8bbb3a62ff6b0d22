import networkx as nx
import pytest
import torch
from scipy import stats
from test_graph_fidelity import their_lookahead

import tasks
from tasks.graph_search import EDGE, FIRST_VERTEX, PAD, PATH, QUERY, encode_tokens, lengths, to_networkx, top_in_target


def _task(**kw):
    return tasks.get("graph_search", **{"n_vertices": 12, **kw})


@pytest.mark.parametrize("distribution", ["naive", "star", "balanced"])
@pytest.mark.parametrize("step", ["first", "any"])
def test_targets_are_the_children_that_reach_the_goal(distribution, step):
    seed = int(torch.randint(0, 10**6, ()).item())
    p = _task(distribution=distribution, step=step).sample(150, seed=seed)
    for i in range(p.batch_size):
        graph = to_networkx(p, i)
        assert nx.is_directed_acyclic_graph(graph)
        current, goal = int(p.params["current"][i]), int(p.params["goal"][i])
        expected = {c for c in graph.successors(current) if c == goal or nx.has_path(graph, c, goal)}
        assert expected, "every prompt has a right answer"
        assert set(p.ys[i].nonzero().flatten().tolist()) == expected
        dist = nx.shortest_path_length(graph, current, goal)
        single = graph.out_degree(current) == 1
        assert p.params["lookahead"][i] == 0 if single else 1 <= p.params["lookahead"][i] <= dist
        path = p.params["path"][i, :p.params["path_len"][i]].tolist()
        assert path[0] == p.params["start"][i] and path[-1] == current
        assert all(graph.has_edge(a, b) for a, b in zip(path, path[1:]))
        assert (p.params["path"][i, p.params["path_len"][i]:] == -1).all()


@pytest.mark.parametrize("distribution", ["balanced", "star"])
def test_requested_lookahead_is_the_measured_one(distribution):
    task = _task(distribution=distribution)
    for L in range(task.largest_lookahead() + 1):
        p = tasks.get("graph_search", n_vertices=12, distribution=distribution, lookahead=L).sample(60, seed=L + 11)
        measured = [their_lookahead(to_networkx(p, i), int(p.params["start"][i]), int(p.ys[i].nonzero()[0, 0]),
                                    int(p.params["goal"][i])) for i in range(p.batch_size) if p.ys[i].sum() == 1]
        assert measured == [L] * len(measured) and len(measured) > 0.5 * p.batch_size
        assert p.params["lookahead"].tolist() == [L] * p.batch_size


def test_balanced_lookahead_is_uniform():
    task = _task(n_vertices=16)
    p = task.sample(8000, seed=int(torch.randint(0, 10**6, ()).item()))
    counts = torch.bincount(p.params["lookahead"], minlength=task.largest_lookahead() + 1).numpy()
    assert len(counts) == task.largest_lookahead() + 1 == 8
    assert stats.chisquare(counts).pvalue > 1e-4, counts
    naive = _task(n_vertices=16, distribution="naive").sample(4000, seed=3).params["lookahead"]
    assert (naive <= 1).float().mean() > 0.75  # the naive distribution's lookahead is skewed small


def test_vertex_ids_are_random_per_prompt():
    task = _task(n_ids=20)
    p = task.sample(3000, seed=5)
    # the start (topological vertex 0 of a balanced graph) gets every id about equally often
    counts = torch.bincount(p.params["start"], minlength=20).numpy()
    assert stats.chisquare(counts).pvalue > 1e-4
    for i in range(50):  # ids are distinct within a graph
        graph = to_networkx(p, i)
        assert graph.number_of_nodes() == len({int(v) for v in graph.nodes})
        assert max(graph.nodes) < 20
    same = task.sample(3000, seed=5)
    assert torch.equal(same.xs, p.xs) and torch.equal(same.ys, p.ys)  # a seed gives the same prompts
    other = task.sample(3000, seed=6)
    assert not torch.equal(other.xs, p.xs)


def test_edges_are_shuffled():
    p = _task(distribution="star", lookahead=3).sample(2000, seed=2)  # arms of 3 edges: 1/3 of edges leave s
    first_from_start = (p.xs[:, 0, 0] == p.params["start"]).float().mean()
    assert 0.28 < first_from_start < 0.39  # in generation order it would be 1


def test_tokens_spell_the_prompt():
    p = _task(step="any").sample(40, seed=9)
    tokens = encode_tokens(p)
    n = lengths(p)
    assert tokens.shape[1] == int(n.max())
    for i in range(p.batch_size):
        t = tokens[i, :n[i]].tolist()
        assert all(x == PAD for x in tokens[i, n[i]:].tolist()) and PAD not in t
        m = int(p.params["n_edges"][i])
        edges = [(t[3 * e + 1] - FIRST_VERTEX, t[3 * e + 2] - FIRST_VERTEX) for e in range(m)]
        assert [t[3 * e] for e in range(m)] == [EDGE] * m
        assert set(edges) == set(to_networkx(p, i).edges) and len(edges) == m
        assert t[3 * m:3 * m + 3] == [QUERY, p.params["start"][i] + FIRST_VERTEX, p.params["goal"][i] + FIRST_VERTEX]
        assert t[3 * m + 3] == PATH and t[-1] == p.params["current"][i] + FIRST_VERTEX
    assert int(n.max()) <= _task(step="any").seq_len()


def test_top_in_target_accuracy():
    targets = torch.tensor([[0, 1, 1, 0], [1, 0, 0, 0]], dtype=torch.float32)
    logits = torch.tensor([[0.0, 0.1, 3.0, 2.0], [0.0, 5.0, 0.0, 0.0]])
    assert top_in_target(logits, targets).tolist() == [1.0, 0.0]


@pytest.mark.parametrize("kw, match", [({"lookahead": 1, "distribution": "naive"}, "lookahead"),
                                       ({"lookahead": 9}, "lookahead"), ({"n_vertices": 3}, "n_vertices"),
                                       ({"distribution": "tree"}, "distribution"), ({"n_ids": 5}, "n_ids")])
def test_bad_arguments_name_the_field(kw, match):
    with pytest.raises(ValueError, match=match):
        _task(**kw)

