"""Many models at once: E independent transformers with stacked weights ([E, ...] on every parameter), trained
as one batched computation.

Member i is the model a solo run with seed train.seed + i would give: the same initial weights (built by
`build_model` with that seed, then stacked), the same data stream (its own batches, drawn from its own seed), its
own loss (per-member losses are summed, not averaged, so each member's gradient is its own), its own gradient
clipping and Adam state. A member whose loss or gradient becomes NaN/inf is frozen and reported; the others go
on. On CUDA the whole step (forward, backward, clipping, Adam) is captured as one CUDA graph per prompt length,
and causal-format lengths are bucketed (padded at the end, padding left out of the loss) so a curriculum
re-captures only a few times.
"""
from __future__ import annotations

import copy

import torch

import tasks

from .config import EnsembleConfig, RunConfig
from .losses import pointwise_loss
from .model import Transformer, build_model
from .schedule import data_seed, lr_at

LENGTH_BUCKET = 8  # points; causal formats pad n_points up to a multiple of this on CUDA


def member_config(cfg: RunConfig, i: int) -> RunConfig:
    """The solo run that member i of cfg's ensemble is: seed ensemble.seeds[i] (default train.seed + i), learning
    rate ensemble.lrs[i] (default train.lr)."""
    solo = copy.deepcopy(cfg)
    solo.train.seed = cfg.ensemble.seeds[i] if cfg.ensemble.seeds else cfg.train.seed + i
    if cfg.ensemble.lrs:
        solo.train.lr = cfg.ensemble.lrs[i]
    solo.ensemble = EnsembleConfig()
    return solo


def stack_models(models: list[Transformer]) -> Transformer:
    """One Transformer(n_models=E) whose member i has models[i]'s weights (the global RNG is left as it was)."""
    with torch.random.fork_rng(devices=[]):
        stack = Transformer(models[0].cfg, n_models=len(models))
    first = next(models[0].parameters())
    stack = stack.to(device=first.device, dtype=first.dtype)
    states = [m.state_dict() for m in models]
    stack.load_state_dict({name: torch.stack([s[name] for s in states]) for name in states[0]})
    return stack


def member_state(stacked_state: dict, i: int) -> dict:
    """Member i's slice of a stacked state dict: a plain Transformer's state dict."""
    return {name: t[i].clone() for name, t in stacked_state.items()}


def member_losses(model: Transformer, fmt: tasks.formats.Format, inputs, targets, weights,
                  objective: str = "mse") -> torch.Tensor:
    """Per-member weighted loss [E]: inputs [E, B, T, d_in], targets [E, B, m], weights [m] (summing to 1 over
    the predictions that count: 1/m each for loss 'all', one-hot at the query for loss 'query')."""
    E, B = inputs.shape[:2]
    preds = fmt.decode(model(inputs).flatten(0, 1)).view(E, B, -1)  # [E, B, m]
    return (pointwise_loss(preds, targets, objective) * weights).sum(-1).mean(-1)


def flatten_parameters(params: list[torch.Tensor]) -> torch.Tensor:
    """Make every stacked parameter [E, ...] a view into one [E, P] tensor, which is returned: Adam, clipping and
    the divergence check then run as a few operations on one tensor instead of a few per parameter."""
    E = params[0].shape[0]
    flat = torch.cat([p.detach().reshape(E, -1) for p in params], dim=1)
    offset = 0
    for p in params:
        n = p[0].numel()
        p.data = flat[:, offset:offset + n].view(p.shape)
        offset += n
    return flat


def flat_grads(grads: list[torch.Tensor]) -> torch.Tensor:
    """[E, P]: the gradients laid out like `flatten_parameters`' tensor."""
    return torch.cat([g.reshape(g.shape[0], -1) for g in grads], dim=1)


class StackedAdam:
    """Adam (Kingma & Ba 2015, alg. 1) / AdamW (Loshchilov & Hutter 2019) on stacked parameters: the arithmetic
    of torch.optim.Adam per member, with per-member learning rates and step counts, and an update mask so a
    frozen (diverged) member keeps its weights and state. The parameters become views of one [E, P] tensor."""

    def __init__(self, params, n_models: int, lr: float, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, decoupled: bool = False):
        self.params = list(params)
        self.flat = flatten_parameters(self.params)  # [E, P]
        device = self.flat.device
        self.betas, self.eps, self.weight_decay, self.decoupled = betas, eps, weight_decay, decoupled
        self.exp_avg, self.exp_avg_sq = torch.zeros_like(self.flat), torch.zeros_like(self.flat)
        self.steps = torch.zeros(n_models, dtype=torch.float64, device=device)  # per-member Adam step count
        self.lr = torch.full((n_models,), lr, dtype=torch.float64, device=device)

    @torch.no_grad()
    def step(self, grad: torch.Tensor, update: torch.Tensor) -> None:
        """One Adam step, grad [E, P] (see flat_grads), for the members where `update` [E] is True."""
        b1, b2 = self.betas
        p, m, v = self.flat, self.exp_avg, self.exp_avg_sq
        self.steps.add_(update.to(self.steps.dtype))
        steps = self.steps.clamp(min=1)  # a member that never stepped is not updated anyway
        step_size = (self.lr / (1 - b1 ** steps)).to(p.dtype)[:, None]  # as torch computes it, in float64
        bias2_sqrt = (1 - b2 ** steps).sqrt().to(p.dtype)[:, None]
        keep = update[:, None]
        if self.weight_decay and not self.decoupled:
            grad = grad + self.weight_decay * p
        m_new = m.lerp(grad, 1 - b1)
        v_new = v * b2 + (1 - b2) * grad * grad
        p_new = p * (1 - self.lr * self.weight_decay).to(p.dtype)[:, None] if self.decoupled else p
        p_new = p_new - step_size * (m_new / (v_new.sqrt() / bias2_sqrt + self.eps))
        m.copy_(torch.where(keep, m_new, m))
        v.copy_(torch.where(keep, v_new, v))
        p.copy_(torch.where(keep, p_new, p))

    def _per_parameter(self, flat: torch.Tensor) -> list[torch.Tensor]:
        out, offset = [], 0
        for p in self.params:
            n = p[0].numel()
            out.append(flat[:, offset:offset + n].reshape(p.shape))
            offset += n
        return out

    def state_dict(self) -> dict:
        """Moments per parameter ([E, ...] each, in model.parameters() order) and the step counts."""
        return {"exp_avg": self._per_parameter(self.exp_avg), "exp_avg_sq": self._per_parameter(self.exp_avg_sq),
                "steps": self.steps}

    def load_state_dict(self, state: dict) -> None:
        self.exp_avg.copy_(flat_grads(state["exp_avg"]))
        self.exp_avg_sq.copy_(flat_grads(state["exp_avg_sq"]))
        self.steps.copy_(state["steps"])


def _bucket(n_points: int, most: int) -> int:
    return min(most, -(-n_points // LENGTH_BUCKET) * LENGTH_BUCKET)


class EnsembleTrainer:
    """The training step of an ensemble: sample each member's batch, per-member losses, clipping, Adam.

    `step(step, d_active, n_points)` runs one optimiser step; `losses`, `active` and `diverged_at` ([E] device
    tensors) say how each member is doing (read them at logging time: reading forces a device sync).
    """

    def __init__(self, cfg: RunConfig, device: torch.device, cuda_graphs: bool = True):
        E, tc = cfg.ensemble.size, cfg.train
        self.cfg, self.device, self.E = cfg, device, E
        self.members = [member_config(cfg, i) for i in range(E)]
        self.task, self.fmt = cfg.task.build(), tasks.formats.get(cfg.task.format)
        self.model = stack_models([build_model(cfg.model, seed=m.train.seed) for m in self.members]).to(device)
        self.params = list(self.model.parameters())
        self.opt = StackedAdam(self.params, E, tc.lr, (tc.beta1, tc.beta2), weight_decay=tc.weight_decay,
                               decoupled=tc.optimizer == "adamw")
        self.losses = torch.zeros(E, device=device)
        self.active = torch.ones(E, dtype=torch.bool, device=device)
        self.diverged_at = torch.full((E,), -1, dtype=torch.long, device=device)
        self._step_t = torch.zeros((), dtype=torch.long, device=device)
        self.use_graphs = cuda_graphs and device.type == "cuda"
        self.bucketed = self.use_graphs and self.fmt.mask == "causal" and cfg.model.mask == "causal"
        self._graphs: dict[tuple, dict] = {}
        self._pool = None
        self.graph_captures = 0

    # ---- data -------------------------------------------------------------------------------------------
    def batch(self, step: int, d_active: int | None, n_points: int):
        """Every member's batch for `step`, as its solo run would draw it: inputs [E, B, T, d_in], targets
        [E, B, m], loss weights [m]. Causal formats on CUDA are padded to a bucketed length."""
        B = self.cfg.train.batch_size
        drawn = [self.task.sample(B, n_points, seed=data_seed(m.train.seed, step), d_active=d_active)
                 for m in self.members]
        xs, ys = torch.cat([p.xs for p in drawn]), torch.cat([p.ys for p in drawn])  # [E*B, n, d], [E*B, n]
        n_real = n_points
        if self.bucketed:
            n_pad = _bucket(n_points, max(self.cfg.task.n_points, n_points)) - n_points
            xs = torch.cat([xs, xs.new_zeros(xs.shape[0], n_pad, xs.shape[2])], dim=1)
            ys = torch.cat([ys, ys.new_zeros(ys.shape[0], n_pad)], dim=1)
        p = tasks.Prompts(xs, ys)
        inputs, targets = self.fmt.encode(p), self.fmt.targets(p)
        m = targets.shape[-1]
        weights = torch.zeros(m)
        if self.cfg.train.loss == "query" or m == 1:
            weights[min(m, n_real) - 1] = 1.0
        else:
            weights[:n_real] = 1.0 / n_real
        return inputs.view(self.E, B, *inputs.shape[1:]), targets.view(self.E, B, m), weights

    # ---- one step ---------------------------------------------------------------------------------------
    def _body(self, inputs, targets, weights) -> None:
        """Forward, backward, per-member divergence check, clipping and Adam: everything a CUDA graph captures."""
        losses = member_losses(self.model, self.fmt, inputs, targets, weights,
                               getattr(self.task, "objective", "mse"))  # [E]
        finite = torch.isfinite(losses)
        total = torch.where(self.active & finite, losses, torch.zeros_like(losses)).sum()
        grad = flat_grads(torch.autograd.grad(total, self.params))  # [E, P]
        norms = grad.pow(2).sum(1).sqrt()  # each member's global gradient norm, as clip_grad_norm_ computes it
        ok = finite & torch.isfinite(norms)
        self.diverged_at.copy_(torch.where(self.active & ~ok, self._step_t, self.diverged_at))
        self.active.logical_and_(ok)
        clip = self.cfg.train.grad_clip
        if clip:
            grad = grad * (clip / (norms + 1e-6)).clamp(max=1.0)[:, None]
        self.opt.step(grad, self.active)
        self.losses.copy_(losses.detach())

    def step(self, step: int, d_active: int | None, n_points: int) -> None:
        lrs = torch.tensor([lr_at(m.train, step) for m in self.members], dtype=torch.float64)
        # from pinned memory, so the host does not wait for the previous step: it prepares the next batch while
        # the GPU runs this one
        self.opt.lr.copy_(lrs.pin_memory() if self.use_graphs else lrs, non_blocking=True)
        self._step_t.fill_(step)
        inputs, targets, weights = self.batch(step, d_active, n_points)
        if not self.use_graphs:
            self._body(*(t.to(self.device) for t in (inputs, targets, weights)))
            return
        self._graph_step(inputs, targets, weights)

    def _graph_step(self, inputs, targets, weights) -> None:
        """Replay the captured step for this shape: two eager warm-up steps (Triton compiles, cuBLAS picks), then
        capture once and replay from then on. A capture failure falls back to eager steps, with a warning."""
        key = tuple(inputs.shape)
        entry = self._graphs.get(key)
        if entry is None:
            entry = self._graphs[key] = {"warm": 0, "static": [torch.empty(t.shape, dtype=t.dtype, device=self.device)
                                                               for t in (inputs, targets, weights)]}
        for buf, t in zip(entry["static"], (inputs, targets, weights)):
            buf.copy_(t.pin_memory(), non_blocking=True)
        if "graph" in entry:
            entry["graph"].replay()
            return
        if entry["warm"] < 2 or entry.get("failed"):
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                self._body(*entry["static"])
            torch.cuda.current_stream().wait_stream(side)
            entry["warm"] += 1
            return
        try:
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=self._pool):
                self._body(*entry["static"])
            self._pool = graph.pool()
            entry["graph"] = graph
            self.graph_captures += 1
            graph.replay()  # capturing records the step; this runs it
        except RuntimeError as e:  # pragma: no cover - depends on the GPU stack
            import warnings

            warnings.warn(f"CUDA graph capture failed ({e}); this shape trains eagerly", stacklevel=2)
            entry["failed"] = True
            self._body(*entry["static"])

    # ---- checkpoints ------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.opt.state_dict(), "active": self.active,
                "diverged_at": self.diverged_at}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        self.active.copy_(state["active"])
        self.diverged_at.copy_(state["diverged_at"])


def is_ensemble(cfg: RunConfig) -> bool:
    return cfg.ensemble.size > 1


__all__ = ["member_config", "stack_models", "member_state", "member_losses", "flatten_parameters", "flat_grads",
           "StackedAdam", "EnsembleTrainer", "is_ensemble"]
