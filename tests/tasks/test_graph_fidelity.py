"""The graph-search generators against an independent computation of Saparov et al.'s own rules (their generator.cpp
and train.py, rewritten here with numpy draws and networkx graphs; their lookahead as an order-free level-by-level
search): the lookahead of every prompt, the lookahead histogram, edge and vertex counts, the start's out-degree, the
share of single-child starts and the test sets' filter."""
import networkx as nx
import numpy as np
import pytest
import torch
from scipy import stats

import tasks
from fresh import fresh_seeds
from tasks.graph_generators import naive_graph
from tasks.graph_search import to_networkx

SEEDS = fresh_seeds(4, __name__)
N = 8  # their quick-scale analogue: max_input_size 29 -> 8 vertices, at most 8 edges, lookahead 0..3


def their_lookahead(graph: nx.DiGraph, current, answer, goal) -> int:
    """Their `lookahead_depth`, level by level: each vertex of a level is on the answer's branch if any vertex of the
    level before that reaches it first is; the depth at which the goal is met, or only the answer's branch is left."""
    level = {c: c == answer for c in graph.successors(current)}
    seen, depth = set(level), 0
    while level:
        if all(level.values()):
            return depth
        depth += 1
        if goal in level:
            return depth
        new = {}
        for v, on_answer in level.items():
            for c in graph.successors(v):
                if c not in seen:
                    new[c] = new.get(c, False) or on_answer
        seen |= set(new)
        level = new
    return depth


def _their_balanced(rng, top: int) -> tuple:
    """One training graph of their balanced ("crafted") distribution at N, before the lookahead filter:
    (graph, start, goal, L)."""
    L = int(rng.integers(top + 1))
    paths = int(rng.integers(1, 3)) if L == 0 else int(rng.integers(2, (N - 1) // L + 1))
    n = max(2, min(L * paths + 1 + int(rng.integers(6)), N), 1 + paths * L)
    g = nx.DiGraph()
    g.add_nodes_from(range(n))
    nx.add_path(g, range(0, max(1, L) + 1))
    nxt = max(2, L + 1)
    for j in range(paths - 1 if L else 0):
        room = n - (nxt + 1) - (paths - j - 1) * L + 2
        length = L + int(rng.integers(min(2, room)))
        nx.add_path(g, [0] + list(range(nxt, nxt + length)))
        nxt += length
    chain = [0] + list(range(nxt, nxt + int(rng.integers(n - nxt + 1))))
    g.add_edges_from(zip(chain[1:], chain[:-1]))
    nxt = chain[-1] + 1 if len(chain) > 1 else nxt
    indeg = {v: 0.5 + g.in_degree(v) for v in g}
    outdeg = {v: 0.5 + g.out_degree(v) for v in g}
    for v in range(nxt, n):
        k_children = int(rng.integers(4))
        k_parents = int(rng.integers(0 if k_children else 1, 4))
        w = np.array([indeg[u] for u in range(v)])
        for c in rng.choice(v, min(k_children, v), replace=False, p=w / w.sum()):
            g.add_edge(v, int(c))
            indeg[int(c)] += 1
        below = nx.descendants(g, v)
        w = np.array([0.0 if u in below else outdeg[u] for u in range(v)])
        if w.sum() > 0:
            for p in rng.choice(v, min(k_parents, v - len(below)), replace=False, p=w / w.sum()):
                g.add_edge(int(p), v)
                outdeg[int(p)] += 1
    return g, 0, max(1, L), L


def _their_naive(rng) -> tuple:
    """One graph of their naive ("simple") distribution at N: (graph, start, goal, None)."""
    n = int(rng.integers(3, N))
    g = nx.DiGraph()
    g.add_nodes_from(range(n))
    for i in range(1, n):
        k = 1 if rng.integers(2) == 0 else int(rng.integers(1, 4))
        g.add_edges_from((int(p), i) for p in rng.choice(i, min(k, i), replace=False))
    start, goal = rng.choice(n - 1, 2, replace=False)
    return g, int(start), int(goal), None


def _keep(g, s, t, L, unique=False):
    """Their filters: a path s -> t, at most N edges, the lookahead asked for (at s, towards a shortest-path child),
    and for test sets >= 2 children at s, one useful child and a path of more than min(L, 2) vertices."""
    if not nx.has_path(g, s, t) or g.number_of_edges() > N:
        return False
    dist = nx.shortest_path_length(g, s, t)
    best = [c for c in g.successors(s) if nx.has_path(g, c, t) and nx.shortest_path_length(g, c, t) == dist - 1]
    if L is not None and their_lookahead(g, s, best[0], t) != L:
        return False
    if unique:
        useful = [c for c in g.successors(s) if nx.has_path(g, c, t)]
        return g.out_degree(s) >= 2 and len(useful) == 1 and dist + 1 > (2 if L is None else min(L, 2))
    return True


def _their_sample(draw, count, rng, unique=False):
    out = []
    while len(out) < count:
        g, s, t, L = draw(rng)
        if _keep(g, s, t, L, unique):
            out.append((g, s, t))
    return out


def _stats_theirs(graphs):
    """Per prompt: edges, vertices with an edge, the start's out-degree, single-child start, the start has parents."""
    return np.array([[g.number_of_edges(), sum(1 for v in g if g.degree(v) > 0), g.out_degree(s), g.out_degree(s) == 1,
                      g.in_degree(s) > 0] for g, s, _ in graphs], float)


def _stats_ours(p):
    return _stats_theirs([(to_networkx(p, i), int(p.params["start"][i]), int(p.params["goal"][i]))
                          for i in range(p.batch_size)])


def _close(ours, theirs, names):
    """Each statistic's means agree within five standard errors of the two samples."""
    for j, name in enumerate(names):
        se = np.sqrt(ours[:, j].var() / len(ours) + theirs[:, j].var() / len(theirs))
        assert abs(ours[:, j].mean() - theirs[:, j].mean()) <= 5 * se + 1e-9, (name, ours[:, j].mean(),
                                                                             theirs[:, j].mean())


NAMES = ("edges", "vertices", "start out-degree", "single-child start", "start has parents")


@pytest.mark.parametrize("distribution", ["balanced", "naive"])
def test_training_distribution_matches_their_generator(distribution):
    rng = np.random.default_rng(SEEDS[0])
    draw = (lambda r: _their_balanced(r, (N - 1) // 2)) if distribution == "balanced" else _their_naive
    theirs = _their_sample(draw, 1500, rng)
    p = tasks.get("graph_search", n_vertices=N, distribution=distribution).sample(1500, seed=SEEDS[1])
    _close(_stats_ours(p), _stats_theirs(theirs), NAMES)
    for i in range(p.batch_size):  # their lookahead, where the answer is unique (else it depends on the answer)
        if p.ys[i].sum() == 1:
            g, s, t = to_networkx(p, i), int(p.params["start"][i]), int(p.params["goal"][i])
            assert their_lookahead(g, s, int(p.ys[i].nonzero()[0, 0]), t) == p.params["lookahead"][i]
    if distribution == "balanced":  # their rejection makes the lookahead uniform over 0..(N - 1) / 2
        counts = np.bincount(p.params["lookahead"].numpy(), minlength=4)
        assert len(counts) == 4 and stats.chisquare(counts).pvalue > 1e-4, counts
        assert abs(counts[0] / counts.sum() - 0.25) < 0.05  # a quarter of the starts have a single child
    assert (p.params["n_edges"] <= N).all() and (p.params["n_vertices"] <= N).all()


def _their_balanced_fixed(rng, L):
    """Their eval draw at a fixed lookahead L (the same construction as training, L not drawn)."""
    while True:
        g, s, t, drawn = _their_balanced(rng, (N - 1) // 2)
        if drawn == L:
            return g, s, t, L


@pytest.mark.parametrize("L", [None, 1, 2, 3])
def test_test_sets_keep_their_filter(L):
    """Their naive test set (L None) and per-lookahead balanced test sets: >= 2 children, a unique answer."""
    rng = np.random.default_rng(SEEDS[2])
    if L is None:
        theirs = _their_sample(_their_naive, 600, rng, unique=True)
        task = tasks.get("graph_search", n_vertices=N, distribution="naive", unique_answer=True)
    else:
        def draw(r):
            g, s, t, _ = _their_balanced_fixed(r, L)
            return g, s, t, L
        theirs = _their_sample(draw, 600, rng, unique=True)
        task = tasks.get("graph_search", n_vertices=N, lookahead=L, unique_answer=True)
    p = task.sample(600, seed=SEEDS[3])
    assert (p.ys.sum(1) == 1).all()  # one right answer
    ours = _stats_ours(p)
    assert (ours[:, 2] >= 2).all()
    _close(ours, _stats_theirs(theirs), NAMES)
    if L is not None:
        assert (p.params["lookahead"] == L).all()


def test_naive_graph_parents_and_endpoints_follow_their_rule():
    """Raw draws before any filter: vertex i takes 1 parent w.p. 1/2, else 1..3 (at most i); start and goal are
    distinct and never the last vertex."""
    import random
    rng = random.Random(SEEDS[0])
    n, draws = 7, 4000
    parents = np.zeros((draws, n))
    for k in range(draws):
        children, s, t = naive_graph(rng, n, 3)
        assert s != t and max(s, t) < n - 1
        for u, cs in enumerate(children):
            assert all(c > u for c in cs)
            for c in cs:
                parents[k, c] += 1
    expected = [0] + [0.5 + 0.5 * np.mean([min(k, i) for k in (1, 2, 3)]) for i in range(1, n)]
    se = parents.std(0) / np.sqrt(draws) + 1e-9
    assert (np.abs(parents.mean(0) - expected) <= 5 * se + 1e-9).all(), (parents.mean(0), expected)


def test_star_pairs_are_uniform():
    """Their uniform star training: the (spoke length, count) pair uniform over length 1..Lmax, count 1..(N-1)/len."""
    p = tasks.get("graph_search", n_vertices=N, distribution="star").sample(4000, seed=SEEDS[1])
    pairs = [(n, c) for n in range(1, 4) for c in range(1, (N - 1) // n + 1)]
    seen = []
    for i in range(p.batch_size):
        g, s = to_networkx(p, i), int(p.params["start"][i])
        count = g.out_degree(s)
        seen.append(pairs.index((g.number_of_edges() // count, count)))
    counts = np.bincount(seen, minlength=len(pairs))
    assert stats.chisquare(counts).pvalue > 1e-4, counts
    assert torch.equal(p.params["lookahead"], torch.tensor([pairs[k][0] if pairs[k][1] > 1 else 0 for k in seen]))
