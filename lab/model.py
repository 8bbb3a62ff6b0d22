"""A small decoder-style transformer, readable top to bottom (nanoGPT-like), with TransformerLens hook names.

Covers Garg et al.'s GPT-2-style model (pre-LN, GELU, learned positions, causal mask) and von Oswald et al.'s
linear self-attention (no softmax, no LayerNorm, no MLP, keys from context tokens only).

`Transformer(cfg, n_models=E)` is E independent models in one: every weight gets a leading model dimension
[E, ...], inputs and outputs a leading [E, ...] too, and each layer runs as one batched matmul (lab/ensemble.py
trains such stacks). n_models=0 (the default) is the plain model.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from . import kernels
from .challengers import ARCHITECTURES
from .config import ModelConfig
from .hooks import HookedModule, HookPoint
from .stacked import per_model


def attention_mask(kind: str, T: int, device=None) -> torch.Tensor | None:
    """[T, T] bool, True where query i may attend to key j; None means every key (see kernels.allowed_keys)."""
    return kernels.allowed_keys(kind, T, device=device)


def rotary(x: torch.Tensor) -> torch.Tensor:
    """RoPE (Su et al. 2021, eq. 34): rotate each pair (x_2i, x_2i+1) of x [..., T, H, dh] by position * 10000^(-2i/dh),
    so a query-key score depends on their positions only through the offset."""
    T, dh = x.shape[-3], x.shape[-1]
    freq = torch.exp(-math.log(10000.0) * torch.arange(0, dh, 2, device=x.device, dtype=torch.float64) / dh)
    angle = torch.arange(T, device=x.device, dtype=torch.float64)[:, None] * freq  # [T, dh/2], exact in float64
    cos, sin = angle.cos()[:, None].to(x.dtype), angle.sin()[:, None].to(x.dtype)  # [T, 1, dh/2]
    even, odd = x[..., 0::2], x[..., 1::2]
    return torch.stack([even * cos - odd * sin, even * sin + odd * cos], -1).flatten(-2)


class Linear(nn.Linear):
    """nn.Linear; with n_models = E, E independent ones: weight [E, out, in], x [E, ..., in] -> [E, ..., out]."""

    def __init__(self, d_in: int, d_out: int, bias: bool = True, n_models: int = 0):
        super().__init__(d_in, d_out, bias=bias)
        if n_models:
            self.weight = nn.Parameter(torch.empty(n_models, d_out, d_in))
            self.bias = nn.Parameter(torch.zeros(n_models, d_out)) if bias else None

    def forward(self, x):
        if self.weight.dim() == 2:
            return F.linear(x, self.weight, self.bias)
        flat = x.reshape(x.shape[0], -1, x.shape[-1])  # [E, N, in]
        w_t = self.weight.transpose(1, 2)
        out = torch.bmm(flat, w_t) if self.bias is None else torch.baddbmm(self.bias.unsqueeze(1), flat, w_t)
        return out.view(*x.shape[:-1], out.shape[-1])


class LayerNorm(nn.LayerNorm):
    """nn.LayerNorm; with n_models = E, per-model affine weights [E, D] on x [E, ..., D].

    TransformerLens hooks: hook_scale [..., 1] (the standard deviation the centred x is divided by) and
    hook_normalized [..., D] (x centred and divided by the scale, before the affine map). Reading or patching
    hook_scale takes the explicit path, which is how a frozen scale makes the LayerNorm linear for attribution."""

    def __init__(self, d: int, bias: bool = True, n_models: int = 0):
        super().__init__(d, bias=bias)
        if n_models:
            self.weight = nn.Parameter(torch.ones(n_models, d))
            self.bias = nn.Parameter(torch.zeros(n_models, d)) if bias else None
        self.hook_scale, self.hook_normalized = HookPoint(), HookPoint()

    def forward(self, x):
        if self.hook_scale.active:
            centred = x - x.mean(-1, keepdim=True)
            normalized = centred / self.hook_scale((centred.pow(2).mean(-1, keepdim=True) + self.eps).sqrt())
        elif self.hook_normalized.active or self.weight.dim() == 2:
            normalized = F.layer_norm(x, self.normalized_shape, eps=self.eps)
        else:
            return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return self.affine(self.hook_normalized(normalized))

    def affine(self, y):
        """y * weight + bias, with a stack's weights broadcast over y [E, ..., D]."""
        stacked = self.weight.dim() == 2
        y = y * (per_model(self.weight, y.dim()) if stacked else self.weight)
        if self.bias is None:
            return y
        return y + (per_model(self.bias, y.dim()) if stacked else self.bias)


class Embedding(nn.Embedding):
    """nn.Embedding; with n_models = E, weight [E, V, D] and ids [E, ...] -> [E, ..., D]."""

    def __init__(self, n: int, d: int, n_models: int = 0):
        super().__init__(n, d)
        if n_models:
            self.weight = nn.Parameter(torch.empty(n_models, n, d))

    def forward(self, ids):
        if self.weight.dim() == 2:
            return super().forward(ids)
        models = torch.arange(ids.shape[0], device=ids.device).view(-1, *([1] * (ids.dim() - 1)))
        return self.weight[models, ids]

    def table(self, n: int) -> torch.Tensor:
        """The first n rows: [n, D], or [E, 1, n, D] for a stack (broadcasts against [E, B, n, D])."""
        return self.weight[:n] if self.weight.dim() == 2 else self.weight[:, None, :n]


class Attention(nn.Module):
    """Multi-head attention, softmax or linear (scores used as weights as they are, von Oswald eq. 3).

    Backends: triton (lab/kernels, CUDA), sdpa (torch's scaled_dot_product_attention), reference (the scores and
    pattern materialised; what hooks on them need). auto: the fastest path measured for the device and shape
    (lab/kernels/choice.py), reference when a hook reads the scores or pattern.

    Hooks as in TransformerLens: hook_q/k/v/z [B, T, H, dh], hook_rot_q/k (rotary models), hook_attn_scores and
    hook_pattern [B, H, T, T] (a stack of E models: [E, B, ...] on all of them), and with `use_attn_result` the
    per-head outputs hook_result [B, T, H, D] (opt-in, as in TransformerLens: it costs H times the memory).
    """

    def __init__(self, cfg: ModelConfig, n_models: int = 0):
        super().__init__()
        D, self.H = cfg.d_model, cfg.n_heads
        self.d_head = D // self.H
        self.kind, self.mask, self.backend, self.rotary = cfg.attn, cfg.mask, cfg.backend, cfg.pos == "rotary"
        self.W_Q, self.W_K, self.W_V, self.W_O = (Linear(D, D, cfg.bias, n_models) for _ in range(4))
        self.hook_q, self.hook_k, self.hook_v = HookPoint(), HookPoint(), HookPoint()  # [B, T, H, dh]
        if self.rotary:
            self.hook_rot_q, self.hook_rot_k = HookPoint(), HookPoint()  # [B, T, H, dh], after RoPE
        self.hook_attn_scores, self.hook_pattern = HookPoint(), HookPoint()  # [B, H, T, T]
        self.hook_z = HookPoint()  # [B, T, H, dh]
        self.hook_result = HookPoint()  # [B, T, H, D], only with use_attn_result
        self.use_attn_result = False

    def _project(self, lin: Linear, x, per_head: bool):
        """x [*batch, T, D] -> [*batch, T, H, dh]; per-head inputs x [*batch, T, H, D] go through head h's rows."""
        if not per_head:
            return lin(x).view(*x.shape[:-1], self.H, self.d_head)
        W = lin.weight.view(*lin.weight.shape[:-2], self.H, self.d_head, -1)  # [(E,) H, dh, D]
        if W.dim() == 3:
            out = torch.einsum("...hd,hkd->...hk", x, W)
        else:
            out = torch.einsum("e...hd,ehkd->e...hk", x, W)
        if lin.bias is None:
            return out
        b = lin.bias.view(*lin.bias.shape[:-1], self.H, self.d_head)  # [(E,) H, dh]
        return out + (b if b.dim() == 2 else per_model(b, out.dim()))

    def forward(self, x, key_padding=None, per_head: bool = False):
        # x [*batch, T, D] (or [*batch, T, H, D] per head, from hook_attn_in); key_padding [*batch, T] bool or None
        batch, T = x.shape[:-3 if per_head else -2], x.shape[-3 if per_head else -2]
        D = self.H * self.d_head
        q = self.hook_q(self._project(self.W_Q, x, per_head))
        k = self.hook_k(self._project(self.W_K, x, per_head))
        v = self.hook_v(self._project(self.W_V, x, per_head))
        if self.rotary:
            q, k = self.hook_rot_q(rotary(q)), self.hook_rot_k(rotary(k))
        path = self._path(x, T, key_padding is not None)
        flat = [t.reshape(-1, T, self.H, self.d_head) for t in (q, k, v)]  # [Z, T, H, dh], Z = prod(batch)
        kp = None if key_padding is None else key_padding.reshape(-1, T)  # [Z, T]
        if path == "triton":
            z = kernels.attention(*flat, kind=self.kind, mask=self.mask, key_padding=kp)
        else:
            allowed = kernels.allowed_keys(self.mask, T, kp, x.device)  # [T, T], [Z, 1, T or 1, T] or None
            if path == "sdpa" and self._every_query_has_a_key(allowed, T, kp):
                z = F.scaled_dot_product_attention(*(t.transpose(1, 2) for t in flat), attn_mask=allowed)
                z = z.transpose(1, 2)
            else:
                z = self._materialised(*flat, allowed, batch)
        z = self.hook_z(z.reshape(q.shape))  # [*batch, T, H, dh]
        if not self.use_attn_result:
            return self.W_O(z.reshape(*batch, T, D))
        result = self.hook_result(self.head_results(z))  # [*batch, T, H, D]
        out = result.sum(-2)
        if self.W_O.bias is None:
            return out
        b = self.W_O.bias
        return out + (b if b.dim() == 1 else per_model(b, out.dim()))

    def head_results(self, z: torch.Tensor) -> torch.Tensor:
        """Each head's output [*batch, T, H, D] from z [*batch, T, H, dh] through its slice of W_O, without the bias
        (what hook_result holds; their sum plus the bias is the attention output)."""
        W = self.W_O.weight.view(*self.W_O.weight.shape[:-1], self.H, self.d_head)  # [(E,) D, H, dh]
        return torch.einsum("...thk,dhk->...thd", z, W) if W.dim() == 3 else \
            torch.einsum("e...thk,edhk->e...thd", z, W)

    def _path(self, x, T: int, padded: bool) -> str:
        if self.hook_attn_scores.active or self.hook_pattern.active or self.backend == "reference":
            return "reference"
        if self.backend == "triton":
            return "triton"
        if self.backend == "sdpa":
            return "sdpa" if self.kind == "softmax" else "reference"
        return kernels.auto_path(self.kind, self.mask, padded, T, self.d_head, x)

    def _every_query_has_a_key(self, allowed, T, key_padding) -> bool:
        """SDPA returns NaN for a query with no key; the reference path returns zeros. Decided without a device
        sync unless there is key padding."""
        if key_padding is None:
            return self.mask != "context" or T > 1
        return bool(allowed.any(dim=-1).all())

    @staticmethod
    def _hooked(point: HookPoint, t: torch.Tensor, batch) -> torch.Tensor:
        """Run a [Z, H, T, T] tensor through `point` as [*batch, H, T, T] (so a stack's hooks see [E, B, ...])."""
        return point(t.view(*batch, *t.shape[1:])).reshape(t.shape) if point.active else t

    def _materialised(self, q, k, v, allowed, batch):
        scores = torch.einsum("zqhd,zkhd->zhqk", q, k)  # [Z, H, T, T]
        if self.kind == "softmax":
            scores = scores / math.sqrt(self.d_head)
            if allowed is not None:
                has_key = allowed.any(dim=-1, keepdim=True)  # a query with no key gets a zero row
                scores = scores.masked_fill(~(allowed | ~has_key), float("-inf"))
            scores = self._hooked(self.hook_attn_scores, scores, batch)
            pattern = torch.softmax(scores, dim=-1)
            if allowed is not None:
                pattern = pattern * has_key
        else:
            if allowed is not None:
                scores = scores * allowed
            scores = self._hooked(self.hook_attn_scores, scores, batch)
            pattern = scores
        pattern = self._hooked(self.hook_pattern, pattern, batch)
        return torch.einsum("zhqk,zkhd->zqhd", pattern, v)


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig, n_models: int = 0):
        super().__init__()
        self.fc_in = Linear(cfg.d_model, cfg.mlp_width, cfg.bias, n_models)
        self.fc_out = Linear(cfg.mlp_width, cfg.d_model, cfg.bias, n_models)
        self.act = {"gelu": nn.GELU(), "gelu_tanh": nn.GELU(approximate="tanh"), "relu": nn.ReLU()}[cfg.act]
        self.hook_pre, self.hook_post = HookPoint(), HookPoint()  # [B, T, d_mlp]

    def forward(self, x):
        return self.fc_out(self.hook_post(self.act(self.hook_pre(self.fc_in(x)))))


class Block(nn.Module):
    """Pre-LN residual block: x + attn(ln1(x)), then + mlp(ln2(x)). Attention-only blocks (d_mlp = 0) have no
    hook_resid_mid, as in TransformerLens. With `use_attn_in`, hook_attn_in [B, T, H, D] holds a copy of the
    residual stream per head, so a patch there reaches one head's input only (path patching)."""

    def __init__(self, cfg: ModelConfig, n_models: int = 0):
        super().__init__()
        norm = (lambda: LayerNorm(cfg.d_model, cfg.bias, n_models)) if cfg.layernorm else nn.Identity
        self.ln1, self.attn = norm(), Attention(cfg, n_models)
        self.ln2, self.mlp = (norm(), MLP(cfg, n_models)) if cfg.mlp_width else (None, None)
        self.hook_resid_pre, self.hook_attn_in, self.hook_attn_out = HookPoint(), HookPoint(), HookPoint()
        self.hook_resid_mid = HookPoint() if self.mlp is not None else None
        self.hook_mlp_out, self.hook_resid_post = HookPoint(), HookPoint()
        self.use_attn_in = False

    def forward(self, x, key_padding=None):  # [*batch, T, D]
        x = self.hook_resid_pre(x)
        attn_in = x
        if self.use_attn_in:  # [*batch, T, H, D]
            attn_in = self.hook_attn_in(x.unsqueeze(-2).expand(*x.shape[:-1], self.attn.H, x.shape[-1]).clone())
        x = x + self.hook_attn_out(self.attn(self.ln1(attn_in), key_padding, per_head=self.use_attn_in))
        if self.mlp is not None:
            x = self.hook_resid_mid(x)
            x = x + self.hook_mlp_out(self.mlp(self.ln2(x)))
        return self.hook_resid_post(x)


class Transformer(HookedModule):
    """Read-in (linear from vectors, an embedding of token ids, or the tokens themselves) -> blocks ->
    LayerNorm -> read-out (linear, or minus the last coordinate as in von Oswald et al.).

    Output: [B, T] for a scalar read-out, [B, T, n_classes] for a class read-out. With `tied`, every block
    shares the first block's weights (one block applied n_layers times) but keeps its own hook names.
    With n_models = E every shape above gains a leading E (the attention score and pattern hooks see the models
    and prompts flattened together: [E * B, H, T, T]).
    """

    def __init__(self, cfg: ModelConfig, n_models: int = 0):
        super().__init__()
        assert cfg.d_in > 0 or cfg.input == "tokens", "resolve the config first (d_in is set from the task)"
        self.cfg, self.n_models = cfg, n_models
        D, E = cfg.d_model, n_models
        self.embed = {"vector": lambda: Linear(cfg.d_in, D, cfg.bias, E), "identity": nn.Identity,
                      "tokens": lambda: Embedding(cfg.vocab_size, D, E)}[cfg.input]()
        self.pos_embed = Embedding(cfg.max_len, D, E) if cfg.pos == "learned" else None
        self.hook_embed = HookPoint()  # [B, T, D]
        self.hook_pos_embed = HookPoint() if self.pos_embed is not None else None  # [B, T, D]
        self.blocks = nn.ModuleList(Block(cfg, E) for _ in range(cfg.n_layers))
        if cfg.tied:
            for block in self.blocks[1:]:
                for name in ("ln1", "attn", "ln2", "mlp"):
                    self._share(block, self.blocks[0], name)
        self.ln_final = LayerNorm(D, cfg.bias, E) if cfg.layernorm else nn.Identity()
        n_out = {"scalar": 1, "classes": cfg.n_classes, "minus_last": 0}[cfg.output]
        self.unembed = Linear(D, n_out, cfg.bias, E) if n_out else None
        self.setup_hooks()
        self._init_weights()
        if cfg.features == "onehot":
            self._fix_onehot_features()

    @staticmethod
    def _share(block: Block, first: Block, name: str):
        """Make `block.name` use `first.name`'s parameters, keeping block's own HookPoints."""
        mine, theirs = getattr(block, name), getattr(first, name)
        if mine is None or isinstance(mine, nn.Identity):
            return
        for child_name, child in theirs.named_children():
            if not isinstance(child, HookPoint):
                setattr(mine, child_name, child)
        for p_name, p in theirs.named_parameters(recurse=False):
            setattr(mine, p_name, p)

    def _init_weights(self):
        """GPT-2 init: N(0, init_std), residual projections scaled by 1/sqrt(2 * n_layers), zero biases. With
        io_init = "torch" the vector read-in and the read-out keep nn.Linear's default instead (Garg et al.'s code:
        weight and bias U(-1/sqrt(fan_in), 1/sqrt(fan_in)))."""
        std = self.cfg.init_std
        for name, p in self.named_parameters():
            layer = getattr(self, name.split(".")[0])  # embed.weight -> self.embed
            if self.cfg.io_init == "torch" and layer in (self.embed, self.unembed) and isinstance(layer, Linear):
                bound = 1 / math.sqrt(layer.in_features)
                nn.init.uniform_(p, -bound, bound)
            elif p.dim() < 2:
                if name.startswith("ln") or ".ln" in name:
                    continue  # LayerNorm keeps weight 1, bias 0
                nn.init.zeros_(p)
            elif name.endswith(("W_O.weight", "fc_out.weight")):
                nn.init.normal_(p, std=std / math.sqrt(2 * self.cfg.n_layers))
            else:
                nn.init.normal_(p, std=std)

    @torch.no_grad()
    def _fix_onehot_features(self):
        """Saparov et al.'s fixed features (gpt2/transformer.py): token id one-hot in the first vocab_size
        coordinates, position one-hot in the last max_len, and logits = the last n_classes token coordinates (the
        class tokens) after the final LayerNorm. These weights are set here and never trained (requires_grad off)."""
        V, L, C = self.cfg.vocab_size, self.cfg.max_len, self.cfg.n_classes
        eye = torch.eye(self.cfg.d_model)  # [D, D]
        for layer, rows in ((self.embed, eye[:V]), (self.pos_embed, eye[V:V + L]), (self.unembed, eye[V - C:V])):
            layer.weight.copy_(rows)  # broadcasts over a stack's leading E
            layer.weight.requires_grad_(False)
        if self.unembed.bias is not None:
            self.unembed.bias.zero_()
            self.unembed.bias.requires_grad_(False)

    def forward(self, inputs, key_padding=None):
        """inputs [B, T, d_in] (vectors) or [B, T] (token ids); key_padding [B, T] bool, True = a real token
        (padded tokens are never attended to). A stack of E models takes [E, B, ...] throughout."""
        self._check_inputs(inputs)
        T = inputs.shape[2 if self.n_models else 1]
        x = self.hook_embed(self.embed(inputs))  # [B, T, D]
        if self.pos_embed is not None:
            if T > self.cfg.max_len:
                raise ValueError(f"sequence of {T} tokens is longer than model.max_len = {self.cfg.max_len}")
            pos = self.pos_embed.table(T).expand(x.shape)  # [B, T, D], a broadcast view unless a hook reads it
            x = x + self.hook_pos_embed(pos.contiguous() if self.hook_pos_embed.active else pos)
        for block in self.blocks:
            x = block(x, key_padding)
        return self.readout(x)

    def _check_inputs(self, inputs) -> None:
        """Inputs of the wrong shape or kind stop with one line naming what this model reads (not a matmul error)."""
        cfg, lead = self.cfg, ("E, B" if self.n_models else "B")
        rank = 2 + bool(self.n_models)
        if cfg.input == "tokens":
            ok = isinstance(inputs, torch.Tensor) and inputs.dim() == rank and not inputs.is_floating_point()
            if ok and not self.training and inputs.numel():  # evaluation only: the range check syncs a GPU
                ok = 0 <= int(inputs.min()) and int(inputs.max()) < cfg.vocab_size
            want = f"token ids [{lead}, T] in 0..{cfg.vocab_size - 1}"
        elif cfg.input == "identity":
            ok, want = isinstance(inputs, torch.Tensor) and inputs.dim() == rank + 1 and \
                inputs.shape[-1] == cfg.d_model, f"tokens [{lead}, T, {cfg.d_model}]"
        else:
            ok, want = isinstance(inputs, torch.Tensor) and inputs.dim() == rank + 1 and \
                inputs.shape[-1] == cfg.d_in and inputs.is_floating_point(), f"vectors [{lead}, T, {cfg.d_in}]"
        if not ok:
            got = f"{inputs.dtype} of shape {list(inputs.shape)}" if isinstance(inputs, torch.Tensor) else \
                type(inputs).__name__
            raise ValueError(f"this model reads {want} (model.d_in = {cfg.d_in}); got {got}")

    def readout(self, resid: torch.Tensor) -> torch.Tensor:
        """The final LayerNorm and read-out applied to a residual stream [..., T, D] (any layer's: the logit lens)."""
        x = self.ln_final(resid)
        if self.unembed is None:
            return -x[..., -1]
        out = self.unembed(x)
        return out.squeeze(-1) if self.cfg.output == "scalar" else out

    def set_use_attn_result(self, use: bool) -> None:
        """Compute attention's output per head so blocks.{l}.attn.hook_result [B, T, H, D] exists (TransformerLens)."""
        for block in self.blocks:
            block.attn.use_attn_result = use

    def set_use_attn_in(self, use: bool) -> None:
        """Give each head its own copy of the residual stream at blocks.{l}.hook_attn_in [B, T, H, D]
        (TransformerLens), so a patch there reaches one head only."""
        for block in self.blocks:
            block.use_attn_in = use

    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


def model_class(cfg: ModelConfig) -> type:
    """The class model.arch names: the Transformer here, or an attention-free challenger (lab/challengers.py)."""
    return Transformer if cfg.arch == "transformer" else ARCHITECTURES[cfg.arch]


def build_model(cfg: ModelConfig, seed: int = 0) -> Transformer:
    """The model with its initial weights drawn from `seed` (the global RNG is left as it was)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return model_class(cfg)(cfg)
