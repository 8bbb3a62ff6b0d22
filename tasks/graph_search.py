"""Graph search in context (Saparov et al. 2024, "Transformers struggle to learn to search"; REFERENCES.md section 6).

A prompt is a directed acyclic graph with random vertex ids, given as its shuffled edge list, then the query
(start s, goal g), then the path so far; the target is the set of children of the current vertex from which g is
still reachable (a prediction is correct if it is in the set). The three training distributions are their
generator's (tasks/graph_generators.py, rule for rule):

- naive: a random DAG of 3..n_vertices-1 vertices (one parent w.p. 1/2, else 1..max_parents), start and goal two
  distinct vertices (not the last) joined by a path; its lookahead is skewed small.
- star: spokes of equal length from the start, the (length, count) pair uniform over those that fit; the goal is
  the tip of one spoke.
- balanced: lookahead L uniform in 0..max_lookahead: the goal path s -> 1 -> ... -> L = g, 1..(E-1)/L - 1 distractor
  arms of L or L + 1 vertices (L = 0: s has the single child g), prefix ancestors of s, extra vertices whose
  children and parents are drawn by degree; a graph is kept only if its measured lookahead is L.

Every graph has at most max_edges = n_vertices edges (their cap). With unique_answer, their test filter: the current
vertex has >= 2 children and exactly one leads to the goal (their naive test sets, and the per-lookahead ones).

Lookahead of an example is theirs (`lookahead_depth`): the breadth-first steps from the current vertex's children
until the goal is met or only the answer's branch is left: dist(current, goal) when every other branch is at least
as long, 0 when the current vertex has a single child. (The lab's earlier convention, dist - 1, was theirs minus
one.) Graphs are drawn one at a time in plain Python from a seed (their rejection steps do not batch), then turned
into batched tensors (adjacency [B, N, N], reachability by repeated boolean squaring), so a seed gives the same
graphs on every device.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

import torch

from .checks import check, check_choices, check_counts
from .graph_generators import balanced_graph, descendants, lookahead_depth, naive_graph, shortest_next_steps, star_graph
from .linear_regression import make_generator
from .prompts import Prompts
from .registry import register

PAD, EDGE, QUERY, PATH = 0, 1, 2, 3  # special tokens; vertex id v is token FIRST_VERTEX + v
FIRST_VERTEX = 4
DISTRIBUTIONS = ("naive", "star", "balanced")


def reachability(adj: torch.Tensor) -> torch.Tensor:
    """[B, N, N] bool: R[b, i, j] = a path of >= 1 edge leads from i to j (transitive closure by squaring)."""
    reach = adj.clone()
    for _ in range(max(1, (adj.shape[-1] - 1).bit_length())):
        f = reach.float()
        reach = reach | (torch.bmm(f, f) > 0)
    return reach


def distances_from(adj: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    """[B, N] long: the number of edges on a shortest path from source[b] to every vertex (-1: unreachable)."""
    B, N, _ = adj.shape
    dist = torch.full((B, N), -1, dtype=torch.long)
    frontier = torch.zeros(B, N, dtype=torch.bool)
    frontier[torch.arange(B), source] = True
    dist[frontier] = 0
    a = adj.float()
    for k in range(1, N):
        frontier = (torch.bmm(frontier.float().unsqueeze(1), a).squeeze(1) > 0) & (dist < 0)
        if not frontier.any():
            break
        dist[frontier] = k
    return dist


def _pick(mask: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """A uniformly random True index along the last dim of mask [..., K] (rows with none give an arbitrary index)."""
    scores = torch.rand(mask.shape, generator=g) + mask.float() * 2.0
    return scores.argmax(-1)


@register("graph_search")
@dataclass
class GraphSearch:
    n_vertices: int = 16  # the most vertices a graph has (their (max_input_size - 5) / 3); also the most edges
    distribution: Literal[DISTRIBUTIONS] = "balanced"
    max_lookahead: int = -1  # balanced / star: lookahead uniform in 0..max_lookahead (-1: the largest that fits)
    lookahead: int = -1  # >= 0: every graph has exactly this lookahead (a per-lookahead test set); not for naive
    max_parents: int = 3  # naive: 1 parent w.p. 1/2, else 1..max_parents; balanced extras: 0..max_parents children
    step: Literal["first", "any"] = "first"  # first: the path so far is [s]; any: a random prefix of a path to g
    n_ids: int = 0  # vertex ids are a random injection into 0..n_ids-1 per graph (0: n_vertices)
    unique_answer: bool = False  # their test sets: the current vertex has >= 2 children and exactly one leads to g

    metric = "accuracy"
    objective = "set"  # cross-entropy of the target set: -log of the softmax mass on it
    formats = ("graph",)

    def __post_init__(self):
        check_choices(self)
        check(isinstance(self.n_vertices, int) and self.n_vertices >= 5, "n_vertices", "an integer >= 5",
              self.n_vertices)
        check(self.max_parents >= 1, "max_parents", "an integer >= 1", self.max_parents)
        check(self.n_ids in (0,) or self.n_ids >= self.n_vertices, "n_ids", f"0 or >= n_vertices = {self.n_vertices}",
              self.n_ids)
        most = self.largest_lookahead()
        check(-1 <= self.max_lookahead <= most, "max_lookahead",
              f"-1 (the largest) or 0..{most} for {self.distribution} graphs of {self.n_vertices} vertices",
              self.max_lookahead)
        check(self.lookahead == -1 or (self.distribution != "naive" and 0 <= self.lookahead <= most), "lookahead",
              f"-1, or 0..{most} with distribution balanced or star", self.lookahead)
        check(not (self.unique_answer and self.lookahead == 0), "unique_answer",
              "false with lookahead 0 (a lookahead-0 vertex has a single child)", self.unique_answer)

    def largest_lookahead(self) -> int:
        """Their largest lookahead, ((max_input_size - 5) / 3 - 1) / 2: the goal path and another arm of L edges."""
        return (self.n_vertices - 1) // 2

    @property
    def d(self) -> int:
        return 2  # an edge (u, v): what Prompts.xs holds per "point"

    @property
    def ids(self) -> int:
        return self.n_ids or self.n_vertices

    @property
    def vocab_size(self) -> int:
        return FIRST_VERTEX + self.ids

    @property
    def max_edges(self) -> int:
        """Their cap: a graph has at most as many edges as the largest graph has vertices."""
        return self.n_vertices

    def seq_len(self) -> int:
        """The longest prompt: 3 tokens per edge, the query (Q s g), P and the path (at most n_vertices - 1)."""
        return 3 * self.max_edges + 3 + 1 + (1 if self.step == "first" else self.n_vertices - 1)

    # ---- one graph of each distribution, drawn until it passes their filters --------------------------------
    def _top(self) -> int:
        return self.max_lookahead if self.max_lookahead >= 0 else self.largest_lookahead()

    def _candidate(self, rng: random.Random, L: int | None):
        """(children, start, goal) before the filters; L: the lookahead asked for (None: naive)."""
        N = self.n_vertices
        if self.distribution == "naive":  # their "simple" distribution: 3..N-1 vertices
            return naive_graph(rng, rng.randrange(3, N), self.max_parents)
        if self.distribution == "star":  # (spoke length, spoke count) uniform over the pairs that fit
            pairs = [(n, c) for n in range(1, self._top() + 1) for c in range(1, (N - 1) // n + 1)]
            if self.lookahead >= 0:
                pairs = [(n, c) for n, c in pairs if (n if c > 1 else 0) == L]
            return star_graph(*rng.choice(pairs))
        paths = rng.randint(1, 2) if L == 0 else rng.randint(2, (self.max_edges - 1) // L)
        n = min(L * paths + 1 + rng.randrange(6), N, self.max_edges + 1)
        return balanced_graph(rng, n, L, paths, self.max_parents, N)

    def _draw(self, rng: random.Random):
        """(children, start, goal, answer): the lookahead L drawn once (balanced: uniform in 0..max_lookahead), then
        graphs drawn until one passes their filters: a path s -> g of >= 1 edge, at most max_edges edges, lookahead L
        (measured by their `lookahead_depth` at s towards a random shortest-path child; star graphs have it by
        construction), and with unique_answer their test filter."""
        L = None
        if self.lookahead >= 0:
            L = self.lookahead
        elif self.distribution == "balanced":  # a test set (unique_answer) has no lookahead 0: a single child
            L = rng.randint(1 if self.unique_answer else 0, self._top())
        while True:
            children, start, goal = self._candidate(rng, L)
            best, dist = shortest_next_steps(children, start, goal)
            if not best or sum(map(len, children)) > self.max_edges:
                continue
            answer = rng.choice(best)
            if L is not None and lookahead_depth(children, start, answer, goal) != L:
                continue
            if self.unique_answer:
                useful = [c for c in children[start] if c == goal or goal in descendants(children, c)]
                shortest = min(L, 2) if L is not None else 2  # their test: paths of more than this many vertices
                if len(children[start]) < 2 or len(useful) != 1 or dist + 1 <= shortest:
                    continue
            return children, start, goal, answer

    # ---- sampling ------------------------------------------------------------------------------------------
    def sample(self, batch: int, n_points: int | None = None, seed: int | None = None,
               generator: torch.Generator | None = None, d_active: int | None = None, device=None,
               dtype=torch.float32) -> Prompts:
        """`batch` graph prompts. n_points is ignored (a graph's size is drawn per prompt, up to n_vertices).

        Prompts: xs = edges [B, M, 2] (vertex ids, -1 past the graph's edges, in shuffled order), ys = the target
        set [B, n_ids] (multi-hot over vertex ids); params: start, goal, current [B], path [B, n_vertices] (-1
        padded, path[0] = start, the last real entry = current), path_len, n_edges, n_vertices, lookahead [B].
        """
        check_counts(batch=batch)
        check(d_active is None, "d_active", "None (no dimension curriculum for graph search)", d_active)
        g = make_generator(seed, generator)
        B, N = batch, self.n_vertices
        rng = random.Random(int(torch.randint(2**62, (1,), generator=g)))
        graphs = [self._draw(rng) for _ in range(B)]
        adj = torch.zeros(B, N, N, dtype=torch.bool)
        adj[tuple(torch.tensor([(b, u, v) for b, (children, *_) in enumerate(graphs)
                                for u, cs in enumerate(children) for v in cs]).T)] = True
        start, goal, answer = (torch.tensor([gr[i] for gr in graphs]) for i in (1, 2, 3))
        n_real = torch.tensor([len(gr[0]) for gr in graphs])
        reach = reachability(adj)
        leads = reach | torch.eye(N, dtype=torch.bool)  # leads[b, c, goal]: c is the goal or reaches it
        rows = torch.arange(B)
        path, current = torch.full((B, N), -1, dtype=torch.long), start.clone()
        path[:, 0] = start
        path_len = torch.ones(B, dtype=torch.long)
        if self.step == "any":  # walk a random number of steps along random paths towards the goal
            to_take = (torch.rand(B, generator=g) * distances_from(adj, start)[rows, goal]).long()  # 0..dist-1
            for t in range(1, N):
                moving = to_take >= t
                if not moving.any():
                    break
                good = adj[rows, current] & leads[rows, :, goal]  # [B, N]
                nxt = _pick(good, g)
                current = torch.where(moving, nxt, current)
                path[moving, t] = nxt[moving]
                path_len += moving.long()
            answer = torch.tensor([rng.choice(shortest_next_steps(gr[0], int(c), gr[2])[0])
                                   for gr, c in zip(graphs, current)])
        lookahead = torch.tensor([lookahead_depth(gr[0], int(c), int(a), gr[2])
                                  for gr, c, a in zip(graphs, current, answer)])
        target = adj[rows, current] & leads[rows, :, goal]  # [B, N] children of current leading to the goal

        ids = torch.rand(B, self.ids, generator=g).argsort(1)[:, :N]  # [B, N] topological index -> vertex id
        flat = adj.flatten(1)  # [B, N*N]
        keys = torch.where(flat, torch.rand(flat.shape, generator=g), 2.0)  # real edges first, in random order
        order = keys.topk(self.max_edges, dim=1, largest=False, sorted=True).indices  # [B, M]
        n_edges = flat.sum(1)
        real = torch.arange(self.max_edges)[None] < n_edges[:, None]
        u, v = ids.gather(1, order // N), ids.gather(1, order % N)
        edges = torch.stack([u, v], -1).masked_fill(~real[..., None], -1)  # [B, M, 2]
        ys = torch.zeros(B, self.ids, dtype=dtype)
        ys.scatter_(1, ids, target.to(dtype))
        path_ids = torch.where(path >= 0, ids.gather(1, path.clamp(min=0)), -1)
        params = {"start": ids[rows, start], "goal": ids[rows, goal], "current": ids[rows, current], "path": path_ids,
                  "path_len": path_len, "n_edges": n_edges, "n_vertices": n_real, "lookahead": lookahead}
        p = Prompts(edges, ys, params)
        return p.to(device=device) if device is not None else p

    def evaluate(self, logits: torch.Tensor, p: Prompts) -> torch.Tensor:
        """[B] 1.0 where the top prediction is in the target set."""
        return top_in_target(logits, p.ys)


def top_in_target(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """[B] float: 1 where argmax(logits [B, C]) is in the multi-hot target set [B, C] (Saparov et al.'s accuracy)."""
    return targets.gather(1, logits.argmax(-1, keepdim=True)).squeeze(1).gt(0).float()


def encode_tokens(p: Prompts) -> torch.Tensor:
    """Token ids [B, T] (T = the longest prompt in the batch, PAD after each prompt's last token):
    E u v for every edge, Q s g, P and the path so far; the last real token is the current vertex."""
    B, M, _ = p.xs.shape
    edge_tok = torch.stack([torch.full((B, M), EDGE, device=p.xs.device), p.xs[..., 0] + FIRST_VERTEX,
                            p.xs[..., 1] + FIRST_VERTEX], -1)  # [B, M, 3]
    edge_tok = edge_tok.masked_fill((p.xs[..., :1] < 0), PAD).flatten(1)  # [B, 3M]
    query = torch.stack([torch.full_like(p.params["start"], QUERY), p.params["start"] + FIRST_VERTEX,
                         p.params["goal"] + FIRST_VERTEX], -1)  # [B, 3]
    path = p.params["path"]
    path_tok = torch.cat([torch.full_like(path[:, :1], PATH), torch.where(path >= 0, path + FIRST_VERTEX, PAD)], 1)
    tokens = torch.cat([edge_tok, query, path_tok], 1)
    # move every PAD to the end, keeping the order of the real tokens (a stable sort on "is padding")
    order = (tokens == PAD).to(torch.uint8).argsort(dim=1, stable=True)
    tokens = tokens.gather(1, order)
    return tokens[:, :int(lengths(p).max())]


def lengths(p: Prompts) -> torch.Tensor:
    """[B] the number of real tokens of each prompt."""
    return 3 * p.params["n_edges"] + 3 + 1 + p.params["path_len"]


def to_networkx(p: Prompts, i: int):
    """Prompt i as a networkx.DiGraph over vertex ids (nodes = the vertices that appear in an edge or the query)."""
    import networkx as nx

    graph = nx.DiGraph()
    graph.add_nodes_from([int(p.params["start"][i]), int(p.params["goal"][i])])
    edges = p.xs[i][p.xs[i, :, 0] >= 0]
    graph.add_edges_from((int(u), int(v)) for u, v in edges)
    return graph
