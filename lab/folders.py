"""What an output folder holds, and the one rule every command that writes a folder follows: a folder that holds
something else (another sweep, another experiment's results, a training run, an export) is refused in one line
before anything is written; a new or empty folder, or one that holds this same thing (to resume it), is used."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from safetensors import safe_open

from .runlock import LOCK
from .runs import CHECKPOINT, CONFIG, METRICS, WEIGHTS, RunFileError, make_out_folder, read_json_file

SWEEP, EXPERIMENT, RESULT = "sweep.json", "experiment.json", "result.json"
HOLDS = {"run": "a training run", "sweep": "a sweep", "experiment": "an experiment's results",
         "tl-export": "a TransformerLens export", "run-export": "a shared run (lab export --to safetensors)",
         "other": "files that are not the lab's"}


def weights_format(path: Path) -> str:
    """The `format` a safetensors file's metadata names ("" when none, or when it is not readable)."""
    try:
        with safe_open(str(path), framework="pt") as f:
            return (f.metadata() or {}).get("format", "")
    except Exception:  # noqa: BLE001 - any unreadable file simply names no format
        return ""


def kind_of(folder: Path) -> str | None:
    """Which of HOLDS the folder holds; None when it does not exist or is empty (a lock file aside)."""
    folder = Path(folder)
    if not folder.is_dir() or not any(p.name != LOCK for p in folder.iterdir()):
        return None
    if (folder / SWEEP).is_file():
        return "sweep"
    if (folder / EXPERIMENT).is_file() or (folder / RESULT).is_file():
        return "experiment"
    if (folder / WEIGHTS).is_file() and weights_format(folder / WEIGHTS) == "transformer_lens":
        return "tl-export"
    if (folder / CONFIG).is_file():
        trained = (folder / CHECKPOINT).exists() or (folder / METRICS).exists()
        return "run" if trained or not (folder / WEIGHTS).exists() else "run-export"
    return "other"


def describe(folder: Path) -> str:
    """What the folder holds, in words, with the experiment's name where it has one."""
    kind = kind_of(folder)
    if kind == "experiment":
        for name in (EXPERIMENT, RESULT):
            try:
                data = read_json_file(Path(folder) / name)
                return f"the results of experiment {data.get('name')!r} at scale {data.get('scale')!r}"
            except (OSError, ValueError):
                continue
    return HOLDS.get(kind, "nothing")


def claim_out_folder(folder, kind: str, same: Callable[[Path], bool] = lambda path: True, what: str = "--out",
                     differs: str = "") -> Path:
    """Create `folder` for writing a `kind` (a key of HOLDS), or refuse it in one line (RunFileError) when it holds
    anything else, or a `kind` for which `same(folder)` is false (`differs` says how); returns the path."""
    folder = Path(folder)
    held = kind_of(folder)
    if held is not None and held != kind:
        raise RunFileError(f"{what} {folder} already holds {describe(folder)}; writing {HOLDS[kind]} there would "
                           "overwrite it: choose a new or empty folder")
    if held == kind and not same(folder):
        raise RunFileError(f"{what} {folder} already holds {describe(folder)}{differs}; choose a new or empty "
                           "folder (or run the same thing again to resume it)")
    return make_out_folder(folder, what)
