"""Graph search (Saparov et al. 2024, REFERENCES.md section 6): how well a run searches, and how.

- `accuracy_by_lookahead`, `accuracy_on`: accuracy ("the top prediction is in the target set") on held-out test
  sets, per lookahead and per distribution, with bootstrap bands.
- `trace_attention`: attention-perturbation tracing. Zero (or max) one attention entry at a time (batched: one
  prompt copy per entry) and keep those that move the output logit by more than a threshold, layer by layer from the
  top, following the positions already found to matter: the computation graph, backwards from the output.
- `circuit_reach`: the paper's own mechanism measure over many prompts: the path-merge length of the traced circuit's
  nodes per block (the longest path among the vertices merged into a node), beside random-key circuits.
- `reach_probe`: reachable-set decoding. At every layer, a linear probe reads from the token of u in each edge
  "E u v" the set of vertices reachable from u; scored by F1 against networkx's descendants, and by recall per hop
  distance, which shows how far the decoded reach extends at each layer (the paper: about 2^(layer - 1)).
"""
from __future__ import annotations

from collections import Counter

import networkx as nx
import numpy as np
import torch

import tasks
from tasks.graph_search import EDGE, FIRST_VERTEX, PAD, PATH, QUERY, encode_tokens, lengths, to_networkx, top_in_target

from .metrics import bootstrap_curve

TEST_SEED = 2**40  # held-out test sets: far from every training seed (data_seed(seed, step) = seed * 1_000_003 + step)
DISTRIBUTIONS = ("naive", "star", "balanced")  # the test distributions `lab eval` scores a graph search run on


def _logits(model, p: tasks.Prompts, chunk: int = 512) -> torch.Tensor:
    fmt = tasks.formats.get("graph")
    device = next(model.parameters()).device
    with torch.no_grad():
        return torch.cat([fmt.predict(model, _rows(p, slice(i, i + chunk)).to(device=device)).cpu()
                          for i in range(0, p.batch_size, chunk)])


def _rows(p: tasks.Prompts, idx) -> tasks.Prompts:
    return tasks.Prompts(p.xs[idx], p.ys[idx], {k: v[idx] for k, v in p.params.items()})


def _summary(correct: torch.Tensor, n_boot: int = 500) -> dict:
    band = bootstrap_curve(correct[:, None], n_boot)
    return {"mean": band["mean"][0], "lo": band["lo"][0], "hi": band["hi"][0], "n": int(len(correct))}


def held_out_task(task, **changes):
    """`task` with other settings (distribution, lookahead) at the same graph size and id range, first step, and
    their test filter (unique_answer: >= 2 children at the current vertex, one of them leading to the goal), which a
    lookahead-0 set cannot have."""
    kw = {"n_vertices": task.n_vertices, "max_parents": task.max_parents, "n_ids": task.n_ids, "step": "first",
          "distribution": task.distribution, "unique_answer": changes.get("lookahead", -1) != 0}
    return tasks.get("graph_search", **{**kw, **changes})


def lookaheads_tested(task) -> list[int]:
    """Their per-lookahead test sets: 1..the largest lookahead (lookahead 0 has a single child: nothing to test)."""
    return list(range(1, held_out_task(task).largest_lookahead() + 1))


def accuracy_on(model, task, n: int = 1000, seed: int = TEST_SEED) -> dict:
    """Accuracy of `model` on n held-out prompts of `task`: {"mean", "lo", "hi", "n"} (90% bootstrap band)."""
    p = task.sample(n, seed=seed)
    return _summary(top_in_target(_logits(model, p), p.ys))


def accuracy_by_lookahead(model, task, n: int = 500, lookaheads=None) -> dict:
    """{lookahead: accuracy summary} on balanced test sets (one per lookahead, held out) of `task`'s graph size."""
    out = {}
    for L in (lookaheads_tested(task) if lookaheads is None else lookaheads):
        test = held_out_task(task, distribution="balanced", lookahead=L)
        out[int(L)] = accuracy_on(model, test, n, seed=TEST_SEED + 1 + L)
    return out


# ---- (a) attention-perturbation tracing ---------------------------------------------------------------------
def trace_attention(model, p: tasks.Prompts, i: int = 0, threshold: float = 0.5, chunk: int = 256,
                    perturbations=("zero",), drop_only: bool = False) -> dict:
    """Trace prompt i's output back through the attention entries that matter.

    From the top layer down: every entry (head, query q, key k) with q among the positions that matter (at the top:
    the last token) is perturbed on its own: "zero" sets it to 0; "max" (Saparov et al.'s second perturbation) sets it
    to its row's largest weight and renormalises the row. An entry whose perturbation moves the logit of the predicted
    vertex by more than `threshold` (with `drop_only`, lowers it by more: the paper's rule) is kept, and its key joins
    the positions that matter for the layers below.
    Returns {"prediction", "logit", "tokens", "labels", "layers": [{"layer", "entries": [{head, query, key,
    effect, perturbation}], "positions"}]} (layers listed top first).
    """
    device = next(model.parameters()).device
    one = _rows(p, slice(i, i + 1)).to(device=device)
    tokens = encode_tokens(one)  # [1, T]
    real = tokens != PAD
    last = int(lengths(one)[0]) - 1
    with torch.no_grad():
        base = model(tokens, key_padding=real)[0, last]  # [C]
    target = int(base.argmax())
    n_layers, H = len(model.blocks), model.blocks[0].attn.H
    matter, layers = {last}, []
    for layer in reversed(range(n_layers)):
        entries = [(h, q, k) for h in range(H) for q in sorted(matter) for k in range(last + 1)]
        kept = {}
        for how in perturbations:
            effects = _entry_effects(model, tokens, real, layer, entries, how, last, target, chunk) - base[target].cpu()
            for (h, q, k), e in zip(entries, effects.tolist()):
                if (-e if drop_only else abs(e)) > threshold and abs(e) > abs(kept.get((h, q, k), {}).get("effect", 0)):
                    kept[(h, q, k)] = {"head": h, "query": q, "key": k, "effect": float(e), "perturbation": how}
        kept = [kept[key] for key in sorted(kept)]
        matter |= {e["key"] for e in kept}
        layers.append({"layer": layer, "entries": kept, "positions": sorted(matter)})
    toks = tokens[0, :last + 1].tolist()
    return {"prediction": target, "logit": float(base[target]), "tokens": toks, "labels": token_labels(toks),
            "threshold": threshold, "layers": layers}


def _entry_effects(model, tokens, real, layer: int, entries: list, how: str, last: int, target: int,
                   chunk: int) -> torch.Tensor:
    """The predicted vertex's logit at the last token with each attention entry (head, query, key) of block `layer`
    perturbed on its own ("zero" or "max"), one prompt copy per entry: [len(entries)]. The blocks below `layer` are
    the same for every copy: they run once, and the copies start from their residual stream."""
    device = tokens.device
    start_at = f"blocks.{layer}.hook_resid_pre"
    with torch.no_grad():
        resid = model.run_with_cache(tokens, key_padding=real, names_filter=[start_at])[1][start_at]  # [1, T, D]
    out = []
    for start in range(0, len(entries), chunk):
        part = torch.tensor(entries[start:start + chunk], device=device)  # [Z, 3]
        Z = len(part)

        def perturb(pattern, hook, part=part):  # pattern [Z, H, T, T], Z = len(part)
            pattern = pattern.clone()
            z, h, q, k = torch.arange(len(part), device=device), part[:, 0], part[:, 1], part[:, 2]
            if how == "zero":
                pattern[z, h, q, k] = 0.0
            else:  # "max": the entry takes its row's largest weight, the row is renormalised
                pattern[z, h, q, k] = pattern[z, h, q].max(-1).values
                pattern[z, h, q] = pattern[z, h, q] / pattern[z, h, q].sum(-1, keepdim=True)
            return pattern

        with torch.no_grad(), model.hooks([(f"blocks.{layer}.attn.hook_pattern", perturb)]):
            x = resid.expand(Z, -1, -1)  # [Z, T, D]
            for block in model.blocks[layer:]:
                x = block(x, real.expand(Z, -1))
            out.append(model.readout(x[:, last])[:, target].cpu())
    return torch.cat(out) if out else torch.zeros(0)


def token_labels(tokens: list[int]) -> list[str]:
    """Readable labels: E, Q, P for the markers, vertex ids as numbers."""
    names = {EDGE: "E", QUERY: "Q", PATH: "P", PAD: "."}
    return [names.get(t, str(t - FIRST_VERTEX)) for t in tokens]


def _query_positions(tokens: list[int]) -> set[int]:
    """The positions of the query's start and goal tokens (Q s g)."""
    q = tokens.index(QUERY)
    return {q + 1, q + 2}


def _merged_sources(trace: dict, theirs: bool) -> list[list[set[int]]]:
    """Per block (bottom first), per position: the input positions that reach it through the kept attention entries.
    theirs: only entries their path-merge rule explains (trace_circuit.py `path_merge_explainable`, read on the tokens
    since the lab's embeddings are learned, not one-hot): a token-matching step (the positions merged into the query
    and into the key hold a common vertex), a position step (query and key adjacent: the two vertices of an edge), or a
    copy into the last token from positions that hold the query's start or goal."""
    tokens = trace["tokens"]
    last, query = len(tokens) - 1, _query_positions(tokens)
    vertices = lambda positions: {tokens[s] for s in positions if tokens[s] >= FIRST_VERTEX}  # noqa: E731
    sources, out = [{pos} for pos in range(len(tokens))], []
    for lay in sorted(trace["layers"], key=lambda lay: lay["layer"]):
        merged = [set(src) for src in sources]
        for e in lay["entries"]:
            q, k = e["query"], e["key"]
            if not theirs or vertices(sources[q]) & vertices(sources[k]) or abs(q - k) == 1 or \
                    (q == last and sources[k] & query):
                merged[q] |= sources[k]
        sources = merged
        out.append(sources)
    return out


def merge_path_lengths(trace: dict, graph, theirs: bool = False) -> list[int]:
    """Saparov et al.'s path-merge lengths of one traced prompt, per block (bottom first). A circuit node is a position
    after block l that the blocks above read (the last token after the top block); it holds the input positions that
    reach it through the kept attention entries (theirs: only the entries their rule explains, `_merged_sources`), and
    its path length is the longest shortest path in the prompt's graph restricted to the vertices at those positions
    (their `reachable_path_length`). Per block: the largest over its nodes."""
    tokens = trace["tokens"]
    layers = sorted(trace["layers"], key=lambda lay: lay["layer"])
    readers = [set(above["positions"]) for above in layers[1:]] + [{len(tokens) - 1}]  # the nodes after each block
    out = []
    for sources, nodes in zip(_merged_sources(trace, theirs), readers):
        longest = 0
        for q in nodes:
            sub = graph.subgraph({tokens[s] - FIRST_VERTEX for s in sources[q] if tokens[s] >= FIRST_VERTEX})
            longest = max([longest] + [d for _, far in nx.all_pairs_shortest_path_length(sub) for d in far.values()])
        out.append(longest)
    return out


def root_links_start_and_goal(trace: dict, graph) -> bool:
    """Their test of a traced prompt (`filter_irrelevant_nodes`): through the merges their rule explains, the last
    token holds a path from the query's start to its goal (over the vertices merged into it)."""
    tokens = trace["tokens"]
    start, goal = (tokens[pos] - FIRST_VERTEX for pos in sorted(_query_positions(tokens)))
    held = {tokens[s] - FIRST_VERTEX for s in _merged_sources(trace, True)[-1][-1] if tokens[s] >= FIRST_VERTEX}
    return goal in held and nx.has_path(graph.subgraph(held | {start}), start, goal)


def _random_keys(trace: dict, rng: np.random.Generator) -> dict:
    """The control for `merge_path_lengths`: the same kept entries (layer, query) with each key drawn at random
    among the prompt's positions."""
    T = len(trace["tokens"])
    return {**trace, "layers": [{**lay, "entries": [{**e, "key": int(rng.integers(T))} for e in lay["entries"]]}
                                for lay in trace["layers"]]}


def token_role(tokens: list[int], pos: int, graph, start: int, goal: int) -> str:
    """What the token at `pos` is, for reading circuits: a marker ("E", "Q", "P"), or "slot:vertex" with slot one of
    src / tgt (an edge's source or target), qs / qg (the query's start or goal), path, and vertex one of s, g,
    "target child" (a child of s that reaches g), "other child", "reaches g", "other"."""
    t = tokens[pos]
    if t < FIRST_VERTEX:
        return {EDGE: "E", QUERY: "Q", PATH: "P"}.get(t, "pad")
    before = [tokens[pos - k] if pos >= k else None for k in (1, 2)]
    slot = ("src" if before[0] == EDGE else "tgt" if before[1] == EDGE else "qs" if before[0] == QUERY
            else "qg" if before[1] == QUERY else "path")
    v = t - FIRST_VERTEX
    leads = v == goal or nx.has_path(graph, v, goal)
    vertex = ("s" if v == start else "g" if v == goal else ("target child" if leads else "other child")
              if graph.has_edge(start, v) else "reaches g" if leads else "other")
    return f"{slot}:{vertex}"


THEIR_LOGIT_DROP = 0.4  # trace_circuit.py: an entry matters when perturbing it lowers the output logit by > 0.4


def circuit_reach(model, task, n_prompts: int = 40, threshold: float = THEIR_LOGIT_DROP,
                  seed: int = TEST_SEED + 300) -> dict:
    """Saparov et al.'s mechanism measure, aggregated over held-out prompts: trace each prompt's output through the
    attention entries whose zeroing or maxing lowers the predicted logit by more than `threshold` (their 0.4), and
    read the path-merge length per block (`merge_path_lengths`) by their procedure: only the merges their rule
    explains, over the prompts whose last token links the start to the goal through them
    (`root_links_start_and_goal`). The paper: about 2^(l - 1) after block l. Control: the same circuits with random
    keys. Returns per-block means ("merge_length", "control"; NaN where no prompt is explained), the share of prompts
    explained ("explained_share"), the share of explained prompts whose length reaches min(2^(l - 1), the graph's
    longest path) ("doubling_share"), the same lengths over every kept entry and every prompt ("merge_length_all",
    "control_all": the lab's earlier reading), kept entries per block, the most frequent (query role <- key role) per
    block ("roles", `token_role`: what the circuit reads), and the prompts' longest paths."""
    p = held_out_task(task).sample(n_prompts, seed=seed)
    rng = np.random.default_rng(seed)
    rows = {key: [] for key in ("merges", "control", "all", "control_all", "entries", "longest", "doubled")}
    explained = []
    roles = [Counter() for _ in model.blocks]
    for i in range(n_prompts):
        trace = trace_attention(model, p, i, threshold, perturbations=("zero", "max"), drop_only=True)
        graph = to_networkx(p, i)
        s, g = int(p.params["start"][i]), int(p.params["goal"][i])
        for lay in trace["layers"]:
            roles[lay["layer"]].update(f"{token_role(trace['tokens'], e['query'], graph, s, g)} <- "
                                       f"{token_role(trace['tokens'], e['key'], graph, s, g)}" for e in lay["entries"])
        shuffled = _random_keys(trace, rng)
        rows["all"].append(merge_path_lengths(trace, graph))
        rows["control_all"].append(merge_path_lengths(shuffled, graph))
        rows["entries"].append([len(lay["entries"]) for lay in sorted(trace["layers"], key=lambda lay: lay["layer"])])
        rows["longest"].append(nx.dag_longest_path_length(graph))
        explained.append(root_links_start_and_goal(trace, graph))
        if explained[-1]:
            rows["merges"].append(merge_path_lengths(trace, graph, theirs=True))
            rows["control"].append(merge_path_lengths(shuffled, graph, theirs=True))
            rows["doubled"].append([m >= min(2 ** l, rows["longest"][-1]) for l, m in enumerate(rows["merges"][-1])])
    n_blocks = len(model.blocks)
    mean = lambda key: (np.asarray(rows[key], dtype=float).mean(0).tolist() if rows[key]  # noqa: E731
                        else [float("nan")] * n_blocks)
    return {"layers": list(range(1, n_blocks + 1)), "merge_length": mean("merges"), "control": mean("control"),
            "explained_share": float(np.mean(explained)), "doubling_share": mean("doubled"),
            "merge_length_all": mean("all"), "control_all": mean("control_all"), "entries_per_block": mean("entries"),
            "roles": [dict(r.most_common(6)) for r in roles], "longest_path": float(np.mean(rows["longest"])),
            "threshold": threshold, "n_prompts": n_prompts}


# ---- (b) reachable-set decoding -----------------------------------------------------------------------------
def _vertex_tokens(model, p: tasks.Prompts, position: str = "source", chunk: int = 256):
    """Residual stream at the u (position "source") or v ("target") token of every edge "E u v", per layer (0 =
    embeddings, l = after block l): features [L + 1, N_edges, D], and (prompt index, that vertex) for each row."""
    offset, column = (1, 0) if position == "source" else (2, 1)
    device = next(model.parameters()).device
    names = ["blocks.0.hook_resid_pre"] + [f"blocks.{l}.hook_resid_post" for l in range(len(model.blocks))]
    feats, owners = [], []
    for start in range(0, p.batch_size, chunk):
        part = _rows(p, slice(start, start + chunk))
        tokens = encode_tokens(part).to(device)
        with torch.no_grad():
            _, cache = model.run_with_cache(tokens, key_padding=tokens != PAD, names_filter=names)
        n_edges = part.params["n_edges"]
        b, e = (torch.arange(part.xs.shape[1])[None] < n_edges[:, None]).nonzero(as_tuple=True)
        feats.append(torch.stack([cache[n][b.to(device), (3 * e + offset).to(device)].cpu() for n in names]))
        owners += [(start + int(bi), int(part.xs[bi, ei, column])) for bi, ei in zip(b, e)]
    return torch.cat(feats, 1), owners


def _reach_labels(p: tasks.Prompts, owners, n_ids: int, direction: str = "descendants"):
    """networkx's ground truth per row: the vertices reachable from u (direction "descendants"), or from which u is
    reachable ("ancestors"), multi-hot [N, n_ids], and their hop distance ([N, n_ids]: k >= 1 for those vertices,
    -1 for the graph's other vertices (u included), 0 for ids not in it)."""
    graphs, labels, dist = {}, np.zeros((len(owners), n_ids), np.float32), np.zeros((len(owners), n_ids), np.int64)
    for row, (b, u) in enumerate(owners):
        if b not in graphs:
            graphs[b] = to_networkx(p, b) if direction == "descendants" else to_networkx(p, b).reverse()
        dist[row, list(graphs[b].nodes)] = -1
        for v, k in nx.single_source_shortest_path_length(graphs[b], u).items():
            if k > 0:
                labels[row, v], dist[row, v] = 1.0, k
    return torch.from_numpy(labels), torch.from_numpy(dist)


def _fit_probe(x: torch.Tensor, y: torch.Tensor, steps: int = 300, weight_decay: float = 1e-4) -> torch.nn.Linear:
    """Multi-label logistic regression [D] -> [n_ids], full-batch Adam on standardised features."""
    torch.manual_seed(0)
    probe = torch.nn.Linear(x.shape[1], y.shape[1])
    opt = torch.optim.Adam(probe.parameters(), lr=0.05, weight_decay=weight_decay)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.binary_cross_entropy_with_logits(probe(x), y).backward()
        opt.step()
    return probe


def f1_score(pred: torch.Tensor, truth: torch.Tensor) -> float:
    """F1 of multi-hot predictions against multi-hot truth, pooled over every (row, vertex)."""
    tp = float((pred * truth).sum())
    return 2 * tp / max(float(pred.sum() + truth.sum()), 1e-9)


def reach_probe(model, task, n_train: int = 1500, n_test: int = 500, seed: int = TEST_SEED + 100,
                position: str = "source", direction: str = "descendants") -> dict:
    """Reachable-set decoding per layer at the source (u) or target (v) token of every edge: the vertices reachable
    from that vertex (or, direction "ancestors", those it is reachable from). Returns decode_reach's result plus
    "position", "direction", "n_train_rows", "n_test_rows"."""
    probe_task = held_out_task(task)
    train, test = probe_task.sample(n_train, seed=seed), probe_task.sample(n_test, seed=seed + 1)
    (f_train, o_train), (f_test, o_test) = (_vertex_tokens(model, x, position) for x in (train, test))
    y_train, _ = _reach_labels(train, o_train, probe_task.ids, direction)
    y_test, d_test = _reach_labels(test, o_test, probe_task.ids, direction)
    return {**decode_reach(f_train, y_train, f_test, y_test, d_test), "position": position, "direction": direction,
            "n_train_rows": len(o_train), "n_test_rows": len(o_test)}


def decode_reach(f_train, y_train, f_test, y_test, d_test) -> dict:
    """Fit one linear probe per layer (features [L, N, D] -> reachable set [N, n_ids]) and score it on the test
    rows: F1 over the graph's vertices, recall per hop distance (d_test [N, n_ids]: k >= 1 reachable, -1 in the
    graph but unreachable, 0 not in the graph), the false-positive rate on the graph's unreachable vertices, and the
    decoded reach: the largest k such that at every distance 1..k, recall - false-positive rate (Youden's J) is at
    least 0.5. Scoring within the graph means that knowing which vertices a prompt has is not credited as
    knowing what is reachable."""
    distances = list(range(1, int(d_test.max()) + 1))
    f1s, recalls, fprs, reach = [], [], [], []
    for layer in range(f_train.shape[0]):
        mu, sd = f_train[layer].mean(0), f_train[layer].std(0) + 1e-6
        probe = _fit_probe((f_train[layer] - mu) / sd, y_train)
        with torch.no_grad():
            pred = (probe((f_test[layer] - mu) / sd) > 0).float()
        in_graph = (d_test != 0).float()
        f1s.append(f1_score(pred * in_graph, y_test))
        fpr = float(pred[d_test == -1].mean())
        rec = [float(pred[d_test == k].mean()) if (d_test == k).any() else float("nan") for k in distances]
        recalls.append(rec)
        fprs.append(fpr)
        k = 0
        while k < len(rec) and not rec[k] - fpr < 0.5:  # nan (no such distance) does not stop the count
            k += 1
        reach.append(k)
    return {"layers": list(range(f_train.shape[0])), "f1": f1s, "recall_by_distance": recalls,
            "false_positive_rate": fprs, "distances": distances, "reach": reach}



# ---- run level: `lab eval` and `lab probe RUN search` ---------------------------------------------------------
def search_curve(model, task, n_prompts: int = 500) -> dict:
    """The eval object (DESIGN.md's shape, k = lookahead): accuracy per lookahead on balanced test sets, and
    accuracy on each test distribution ("distributions")."""
    by_lookahead = accuracy_by_lookahead(model, task, n_prompts)
    curve = {"task": "graph_search", "d": task.n_vertices, "k": list(by_lookahead), "k_name": "lookahead",
             "metric": "accuracy",
             "curves": {"model": {key: [r[key] for r in by_lookahead.values()] for key in ("mean", "lo", "hi")}}}
    curve["distributions"] = {d: accuracy_on(model, held_out_task(task, distribution=d), n_prompts, seed=TEST_SEED)
                              for d in DISTRIBUTIONS}
    return curve


def mechanism(run, n_prompts: int, n_test: int, figures, circuit_prompts: int = 40) -> dict:
    """The traced circuits' path-merge lengths over `circuit_prompts` held-out prompts (`circuit_reach`), reachable-set
    decoding of the trained model and of its untrained initialisation (the control), and the attention trace of one
    held-out prompt; writes reach.png and trace.png into the folder `figures`."""
    from lab.model import build_model

    from .figures import reach_figure, save_figure, trace_figure

    model = run.model
    untrained = build_model(run.config.model, seed=run.config.train.seed).to(next(model.parameters()).device)
    reach = reach_probe(model, run.task, n_prompts, n_test)
    control = reach_probe(untrained, run.task, n_prompts, n_test)
    circuit = circuit_reach(model, run.task, circuit_prompts)
    trace = trace_attention(model, held_out_task(run.task).sample(1, seed=TEST_SEED + 7), 0)
    save_figure(reach_figure(reach, control, circuit), figures / "reach.png")
    save_figure(trace_figure(trace), figures / "trace.png")
    return {"reach": reach, "control": control, "circuit": circuit, "trace": trace}


def search_probe(run, n_prompts: int = 500) -> dict:
    """`lab probe RUN search`: `mechanism` on held-out prompts, figures in RUN/figures."""
    found = mechanism(run, n_prompts, max(100, n_prompts // 2), run.out / "figures", min(40, n_prompts))
    return {"kind": "search", "run": str(run.path), **found}


def format_search(res: dict) -> str:
    lines = ["layer  F1 (control)  decoded reach (control)"]
    for l in res["reach"]["layers"]:
        lines.append(f"{l:5d}  {res['reach']['f1'][l]:.3f} ({res['control']['f1'][l]:.3f})  "
                     f"{res['reach']['reach'][l]:13d} ({res['control']['reach'][l]})")
    c = res["circuit"]
    lines.append(f"traced circuits ({c['n_prompts']} prompts, logit drop > {c['threshold']:.2f}): their rule explains "
                 f"{c['explained_share']:.0%}; path-merge length per block over those "
                 f"{' '.join(f'{m:.2f}' for m in c['merge_length'])} (random keys "
                 f"{' '.join(f'{m:.2f}' for m in c['control'])}); over every kept entry "
                 f"{' '.join(f'{m:.2f}' for m in c['merge_length_all'])}; the graphs' longest path "
                 f"{c['longest_path']:.2f}")
    kept = [len(lay["entries"]) for lay in res["trace"]["layers"]]
    lines.append(f"attention trace of one prompt: entries kept per layer (top first) {kept}")
    return "\n".join(lines)
