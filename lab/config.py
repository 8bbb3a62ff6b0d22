"""Run configs as data: dataclasses, presets (TOML files in lab/presets), and type-checked key=value overrides."""
from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import tomllib
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Literal

import tasks
from tasks.checks import shown


class ConfigError(ValueError):
    """A bad config key or value; the message is one line naming the key and what is allowed."""


DEFAULT_THREADS = 1  # measured: see the README's "Several trainings at once"
MAX_THREADS = 256  # more threads than that is a typo, and OpenMP allocates per thread (10^9 of them: 32 GB)
FLOAT32_MAX = 3.4028234663852886e38
# What one training keeps, calibrated on the peak memory (RSS) of 2-step CPU trainings of 2-6 GiB: the peak is
# 0.7-1.0x the estimate past 4 GiB, plus a fixed ~0.6 GiB that MEMORY_SHARE leaves room for (docs/runs.md).
BYTES_PER_WEIGHT = 28  # float32 weight, gradient, Adam's two moments, the copies model.safetensors is written from
BYTES_PER_ACTIVATION = 4  # float32, kept for the backward pass
KEPT_PER_TOKEN_LAYER = (12, 2, 2)  # floats per token and layer: 12 x d_model, 2 x the MLP width, 2 x heads x T (scores)
KEPT_PER_TOKEN = 3  # floats per token beyond the layers: x 3 the token's input size (the batch, the read-in)
MEMORY_SHARE = 0.9  # the share of this machine's memory one training may plan on (the rest: the system, the process)


def machine_memory() -> int:
    """Bytes of physical memory on this machine: a config whose weights or activations need more cannot train here."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _longest(task, fmt, n_points: int) -> int:
    """The longest sequence a task's prompts make in its format (graph prompts know their own)."""
    return task.seq_len() if hasattr(task, "seq_len") else fmt.seq_len(n_points)


def _gib(n_bytes: float) -> str:
    return f"{n_bytes / 2**30:.3g} GiB"


def _need(cond: bool, key: str, allowed: str, value) -> None:
    if not cond:
        raise ConfigError(f"{key} must be {allowed}; got {shown(value)}")


@dataclass
class TaskConfig:
    """Which task and token format; `params` are the task's own arguments (e.g. d, noise_std)."""

    name: str = "linear_regression"
    format: Literal["interleaved", "disjoint", "paired", "stacked", "graph"] = "interleaved"
    n_points: int = 41
    params: dict = field(default_factory=dict)

    def validate(self):
        _need(self.n_points >= 1, "task.n_points", "an integer >= 1", self.n_points)
        _need(self.name in tasks.names(), "task.name", "one of " + ", ".join(tasks.names()), self.name)
        allowed = [f.name for f in dataclasses.fields(tasks.task_class(self.name))]
        for key in self.params:  # e.g. task.name=boolean on a preset that sets task.d
            if key not in allowed:
                named = f"task.{key}" if len(key) <= 60 else f"task key {shown(key)}"
                raise ConfigError(f"{named} (from the preset or an override) is not an argument of task "
                                  f"{self.name}; its arguments: {', '.join(allowed)}")
        try:
            self.build()
        except ValueError as e:
            raise ConfigError(f"task.{e}") from None

    def build(self):
        return tasks.get(self.name, **self.params)


# tasks whose sample() takes d_active: Garg's curriculum applies (x's later coordinates zeroed)
CURRICULUM_TASKS = ("linear_regression", "decision_tree", "relu_net", "representation")


@dataclass
class ModelConfig:
    """The decoder-style transformer of lab/model.py."""

    arch: Literal["transformer", "lstm", "hyena"] = "transformer"  # lstm, hyena: lab/challengers.py
    n_layers: int = 3
    n_heads: int = 2
    d_model: int = 64
    d_mlp: int = -1  # -1: 4 * d_model; 0: no MLP
    d_in: int = 0  # 0: set from the task and format
    input: Literal["vector", "tokens", "identity"] = "vector"  # identity: tokens are the residual stream
    vocab_size: int = 0
    output: Literal["scalar", "classes", "minus_last"] = "scalar"  # minus_last: -(last coordinate), von Oswald
    n_classes: int = 2
    layernorm: bool = True
    pos: Literal["learned", "rotary", "none"] = "learned"  # rotary: RoPE on queries and keys (Su et al. 2021)
    max_len: int = 256
    attn: Literal["softmax", "linear"] = "softmax"
    mask: Literal["causal", "context", "none"] = "causal"
    act: Literal["gelu", "gelu_tanh", "relu"] = "gelu"  # gelu_tanh: GPT-2's tanh approximation (Garg et al.'s code)
    tied: bool = False  # one block's weights applied n_layers times (a looped / recurrent transformer)
    bias: bool = True
    # auto: the fastest path measured for the device and shape (lab/kernels/choice.py: SDPA for softmax attention
    # unless `lab bench attention` measured Triton faster; Triton for linear attention on CUDA)
    backend: Literal["auto", "triton", "sdpa", "reference"] = "auto"
    init_std: float = 0.02
    # read-in and read-out init. gpt2: N(0, init_std), zero biases, like every other weight. torch: nn.Linear's default,
    # U(+-1/sqrt(fan_in)) for weight and bias, as Garg et al.'s code leaves them (std 0.129 read-in at d = 20); the
    # regression presets (tiny-linreg, garg-linreg, guo-representation) use it: it leaves the zero-predictor plateau
    # thousands of steps sooner (measured, see tiny-linreg.toml). The default stays gpt2 so older runs load unchanged.
    io_init: Literal["gpt2", "torch"] = "gpt2"
    # onehot: Saparov et al.'s fixed features: each token's one-hot id and one-hot position side by side
    # (d_model = vocab_size + max_len, never trained) and a fixed read-out, the class tokens' coordinates after the
    # final LayerNorm (their logits). For token tasks with pos = learned and output = classes (graph search)
    features: Literal["learned", "onehot"] = "learned"

    def validate(self):
        for key in ("n_layers", "n_heads", "d_model", "max_len"):
            _need(getattr(self, key) >= 1, f"model.{key}", "an integer >= 1", getattr(self, key))
        _need(self.d_model % self.n_heads == 0, "model.d_model", f"a multiple of model.n_heads = {self.n_heads}",
              self.d_model)
        _need(self.pos != "rotary" or (self.d_model // self.n_heads) % 2 == 0, "model.pos",
              "learned or none when d_model / n_heads is odd (rotary turns pairs of coordinates)", self.pos)
        _need(self.d_mlp >= -1, "model.d_mlp", ">= 0 (0 = no MLP) or -1 (4 x d_model)", self.d_mlp)
        _need(self.vocab_size >= 0, "model.vocab_size", ">= 0 (0: set from the task)", self.vocab_size)
        _need(self.output == "scalar" or self.n_classes >= 2, "model.n_classes", ">= 2", self.n_classes)
        _need(self.init_std > 0, "model.init_std", "> 0", self.init_std)
        if self.arch != "transformer":
            _need(self.input != "identity", "model.input", f"vector or tokens for model.arch = {self.arch}", self.input)
            _need(self.output != "minus_last", "model.output", f"scalar or classes for model.arch = {self.arch}",
                  self.output)

    @property
    def mlp_width(self) -> int:
        return 4 * self.d_model if self.d_mlp == -1 else self.d_mlp


@dataclass
class TrainConfig:
    """Optimiser, schedule, loss and bookkeeping (Garg: Adam 1e-4, batch 64, MSE over all prefixes)."""

    steps: int = 1000
    batch_size: int = 64
    lr: float = 1e-4
    optimizer: Literal["adam", "adamw", "signum"] = "adam"  # signum: sign of momentum (lab/optimizers.py)
    weight_decay: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.999
    schedule: Literal["constant", "cosine"] = "constant"
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0
    grad_clip: float = 0.0  # max global grad norm; 0 = off
    loss: Literal["all", "query"] = "all"
    seed: int = 0
    checkpoint_every: int = 500
    log_every: int = 50
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # torch's CPU threads; 0: $OMP_NUM_THREADS when set, else DEFAULT_THREADS. Not part of what a run is: a run
    # resumes under another value (bit for bit with the same one).
    threads: int = 0

    def validate(self):
        _need(0 <= self.threads <= MAX_THREADS, "train.threads",
              f"an integer in 0..{MAX_THREADS} (0: $OMP_NUM_THREADS, else {DEFAULT_THREADS})", self.threads)
        for key in ("steps", "batch_size", "checkpoint_every", "log_every"):
            _need(getattr(self, key) >= 1, f"train.{key}", "an integer >= 1", getattr(self, key))
        _need(self.lr > 0, "train.lr", "> 0", self.lr)
        _need(0 <= self.seed < 2**32, "train.seed", "an integer in 0..2^32 - 1", self.seed)
        _need(self.weight_decay >= 0, "train.weight_decay", ">= 0", self.weight_decay)
        for key in ("beta1", "beta2"):
            _need(0 <= getattr(self, key) < 1, f"train.{key}", "in [0, 1)", getattr(self, key))
        _need(self.warmup_steps >= 0, "train.warmup_steps", ">= 0", self.warmup_steps)
        _need(0 <= self.min_lr_ratio <= 1, "train.min_lr_ratio", "in [0, 1]", self.min_lr_ratio)
        _need(self.grad_clip >= 0, "train.grad_clip", ">= 0 (0 = off)", self.grad_clip)


@dataclass
class CurriculumConfig:
    """Garg's curriculum: active dims and points grow by `inc` every `interval` steps up to `end`
    (end 0 = the task's d and n_points; points_start 0 = no points curriculum, always task.n_points)."""

    enabled: bool = False
    dims_start: int = 5
    dims_end: int = 0
    dims_inc: int = 1
    dims_interval: int = 2000
    points_start: int = 11
    points_end: int = 0
    points_inc: int = 2
    points_interval: int = 2000
    # graph search (independent of `enabled`): the first lookahead_interval steps at lookahead lookahead_start
    # exactly, then the largest lookahead grows by one per interval up to the task's (-1: off)
    lookahead_start: int = -1
    lookahead_interval: int = 1000

    def validate(self):
        for key in ("dims_start", "dims_interval", "points_interval", "lookahead_interval"):
            _need(getattr(self, key) >= 1, f"curriculum.{key}", "an integer >= 1", getattr(self, key))
        for key in ("dims_end", "points_start", "points_end", "dims_inc", "points_inc"):
            _need(getattr(self, key) >= 0, f"curriculum.{key}", "an integer >= 0", getattr(self, key))

    def at(self, step: int) -> tuple[int, int]:
        """(active dims, points) at `step` (on a resolved config; a start above its end means the end)."""
        dims = min(self.dims_end, self.dims_start + self.dims_inc * (step // self.dims_interval))
        points = self.points_end if not self.points_start else \
            min(self.points_end, self.points_start + self.points_inc * (step // self.points_interval))
        return dims, points

    def task_at(self, task, step: int):
        """The task to sample at `step`: under the lookahead curriculum, the graph-search task with its lookahead
        fixed (first stage) or its largest lookahead capped; otherwise `task` itself."""
        if self.lookahead_start < 0:
            return task
        stage = step // self.lookahead_interval
        if stage == 0:
            return dataclasses.replace(task, lookahead=self.lookahead_start)
        top = task.max_lookahead if task.max_lookahead >= 0 else task.largest_lookahead()
        return dataclasses.replace(task, max_lookahead=min(top, self.lookahead_start + stage))


@dataclass
class EnsembleConfig:
    """E independent models trained as one batched computation (lab/ensemble.py). Member i is the model a solo
    run with seed train.seed + i (or seeds[i], if seeds is given; learning rate lrs[i], if lrs is given) would
    train. The sweep executor packs trials that differ only in seed (and lr) this way."""

    size: int = 1
    lrs: list[float] = field(default_factory=list)  # empty: train.lr for every member
    seeds: list[int] = field(default_factory=list)  # empty: train.seed + i for member i

    def validate(self):
        _need(self.size >= 1, "ensemble.size", "an integer >= 1", self.size)
        _need(not self.lrs or len(self.lrs) == self.size, "ensemble.lrs",
              f"empty or {self.size} learning rates (one per member)", self.lrs)
        _need(all(lr > 0 for lr in self.lrs), "ensemble.lrs", "learning rates > 0", self.lrs)
        _need(not self.seeds or len(self.seeds) == self.size, "ensemble.seeds",
              f"empty or {self.size} seeds (one per member)", self.seeds)
        _need(all(0 <= s < 2**32 for s in self.seeds), "ensemble.seeds", "seeds in 0..2^32 - 1", self.seeds)


SECTIONS = {"task": TaskConfig, "model": ModelConfig, "train": TrainConfig, "curriculum": CurriculumConfig,
            "ensemble": EnsembleConfig}


@dataclass
class RunConfig:
    task: TaskConfig = field(default_factory=TaskConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    curriculum: CurriculumConfig = field(default_factory=CurriculumConfig)
    ensemble: EnsembleConfig = field(default_factory=EnsembleConfig)
    preset: str = ""

    def validate(self) -> RunConfig:
        for name in SECTIONS:
            getattr(self, name).validate()
        task = self.task.build()
        d = task.d
        if self.curriculum.enabled:
            cur = self.curriculum
            _need(self.task.name in CURRICULUM_TASKS, "curriculum.enabled",
                  f"false for task {self.task.name} (Garg's curriculum grows the dimensions and points of "
                  f"{', '.join(CURRICULUM_TASKS)})", True)
            _need(cur.dims_end <= d, "curriculum.dims_end", f"<= task d = {d} (0 = d)", cur.dims_end)
            _need(cur.points_end <= self.task.n_points, "curriculum.points_end",
                  f"<= task.n_points = {self.task.n_points} (0 = n_points)", cur.points_end)
        if self.curriculum.lookahead_start >= 0:
            ok = self.task.name == "graph_search" and task.distribution != "naive" and task.lookahead < 0
            _need(ok, "curriculum.lookahead_start", "-1 (off: add curriculum.lookahead_start=-1) unless the task is "
                  "graph_search with a balanced or star distribution and task.lookahead = -1",
                  self.curriculum.lookahead_start)
            _need(self.curriculum.lookahead_start <= task.largest_lookahead(), "curriculum.lookahead_start",
                  f"-1 (off) or 0..{task.largest_lookahead()}", self.curriculum.lookahead_start)
        _need(self.ensemble.size == 1 or self.model.arch == "transformer", "ensemble.size",
              "1 for model.arch = " + self.model.arch + " (ensembles stack Transformers)", self.ensemble.size)
        fmt = tasks.formats.get(self.task.format)
        formats = getattr(task, "formats", ("interleaved", "disjoint", "paired", "stacked"))
        _need(fmt.name in formats, "task.format", f"one of {', '.join(formats)} for task {self.task.name}", fmt.name)
        _need(self.model.input != "tokens" or hasattr(task, "vocab_size"), "model.input",
              f"vector or identity for task {self.task.name} (token ids need a token task such as graph_search)",
              self.model.input)
        if fmt.name == "graph":
            _need(self.model.arch == "transformer", "model.arch", "transformer for the graph format (padding mask)",
                  self.model.arch)
            _need(self.model.input == "tokens", "model.input", "tokens for the graph format", self.model.input)
            _need(self.model.output == "classes", "model.output", "classes for the graph format", self.model.output)
            _need(self.ensemble.size == 1, "ensemble.size", "1 for the graph format (ensembles take vector prompts)",
                  self.ensemble.size)
        _need(self.model.output != "classes" or getattr(task, "objective", "mse") == "set", "model.output",
              f"scalar{' or minus_last' if self.model.arch == 'transformer' else ''} for task {self.task.name} "
              "(a class read-out needs class targets, as graph_search has)",
              self.model.output)
        if self.model.features == "onehot":
            m, vocab = self.model, getattr(task, "vocab_size", 0)
            _need(m.input == "tokens" and m.pos == "learned" and m.output == "classes", "model.features",
                  "learned unless model.input = tokens, model.pos = learned and model.output = classes (one-hot "
                  "features are a token's id and position; the read-out is the class tokens' coordinates)", m.features)
            _need(m.d_model == vocab + m.max_len, "model.d_model",
                  f"{vocab + m.max_len} (vocab_size {vocab} + model.max_len {m.max_len}) with model.features = onehot",
                  m.d_model)
        _need(self.ensemble.size == 1 or self.train.optimizer != "signum", "ensemble.size",
              "1 with train.optimizer = signum (ensembles use Adam/AdamW)", self.ensemble.size)
        longest = _longest(task, fmt, self.task.n_points)
        _need(self.model.pos == "none" or longest <= self.model.max_len, "model.max_len",
              f">= the longest sequence ({longest} tokens)", self.model.max_len)
        self._check_size(task, fmt.input_dim(d), longest)
        _need(self.model.d_in in (0, fmt.input_dim(d)), "model.d_in",
              f"0 (automatic) or {fmt.input_dim(d)} for format {fmt.name} at d = {d}", self.model.d_in)
        _need(self.model.input != "identity" or self.model.d_model == fmt.input_dim(d), "model.d_model",
              f"{fmt.input_dim(d)} (the token size) with model.input = identity", self.model.d_model)
        return self

    def weight_count(self, task, d_in: int) -> int:
        """The Transformer's weight matrices (attention, MLP, read-in, positions, read-out) over all ensemble
        members: biases and layer norms left out, so a lower bound on its parameters."""
        m, D = self.model, self.model.d_model
        read_in = {"vector": d_in, "tokens": getattr(task, "vocab_size", 0), "identity": 0}[m.input]
        positions = m.max_len if m.pos == "learned" else 0
        read_out = {"scalar": 1, "classes": m.n_classes, "minus_last": 0}[m.output]
        blocks = (1 if m.tied else m.n_layers) * (4 * D * D + 2 * D * m.mlp_width)
        return self.ensemble.size * (blocks + (read_in + positions + read_out) * D)

    def _counts(self, task, d_in: int, seq_len: int) -> tuple[int, int]:
        """(weights, activations): the weights (all members) and one batch's floats kept for the backward pass: per
        token and layer the d_model-wide tensors (residual, q, k, v, z, projections), the MLP's, and the attention
        scores where the attention path materialises them (linear attention, the reference backend); per token its
        input. Calibrated against measured peaks (KEPT_PER_TOKEN_LAYER)."""
        m = self.model
        per_d, per_mlp, per_score = KEPT_PER_TOKEN_LAYER
        scores = m.n_heads * seq_len if (m.attn != "softmax" or m.backend == "reference") else 0
        per_layer = per_d * m.d_model + per_mlp * m.mlp_width + per_score * scores
        tokens = self.ensemble.size * self.train.batch_size * seq_len
        return self.weight_count(task, d_in), tokens * (m.n_layers * per_layer + KEPT_PER_TOKEN * d_in)

    def memory_bytes(self) -> int:
        """The config check's estimate of the memory one training of this config keeps (weights with their
        gradients and Adam's moments, and one batch's activations): what packing ensembles is bounded by."""
        task, fmt = self.task.build(), tasks.formats.get(self.task.format)
        weights, activations = self._counts(task, fmt.input_dim(task.d), _longest(task, fmt, self.task.n_points))
        return weights * BYTES_PER_WEIGHT + activations * BYTES_PER_ACTIVATION

    def _check_size(self, task, d_in: int, seq_len: int) -> None:
        """A config too large for this machine stops here, before anything is allocated: never swapping, never
        killed for memory once training starts. Weights (with gradients, Adam's moments and the copy a checkpoint
        is written from) and one batch's activations together must fit in MEMORY_SHARE of the machine's memory."""
        weights, activations = self._counts(task, d_in, seq_len)
        memory = machine_memory()
        usable = MEMORY_SHARE * memory
        weight_bytes, activation_bytes = weights * BYTES_PER_WEIGHT, activations * BYTES_PER_ACTIVATION
        if weight_bytes > usable:
            raise ConfigError(f"this model has {weights:.3g} weights, {_gib(weight_bytes)} with their gradients and "
                              f"Adam's state, more than this machine's {_gib(memory)} of memory can hold for a "
                              "training; lower model.d_model, model.d_mlp, model.n_layers, model.max_len, "
                              "model.n_classes or ensemble.size")
        if weight_bytes + activation_bytes > usable:
            raise ConfigError(f"one batch of this config keeps {activations:.3g} activations "
                              f"({_gib(activation_bytes)}, with the weights {_gib(weight_bytes + activation_bytes)}), "
                              f"more than this machine's {_gib(memory)} of memory can hold for a training; lower "
                              "train.batch_size, task.n_points, model.d_model, model.n_layers or ensemble.size")

    def resolved(self) -> RunConfig:
        """A validated copy with derived values (d_in, d_mlp) filled in: what a run folder saves."""
        cfg = copy.deepcopy(self).validate()
        task = cfg.task.build()
        d = task.d
        cfg.model.d_in = tasks.formats.get(cfg.task.format).input_dim(d)
        if hasattr(task, "vocab_size"):  # token-id tasks set the vocabulary and the classes (vertex ids)
            cfg.model.vocab_size, cfg.model.n_classes = task.vocab_size, task.ids
        cfg.model.d_mlp = cfg.model.mlp_width
        cfg.curriculum.dims_end = cfg.curriculum.dims_end or d
        cfg.curriculum.points_end = cfg.curriculum.points_end or cfg.task.n_points
        return cfg

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> RunConfig:
        cfg = cls(preset=str(data.get("preset", "")))
        unknown = set(data) - set(SECTIONS) - {"preset"}
        if unknown:
            raise ConfigError(f"unknown config section {shown(sorted(unknown)[0])}; sections: {', '.join(SECTIONS)}")
        for section, values in data.items():
            if section == "preset":
                continue
            _need(isinstance(values, dict), section, "a table of keys", values)
            for key, value in values.items():
                set_value(cfg, f"{section}.{key}", value)
        return cfg


def _coerce(key: str, hint, value):
    """Convert `value` (a string from the command line, or a TOML/JSON value) to the field type `hint`."""
    origin = typing.get_origin(hint)
    if origin is Literal:
        allowed = typing.get_args(hint)
        _need(value in allowed, key, "one of " + ", ".join(map(str, allowed)), value)
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        _need(text in ("true", "false", "1", "0", "yes", "no"), key, "true or false", value)
        return text in ("true", "1", "yes")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        else:
            try:
                number = int(str(value).replace("_", ""))
            except ValueError:
                raise ConfigError(f"{key} must be an integer; got {shown(value)}") from None
        _need(abs(number) < 2**53, key, "an integer of at most 15 digits", value)
        return number
    if hint is float:
        try:
            number = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) \
                else float(str(value))
        except (ValueError, OverflowError):
            raise ConfigError(f"{key} must be a number; got {shown(value)}") from None
        _need(math.isfinite(number), key, "a finite number (not NaN or inf)", value)
        _need(abs(number) <= FLOAT32_MAX, key, "within float32's range (|x| <= 3.4e38): the tensors are float32",
              value)
        return number
    if hint is str:
        return str(value)
    if hint is dict:
        _need(isinstance(value, dict), key, "a table of task arguments", value)
        return dict(value)
    if origin is list:
        items = value.split(",") if isinstance(value, str) else value
        _need(isinstance(items, (list, tuple)), key, "a list, e.g. 1e-3,3e-4", value)
        (item_hint,) = typing.get_args(hint)
        return [_coerce(key, item_hint, item) for item in items if not isinstance(item, str) or item.strip()]
    raise ConfigError(f"{key} cannot be set")  # pragma: no cover


def set_value(cfg: RunConfig, key: str, value) -> None:
    """Set `section.name` on cfg with type checking; unknown keys raise ConfigError naming the choices.
    `ensemble=E` is short for `ensemble.size=E`."""
    if key == "ensemble":
        key = "ensemble.size"
    section, _, name = key.partition(".")
    if section not in SECTIONS or not name:
        raise ConfigError(f"unknown key {shown(key)}; keys look like SECTION.NAME with SECTION one of "
                          f"{', '.join(SECTIONS)}")
    obj = getattr(cfg, section)
    hints = typing.get_type_hints(type(obj))
    if section == "task" and name not in hints:
        _need(cfg.task.name in tasks.names(), "task.name", "one of " + ", ".join(tasks.names()), cfg.task.name)
        task_cls = tasks.task_class(cfg.task.name)
        task_hints = typing.get_type_hints(task_cls)
        if name not in task_hints:
            allowed = ["name", "format", "n_points"] + list(task_hints)
            raise ConfigError(f"unknown key {shown(key)}; task keys: {', '.join(allowed)}")
        cfg.task.params[name] = _coerce(key, task_hints[name], value)
        return
    if section == "task" and name == "params":
        for k, v in (value or {}).items():
            set_value(cfg, f"task.{k}", v)
        return
    if name not in hints:
        raise ConfigError(f"unknown key {shown(key)}; {section} keys: {', '.join(hints)}")
    setattr(obj, name, _coerce(key, hints[name], value))


def apply_overrides(cfg: RunConfig, overrides) -> RunConfig:
    """Apply {key: value} or ["key=value", ...]; returns a validated copy."""
    cfg = copy.deepcopy(cfg)
    items = overrides.items() if isinstance(overrides, dict) else [_split(o) for o in overrides or []]
    for key, value in items:
        set_value(cfg, key, value)
    return cfg.validate()


def _split(text: str) -> tuple[str, str]:
    key, eq, value = text.partition("=")
    if not eq or not key:
        raise ConfigError(f"override {shown(text)} must look like key=value (e.g. train.steps=500)")
    return key.strip(), value.strip()


def preset_names() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("lab.presets").iterdir() if p.name.endswith(".toml"))


def load_preset(name: str) -> RunConfig:
    """A preset by name (a TOML file in lab/presets), or a path to a .toml or .json config file."""
    path = Path(name)
    if path.suffix in (".toml", ".json") and path.is_file():
        text = path.read_text()
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
        data.setdefault("preset", path.stem)
        return RunConfig.from_dict(data).validate()
    if name not in preset_names():
        raise ConfigError(f"unknown preset {shown(name)}; presets: {', '.join(preset_names())} (or a .toml/.json file)")
    data = tomllib.loads(resources.files("lab.presets").joinpath(f"{name}.toml").read_text())
    data["preset"] = name
    return RunConfig.from_dict(data).validate()


def make_config(preset, overrides=None) -> RunConfig:
    """Preset name/path, RunConfig or dict, plus overrides -> a validated, resolved RunConfig."""
    if isinstance(preset, RunConfig):
        cfg = preset
    elif isinstance(preset, dict):
        cfg = RunConfig.from_dict(preset)
    else:
        cfg = load_preset(str(preset))
    return apply_overrides(cfg, overrides).resolved()
