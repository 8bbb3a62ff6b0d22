"""Inside a transformer trained on Guo et al.'s representation task (y = <w, Phi*(x)> + noise; REFERENCES.md section
10): where Phi*(x) appears, and whether the upper layers alone do linear in-context learning.

- `token_probe`: linear probes (ridge with a bias, held-out R^2) decoding Phi*(x_i) (or x_i) from the residual stream
  at the x tokens (their sec. 5.2) or at the y tokens (copying, sec. 5.3), layer by layer.
- `paste`: the upper module (blocks m..L-1, the final LayerNorm and the read-out) frozen, fed (Phi*(x_i), y_i) prompts
  through a fresh linear embedding with fresh positions that is trained alone (their "pasting", sec. 5.2).
- `previous_token_attention`: how much each y token attends to its own x token, per layer and head.
"""
from __future__ import annotations

import torch
from torch import nn

import tasks
from tasks import Prompts

from .readout import apply_linear, fit_linear, layer_names, r2


@torch.no_grad()
def token_states(model, fmt, p: Prompts, tokens: str = "x") -> torch.Tensor:
    """The residual stream after the read-in and after each block at the x tokens (positions 2i) or the y tokens
    (2i + 1) of interleaved prompts: [L+1, B, n, D]."""
    if tokens not in ("x", "y"):
        raise ValueError(f"tokens must be x or y; got {tokens!r}")
    param = next(model.parameters())
    names = layer_names(model)
    _, cache = model.run_with_cache(fmt.encode(p.to(device=param.device, dtype=param.dtype)), names_filter=names)
    offset = 0 if tokens == "x" else 1
    return torch.stack([cache[n][:, offset::2] for n in names]).cpu()


def token_probe(model, fmt, train: Prompts, test: Prompts, tokens: str = "x", target: str = "phi",
                lam: float = 1e-4) -> list[float]:
    """Held-out R^2 per layer (read-in, then each block) of a linear probe decoding `target` of point i ("phi":
    Phi*(x_i) from the prompts' ground truth; "x": x_i) from the residual stream at point i's x or y token."""
    def goal(p):
        return (p.params["phi"] if target == "phi" else p.xs).double().flatten(0, 1)  # [B n, D]

    if target not in ("phi", "x"):
        raise ValueError(f"target must be phi or x; got {target!r}")
    h_train, h_test = token_states(model, fmt, train, tokens), token_states(model, fmt, test, tokens)
    return [r2(apply_linear(h_test[l].flatten(0, 1), fit_linear(h_train[l].flatten(0, 1), goal(train), lam)),
               goal(test)) for l in range(h_train.shape[0])]


def linear_in_x_r2(train: Prompts, test: Prompts) -> float:
    """The R^2 of the best affine function of x_i for Phi*(x_i): what any injective linear read-in already gives a
    probe, the floor against which the layers' nonlinear work is seen."""
    w = fit_linear(train.xs.flatten(0, 1), train.params["phi"].flatten(0, 1))
    return r2(apply_linear(test.xs.flatten(0, 1), w), test.params["phi"].flatten(0, 1))


def run_from_layer(model, resid: torch.Tensor, layer: int) -> torch.Tensor:
    """The model's output when its residual stream entering block `layer` is `resid` [B, T, D]: blocks layer..L-1,
    then the final LayerNorm and read-out. With blocks.{layer}.hook_resid_pre it reproduces the model's output."""
    if not 0 <= layer <= model.cfg.n_layers:
        raise ValueError(f"layer must be in 0..{model.cfg.n_layers}; got {layer}")
    x = resid
    for block in model.blocks[layer:]:
        x = block(x, None)
    return model.readout(x)


POSITIONS = ("model", "fresh", "none")


class PastedModel(nn.Module):
    """A new read-in (linear, with bias) and a position table in front of the frozen upper module of `model` (blocks
    layer..L-1 and the read-out). The read-in and the positions train, nothing else. positions: "model" starts from
    the model's learned positions (what its GPT-2 backbone adds at the input), "fresh" from N(0, 0.02), "none" adds
    none."""

    def __init__(self, model, layer: int, d_in: int, max_len: int, seed: int = 0, positions: str = "model"):
        super().__init__()
        if positions not in POSITIONS:
            raise ValueError(f"positions must be one of {', '.join(POSITIONS)}; got {positions!r}")
        if positions == "model" and model.pos_embed is None:
            raise ValueError("positions='model' needs a model with learned positions; use fresh or none")
        D = model.cfg.d_model
        with torch.random.fork_rng(devices=[]):  # the seed alone fixes the new weights
            torch.manual_seed(seed)
            self.read_in = nn.Linear(d_in, D)
            nn.init.normal_(self.read_in.weight, std=0.02)
            nn.init.zeros_(self.read_in.bias)
            pos = torch.randn(max_len, D) * 0.02
        if positions == "model":
            pos = model.pos_embed.weight.detach()[:max_len].clone()
        self.pos = nn.Parameter(pos) if positions != "none" else None
        self.upper, self.layer = model, layer
        model.requires_grad_(False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:  # tokens [B, T, d_in] -> outputs [B, T]
        h = self.read_in(tokens)
        if self.pos is not None:
            h = h + self.pos[: tokens.shape[1]]
        return run_from_layer(self.upper, h, self.layer)


def feature_prompts(p: Prompts) -> Prompts:
    """The same prompts with Phi*(x_i) in place of x_i: linear regression on the representation."""
    return Prompts(p.params["phi"], p.ys, dict(p.params))


def paste(model, layer: int, task, n_points: int, steps: int = 1000, batch: int = 64, lr: float = 1e-3,
          seed: int = 0, positions: str = "model") -> PastedModel:
    """Train a PastedModel on fresh (Phi*(x_i), y_i) prompts of `task` (MSE over all prefixes, Adam): Guo et al.'s
    pasting. `model` is frozen (a copy is not made: its requires_grad is switched off)."""
    fmt = tasks.formats.get("interleaved")
    dtype = next(model.parameters()).dtype
    pasted = PastedModel(model, layer, task.D, 2 * n_points, seed, positions).to(dtype)
    opt = torch.optim.Adam([p for p in pasted.parameters() if p.requires_grad], lr=lr)
    for step in range(steps):
        p = feature_prompts(task.sample(batch, n_points, seed=seed * 1_000_003 + step + 1, dtype=dtype))
        loss = ((fmt.predict(pasted, p) - p.ys) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    pasted.requires_grad_(False)
    return pasted


@torch.no_grad()
def pasted_predictions(pasted: PastedModel, p: Prompts) -> torch.Tensor:
    """The pasted model's prefix-wise predictions [B, n] on the feature version of prompts `p`."""
    return tasks.formats.get("interleaved").predict(pasted, feature_prompts(p.to(dtype=pasted.read_in.weight.dtype)))


@torch.no_grad()
def previous_token_attention(model, fmt, p: Prompts) -> torch.Tensor:
    """Mean attention from each y token (2i + 1) to its own x token (2i), per layer and head: [L, H]."""
    param = next(model.parameters())
    names = [f"blocks.{l}.attn.hook_pattern" for l in range(model.cfg.n_layers)]
    _, cache = model.run_with_cache(fmt.encode(p.to(device=param.device, dtype=param.dtype)), names_filter=names)
    T = cache[names[0]].shape[-1]
    y_pos = torch.arange(1, T, 2)
    return torch.stack([cache[n][:, :, y_pos, y_pos - 1].mean((0, 2)) for n in names]).cpu()
