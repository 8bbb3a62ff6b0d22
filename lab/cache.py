"""ActivationCache: what `run_with_cache` returns. A mapping {hook name: activation} with TransformerLens's short
names (`cache["resid_pre", 0]`, `cache["pattern", 1]`, `cache["scale"]`) and its residual-stream algebra:
accumulated_resid, decompose_resid, stack_head_results, apply_ln_to_stack and logit_attrs (direct attribution
onto the model's scalar or class read-out; Elhage et al. 2021, "A mathematical framework", sec. on direct paths).

Shapes below are for one model, [B, T, D]; a stack of E models puts a leading E on every activation, and the
stacks returned here are [components, (E,) B, T, D].
"""
from __future__ import annotations

from collections.abc import Mapping

import torch

from .stacked import per_model

BLOCK = {"resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out", "attn_in"}
ATTN = {"q", "k", "v", "z", "rot_q", "rot_k", "result", "attn_scores", "pattern"}
MLP = {"pre", "post"}
LN = {"scale", "normalized"}


def act_name(name: str, layer: int | None = None, layer_type: str | None = None, n_layers: int | None = None) -> str:
    """TransformerLens's get_act_name: ("resid_pre", 0) -> "blocks.0.hook_resid_pre", ("pattern", 1) ->
    "blocks.1.attn.hook_pattern", ("scale", 0, "ln1") -> "blocks.0.ln1.hook_scale", ("scale",) -> the final
    LayerNorm's. "attn" is short for the pattern. Negative layers count from the end."""
    name = {"attn": "pattern", "scores": "attn_scores"}.get(name, name)
    if layer is not None and layer < 0 and n_layers is not None:
        layer += n_layers
    if name in ("embed", "pos_embed"):
        return f"hook_{name}"
    if name in LN:
        if layer is None:
            return f"ln_final.hook_{name}"
        return f"blocks.{layer}.{layer_type or 'ln1'}.hook_{name}"
    if layer is None:
        raise KeyError(f"{name!r} needs a layer, e.g. cache[{name!r}, 0]")
    if name in BLOCK:
        return f"blocks.{layer}.hook_{name}"
    if name in ATTN:
        return f"blocks.{layer}.attn.hook_{name}"
    if name in MLP:
        return f"blocks.{layer}.mlp.hook_{name}"
    raise KeyError(f"unknown activation {name!r}; short names are: embed, pos_embed, "
                   + ", ".join(sorted(BLOCK | ATTN | MLP | LN)))


class ActivationCache(Mapping):
    """{hook name: tensor} from one forward pass of `model`, readable by full or short name."""

    def __init__(self, cache: dict[str, torch.Tensor], model):
        self.cache_dict, self.model = dict(cache), model

    # ---- the mapping ------------------------------------------------------------------------------------
    def _name(self, key) -> str:
        if isinstance(key, str) and key in self.cache_dict:
            return key
        parts = key if isinstance(key, tuple) else (key,)
        return act_name(*parts, n_layers=self.model.cfg.n_layers)

    def __getitem__(self, key) -> torch.Tensor:
        name = self._name(key)
        if name not in self.cache_dict:
            raise KeyError(f"{name!r} is not in this cache (run_with_cache's names_filter left it out, or the "
                           f"model has no such hook)")
        return self.cache_dict[name]

    def __contains__(self, key) -> bool:
        try:
            return self._name(key) in self.cache_dict
        except KeyError:
            return False

    def __iter__(self):
        return iter(self.cache_dict)

    def __len__(self) -> int:
        return len(self.cache_dict)

    def __repr__(self) -> str:
        return f"ActivationCache with keys {list(self.cache_dict)}"

    def to(self, device) -> ActivationCache:
        """The same cache with every tensor on `device`."""
        return ActivationCache({k: v.to(device) for k, v in self.cache_dict.items()}, self.model)

    # ---- model pieces -----------------------------------------------------------------------------------
    @property
    def n_layers(self) -> int:
        return self.model.cfg.n_layers

    def _ln(self, layer: int | None, mlp_input: bool):
        """The LayerNorm that reads the residual at (layer, mlp_input); None when the model has none."""
        if layer is None or layer == self.n_layers:
            module = self.model.ln_final
        else:
            block = self.model.blocks[layer]
            module = block.ln2 if mlp_input else block.ln1
        return None if isinstance(module, torch.nn.Identity) else module

    def _resid_at(self, layer: int | None, mlp_input: bool) -> torch.Tensor:
        """The residual stream entering block `layer` (its MLP with mlp_input), or the final one: [(E,) B, T, D]."""
        if layer is None or layer == self.n_layers:
            return self[f"blocks.{self.n_layers - 1}.hook_resid_post"]
        return self["resid_mid" if mlp_input else "resid_pre", layer]

    # ---- the residual stream ----------------------------------------------------------------------------
    def accumulated_resid(self, layer: int | None = None, incl_mid: bool = False, apply_ln: bool = False,
                          return_labels: bool = False):
        """The residual stream at the start of each block up to `layer` (None: every block and the final stream):
        [components, (E,) B, T, D], labels "0_pre", ("0_mid",) ..., "final_post"."""
        layer = self.n_layers if layer is None else layer
        parts, labels = [], []
        for l in range(layer):
            parts.append(self["resid_pre", l])
            labels.append(f"{l}_pre")
            if incl_mid and f"blocks.{l}.hook_resid_mid" in self.cache_dict:
                parts.append(self["resid_mid", l])
                labels.append(f"{l}_mid")
        if layer == self.n_layers:
            parts.append(self._resid_at(None, False))
            labels.append("final_post")
        stack = torch.stack(parts)
        if apply_ln:
            stack = self.apply_ln_to_stack(stack, layer if layer < self.n_layers else None)
        return (stack, labels) if return_labels else stack

    def decompose_resid(self, layer: int | None = None, mlp_input: bool = False, mode: str = "all",
                        apply_ln: bool = False, incl_embeds: bool = True, return_labels: bool = False):
        """The outputs that add up to the residual stream entering block `layer` (None: the final stream):
        embed, pos_embed, then each block's attn_out and mlp_out ("mode": all, attn or mlp). With mlp_input the
        stream is the one entering that block's MLP (its attn_out included). [components, (E,) B, T, D]."""
        if mode not in ("all", "attn", "mlp"):
            raise ValueError(f"mode must be all, attn or mlp; got {mode!r}")
        layer = self.n_layers if layer is None else layer
        parts, labels = [], []
        if incl_embeds:
            for name in ("hook_embed", "hook_pos_embed"):
                if name in self.cache_dict:
                    parts.append(self[name])
                    labels.append(name[5:])
        for l in range(layer + (1 if mlp_input and layer < self.n_layers else 0)):
            if mode != "mlp":
                parts.append(self["attn_out", l])
                labels.append(f"{l}_attn_out")
            last = l == layer  # the block whose MLP input is asked for: its MLP is not added
            if mode != "attn" and not last and f"blocks.{l}.hook_mlp_out" in self.cache_dict:
                parts.append(self["mlp_out", l])
                labels.append(f"{l}_mlp_out")
        stack = torch.stack(parts)
        if apply_ln:
            stack = self.apply_ln_to_stack(stack, layer if layer < self.n_layers else None, mlp_input)
        return (stack, labels) if return_labels else stack

    def stack_head_results(self, layer: int | None = None, return_labels: bool = False, incl_remainder: bool = False,
                           apply_ln: bool = False):
        """Each head's output written into the residual stream, for the blocks before `layer` (None: all):
        [L * H (+ 1), (E,) B, T, D], labels "L{l}H{h}". From hook_result where cached, else from hook_z and W_O
        (the output bias b_O is in no head: it goes to the remainder). The remainder is what the residual stream
        holds besides the heads, so the stack sums to it."""
        layer = self.n_layers if layer is None else layer
        parts, labels = [], []
        for l in range(layer):
            if f"blocks.{l}.attn.hook_result" in self.cache_dict:
                result = self["result", l]
            else:
                result = self.model.blocks[l].attn.head_results(self["z", l])  # [(E,) B, T, H, D]
            parts += list(result.movedim(-2, 0))
            labels += [f"L{l}H{h}" for h in range(result.shape[-2])]
        stack = torch.stack(parts)
        if incl_remainder:
            stack = torch.cat([stack, (self._resid_at(layer, False) - stack.sum(0))[None]])
            labels.append("remainder")
        if apply_ln:
            stack = self.apply_ln_to_stack(stack, layer if layer < self.n_layers else None)
        return (stack, labels) if return_labels else stack

    def apply_ln_to_stack(self, stack: torch.Tensor, layer: int | None = None, mlp_input: bool = False) -> torch.Tensor:
        """Each component as the LayerNorm at (layer, mlp_input) sees it, with its scale frozen at this forward
        pass's value: centred, divided by the scale (no affine map), so the components still add up to the
        LayerNorm's hook_normalized. A model without LayerNorm: the stack as it is."""
        ln = self._ln(layer, mlp_input)
        if ln is None:
            return stack
        resid = self._resid_at(layer, mlp_input)
        scale = (resid - resid.mean(-1, keepdim=True)).pow(2).mean(-1, keepdim=True).add(ln.eps).sqrt()
        return (stack - stack.mean(-1, keepdim=True)) / scale

    # ---- attribution onto the read-out ------------------------------------------------------------------
    def logit_attrs(self, stack: torch.Tensor, classes: int | torch.Tensor | None = None,
                    incorrect: int | torch.Tensor | None = None) -> torch.Tensor:
        """Direct attribution of each component of a stack of the final residual stream onto the read-out:
        component -> final LayerNorm (frozen scale) -> read-out weight, without biases. The attributions sum to
        the model's output minus `readout_bias()`. Scalar read-out: [C, (E,) B, T]. Class read-out: the class
        index `classes` (an int, or [(E,) B] per prompt), minus `incorrect` if given; None: [C, (E,) B, T, K].
        The von Oswald read-out (minus the last coordinate): [C, (E,) B, T]."""
        normalized = self.apply_ln_to_stack(stack)
        ln = self._ln(None, False)
        if ln is not None:
            w = ln.weight  # [(E,) D] against normalized [C, (E,) B, T, D]
            normalized = normalized * (w if w.dim() == 1 else per_model(w, normalized.dim() - 1))
        unembed = self.model.unembed
        if unembed is None:
            return -normalized[..., -1]
        W = unembed.weight  # [(E,) K, D]
        out = torch.einsum("c...d,kd->c...k", normalized, W) if W.dim() == 2 else \
            torch.einsum("ce...d,ekd->ce...k", normalized, W)
        if self.model.cfg.output == "scalar":
            return out[..., 0]
        return out if classes is None else _pick(out, classes) - (0 if incorrect is None else _pick(out, incorrect))

    def readout_bias(self) -> torch.Tensor:
        """The part of the output no component carries: the final LayerNorm's bias through the read-out plus the
        read-out's bias. Scalar: [] ([E] for a stack); classes: [K] ([E, K]); von Oswald read-out: minus the
        LayerNorm bias's last coordinate (0 without LayerNorm)."""
        ln, unembed = self._ln(None, False), self.model.unembed
        p = next(self.model.parameters())
        D = self.model.cfg.d_model
        bias = ln.bias if ln is not None and ln.bias is not None else p.new_zeros(D)
        if self.model.n_models and bias.dim() == 1:
            bias = bias.expand(self.model.n_models, D)
        if unembed is None:
            return -bias[..., -1]
        out = torch.einsum("...d,...kd->...k", bias, unembed.weight)
        if unembed.bias is not None:
            out = out + unembed.bias
        return out[..., 0] if self.model.cfg.output == "scalar" else out


def _pick(out: torch.Tensor, classes) -> torch.Tensor:
    """out [C, (E,) B, T, K] at class `classes` (an int, or a tensor [(E,) B] of indices) -> [C, (E,) B, T]."""
    if isinstance(classes, int):
        return out[..., classes]
    index = classes.to(out.device).long()[None, ..., None, None].expand(*out.shape[:-1], 1)
    return out.gather(-1, index)[..., 0]
