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
