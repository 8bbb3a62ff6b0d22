"""What every paper reproduction shares: its folder, claims computed from results, figures, the result JSON.

Result shape (DESIGN.md): {"name", "scale", "wall_s", "run_dirs", "claims": [{"claim", "paper", "ours",
"passed"}], "metrics"}; written to <folder>/result.json.
"""
from __future__ import annotations

from pathlib import Path

from lab.runs import atomic_write_json, runs_root

from ..figures import pyplot, save_figure  # noqa: F401  (the experiments' figure helpers)

SCALES = ("quick", "paper")


def experiment_dir(name: str, scale: str, out=None) -> Path:
    """Default folder: $LAB_RUNS/reproduce-NAME-SCALE (re-running resumes its training runs)."""
    return Path(out) if out else runs_root() / f"reproduce-{name}-{scale}"


def claim(text: str, paper, ours, passed: bool) -> dict:
    """One paper claim checked against our numbers."""
    return {"claim": text, "paper": paper, "ours": ours, "passed": bool(passed)}


def result(name: str, scale: str, wall_s: float, run_dirs, claims: list, metrics: dict) -> dict:
    return {"name": name, "scale": scale, "wall_s": wall_s, "run_dirs": [str(r) for r in run_dirs],
            "claims": claims, "metrics": metrics}


def save_result(folder: Path, res: dict) -> None:
    atomic_write_json(Path(folder) / "result.json", res)


def format_claims(res: dict) -> str:
    lines = [f"{res['name']} ({res['scale']}), {res['wall_s']:.0f} s"]
    for c in res["claims"]:
        mark = "PASS" if c["passed"] else "MISS"
        lines.append(f"  [{mark}] {c['claim']}: paper {_fmt(c['paper'])}, ours {_fmt(c['ours'])}")
    return "\n".join(lines)


def _fmt(v):
    return f"{v:.4g}" if isinstance(v, float) else str(v)
