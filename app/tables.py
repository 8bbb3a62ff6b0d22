"""The probes' results as tables (rows for st.dataframe) in place of their text dumps: one function per probe kind
of `lab probe`, reading the result dict that RUN/eval/KIND.json holds."""
from __future__ import annotations


def match_rows(res: dict) -> list[dict]:
    return [{"algorithm": name, "SPD / d (k >= 1)": f["spd"], "best setting": str(f["best"] or "-"),
             "closest": "yes" if name == res["best_family"] else ""} for name, f in res["families"].items()]


def readout_rows(res: dict) -> list[dict]:
    return [{"layer": l, "Newton iterations": res["best_newton"][l], "SimE (Newton)": res["best_newton_similarity"][l],
             "GD steps": res["best_gd"][l], "SimE (GD)": res["best_gd_similarity"][l]} for l in res["layers"]]


def probe_rows(res: dict) -> list[dict]:
    rows = []
    for target in ("w_ols", "xty"):
        for probe in ("linear", "mlp"):
            for model in ("trained", "control"):
                values = res[target][model][probe]
                rows.append({"target": target, "probe": probe, "model": model,
                             **{f"layer {l}": v for l, v in enumerate(values)}})
    return rows


def construction_rows(res: dict) -> list[dict]:
    return [{"layer": l, "cosine W_KQ": r["kq_cosine"], "cosine W_PV": r["pv_cosine"], "scale W_KQ": r["kq_scale"],
             "scale W_PV": r["pv_scale"]} for l, r in enumerate(res["layers"])]


TABLES = {"match": match_rows, "readout": readout_rows, "probe": probe_rows, "construction": construction_rows}
NOTES = {"readout": lambda res: f"Newton iterations per layer (slope): {res['newton_slope_per_layer']:.2f}"
         if res.get("newton_slope_per_layer") is not None else "",
         "construction": lambda res: f"The construction at the line-searched learning rate {res['gd_lr']:.3f}."}


def _flat(config: dict, prefix: str = "") -> dict:
    """{"task": {"params": {"d": 5}}} -> {"task.params.d": 5}."""
    out = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def config_differences(configs: dict[str, dict]) -> list[dict]:
    """The config keys (section.key, task parameters as task.params.NAME) whose values differ between the runs
    named in `configs` (name -> resolved config dict): one row per key, one column per run ("-": not set)."""
    flat = {name: _flat(cfg) for name, cfg in configs.items()}
    keys = sorted({k for f in flat.values() for k in f})
    rows = []
    for key in keys:
        values = {name: f.get(key, "-") for name, f in flat.items()}
        if len({repr(v) for v in values.values()}) > 1:
            rows.append({"key": key, **{name: str(v) for name, v in values.items()}})
    return rows


def match_side_by_side(results: dict[str, dict]) -> list[dict]:
    """The `match` probe of several runs (name -> RUN/eval/match.json) side by side: one row per run with its
    closest algorithm and each algorithm's SPD / d."""
    return [{"run": name, "closest": res["best_family"],
             **{f"SPD / d {family}": f["spd"] for family, f in res["families"].items()}}
            for name, res in results.items()]
