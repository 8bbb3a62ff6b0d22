"""Export a run to TransformerLens (`HookedTransformer`, transformer-lens 3.x: the last release line with it; 4.x
replaced it by TransformerBridge) and to safetensors.

What TransformerLens can express: softmax attention with a causal or no mask, learned or rotary positions (ours
rotate adjacent pairs: rotary_adjacent_pairs=True) or none (W_pos = 0), GELU (exact, or tanh: TransformerLens's
gelu_new) or ReLU MLPs or none, LayerNorm or none, biases or none (zeros), tied blocks (copied into every block),
token, scalar or class read-outs.
Linear attention, the context mask and the von Oswald read-out have no counterpart and are refused in one line.

The vector read-in has no TransformerLens counterpart either (its embedding takes token ids): the exported model has
a 1-token vocabulary with W_E = 0, and `read_in(run_model, inputs)` gives the tokens and a hook on hook_embed
that writes our read-in's output there, so every TransformerLens hook downstream sees what ours does:

    tl = to_transformer_lens(run)
    tokens, hooks = read_in(run.model, run.format.encode(prompts))
    with tl.hooks(fwd_hooks=hooks):
        logits, cache = tl.run_with_cache(tokens)
    # or, skipping the embeddings: tl(residual, start_at_layer=0) with residual = hook_embed + hook_pos_embed

An export folder keeps the read-in weights beside TransformerLens's (read_in.safetensors), so
`read_in_from_export(folder, inputs)` does the same without the lab's model.

Padded prompts (graph search) need one more step: TransformerLens ignores its attention_mask under bidirectional
attention, so `read_in(run.model, tokens, pad_token=PAD)` (or read_in_from_export, which reads the export's
padding.json) adds hooks that mask the padded keys' attention scores, as the lab's model does.
NaN or infinite weights (a diverged run) are refused in one line; nothing is exported.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch

from tasks.graph_search import PAD

from .config import ModelConfig
from .folders import claim_out_folder
from .runs import (
    CONFIG,
    WEIGHTS,
    Run,
    RunFileError,
    atomic_write_json,
    nonfinite_weight,
    read_json_file,
    read_safetensors,
    write_safetensors,
)

READ_IN = "read_in.safetensors"
PADDING = "padding.json"  # an export of a padded model: {"pad_token": id}; read_in_from_export masks it


class ExportError(ValueError):
    """A model TransformerLens cannot express; the message is one line saying what and why."""


def unsupported(cfg: ModelConfig) -> str | None:
    """Why a model with this config has no TransformerLens counterpart (None when it has one)."""
    if cfg.arch != "transformer":
        return f"model.arch = {cfg.arch} is not a transformer"
    if cfg.attn != "softmax":
        return "linear attention (model.attn = linear) has no TransformerLens counterpart (its attention is softmax)"
    if cfg.mask == "context":
        return "the context mask (keys from context tokens only) has no TransformerLens counterpart (causal or none)"
    if cfg.output == "minus_last":
        return "the von Oswald read-out (minus the last coordinate) has no TransformerLens counterpart"
    return None


def tl_config_dict(cfg: ModelConfig, dtype: torch.dtype = torch.float32) -> dict:
    """The HookedTransformerConfig arguments for a model with this config."""
    reason = unsupported(cfg)
    if reason:
        raise ExportError(f"cannot export to TransformerLens: {reason}")
    d_head = cfg.d_model // cfg.n_heads
    out = dict(n_layers=cfg.n_layers, d_model=cfg.d_model, n_heads=cfg.n_heads, d_head=d_head, n_ctx=cfg.max_len,
               d_vocab=cfg.vocab_size if cfg.input == "tokens" else 1,
               d_vocab_out=cfg.n_classes if cfg.output == "classes" else 1,
               act_fn={"gelu": "gelu", "gelu_tanh": "gelu_new", "relu": "relu"}[cfg.act],
               normalization_type="LN" if cfg.layernorm else None,
               attention_dir="causal" if cfg.mask == "causal" else "bidirectional",
               positional_embedding_type="rotary" if cfg.pos == "rotary" else "standard",
               default_prepend_bos=False, init_weights=False, dtype=str(dtype).removeprefix("torch."))
    if cfg.mlp_width:
        out["d_mlp"] = cfg.mlp_width
    else:
        out["attn_only"] = True
    if cfg.pos == "rotary":
        out.update(rotary_dim=d_head, rotary_base=10000, rotary_adjacent_pairs=True)
    return out


def tl_state_dict(model) -> dict[str, torch.Tensor]:
    """Our weights in TransformerLens's names and shapes (absent biases and LayerNorm biases as zeros)."""
    cfg = model.cfg
    H, D = cfg.n_heads, cfg.d_model
    dh = D // H
    p = next(model.parameters())

    def bias(lin, n):
        return lin.bias.detach() if lin.bias is not None else p.new_zeros(n)

    def ln(module, prefix, sd):
        if cfg.layernorm:
            sd[f"{prefix}.w"] = module.weight.detach()
            sd[f"{prefix}.b"] = module.bias.detach() if module.bias is not None else p.new_zeros(D)

    sd = {}
    if cfg.input == "tokens":
        sd["embed.W_E"] = model.embed.weight.detach()
    else:
        sd["embed.W_E"] = p.new_zeros(1, D)
    if cfg.pos != "rotary":
        sd["pos_embed.W_pos"] = model.pos_embed.weight.detach() if model.pos_embed is not None else \
            p.new_zeros(cfg.max_len, D)
    for l, block in enumerate(model.blocks):
        a, pre = block.attn, f"blocks.{l}"
        ln(block.ln1, f"{pre}.ln1", sd)
        for name, lin in (("Q", a.W_Q), ("K", a.W_K), ("V", a.W_V)):
            sd[f"{pre}.attn.W_{name}"] = lin.weight.detach().view(H, dh, D).transpose(1, 2)  # [H, D, dh]
            sd[f"{pre}.attn.b_{name}"] = bias(lin, D).view(H, dh)
        sd[f"{pre}.attn.W_O"] = a.W_O.weight.detach().view(D, H, dh).permute(1, 2, 0)  # [H, dh, D]
        sd[f"{pre}.attn.b_O"] = bias(a.W_O, D)
        if block.mlp is not None:
            ln(block.ln2, f"{pre}.ln2", sd)
            sd[f"{pre}.mlp.W_in"] = block.mlp.fc_in.weight.detach().T  # [D, d_mlp]
            sd[f"{pre}.mlp.b_in"] = bias(block.mlp.fc_in, cfg.mlp_width)
            sd[f"{pre}.mlp.W_out"] = block.mlp.fc_out.weight.detach().T  # [d_mlp, D]
            sd[f"{pre}.mlp.b_out"] = bias(block.mlp.fc_out, D)
    ln(model.ln_final, "ln_final", sd)
    sd["unembed.W_U"] = model.unembed.weight.detach().T  # [D, d_vocab_out]
    sd["unembed.b_U"] = bias(model.unembed, model.unembed.weight.shape[0])
    return {k: v.contiguous().clone() for k, v in sd.items()}


def check_finite(weights: dict[str, torch.Tensor], run) -> None:
    """An export of NaN or infinite weights is refused in one line, naming the first such tensor."""
    bad = nonfinite_weight(weights)
    if bad is not None:
        raise ExportError(f"{run.path} has NaN or infinite weights ({bad}): its training diverged; nothing "
                          "exported (train it again with a lower train.lr)")


def _plain_model(run_or_model, member: int | None):
    """The single model to export: a Transformer, a run's model, or member i of an ensemble run."""
    if not isinstance(run_or_model, Run):
        if getattr(run_or_model, "n_models", 0):
            raise ExportError("a stack of models cannot be exported as one; export a member (lab.runs.Run.member)")
        return run_or_model
    if run_or_model.n_members > 1:
        if member is None:
            raise ExportError(f"{run_or_model.path} is an ensemble of {run_or_model.n_members} models; pick one with "
                              f"member=i (--member i), i in 0..{run_or_model.n_members - 1}")
        return run_or_model.member(member).model
    if member not in (None, 0):
        raise ExportError(f"{run_or_model.path} is a single-model run; member must be omitted (or 0)")
    return run_or_model.model


def _hooked_transformer():
    try:
        from transformer_lens import HookedTransformer, HookedTransformerConfig
    except ImportError:
        raise ExportError("TransformerLens is not installed: pip install -e '.[tl]'") from None

    def build(args: dict):
        with warnings.catch_warnings():  # 3.x marks HookedTransformer deprecated; it is the release line we pin
            warnings.simplefilter("ignore", DeprecationWarning)
            return HookedTransformer(HookedTransformerConfig(**{**args, "dtype": getattr(torch, args["dtype"])}),
                                     move_to_device=False)

    return build


def to_transformer_lens(run_or_model, member: int | None = None, dtype: torch.dtype | None = None):
    """A TransformerLens HookedTransformer with the run's weights (member i of an ensemble), in the model's dtype
    unless `dtype` is given; see the module docstring for how to feed a vector read-in."""
    model = _plain_model(run_or_model, member)
    dtype = dtype or next(model.parameters()).dtype
    tl = _hooked_transformer()(tl_config_dict(model.cfg, dtype))
    _load(tl, tl_state_dict(model), dtype)
    return tl.to(next(model.parameters()).device, print_details=False).eval()


def _load(tl, sd: dict, dtype) -> None:
    missing, unexpected = tl.load_state_dict({k: v.to(dtype) for k, v in sd.items()}, strict=False)
    params = {name for name, _ in tl.named_parameters()}
    if unexpected or params & set(missing):
        raise ExportError("TransformerLens's model does not take these weights "
                          f"(missing {sorted(params & set(missing))}, unexpected {sorted(unexpected)}): "
                          "the pinned transformer-lens release differs")


def read_in(model, inputs: torch.Tensor, pad_token: int | None = None):
    """(tokens, fwd_hooks) to run an exported model on our inputs: token ids as they are; vector inputs
    [B, T, d_in] become dummy tokens [B, T] plus a hook that writes our read-in into hook_embed. Padded token
    prompts (graph search: `pad_token` = tasks.graph_search.PAD) add padding_hooks, as the lab's model masks them."""
    if model.cfg.input == "tokens":
        return inputs, padding_hooks(inputs != pad_token, model.cfg.n_layers) if pad_token is not None else []
    with torch.no_grad():
        return _embedding_hook(model.embed(inputs))


def padding_hooks(key_padding: torch.Tensor, n_layers: int) -> list:
    """Hooks masking padded keys (key_padding [B, T], True = a real token) in every layer's attention scores.
    TransformerLens applies its attention_mask only under the causal mask; with bidirectional attention (graph
    search) it would attend to padding, so an export of a padded model runs with these hooks."""
    keep = key_padding.bool()[:, None, None, :]  # [B, 1, 1, T]: scores are [B, H, T_query, T_key]

    def mask(scores, hook):
        return scores.masked_fill(~keep.to(scores.device), float("-inf"))

    return [(f"blocks.{layer}.attn.hook_attn_scores", mask) for layer in range(n_layers)]


def read_in_from_export(folder, inputs: torch.Tensor):
    """`read_in` without the lab's model: the read-in weights an export of a vector-input run keeps beside the
    TransformerLens weights (FOLDER/read_in.safetensors). Token ids pass through, with padding_hooks where the
    export is of a padded model (FOLDER/padding.json names its pad token)."""
    path = Path(folder) / READ_IN
    if not path.is_file():
        padding = Path(folder) / PADDING
        if not padding.is_file():
            return inputs, []
        cfg = read_json_file(Path(folder) / "config.json")
        return inputs, padding_hooks(inputs != read_json_file(padding)["pad_token"], cfg["n_layers"])
    weights, _ = read_safetensors(path)
    W, b = weights["weight"].to(inputs.dtype), weights["bias"].to(inputs.dtype)  # [D, d_in], [D]
    return _embedding_hook(inputs @ W.T + b)


def _embedding_hook(embedded: torch.Tensor):
    """Dummy tokens [B, T] and a hook writing `embedded` [B, T, D] into TransformerLens's hook_embed."""
    tokens = torch.zeros(embedded.shape[:2], dtype=torch.long, device=embedded.device)
    return tokens, [("hook_embed", lambda x, hook: embedded.to(x.dtype))]


def export_folder(folder, run, kind: str) -> Path:
    """The folder an export (`kind`: tl-export or run-export) goes to, created; refused in one line (before anything
    is written) when it holds anything else (a training run, another kind of export, an export of another run)."""
    source = str(Path(run.path).resolve())
    return claim_out_folder(folder, kind, same=lambda f: read_safetensors(f / WEIGHTS)[1].get("from") == source,
                            differs=f" of another run (this one is {run.path})")


def write_transformer_lens(run, folder: Path, member: int | None = None) -> Path:
    """Write the TransformerLens export of a run: FOLDER/config.json (HookedTransformerConfig arguments),
    FOLDER/model.safetensors (its state dict) and, for a vector read-in, FOLDER/read_in.safetensors;
    `load_transformer_lens(FOLDER)` and `read_in_from_export(FOLDER, inputs)` read them back."""
    model = _plain_model(run, member)
    cfg = tl_config_dict(model.cfg, next(model.parameters()).dtype)
    check_finite(model.state_dict(), run)  # the read-in's weights too, which TransformerLens's do not hold
    weights = tl_state_dict(model)
    folder = export_folder(folder, run, "tl-export")
    write_safetensors(folder / WEIGHTS, weights, {"format": "transformer_lens", "from": Path(run.path).resolve()})
    if run.config.task.format == "graph":  # key padding, which TransformerLens's bidirectional attention ignores
        atomic_write_json(folder / PADDING, {"pad_token": PAD})
    if model.cfg.input == "vector":  # TransformerLens has no place for it: kept beside (read_in_from_export)
        embed = model.embed
        bias = embed.bias if embed.bias is not None else embed.weight.new_zeros(embed.weight.shape[0])
        write_safetensors(folder / READ_IN, {"weight": embed.weight, "bias": bias})
    atomic_write_json(folder / "config.json", cfg)
    return folder


def write_run_safetensors(run, folder: Path) -> Path:
    """A copy of a run that holds no pickle: its config.json and its weights as FOLDER/model.safetensors (with the
    step), which lab.load_run reads; for sharing a trained model."""
    check_finite(run.model.state_dict(), run)
    folder = export_folder(folder, run, "run-export")
    write_safetensors(folder / WEIGHTS, run.model.state_dict(), {"step": run.step, "from": Path(run.path).resolve()})
    atomic_write_json(folder / CONFIG, run.config.to_dict())
    return folder


def load_transformer_lens(folder):
    """The HookedTransformer that `write_transformer_lens` (or `lab export RUN --to transformer-lens`) wrote."""
    folder = Path(folder)
    build = _hooked_transformer()
    try:
        cfg = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        raise RunFileError(f"{folder / 'config.json'} is not a TransformerLens export config") from None
    tl = build(cfg)
    _load(tl, read_safetensors(folder / WEIGHTS)[0], tl.cfg.dtype)
    return tl.eval()
