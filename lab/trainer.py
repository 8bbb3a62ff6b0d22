"""The trainer: seeded data stream, Adam/AdamW with warm-up and cosine schedules, gradient clipping,
Garg's curriculum, loss over all prefixes or the query only, checkpoints with exact resume.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import torch
from tqdm.auto import tqdm

import tasks

from . import runlock
from .config import DEFAULT_THREADS, ConfigError, RunConfig, TrainConfig, make_config
from .ensemble import EnsembleTrainer, is_ensemble
from .folders import claim_out_folder
from .losses import pointwise_loss, set_cross_entropy
from .model import Transformer, build_model
from .optimizers import make_optimizer
from .runs import (
    CHECKPOINT,
    CONFIG,
    METRICS,
    STATUS,
    WEIGHTS,
    Run,
    RunFileError,
    atomic_torch_save,
    atomic_write_bytes,
    atomic_write_json,
    new_run_dir,
    read_json_file,
    read_metrics,
    resume_command,
    safe_torch_load,
    write_safetensors,
)
from .schedule import data_seed, lr_at


class TrainingDiverged(RuntimeError):
    """The loss became NaN or inf; the last good checkpoint is kept."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM through `lab`) during training: the last checkpoint is kept; `.out` is the run folder."""

    def __init__(self, out: Path, step: int):
        super().__init__(f"interrupted {out} at step {step}")
        self.out, self.step = out, step


def thread_count(cfg: TrainConfig) -> int:
    """train.threads, else $OMP_NUM_THREADS, else DEFAULT_THREADS (on a loaded 2-core machine the default torch
    threads ran 12x slower than one thread: OpenMP workers spin waiting for cores)."""
    if cfg.threads:
        return cfg.threads
    env = os.environ.get("OMP_NUM_THREADS", "")
    return int(env) if env.isdigit() and int(env) > 0 else DEFAULT_THREADS


def idle_cores() -> int:
    """The cores nothing else is using now: the machine's cores less its 1-minute load average, at least 1. What a
    single interactive training takes (`lab demo`: tiny-linreg on 2 idle cores 18.2 steps/s, one thread 11.9); beside
    other work one thread each stays the default (thread_count)."""
    cores = os.cpu_count() or 1
    return max(1, min(cores, round(cores - os.getloadavg()[0])))


@contextmanager
def torch_threads(cfg: TrainConfig):
    """torch's intra-op threads set to thread_count(cfg) for the body, then put back."""
    before = torch.get_num_threads()
    torch.set_num_threads(thread_count(cfg))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device must be auto or cpu on this machine (no CUDA device); got 'cuda'")
    return torch.device(name)


def prompt_loss(model: Transformer, fmt: tasks.formats.Format, p: tasks.Prompts, kind: str,
                objective: str = "mse") -> torch.Tensor:
    """The task's loss (`objective`) averaged over all predicted prefixes (Garg) or over the query only; "set": one
    prediction per prompt, a class out of a target set (graph search)."""
    preds, targets = fmt.outputs(model, p), fmt.targets(p)  # [B, m] (or logits [B, C] and a target set [B, C])
    if objective == "set":
        return set_cross_entropy(preds, targets).mean()
    if kind == "query":
        preds, targets = preds[:, -1], targets[:, -1]
    return pointwise_loss(preds, targets, objective).mean()


def _first_difference(a: dict, b: dict, prefix: str = "") -> str | None:
    """The first dotted key whose value differs between two nested dicts, or None."""
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            found = _first_difference(va, vb, f"{prefix}{key}.")
            if found:
                return found
        elif va != vb:
            return prefix + key
    return None


def check_same_run(out: Path, cfg: RunConfig) -> None:
    """An existing run folder may be resumed (or extended with more steps) only with the same config."""
    try:
        saved = RunConfig.from_dict(read_json_file(out / CONFIG)).to_dict()
    except ConfigError as e:
        raise RunFileError(f"{out / CONFIG} is not a config the lab can use: {e}") from None
    new = cfg.to_dict()
    for d in (saved, new):
        d["train"].pop("steps"), d["train"].pop("threads", None), d.pop("preset")
    diff = _first_difference(saved, new)
    if diff:
        raise ConfigError(f"{out} holds a run with a different config ({diff}); use another --out to start a new run")


def _restore(out: Path, engine, device) -> int:
    """Load the last checkpoint into the engine (weights and optimiser) and drop metrics logged after it; returns
    its step. Nothing else needs restoring: the data stream is a function of (seed, step), there is no dropout."""
    ckpt = safe_torch_load(out / CHECKPOINT, map_location=device)
    try:
        engine.load_state_dict(ckpt)
    except (KeyError, RuntimeError, ValueError, TypeError):
        raise RunFileError(f"{out / CHECKPOINT} does not hold this run's weights and optimiser state "
                           f"(not written by the lab for {out / CONFIG})") from None
    step = int(ckpt["step"])
    kept = [r for r in read_metrics(out / METRICS) if r["step"] <= step]
    atomic_write_bytes(out / METRICS, "".join(json.dumps(r) + "\n" for r in kept).encode())
    return step


class Diverged(Exception):
    """Raised by an engine's step: what became NaN/inf."""


class SoloEngine:
    """One model, torch.optim.Adam/AdamW: the plain training step."""

    def __init__(self, cfg: RunConfig, device):
        self.cfg, self.device = cfg, device
        self.task, self.fmt = cfg.task.build(), tasks.formats.get(cfg.task.format)
        self.model = build_model(cfg.model, seed=cfg.train.seed).to(device)
        self.opt = make_optimizer(self.model, cfg.train)
        self.loss = float("nan")

    def step(self, step: int, d_active, n_points: int) -> None:
        tc = self.cfg.train
        for group in self.opt.param_groups:
            group["lr"] = lr_at(tc, step)
        task = self.cfg.curriculum.task_at(self.task, step)
        p = task.sample(tc.batch_size, n_points, seed=data_seed(tc.seed, step), d_active=d_active, device=self.device)
        loss = prompt_loss(self.model, self.fmt, p, tc.loss, getattr(self.task, "objective", "mse"))
        if not torch.isfinite(loss):
            raise Diverged(f"the loss became {loss.item()}")
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if tc.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), tc.grad_clip)
        self.opt.step()
        self.loss = loss.item()

    def log_fields(self) -> dict:
        return {"loss": self.loss}

    def check_healthy(self) -> None:
        """Raise Diverged if training cannot go on (checked before every checkpoint)."""
        if not all(torch.isfinite(p).all() for p in self.model.parameters()):
            raise Diverged("the weights became NaN or inf")

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.opt.state_dict()}

    def load_state_dict(self, ckpt: dict) -> None:
        self.model.load_state_dict(ckpt["model"])
        self.opt.load_state_dict(ckpt["optimizer"])


class EnsembleEngine(EnsembleTrainer):
    """E models as one stacked computation (lab/ensemble.py); a member that diverges is frozen and reported."""

    def __init__(self, cfg: RunConfig, device):
        super().__init__(cfg, device)
        self.reported: set[int] = set()

    def log_fields(self) -> dict:
        losses, active = self.losses.tolist(), self.active.tolist()
        alive = [x for x, a in zip(losses, active) if a]
        diverged = {i: s for i, s in enumerate(self.diverged_at.tolist()) if s >= 0}
        for i in sorted(set(diverged) - self.reported):
            tqdm.write(f"member {i} diverged at step {diverged[i]} (NaN/inf); it is frozen, the others go on",
                       file=sys.stderr)
        self.reported |= set(diverged)
        if not alive:
            raise Diverged("every member of the ensemble diverged")
        return {"loss": sum(alive) / len(alive), "losses": [x if a else None for x, a in zip(losses, active)],
                "diverged": diverged}

    def check_healthy(self) -> None:
        """Raise Diverged when no member is left (a diverged member is frozen at its last finite weights)."""
        if not bool(self.active.any()):
            raise Diverged("every member of the ensemble diverged")

    def state_dict(self) -> dict:
        return {"ensemble": self.E, **super().state_dict()}


def make_engine(cfg: RunConfig, device):
    return EnsembleEngine(cfg, device) if is_ensemble(cfg) else SoloEngine(cfg, device)


def train(preset, overrides=None, out=None, quiet: bool = False, callback=None) -> Run:
    """Train a preset (name, file, dict or RunConfig) with overrides into run folder `out`; returns the Run.

    With ensemble.size = E > 1 the run trains E models at once (member i = seed train.seed + i; `run.member(i)`).
    If `out` already holds this run, training resumes from its last checkpoint. `callback(step)` is called
    after every optimiser step. Bad config or --out -> ConfigError / RunFileError before anything is written;
    a folder another live process trains -> runlock.RunLocked.
    """
    cfg = make_config(preset, overrides)
    device = resolve_device(cfg.train.device)
    out = Path(out) if out else new_run_dir(cfg.preset or "run")
    created = not out.exists()
    claim_out_folder(out, "run")
    made = os.stat(out) if created else None
    with runlock.hold(out) as stale:
        if stale:  # said even with quiet: the folder changes hands
            print(f"{out}: its last trainer (process {stale.get('pid')}) is gone without finishing; taking over",
                  file=sys.stderr)
        try:
            with torch_threads(cfg.train):
                return _train_held(cfg, device, out, quiet, callback)
        except BaseException:
            if made and _same_folder(out, made) and not (out / CHECKPOINT).is_file():  # nothing kept: no folder
                shutil.rmtree(out, ignore_errors=True)
            raise


def _advice(cfg: RunConfig, step: int, what: str) -> str:
    """What to change after a divergence, fitted to its cause and to what the config already does."""
    tc = cfg.train
    if step == 0 and what.startswith("the weights"):
        return f"model.init_std = {cfg.model.init_std:g} gives weights float32 cannot hold; lower it"
    lrs = f"lower ensemble.lrs (now {', '.join(f'{x:g}' for x in cfg.ensemble.lrs)})" if cfg.ensemble.lrs else \
        f"a lower train.lr (now {tc.lr:g}; e.g. train.lr={tc.lr / 10:g})"
    tips = [lrs]
    if not tc.grad_clip:
        tips.append("train.grad_clip=1")
    if not tc.warmup_steps:
        tips.append(f"a warm-up (e.g. train.warmup_steps={max(10, min(1000, tc.steps // 10))})")
    return "Try " + ", ".join(tips[:-1]) + (" or " if len(tips) > 1 else "") + tips[-1]


def _same_folder(out: Path, folder: os.stat_result) -> bool:
    """`out` is still the folder `folder` was stat'ed from (not deleted, moved away or replaced by another)."""
    try:
        now = os.stat(out)
    except OSError:
        return False
    return (now.st_dev, now.st_ino) == (folder.st_dev, folder.st_ino)


def _check_still_there(out: Path, folder: os.stat_result, step: int) -> None:
    """Stop with one line when the run folder was deleted, moved or replaced during training: writing on would
    make a new folder of checkpoints without their config and metrics (what a deleted folder looked like)."""
    if not (_same_folder(out, folder) and (out / CONFIG).is_file()):
        raise RunFileError(f"{out} was deleted, moved or replaced while training: stopped at step {step}, writing "
                           "nothing more (train again into a folder of its own)")


def _train_held(cfg: RunConfig, device, out: Path, quiet: bool, callback) -> Run:
    """The training loop proper, with `out` created and its run lock held."""
    if (out / CONFIG).is_file():
        check_same_run(out, cfg)
    tc = cfg.train
    engine = make_engine(cfg, device)
    start = _restore(out, engine, device) if (out / CHECKPOINT).is_file() else 0
    if start and not quiet:
        print(f"{out} is already trained to step {start}" if start >= cfg.train.steps
              else f"resuming {out} from step {start}")
    atomic_write_json(out / CONFIG, cfg.to_dict())
    prompts_per_step, d = tc.batch_size * cfg.ensemble.size, cfg.task.build().d
    folder = os.stat(out)  # the folder this run writes: one deleted or replaced under it stops the training

    def save(step: int):
        try:
            engine.check_healthy()
        except Diverged as e:
            fail(step, str(e))
        _check_still_there(out, folder, step)
        state = engine.state_dict()
        write_safetensors(out / WEIGHTS, state["model"], {"step": step})
        atomic_torch_save(out / CHECKPOINT, {"step": step, **state})
        atomic_write_json(out / STATUS, {"status": "done" if step >= tc.steps else "running", "step": step,
                                         "steps": tc.steps})

    def fail(step: int, what: str):
        last = int(safe_torch_load(out / CHECKPOINT)["step"]) if (out / CHECKPOINT).is_file() else None
        kept = f"the last good checkpoint (step {last}) is kept" if last is not None else "no checkpoint was written"
        msg = f"training stopped at step {step}: {what}; {kept} in {out}. {_advice(cfg, step, what)}"
        atomic_write_json(out / STATUS, {"status": "diverged", "step": step, "message": msg})
        raise TrainingDiverged(msg)

    if start == 0:
        save(0)
    bar = tqdm(total=tc.steps, initial=start, disable=quiet or start >= tc.steps, desc=out.name, dynamic_ncols=True,
               mininterval=0.2 if sys.stderr.isatty() else 20.0)  # a log file gets a line every 20 s
    metrics_file = open(out / METRICS, "a")
    t_window, step_window = time.perf_counter(), start
    step = start
    try:
        engine.model.train()
        while step < tc.steps:
            dims, n_points = cfg.curriculum.at(step) if cfg.curriculum.enabled else (None, cfg.task.n_points)
            try:
                engine.step(step, dims, n_points)
                step += 1
                bar.update(1)
                if step % tc.log_every == 0 or step == tc.steps:
                    fields = engine.log_fields()
                    now = time.perf_counter()
                    steps_per_s = (step - step_window) / max(now - t_window, 1e-9)
                    row = {"step": step, **fields, "lr": lr_at(tc, step - 1), "n_points": n_points,
                           "d_active": dims or d, "steps_per_s": steps_per_s,
                           "prompts_per_s": steps_per_s * prompts_per_step}
                    metrics_file.write(json.dumps(row) + "\n")
                    metrics_file.flush()
                    bar.set_postfix(loss=f"{row['loss']:.4g}", refresh=False)
                    t_window, step_window = now, step
            except Diverged as e:
                fail(step, str(e))
            if step % tc.checkpoint_every == 0 or step == tc.steps:
                save(step)
            if callback is not None:
                callback(step)
    except KeyboardInterrupt:
        if (out / STATUS).is_file():
            status = read_json_file(out / STATUS)
            atomic_write_json(out / STATUS, {**status, "status": "interrupted", "interrupted_at": step,
                                             "message": f"interrupted at step {step}; resume: {resume_command(out)}"})
        raise TrainingInterrupted(out, step) from None
    finally:
        metrics_file.close()
        bar.close()
    return Run(out)
