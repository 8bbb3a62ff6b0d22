"""Training dynamics of one attention layer (Tian et al. 2023, "Scan and Snap"), on tasks/scan_snap.py data.

The model is their eqs. (2)-(3): one-hot token embeddings, no positional encoding, the last token (the query m)
attends over the T-1 context tokens with logits Z[m, x_t] (with one-hot embeddings W_Q W_K^T is exactly a free
M x M matrix, their reparametrisation), the attended embeddings are normalised (their LN: u / ||u||) and decoded by
Y [M, K] into next-token logits. Y and Z start at zero and train by SGD on cross-entropy with their own learning
rates (eta_Y, eta_Z), whose ratio sets how early attention stops moving.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from tasks.scan_snap import ScanSnap


class OneLayerAttention(torch.nn.Module):
    def __init__(self, vocab_size: int, n_classes: int, normalize: bool = True):
        super().__init__()
        self.Z = torch.nn.Parameter(torch.zeros(vocab_size, vocab_size, dtype=torch.float64))  # [M, M] query x key
        self.Y = torch.nn.Parameter(torch.zeros(vocab_size, n_classes, dtype=torch.float64))  # [M, K] decoder
        self.normalize = normalize

    def attention(self, tokens: torch.Tensor) -> torch.Tensor:
        """Softmax over context positions of Z[query, x_t].  # [B, T-1]"""
        return torch.softmax(self.Z[tokens[:, -1:], tokens[:, :-1]], dim=-1)

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Next-token logits [B, K] and the attention [B, T-1]."""
        a = self.attention(tokens)
        u = per_token(tokens, a, self.Z.shape[0])
        if self.normalize:
            u = u / u.norm(dim=1, keepdim=True)
        return u @ self.Y, a


def per_token(tokens: torch.Tensor, a: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """Attention mass per token id, u = sum_t a_t e_{x_t} over the context positions.  # [B, M]"""
    return torch.zeros(len(tokens), vocab_size, dtype=a.dtype).scatter_add(1, tokens[:, :-1], a)


@dataclass
class Dynamics:
    """What `train_dynamics` recorded at `steps`."""

    steps: list  # [R]
    token_attention: np.ndarray  # [R, K, M] mean attention mass on each token id, over eval sequences of class n
    entropy: np.ndarray  # [R] mean attention entropy over context positions (nats)
    loss: np.ndarray  # [R] eval cross-entropy
    task: ScanSnap

    def mass(self, tokens_of_class) -> np.ndarray:
        """Attention mass on a token set per recorded step, averaged over classes: tokens_of_class(n) -> ids.  # [R]"""
        K = self.token_attention.shape[1]
        return np.mean([self.token_attention[:, n, tokens_of_class(n)].sum(-1) for n in range(K)], axis=0)


def train_dynamics(task: ScanSnap, lr_decoder: float, lr_attention: float, steps: int = 3000, batch: int = 128,
                   seed: int = 0, n_records: int = 120, n_eval: int = 512, normalize: bool = True) -> Dynamics:
    """SGD with separate learning rates for the decoder Y and the attention Z; fresh batches from `seed`. Records on
    a fixed evaluation set (n_eval // K sequences per class) at about `n_records` log-spaced steps, 0 included."""
    model = OneLayerAttention(task.vocab_size, task.n_classes, normalize)
    opt = torch.optim.SGD([{"params": [model.Y], "lr": lr_decoder}, {"params": [model.Z], "lr": lr_attention}])
    g = torch.Generator().manual_seed(seed)
    per_class = max(1, n_eval // task.n_classes)
    labels = torch.arange(task.n_classes).repeat_interleave(per_class)
    ev = task.sample(len(labels), generator=torch.Generator().manual_seed(seed + 1), next_token=labels)
    record = set(np.unique(np.geomspace(1, max(steps, 1), n_records).round().astype(int)).tolist()) | {0, steps}
    rec_steps, attn, ent, losses = [], [], [], []
    for step in range(steps + 1):
        if step in record:
            with torch.no_grad():
                logits, a = model(ev.tokens)
                u = per_token(ev.tokens, a, task.vocab_size)
                rec_steps.append(step)
                attn.append(u.view(task.n_classes, per_class, -1).mean(1).numpy())
                ent.append(float(-(a * a.clamp_min(1e-300).log()).sum(1).mean()))
                losses.append(float(torch.nn.functional.cross_entropy(logits, ev.next_token)))
        if step == steps:
            break
        b = task.sample(batch, generator=g)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(b.tokens)[0], b.next_token).backward()
        opt.step()
    return Dynamics(rec_steps, np.stack(attn), np.array(ent), np.array(losses), task)


def summarize(d: Dynamics) -> dict:
    """JSON-ready: attention on the common tokens and on each distinct token (rank j = j-th most frequent of its
    class, averaged over classes) per recorded step, when each distinct rank peaks, the entropy curve."""
    task = d.task
    common = d.mass(lambda n: list(range(task.n_common)))
    distinct = [d.mass(lambda n, j=j: [task.distinct_tokens(n)[j]]) for j in range(task.n_distinct)]
    return {"record_steps": list(d.steps), "common_mass": common.tolist(),
            "distinct_mass": [m.tolist() for m in distinct],
            "distinct_peak_steps": [d.steps[int(np.argmax(m))] for m in distinct],  # most frequent first
            "entropy": d.entropy.tolist(), "final_entropy": float(d.entropy[-1]), "final_loss": float(d.loss[-1]),
            "top_token_share": float(d.token_attention[-1].max(-1).mean())}
