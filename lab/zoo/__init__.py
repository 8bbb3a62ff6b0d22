"""The zoo: the lab's reference models, trained once by us and shipped with the package (read-only run folders).

Layout: `lab/zoo/EXPERIMENT/TRAINING/` is an ordinary run folder (config.json, model.safetensors, metrics.jsonl)
of one model an experiment of `lab reproduce` trains, `lab/zoo/EXPERIMENT/result.json` and `figures/` its result
on the shipped models, and `manifest.json` says how each model was made (`probes/zoo.py` builds and verifies it).
A zoo model is named `zoo:EXPERIMENT/TRAINING` (or `zoo:EXPERIMENT` where the experiment ships one model). Nothing
here is ever written by an analysis: a zoo model's evaluations go to $LAB_RUNS/zoo/NAME (see `out_folder`)."""
from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).parent
MANIFEST = ROOT / "manifest.json"
PREFIX = "zoo:"


def manifest() -> dict:
    """The manifest ({"experiments": {}} while nothing is shipped)."""
    if not MANIFEST.is_file():
        return {"experiments": {}}
    return json.loads(MANIFEST.read_text())


def models() -> dict[str, dict]:
    """Every shipped model by name ("EXPERIMENT/TRAINING"), with its manifest entry, in the manifest's order."""
    return {name: model for exp in manifest()["experiments"].values() for name, model in exp["models"].items()}


def resolve(name: str) -> str:
    """The full name of a zoo model from "zoo:NAME" or "NAME": "EXPERIMENT/TRAINING", or "EXPERIMENT" alone where
    that experiment trains one model (its first seed). Unknown names stop with one line naming some that exist."""
    name = name[len(PREFIX):] if name.startswith(PREFIX) else name
    shipped = models()
    if name in shipped:
        return name
    alone = [m for m, info in shipped.items() if m.split("/")[0] == name]
    if len({shipped[m]["training"] for m in alone}) == 1:
        return next(m for m in alone if shipped[m]["seed_index"] == 0)
    choices = alone or list(shipped)
    listed = ", ".join(PREFIX + m for m in choices[:8]) + (" ..." if len(choices) > 8 else "")
    raise ValueError(f"no zoo model {PREFIX}{name}; " +
                     (f"choose one of: {listed} (lab zoo list)" if choices else "the zoo is empty"))


def name_of(path) -> str | None:
    """The zoo name of a "zoo:NAME" argument or of a folder inside lab/zoo/; None for anything else."""
    if isinstance(path, str) and path.startswith(PREFIX):
        return resolve(path)
    try:
        rel = Path(path).resolve().relative_to(ROOT.resolve())
    except (ValueError, OSError):
        return None
    return rel.as_posix() if rel.parts else None


def out_folder(name: str, runs_root: Path) -> Path:
    """Where the analyses of zoo model `name` write (its eval/ and figures/): under the run store, never here."""
    return Path(runs_root) / "zoo" / name
