"""Token formats: how Prompts become model inputs, and how model outputs become predictions [B, n].

Every format predicts y_i from pairs 0..i-1 and x_i, the same convention as the reference learners.
"""
from __future__ import annotations

from collections.abc import Callable

import torch

from .graph_search import PAD, encode_tokens, lengths
from .prompts import Prompts


class Format:
    """Base class. `encode` -> inputs [B, T, D]; `decode` -> predictions at the predicted positions."""

    name = "format"
    mask = "causal"  # the attention mask the format is meant for

    def input_dim(self, d: int) -> int:
        raise NotImplementedError

    def seq_len(self, n: int) -> int:
        raise NotImplementedError

    def encode(self, p: Prompts) -> torch.Tensor:
        raise NotImplementedError

    def decode(self, outputs: torch.Tensor) -> torch.Tensor:
        """outputs [B, T] (scalar read-out) -> predictions [B, m]."""
        raise NotImplementedError

    def targets(self, p: Prompts) -> torch.Tensor:
        """The labels `decode` predicts, [B, m]."""
        raise NotImplementedError

    def parse(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Inverse of encode: (xs [B, n, d], the labels the tokens carry)."""
        raise NotImplementedError

    def predict(self, forward: Callable[[torch.Tensor], torch.Tensor], p: Prompts) -> torch.Tensor:
        """Prefix-wise predictions [B, n] of the model `forward` (inputs -> outputs [B, T])."""
        return self.decode(forward(self.encode(p)))

    def outputs(self, forward: Callable[[torch.Tensor], torch.Tensor], p: Prompts) -> torch.Tensor:
        """What the training loss compares with `targets(p)`, from one forward pass."""
        return self.decode(forward(self.encode(p)))

    def predict_last(self, forward: Callable[[torch.Tensor], torch.Tensor], p: Prompts) -> torch.Tensor:
        """The prediction [B] for the last point from all the pairs before it."""
        return self.predict(forward, p)[:, -1]


class Interleaved(Format):
    """Garg et al.: x_1, [y_1, 0..0], x_2, [y_2, 0..0], ...; the prediction for x_i is read at x_i's token."""

    name = "interleaved"

    def input_dim(self, d):
        return d

    def seq_len(self, n):
        return 2 * n

    def encode(self, p):
        B, n, d = p.xs.shape
        y_tokens = torch.zeros_like(p.xs)
        y_tokens[..., 0] = p.ys
        return torch.stack([p.xs, y_tokens], dim=2).reshape(B, 2 * n, d)  # [B, 2n, d]

    def decode(self, outputs):
        return outputs[:, 0::2]  # [B, n]

    def targets(self, p):
        return p.ys

    def parse(self, inputs):
        return inputs[:, 0::2], inputs[:, 1::2, 0]


class Disjoint(Interleaved):
    """Akyurek et al.: tokens [0, x] and [y, 0_d], so x and y live in disjoint coordinates."""

    name = "disjoint"

    def input_dim(self, d):
        return d + 1

    def encode(self, p):
        B, n, d = p.xs.shape
        tokens = p.xs.new_zeros(B, n, 2, d + 1)
        tokens[:, :, 0, 1:] = p.xs
        tokens[:, :, 1, 0] = p.ys
        return tokens.reshape(B, 2 * n, d + 1)  # [B, 2n, d+1]

    def parse(self, inputs):
        return inputs[:, 0::2, 1:], inputs[:, 1::2, 0]


class Paired(Interleaved):
    """Two tokens per point: [x_i, 0] (the query for x_i), then [x_i, y_i] (point i as context).

    Each context token carries its whole pair, so with a causal mask one attention layer already sees
    (x_j, y_j) together at the query for x_i (as in von Oswald's stacked tokens), while y_i stays unseen.
    """

    name = "paired"

    def input_dim(self, d):
        return d + 1

    def encode(self, p):
        B, n, d = p.xs.shape
        query = torch.cat([p.xs, p.xs.new_zeros(B, n, 1)], dim=-1)
        context = torch.cat([p.xs, p.ys.unsqueeze(-1)], dim=-1)
        return torch.stack([query, context], dim=2).reshape(B, 2 * n, d + 1)  # [B, 2n, d+1]

    def parse(self, inputs):
        return inputs[:, 0::2, :-1], inputs[:, 1::2, -1]


class Stacked(Format):
    """von Oswald et al.: context tokens (x_j, y_j) for j < n-1, then the query (x_{n-1}, 0).

    Meant for the "context" mask (every token attends to the context tokens only). One sequence predicts
    only its last point, so `predict` runs one sequence per prefix length.
    """

    name = "stacked"
    mask = "context"

    def input_dim(self, d):
        return d + 1

    def seq_len(self, n):
        return n

    def encode(self, p):
        ys = p.ys.clone()
        ys[:, -1] = 0
        return torch.cat([p.xs, ys.unsqueeze(-1)], dim=-1)  # [B, n, d+1]

    def decode(self, outputs):
        return outputs[:, -1:]  # [B, 1]

    def targets(self, p):
        return p.ys[:, -1:]

    def parse(self, inputs):
        return inputs[..., :-1], inputs[:, :-1, -1]

    def predict(self, forward, p):
        return torch.stack([self.predict_last(forward, p.prefix(i + 1)) for i in range(p.n_points)], dim=1)

    def predict_last(self, forward, p):
        return self.decode(forward(self.encode(p)))[:, 0]  # one sequence: the query is the last point


class GraphTokens(Format):
    """Saparov et al.: token ids E u v per edge, Q s g, P and the path so far, padded with PAD after the last real
    token (tasks/graph_search.py). No causal mask; padding is masked as keys; the prediction is the class logits
    [B, C] read at each prompt's last real token (the current vertex)."""

    name = "graph"
    mask = "none"

    def input_dim(self, d):
        return 0  # token ids, not vectors

    def seq_len(self, n):
        raise ValueError("the graph format's length comes from the task (GraphSearch.seq_len())")

    def encode(self, p):
        return encode_tokens(p)  # [B, T] long

    def targets(self, p):
        return p.ys  # [B, C] multi-hot target set

    def predict(self, forward, p):
        """Logits [B, C] at the current vertex; padding is never attended to."""
        tokens = self.encode(p)
        out = forward(tokens, key_padding=tokens != PAD)  # [B, T, C]
        return out[torch.arange(out.shape[0], device=out.device), lengths(p).to(out.device) - 1]

    outputs = predict

    def predict_last(self, forward, p):
        return self.predict(forward, p)


_FORMATS = {f.name: f for f in (Interleaved, Disjoint, Paired, Stacked, GraphTokens)}


def get(name: str) -> Format:
    if name not in _FORMATS:
        raise ValueError(f"unknown format {name!r}; choose one of: {', '.join(_FORMATS)}")
    return _FORMATS[name]()


def names() -> list[str]:
    return list(_FORMATS)
