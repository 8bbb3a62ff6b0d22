"""The run store: one folder per run, atomic writes, safe loading (weights_only), and `load_run`.

Every file a run folder holds is read through a checked reader here: a truncated, empty or foreign file gives
a one-line RunFileError naming the file and what is wrong, never a parser's traceback."""
from __future__ import annotations

import errno
import json
import os
import pickle
import re
import shlex
import tempfile
import time
import warnings
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save

import tasks

from . import zoo
from .config import ConfigError, RunConfig
from .model import Transformer, model_class
from .runlock import holder

CONFIG, METRICS, CHECKPOINT, STATUS = "config.json", "metrics.jsonl", "checkpoint.pt", "status.json"
WEIGHTS = "model.safetensors"  # the weights alone, beside each checkpoint: a run can be shared without any pickle


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


class RunFileError(ValueError):
    """A run-folder file (or an --out folder) that cannot be used; the message is one line naming it."""


RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")


def check_run_name(name: str) -> str:
    """A run name is one folder name inside the run store: no path separators, no '..', not absolute."""
    if not RUN_NAME.fullmatch(name) or len(name) > 200:
        raise ValueError(f"run name {name!r} must be one folder name (letters, digits, '.', '_', '+', '-'; "
                         "starting with a letter or digit): no '/', no '..'")
    return name


def make_out_folder(path: Path, what: str = "--out") -> Path:
    """Create an output folder, or refuse in one line, before anything is written, one that is a file, lies under
    a file, or cannot be created or written (a read-only file system, say); returns the path."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise RunFileError(f"{what} {path} is a file, not a folder; choose a folder (new or empty)")
    parent = path
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise RunFileError(f"{what} {path} lies under {parent}, which is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise RunFileError(f"{what} {path} cannot be written: {parent} is not writable by this user")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RunFileError(f"{what} {path} cannot be created: {e.strerror or e}") from None
    return path


def _file_mode() -> int:
    """0o666 less the process umask: what open() gives a new file (mkstemp's 0o600 would hide a shared store)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)  # no /proc: read the umask by setting it, and put it back at once
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    atomic_write(path, lambda f: f.write(data))


def atomic_write(path: Path, write) -> None:
    """`write(f)` into a temporary file in the same folder, then rename: readers never see half a file. The file
    gets the permissions any file the user writes gets (the umask), so a group-shared run store stays readable."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, _file_mode())
        with os.fdopen(fd, "wb") as raw:
            f = _Recording(raw)
            try:
                write(f)
            except RuntimeError:  # torch's zip writer turns the file's OSError into a RuntimeError of its own
                if f.error is None:
                    raise
                raise f.error from None
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        full = " (the disk is full: free some space, then run the same command again)" \
            if e.errno in (errno.ENOSPC, errno.EDQUOT) else ""
        raise OSError(e.errno, f"cannot write {path}: {e.strerror or e}{full}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class _Recording:
    """A binary file that remembers the OSError its write raised (what torch.save hides in a RuntimeError)."""

    def __init__(self, f):
        self.f, self.error = f, None

    def write(self, data) -> int:
        try:
            return self.f.write(data)
        except OSError as e:
            self.error = e
            raise

    def __getattr__(self, name):
        return getattr(self.f, name)


def atomic_write_json(path: Path, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2) + "\n").encode())


def atomic_torch_save(path: Path, obj) -> None:
    """torch.save straight into the temporary file: no copy of the checkpoint in memory (a model's weights, its
    optimiser state, and the bytes of both at once would be what a large model's training peaks at)."""
    atomic_write(path, lambda f: torch.save(obj, f))


def safe_torch_load(path: Path, map_location="cpu") -> dict:
    """A checkpoint the lab wrote: tensors and plain containers only (weights_only), so a run folder from someone
    else never executes code. Anything else is a RunFileError naming the file."""
    try:
        with warnings.catch_warnings():  # torch's own notes on odd pickles ("please file an issue") are not ours
            warnings.simplefilter("ignore")
            ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except pickle.UnpicklingError:
        raise RunFileError(f"{path} is not a readable checkpoint: it holds objects other than tensors, which the lab "
                           "refuses to load (nothing in it was run)") from None
    except Exception:
        raise RunFileError(f"{path} is not a readable checkpoint (truncated or not written by the lab)") from None
    if not (isinstance(ckpt, dict) and isinstance(ckpt.get("step"), int) and isinstance(ckpt.get("model"), dict)):
        raise RunFileError(f"{path} is not a readable checkpoint (not written by the lab: no step and weights)")
    return ckpt


def write_safetensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """Tensors to a safetensors file, atomically (shared or strided tensors are copied first)."""
    tensors = {k: v.detach().contiguous().clone().cpu() for k, v in tensors.items()}
    atomic_write_bytes(path, save(tensors, metadata={k: str(v) for k, v in (metadata or {}).items()}))


def read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors, metadata) from a safetensors file; a truncated or foreign file is a RunFileError naming it."""
    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})
    except FileNotFoundError:
        raise
    except Exception:
        raise RunFileError(f"{path} is not a readable safetensors file (truncated or not written by the lab)") from None


def read_json_file(path: Path) -> dict:
    """A JSON object from a run-folder file; a truncated, empty or foreign file is a RunFileError naming it."""
    try:
        text = Path(path).read_bytes().decode()
    except UnicodeDecodeError:
        raise RunFileError(f"{path} is not a JSON file (binary data)") from None
    except OSError as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise RunFileError(f"{path} cannot be read: {e.strerror or e}") from None
    if not text.strip():
        raise RunFileError(f"{path} is empty (a write was cut short?)")
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise RunFileError(f"{path} is not valid JSON ({e.msg} at line {e.lineno}; truncated?)") from None
    if not isinstance(obj, dict):
        raise RunFileError(f"{path} holds a JSON {type(obj).__name__}, not the object the lab writes")
    return obj


def read_jsonl(path: Path, keep=lambda row: True) -> list[dict]:
    """The JSON objects of a JSON-lines file for which keep(row) holds ([] if there is no file); a half-written last
    line (a file being written) or any other line that is not such an object is skipped."""
    rows = []
    if Path(path).is_file():
        for line in Path(path).read_bytes().decode(errors="replace").splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if isinstance(row, dict) and keep(row):
                rows.append(row)
    return rows


def read_metrics(path: Path) -> list[dict]:
    """Rows of metrics.jsonl: objects with an integer step (see read_jsonl)."""
    return read_jsonl(path, lambda row: isinstance(row.get("step"), int))


def resume_command(path: Path) -> str:
    """The exact command that resumes the run in `path` (its saved config, the same folder)."""
    return shlex.join(["lab", "train", str(Path(path) / CONFIG), "--out", str(path)])


class Run:
    """A run folder: .config, .task, .format, .model (loaded from the last checkpoint), .metrics, .predict().
    `path` may name a shipped model, "zoo:NAME" (lab/zoo/): it is read-only, and `.out` is where its analyses go."""

    def __init__(self, path, device: str = "cpu"):
        self.zoo_name = zoo.name_of(path)
        self.path = zoo.ROOT / self.zoo_name if self.zoo_name else Path(path)
        if not (self.path / CONFIG).is_file():
            raise FileNotFoundError(f"{self.path} is not a run folder (no {CONFIG})")
        try:
            self.config = RunConfig.from_dict(read_json_file(self.path / CONFIG)).validate()
        except ConfigError as e:
            raise RunFileError(f"{self.path / CONFIG} is not a config the lab can use: {e}") from None
        self.device = device
        self.task = self.config.task.build()
        self.format = tasks.formats.get(self.config.task.format)
        self._model = None
        self.step: int | None = None  # the step of the checkpoint .model was loaded from

    @property
    def out(self) -> Path:
        """Where analyses of this run write eval/ and figures/: the run folder, or $LAB_RUNS/zoo/NAME for a zoo
        model (nothing in lab/zoo/ is ever written)."""
        return zoo.out_folder(self.zoo_name, runs_root()) if self.zoo_name else self.path

    @property
    def n_members(self) -> int:
        """How many models the run trained at once (1 for a plain run)."""
        return self.config.ensemble.size

    @property
    def model(self) -> Transformer:
        if self._model is None:
            ckpt = self.path / CHECKPOINT
            if not ckpt.is_file() and not (self.path / WEIGHTS).is_file():
                raise FileNotFoundError(f"{self.path} has no checkpoint yet")
            if self.n_members > 1:
                raise ValueError(f"{self.path} is an ensemble of {self.n_members} models; pick one with "
                                 f"run.member(i) (or --member i), i in 0..{self.n_members - 1}")
            model = model_class(self.config.model)(self.config.model)
            if ckpt.is_file():
                state = safe_torch_load(ckpt)
                weights, step = state["model"], state["step"]
            else:  # a run shared as config.json + model.safetensors
                ckpt = self.path / WEIGHTS
                weights, meta = read_safetensors(ckpt)
                step = int(meta["step"]) if meta.get("step", "").isdigit() else None
            try:
                model.load_state_dict(weights)
            except RuntimeError:  # missing, unexpected or misshapen weights
                raise RunFileError(f"{ckpt} does not hold the weights of the model in {CONFIG}") from None
            self.step = step
            self._model = model.to(self.device).eval()
        return self._model

    @property
    def metrics(self) -> list[dict]:
        return read_metrics(self.path / METRICS)

    @property
    def status(self) -> dict:
        """status.json ({} before the first checkpoint). A run that says "running" while no process holds its lock
        was killed: it reads as "interrupted" at the step of its last checkpoint, with the command that resumes it."""
        path = self.path / STATUS
        status = read_json_file(path) if path.is_file() else {}
        if status.get("status") == "running" and holder(self.path) is None:
            status = {**status, "status": "interrupted", "message": f"its training process stopped at or after the "
                      f"checkpoint of step {status.get('step')}; resume: {resume_command(self.path)}"}
        return status

    @torch.no_grad()
    def predict(self, prompts: tasks.Prompts) -> torch.Tensor:
        """Prefix-wise predictions [B, n] (column i sees pairs 0..i-1 and x_i), like probes.solve."""
        model = self.model
        d = self.task.d
        paired = self.config.task.format != "graph"  # graph prompts: edges [B, E, 2], targets of their own shape
        if prompts.xs.dim() != 3 or prompts.xs.shape[-1] != d or (paired and prompts.ys.shape != prompts.xs.shape[:2]):
            raise ValueError(f"prompts must be xs [B, n, {d}] and ys [B, n] for this run's task "
                             f"({self.config.task.name}, d = {d}); got xs {list(prompts.xs.shape)}, "
                             f"ys {list(prompts.ys.shape)}")
        dtype = next(model.parameters()).dtype
        p = prompts.to(device=self.device, dtype=dtype)
        return self.format.predict(model, p).cpu()

    def member(self, i: int) -> Run:
        """Member i of an ensemble run as a run folder of its own (RUN/members/i): the solo run it equals, with
        its config (seed train.seed + i), weights, optimiser state and loss curve, so every probe works on it and
        `lab train` can extend it. Written from the ensemble's last checkpoint, again whenever that is newer."""
        from .ensemble import member_config, member_state
        from .optimizers import make_optimizer

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
        where = zoo.PREFIX + self.zoo_name if self.zoo_name else str(self.path)
        return f"Run({where!r}, preset={self.config.preset!r})"


def nonfinite_weight(weights: dict[str, torch.Tensor]) -> str | None:
    """The name of the first weight tensor holding a NaN or an infinity, None when all are finite."""
    return next((name for name, w in weights.items() if w.is_floating_point() and not torch.isfinite(w).all()),
                None)


def require_finite_weights(run: Run) -> None:
    """A run whose weights hold NaN or infinity (a diverged training's last checkpoint) stops here, in one line:
    nothing it computes would mean anything."""
    bad = nonfinite_weight(run.model.state_dict())
    if bad is not None:
        raise RunFileError(f"{run.path} has NaN or infinite weights ({bad}, step {run.step}): its training diverged; "
                           "train it again with a lower train.lr (nothing was evaluated or written)")


def load_run(path, device: str = "cpu") -> Run:
    return Run(path, device=device)


def scan_runs(root: Path | None = None) -> tuple[list[Run], list[tuple[Path, str]]]:
    """The readable runs under `root` (default $LAB_RUNS), and (folder, why) for each folder with a config.json
    whose config or status cannot be read (one bad folder never stops the listing)."""
    root = Path(root) if root else runs_root()
    runs, problems = [], []
    for path in sorted(root.iterdir()) if root.is_dir() else []:
        if (path / CONFIG).is_file():
            try:
                run = Run(path)
                run.status  # noqa: B018 - read now: an unreadable status.json skips the folder here
                runs.append(run)
            except (RunFileError, OSError) as e:
                problems.append((path, str(e)))
    return runs, problems


def list_runs(root: Path | None = None) -> list[Run]:
    """The readable runs under `root` (default $LAB_RUNS); `scan_runs` also says which folders it skipped."""
    return scan_runs(root)[0]
