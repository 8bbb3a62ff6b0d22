"""The graph distributions of Saparov et al. 2024 ("Transformers struggle to learn to search"), one graph at a time,
following their generator (asaparov/learning_to_search, generator.cpp and train.py) rule for rule.

A graph is a list of child lists in topological index space: `children[v]` are the heads of v's edges; vertex ids
are drawn later (tasks/graph_search.py). Every function takes a `random.Random`, so a seed gives the same graphs.

- `naive_graph`: their `generate_graph`: n vertices, vertex i >= 1 takes one parent with probability 1/2, else
  1..max_parents parents (theirs: max_num_parents = 4, randrange(1, 4)), uniformly among the earlier vertices; start
  and goal two distinct vertices among all but the last.
- `balanced_graph`: their `generate_graph_with_lookahead`: the goal path s -> 1 -> ... -> L, num_paths - 1
  distractor arms of L or L + 1 vertices from s, a chain of "prefix" ancestors ending at s, then extra vertices, each
  with 0..max_parents children (weights 0.5 + in-degree) and 0/1..max_parents parents among the non-descendants
  (weights 0.5 + out-degree); L = 0: s has the single child 1, the goal.
- `star_graph`: their `generate_star_graph`: `count` spokes of `length` edges from s; the goal is the first spoke's tip.
- `lookahead_depth`: their measure of an example's lookahead: a breadth-first search from the current vertex's
  children, each frontier vertex labelled with the child it came from, counting the steps until the goal is met or
  only the answer's branch is left (0: the current vertex has a single child).
"""
from __future__ import annotations

import random

ALPHA = 0.5  # their prior weight of a vertex when extra vertices pick children and parents


def naive_graph(rng: random.Random, n: int, max_parents: int) -> tuple[list[list[int]], int, int]:
    """(children, start, goal): their random DAG of n >= 3 vertices."""
    children = [[] for _ in range(n)]
    for i in range(1, n):
        k = 1 if rng.randrange(2) == 0 else rng.randint(1, max_parents)
        for parent in rng.sample(range(i), min(k, i)):
            children[parent].append(i)
    start = rng.randrange(n - 1)
    goal = rng.randrange(n - 1)
    while goal == start:
        goal = rng.randrange(n - 1)
    return children, start, goal


def _weighted_distinct(rng: random.Random, weights: list[float], k: int) -> list[int]:
    """k distinct indices drawn one after another with probability proportional to `weights` (zeros never drawn)."""
    weights, out = list(weights), []
    for _ in range(k):
        i = rng.choices(range(len(weights)), weights)[0]
        out.append(i)
        weights[i] = 0.0
    return out


def descendants(children: list[list[int]], v: int) -> set[int]:
    """Every vertex reachable from v by one edge or more."""
    seen, stack = set(), list(children[v])
    while stack:
        u = stack.pop()
        if u not in seen:
            seen.add(u)
            stack.extend(children[u])
    return seen


def balanced_graph(rng: random.Random, n: int, lookahead: int, num_paths: int, max_parents: int,
                   max_prefix: int) -> tuple[list[list[int]], int, int]:
    """(children, start = 0, goal = max(1, L)): their graph with lookahead L and num_paths branches at s."""
    L = lookahead
    n = max(2, n, 1 + num_paths * L)
    children = [[] for _ in range(n)]
    parents = [[] for _ in range(n)]

    def edge(u, v):
        children[u].append(v)
        parents[v].append(u)

    edge(0, 1)
    for i in range(1, L):
        edge(i, i + 1)
    index = 2 if L == 0 else 1 + L
    if L > 0:
        for j in range(num_paths - 1):  # distractor arms: L vertices, or L + 1 where the rest still fit
            edge(0, index)
            index += 1
            length = L + rng.randrange(min(2, n - index - (num_paths - j - 1) * L + 2))
            for _ in range(1, length):
                edge(index - 1, index)
                index += 1
    previous = 0
    for _ in range(rng.randrange(min(max_prefix + 1, n - index + 1))):  # prefix: a chain of ancestors ending at s
        edge(index, previous)
        previous = index
        index += 1
    in_weight = [ALPHA + len(p) for p in parents]
    out_weight = [ALPHA + len(c) for c in children]
    for v in range(index, n):  # extra vertices
        n_children = rng.randrange(0, max_parents + 1)
        n_parents = rng.randrange(0 if n_children else 1, max_parents + 1)
        for c in _weighted_distinct(rng, in_weight[:v], min(n_children, v)):
            edge(v, c)
            in_weight[c] += 1
        below = descendants(children, v)
        weights = [0.0 if u in below else w for u, w in enumerate(out_weight[:v])]
        if sum(weights) > 0:
            for p in _weighted_distinct(rng, weights, min(n_parents, v, v - len(below))):
                edge(p, v)
                out_weight[p] += 1
    return children, 0, max(1, L)


def star_graph(length: int, count: int) -> tuple[list[list[int]], int, int]:
    """(children, start = 0, goal = the first spoke's tip): `count` spokes of `length` edges from vertex 0."""
    children = [[] for _ in range(1 + count * length)]
    for arm in range(count):
        first = 1 + arm * length
        children[0].append(first)
        for v in range(first, first + length - 1):
            children[v].append(v + 1)
    return children, 0, length


def lookahead_depth(children: list[list[int]], current: int, answer: int, goal: int) -> int:
    """Their lookahead of the step current -> answer towards goal (generator.cpp `lookahead_depth`)."""
    frontier = [(c, c) for c in children[current]]  # (vertex, the child of `current` it was reached from)
    visited = set(children[current])
    depth = 0
    while frontier:
        if all(branch == answer for _, branch in frontier):
            return depth
        depth += 1
        grown = []
        for v, branch in frontier:
            if v == goal:
                return depth
            for c in children[v]:
                if c not in visited:
                    grown.append((c, branch))
                    visited.add(c)
                elif branch == answer:  # a vertex two branches reach counts for the answer's
                    grown = [(u, branch if u == c else b) for u, b in grown]
        frontier = grown
    return depth


def shortest_next_steps(children: list[list[int]], current: int, goal: int) -> tuple[list[int], int]:
    """(the children of `current` on a shortest path to goal, that path's number of edges); ([], -1) if none."""
    dist, frontier, k = {goal: 0}, [goal], 0
    parents = [[] for _ in children]
    for u, cs in enumerate(children):
        for c in cs:
            parents[c].append(u)
    while frontier and current not in dist:  # distances to the goal, backwards
        k += 1
        grown = []
        for v in frontier:
            for p in parents[v]:
                if p not in dist:
                    dist[p] = k
                    grown.append(p)
        frontier = grown
    if current not in dist or current == goal:
        return [], -1
    best = dist[current] - 1
    return [c for c in children[current] if dist.get(c) == best], dist[current]
