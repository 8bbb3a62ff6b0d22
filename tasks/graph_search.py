"""Graph search in context (Saparov et al. 2024, "Transformers struggle to learn to search"; REFERENCES.md section 6).

A prompt is a directed acyclic graph with random vertex ids, given as its shuffled edge list, then the query
(start s, goal g), then the path so far; the target is the set of children of the current vertex from which g is
still reachable (a prediction is correct if it is in the set). Three training distributions:

- naive: a random DAG (each vertex after the first takes 1..max_parents parents among the earlier ones), start
  and goal a random connected pair; its lookahead is skewed small.
- star: the start with 2 or more arms of equal length; the goal is the tip of one arm.
- balanced: lookahead L uniform in 0..max_lookahead: the goal path s -> p_1 -> ... -> p_L -> g (L + 1 edges), a
  distractor arm from s of L + 1 or L + 2 edges, then, as in their generator, a chain of a random number of
  ancestors ending at s ("prefix vertices": s is not always a source), and the other vertices either hanging off
  earlier vertices (they never reach g) or feeding into them (children among earlier vertices, never reachable from
  s: the goal path gets other parents, as in naive graphs), so the measured lookahead is exactly L.

Lookahead of an example = dist(current, goal) - 1: how many edges past the current vertex's children a search must
follow to see which child leads to the goal. Everything is generated as batched tensor operations (adjacency
[B, N, N], reachability by repeated boolean squaring), on the CPU from a seed, so a seed gives the same graphs on
every device.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from .checks import check, check_choices, check_counts
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


def _k_smallest(scores: torch.Tensor, k: torch.Tensor, dim: int) -> torch.Tensor:
    """Mask of the k smallest scores along `dim` (k: the count per slice, shaped as scores without `dim`)."""
    kth = scores.sort(dim).values.gather(dim, (k - 1).unsqueeze(dim))
    return scores <= kth


def _uniform_int(lo: torch.Tensor | int, hi: torch.Tensor | int, shape, g) -> torch.Tensor:
    """Integers uniform in [lo, hi] (inclusive, elementwise)."""
    lo, hi = torch.as_tensor(lo), torch.as_tensor(hi)
    return lo + torch.minimum((torch.rand(shape, generator=g) * (hi - lo + 1)).long(), hi - lo)


@register("graph_search")
@dataclass
class GraphSearch:
    n_vertices: int = 16  # the most vertices a graph has (graphs have between about half of it and all of it)
    distribution: Literal[DISTRIBUTIONS] = "balanced"
    max_lookahead: int = -1  # balanced / star: lookahead uniform in 0..max_lookahead (-1: the largest that fits)
    lookahead: int = -1  # >= 0: every graph has exactly this lookahead (a per-lookahead test set); not for naive
    max_parents: int = 3  # naive: each vertex after the first takes 1..max_parents parents
    step: Literal["first", "any"] = "first"  # first: the path so far is [s]; any: a random prefix of a path to g
    n_ids: int = 0  # vertex ids are a random injection into 0..n_ids-1 per graph (0: n_vertices)

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

    def largest_lookahead(self) -> int:
        """Balanced: the goal path and a distractor arm need 2L + 3 vertices; star: two arms of L + 1 need 2L + 3."""
        return (self.n_vertices - 3) // 2

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
        return (self.n_vertices - 1) * max(self.max_parents, 2)

    def seq_len(self) -> int:
        """The longest prompt: 3 tokens per edge, the query (Q s g), P and the path (at most n_vertices - 1)."""
        return 3 * self.max_edges + 3 + 1 + (1 if self.step == "first" else self.n_vertices - 1)

    # ---- the three distributions, in topological index space (vertex 0 is the start) ------------------------
    def _naive(self, B, g):
        N = self.n_vertices
        n_real = _uniform_int(N // 2 + 1, N, (B,), g)  # [B]
        j = torch.arange(N)
        k = _uniform_int(1, self.max_parents, (B, N), g).clamp(max=j.clamp(min=1))  # parents wanted per vertex
        earlier = j[:, None] < j[None, :]  # [parent, child]
        scores = torch.rand(B, N, N, generator=g).masked_fill(~earlier, 2.0)  # [B, parent, child]
        # k random earlier parents per child, among the graph's real vertices
        adj = _k_smallest(scores, k, 1) & earlier & (j[None, None, :] < n_real[:, None, None])
        reach = reachability(adj)
        pair = _pick(reach.flatten(1), g)  # a uniformly random connected (start, goal) pair
        start, goal = pair // N, pair % N
        return adj, start, goal, n_real

    def _star(self, B, g, L):
        N = self.n_vertices
        if L is None:
            arms = _uniform_int(2, N - 1, (B,), g)
            length = _uniform_int(1, (N - 1) // arms, (B,), g)  # [B]
            cap = self.max_lookahead if self.max_lookahead >= 0 else self.largest_lookahead()
            length = length.clamp(max=cap + 1)
        else:
            length = torch.full((B,), L + 1)
            arms = _uniform_int(2, (N - 1) // (L + 1), (B,), g)
        v = torch.arange(1, N)
        parent = torch.where((v[None] - 1) % length[:, None] == 0, 0, v[None] - 1)  # [B, N-1]
        real = v[None] <= arms[:, None] * length[:, None]
        adj = torch.zeros(B, N, N, dtype=torch.bool)
        b, c = real.nonzero(as_tuple=True)
        adj[b, parent[b, c], v[c]] = True
        goal = _uniform_int(0, arms - 1, (B,), g) * length + length  # the tip of a random arm
        return adj, torch.zeros(B, dtype=torch.long), goal, 1 + arms * length

    def _balanced(self, B, g, L):
        N = self.n_vertices
        most = self.max_lookahead if self.max_lookahead >= 0 else self.largest_lookahead()
        L = torch.full((B,), L) if L is not None else _uniform_int(0, most, (B,), g)
        n_real = _uniform_int(2 * L + 3, N, (B,), g)
        arm = L + 1 + ((torch.rand(B, generator=g) < 0.5) & (2 * L + 4 <= n_real)).long()  # distractor edges
        v = torch.arange(1, N)[None]  # [1, N-1]
        goal = L + 1
        on_distractor = (v > goal[:, None]) & (v <= (goal + arm)[:, None])
        first_distractor = v == (goal + 1)[:, None]
        extra = (v > (goal + arm)[:, None]) & (v < n_real[:, None])
        n_prefix = _uniform_int(0, (n_real - 1 - goal - arm).clamp(min=0), (B,), g)  # [B]
        prefix = extra & (v <= (goal + arm + n_prefix)[:, None])  # a chain of ancestors ending at s
        feeding = extra & ~prefix & (torch.rand(B, N - 1, generator=g) < 0.5)  # edges into earlier vertices
        extra = extra & ~prefix & ~feeding
        random_parent = (torch.rand(B, N - 1, generator=g) * v).long()  # uniform in 0..v-1
        parent = torch.where(first_distractor, 0, v - 1)
        parent = torch.where(extra, random_parent, parent)
        adj = torch.zeros(B, N, N, dtype=torch.bool)
        real = (v <= goal[:, None]) | on_distractor | extra
        b, c = real.nonzero(as_tuple=True)
        adj[b, parent[b, c], c + 1] = True
        b, c = prefix.nonzero(as_tuple=True)  # prefix vertex v -> v - 1, the first one -> s
        adj[b, c + 1, torch.where(c + 1 == goal[b] + arm[b] + 1, 0, c)] = True
        # a feeding vertex v: 1..max_parents children among the vertices before it and no parents but other feeding
        # ones, so no feeding vertex is reachable from s (acyclic; s's children and the lookahead stay as built)
        k = torch.minimum(_uniform_int(1, self.max_parents, (B, N - 1), g), v)  # [B, N-1]
        scores = torch.rand(B, N - 1, N, generator=g).masked_fill(torch.arange(N) >= v[..., None], 2.0)  # [B, v, child]
        adj[:, 1:] |= _k_smallest(scores, k, -1) & feeding.unsqueeze(-1)
        second = extra & (torch.rand(B, N - 1, generator=g) < 0.5)  # half the extras get a second parent
        b, c = second.nonzero(as_tuple=True)
        adj[b, (torch.rand(len(b), generator=g) * (c + 1)).long(), c + 1] = True
        return adj, torch.zeros(B, dtype=torch.long), goal, n_real

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
        L = None if self.lookahead < 0 else self.lookahead
        adj, start, goal, n_real = {"naive": lambda: self._naive(B, g), "star": lambda: self._star(B, g, L),
                                    "balanced": lambda: self._balanced(B, g, L)}[self.distribution]()
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
        target = adj[rows, current] & leads[rows, :, goal]  # [B, N] children of current leading to the goal
        lookahead = distances_from(adj, current)[rows, goal] - 1

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
