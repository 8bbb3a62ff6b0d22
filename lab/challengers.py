"""Sequence models without attention, on the same read-in, read-out, trainer and hook names as the Transformer
(model.arch = "lstm" | "hyena"), for Bhattamishra et al.'s comparison of architectures.

- LSTM (Hochreiter & Schmidhuber 1997): n_layers stacked nn.LSTM layers of width d_model.
- Hyena (Poli et al. 2023, order 2): the Transformer's blocks with attention replaced by the Hyena operator,
  gated long convolutions whose filters are implicit (an MLP of positional features, times an exponentially
  decaying window), computed causally: as a Toeplitz product for short sequences, by FFT for long ones.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .config import ModelConfig
from .hooks import HookedModule, HookPoint


class _ReadInOut(HookedModule):
    """What every architecture shares: read-in (vectors or token ids), the blocks, read-out (scalar or classes)."""

    def _read_in_out(self, cfg: ModelConfig):
        D = cfg.d_model
        self.embed = nn.Embedding(cfg.vocab_size, D) if cfg.input == "tokens" else nn.Linear(cfg.d_in, D, bias=cfg.bias)
        self.hook_embed = HookPoint()  # [B, T, D]
        self.unembed = nn.Linear(D, cfg.n_classes if cfg.output == "classes" else 1, bias=cfg.bias)

    def _out(self, x):
        out = self.unembed(x)
        return out.squeeze(-1) if self.cfg.output == "scalar" else out

    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


class _LSTMLayer(nn.Module):
    def __init__(self, D: int):
        super().__init__()
        self.lstm = nn.LSTM(D, D, batch_first=True)
        self.hook_resid_pre, self.hook_resid_post = HookPoint(), HookPoint()  # [B, T, D]: the layer's input, output

    def forward(self, x):
        return self.hook_resid_post(self.lstm(self.hook_resid_pre(x))[0])


class LSTMModel(_ReadInOut):
    """Read-in -> n_layers LSTM layers -> read-out; causal by construction."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self._read_in_out(cfg)
        self.blocks = nn.ModuleList(_LSTMLayer(cfg.d_model) for _ in range(cfg.n_layers))
        self.setup_hooks()

    def forward(self, inputs, key_padding=None):  # [B, T, d_in] -> [B, T]
        x = self.hook_embed(self.embed(inputs))
        for block in self.blocks:
            x = block(x)
        return self._out(x)


def causal_fft_conv(u: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """y[..., t] = sum_{s <= t} h[..., s] u[..., t - s] for u [B, D, T] and h [D, T], by FFT with zero padding
    to 2T (so nothing wraps around: the convolution stays causal)."""
    T = u.shape[-1]
    n = 2 * T
    return torch.fft.irfft(torch.fft.rfft(u, n=n) * torch.fft.rfft(h, n=n), n=n)[..., :T]


def causal_toeplitz_conv(u: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """The same sum as one product with the lower-triangular Toeplitz matrices H[d, t, s] = h[d, t - s]."""
    T = u.shape[-1]
    lag = torch.arange(T, device=u.device)[:, None] - torch.arange(T, device=u.device)  # [T, T]: t - s
    H = h[:, lag.clamp(min=0)] * (lag >= 0)  # [D, T, T]
    return torch.einsum("dts,bds->bdt", H, u)


# From this many tokens on, the FFT: on one CPU core (B = D = 64, forward + backward, `lab bench hyena`) the Toeplitz
# product is faster at 20 and 40 tokens (x1.8, x1.7), within 20% either way at 64-96 over two measurements, slower
# from 128 on (x0.8)
FFT_FROM = 64


def causal_conv(u: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """Causal long convolution of u [B, D, T] with filters h [D, T], by whichever way is faster at length T."""
    return causal_fft_conv(u, h) if u.shape[-1] >= FFT_FROM else causal_toeplitz_conv(u, h)


def causal_short_conv(conv: nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
    """conv (depthwise, kernel k, padding k - 1) applied causally to x [B, C, T]:
    y[t] = b + sum_j w[j] x[t - k + 1 + j], written as k shifted products (PyTorch's depthwise Conv1d backward
    took 13% of a Hyena training step on a CPU core)."""
    k, T = conv.kernel_size[0], x.shape[-1]
    padded = nn.functional.pad(x, (k - 1, 0))  # [B, C, T + k - 1]
    w = conv.weight[:, 0]  # [C, k]
    y = sum(w[:, j, None] * padded[..., j:j + T] for j in range(k))
    return y + conv.bias[:, None] if conv.bias is not None else y


class HyenaFilter(nn.Module):
    """Implicit long filters h [D, T] (Poli et al. 2023, sec. 3.3): FFN(positional features of t) * exp(-a t)."""

    def __init__(self, D: int, max_len: int, n_features: int = 8, hidden: int = 32):
        super().__init__()
        self.max_len = max_len
        self.register_buffer("freqs", torch.arange(1, n_features // 2 + 1, dtype=torch.float32) * math.pi)
        self.ffn = nn.Sequential(nn.Linear(n_features + 1, hidden), _Sin(), nn.Linear(hidden, hidden), _Sin(),
                                 nn.Linear(hidden, D))
        self.decay = nn.Parameter(torch.linspace(math.log(0.3), math.log(3.0), D))  # per-channel window rate

    def forward(self, T: int) -> torch.Tensor:
        t = torch.arange(T, device=self.decay.device, dtype=torch.float32)[:, None] / self.max_len  # [T, 1]
        feats = torch.cat([t, torch.sin(t * self.freqs), torch.cos(t * self.freqs)], -1)  # [T, F + 1]
        window = torch.exp(-self.decay.exp() * t * self.max_len / 8)  # [T, D]
        return (self.ffn(feats) * window).T  # [D, T]


class _Sin(nn.Module):
    def forward(self, x):
        return torch.sin(x)


class HyenaOperator(nn.Module):
    """Order-2 Hyena: (v, x1, x2) = short causal conv of a projection of u; z = x2 * (h2 * (x1 * (h1 * v)))."""

    def __init__(self, D: int, max_len: int, bias: bool = True):
        super().__init__()
        self.in_proj = nn.Linear(D, 3 * D, bias=bias)
        self.short = nn.Conv1d(3 * D, 3 * D, kernel_size=3, groups=3 * D, padding=2)  # see causal_short_conv
        self.filters = nn.ModuleList(HyenaFilter(D, max_len) for _ in range(2))
        self.skip = nn.Parameter(torch.zeros(2, D))  # the filters' instantaneous term
        self.out_proj = nn.Linear(D, D, bias=bias)

    def forward(self, u):  # [B, T, D]
        B, T, D = u.shape
        z = causal_short_conv(self.short, self.in_proj(u).transpose(1, 2))  # [B, 3D, T], position t sees t-2..t
        v, x1, x2 = z.split(D, dim=1)
        for gate, filt, skip in zip((x1, x2), self.filters, self.skip):
            v = gate * (causal_conv(v, filt(T)) + skip[:, None] * v)
        return self.out_proj(v.transpose(1, 2))


class _HyenaBlock(nn.Module):
    """Pre-LN residual block with the Hyena operator in attention's place."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        D = cfg.d_model
        self.ln1, self.mixer = nn.LayerNorm(D), HyenaOperator(D, cfg.max_len, cfg.bias)
        self.ln2 = nn.LayerNorm(D)
        self.mlp = nn.Sequential(nn.Linear(D, cfg.mlp_width), nn.GELU(), nn.Linear(cfg.mlp_width, D)) \
            if cfg.mlp_width else None
        self.hook_resid_pre, self.hook_mixer_out, self.hook_resid_post = HookPoint(), HookPoint(), HookPoint()

    def forward(self, x):
        x = self.hook_resid_pre(x)
        x = x + self.hook_mixer_out(self.mixer(self.ln1(x)))
        if self.mlp is not None:
            x = x + self.mlp(self.ln2(x))
        return self.hook_resid_post(x)


class HyenaModel(_ReadInOut):
    """Read-in (+ learned positions) -> Hyena blocks -> LayerNorm -> read-out."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self._read_in_out(cfg)
        self.blocks = nn.ModuleList(_HyenaBlock(cfg) for _ in range(cfg.n_layers))
        self.ln_final = nn.LayerNorm(cfg.d_model)
        self.setup_hooks()

    def forward(self, inputs, key_padding=None):  # [B, T, d_in] -> [B, T]
        T = inputs.shape[1]
        if T > self.cfg.max_len:
            raise ValueError(f"sequence of {T} tokens is longer than model.max_len = {self.cfg.max_len}")
        x = self.hook_embed(self.embed(inputs))
        for block in self.blocks:
            x = block(x)
        return self._out(self.ln_final(x))


ARCHITECTURES = {"lstm": LSTMModel, "hyena": HyenaModel}
