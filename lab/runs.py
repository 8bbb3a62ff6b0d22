"""The run store: one folder per run, atomic writes, safe loading (weights_only), and `load_run`."""
from __future__ import annotations

import io
import json
import os
import tempfile
import time
import warnings
from pathlib import Path

import torch

import tasks

from .config import RunConfig
from .model import Transformer, model_class

CONFIG, METRICS, CHECKPOINT, STATUS = "config.json", "metrics.jsonl", "checkpoint.pt", "status.json"


def runs_root() -> Path:
    """Where runs live: $LAB_RUNS, else ./runs."""
    return Path(os.environ.get("LAB_RUNS", "runs"))


def new_run_dir(name: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = runs_root() / f"{name}-{stamp}"
    i = 1
    while path.exists():
        path, i = runs_root() / f"{name}-{stamp}-{i}", i + 1
    return path


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, then rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2) + "\n").encode())


def atomic_torch_save(path: Path, obj) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def safe_torch_load(path: Path, map_location="cpu"):
    """Load tensors and plain containers only: a run folder from someone else never executes code."""
    return torch.load(path, map_location=map_location, weights_only=True)


def read_metrics(path: Path) -> list[dict]:
    """Rows of metrics.jsonl; a half-written last line (a run being written) is skipped."""
    rows = []
    if Path(path).exists():
        for line in Path(path).read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows


class Run:
    """A run folder: .config, .task, .format, .model (loaded from the last checkpoint), .metrics, .predict()."""

    def __init__(self, path, device: str = "cpu"):
        self.path = Path(path)
        if not (self.path / CONFIG).is_file():
            raise FileNotFoundError(f"{self.path} is not a run folder (no {CONFIG})")
        self.config = RunConfig.from_dict(json.loads((self.path / CONFIG).read_text())).validate()
        self.device = device
        self.task = self.config.task.build()
        self.format = tasks.formats.get(self.config.task.format)
        self._model = None

    @property
    def n_members(self) -> int:
        """How many models the run trained at once (1 for a plain run)."""
        return self.config.ensemble.size

    @property
    def model(self) -> Transformer:
        if self._model is None:
            ckpt = self.path / CHECKPOINT
            if not ckpt.is_file():
                raise FileNotFoundError(f"{self.path} has no checkpoint yet")
            if self.n_members > 1:
                raise ValueError(f"{self.path} is an ensemble of {self.n_members} models; pick one with "
                                 f"run.member(i) (or --member i), i in 0..{self.n_members - 1}")
            model = model_class(self.config.model)(self.config.model)
            model.load_state_dict(safe_torch_load(ckpt)["model"])
            self._model = model.to(self.device).eval()
        return self._model

    @property
    def metrics(self) -> list[dict]:
        return read_metrics(self.path / METRICS)

    @property
    def status(self) -> dict:
        path = self.path / STATUS
        return json.loads(path.read_text()) if path.is_file() else {}

    @torch.no_grad()
    def predict(self, prompts: tasks.Prompts) -> torch.Tensor:
        """Prefix-wise predictions [B, n] (column i sees pairs 0..i-1 and x_i), like probes.solve."""
        model = self.model
        dtype = next(model.parameters()).dtype
        p = prompts.to(device=self.device, dtype=dtype)
        return self.format.predict(model, p).cpu()

    def member(self, i: int) -> "Run":
        """Member i of an ensemble run as a run folder of its own (RUN/members/i): the solo run it equals, with
        its config (seed train.seed + i), weights, optimiser state and loss curve, so every probe works on it and
        `lab train` can extend it. Written from the ensemble's last checkpoint, again whenever that is newer."""
        from .ensemble import member_config, member_state
        from .trainer import make_optimizer

        E = self.n_members
        if E == 1:
            raise ValueError(f"{self.path} is a single-model run, not an ensemble; use the run itself")
        if not 0 <= i < E:
            raise ValueError(f"member must be in 0..{E - 1} for {self.path}; got {i}")
        ckpt = safe_torch_load(self.path / CHECKPOINT)
        folder = self.path / "members" / str(i)
        if (folder / CHECKPOINT).is_file() and safe_torch_load(folder / CHECKPOINT)["step"] == ckpt["step"]:
            return Run(folder, device=self.device)
        solo = member_config(self.config, i)
        model = Transformer(solo.model)
        model.load_state_dict(member_state(ckpt["model"], i))
        opt_state = ckpt["optimizer"]
        state = {j: {"step": opt_state["steps"][i].to(torch.float32), "exp_avg": m[i].clone(),
                     "exp_avg_sq": v[i].clone()}
                 for j, (m, v) in enumerate(zip(opt_state["exp_avg"], opt_state["exp_avg_sq"]))}
        optimizer = {"state": state, "param_groups": make_optimizer(model, solo.train).state_dict()["param_groups"]}
        diverged_at = int(ckpt["diverged_at"][i])
        rows = [{**{k: v for k, v in r.items() if k not in ("losses", "diverged")}, "loss": r["losses"][i]}
                for r in self.metrics if "losses" in r]
        atomic_write_json(folder / CONFIG, solo.to_dict())
        atomic_write_bytes(folder / METRICS, "".join(json.dumps(r) + "\n" for r in rows).encode())
        atomic_torch_save(folder / CHECKPOINT, {"step": ckpt["step"], "model": model.state_dict(),
                                                "optimizer": optimizer})
        status = {**self.status, "member": i, "ensemble": str(self.path)}
        if diverged_at >= 0:
            status.update(status="diverged", message=f"member {i} diverged at step {diverged_at}; its weights are "
                                                     "those before that step")
        atomic_write_json(folder / STATUS, status)
        return Run(folder, device=self.device)

    def __repr__(self):
        return f"Run({str(self.path)!r}, preset={self.config.preset!r})"


def load_run(path, device: str = "cpu") -> Run:
    return Run(path, device=device)


def scan_runs(root: Path | None = None) -> tuple[list[Run], list[tuple[Path, str]]]:
    """The readable runs under `root` (default $LAB_RUNS), and (folder, why) for each folder with a config.json
    that cannot be read (a bad config never stops the listing)."""
    root = Path(root) if root else runs_root()
    runs, problems = [], []
    for path in sorted(root.iterdir()) if root.is_dir() else []:
        if (path / CONFIG).is_file():
            try:
                runs.append(Run(path))
            except Exception as e:
                problems.append((path, f"unreadable config.json ({type(e).__name__}: {e})"))
    return runs, problems


def list_runs(root: Path | None = None) -> list[Run]:
    """The readable runs under `root` (default $LAB_RUNS); an unreadable folder is skipped with a warning."""
    runs, problems = scan_runs(root)
    for path, why in problems:
        warnings.warn(f"skipping {path}: {why}", stacklevel=2)
    return runs
