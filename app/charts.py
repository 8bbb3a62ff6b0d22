"""Interactive charts (Altair, which ships with Streamlit): hover shows the value, a click can pick a token.
The same results also exist as PNGs (probes' figures) for scripts and papers; pages offer those as downloads."""
from __future__ import annotations

import math

import altair as alt
import numpy as np
import pandas as pd

TOKEN_PICK = "token"  # the name of the click selection on the attention-pattern chart


# Each predictor keeps one colour on every chart; the model is drawn black and thick, least squares blue
PALETTE = {"model": "#111111", "ols": "#1f77b4", "ridge": "#9467bd", "averaging": "#ff7f0e", "3-nn": "#2ca02c",
           "zero": "#8c8c8c", "gd": "#8c564b", "newton": "#e377c2", "lasso": "#17becf"}
OTHER = ["#bcbd22", "#d62728", "#7f7f7f", "#aec7e8", "#ffbb78", "#98df8a", "#c5b0d5", "#c49c94"]
Y_SCALES = ("linear", "log", "clipped")  # clipped: the y axis ends just above the model and the typical baseline
FAR_BASELINES = ("averaging", "zero", "3-nn", "1-nn", "knn")  # baselines whose error at small k dwarfs the model's
FLOOR = 1e-4  # a log axis starts here (an exact learner's error is 0)


def predictor_colours(names: list[str]) -> alt.Scale:
    others = iter(OTHER * (1 + len(names) // len(OTHER)))
    return alt.Scale(domain=list(names), range=[PALETTE.get(n) or next(others) for n in names])


def clipped_top(curve: dict) -> float:
    """Where a clipped y axis ends: 1.2 x the larger of the model's band and the median over k of every other
    predictor's error but FAR_BASELINES, so neither a far baseline's error at small k (averaging's ~7 at k = 1) nor a
    spike (least squares at k = d, ~10^2-10^5 with a representation) flattens the model's curve."""
    model = [v for v in curve["curves"].get("model", {}).get("hi", []) if math.isfinite(v)]
    typical = []
    for name, c in curve["curves"].items():
        values = [v for v in c["mean"] if math.isfinite(v)]
        if name not in FAR_BASELINES and name != "model" and values:
            typical.append(float(np.median(values)))
    return max(1.2 * max(model + typical, default=1.0), 1e-6)


def curve_chart(curve: dict, y_scale: str = "linear") -> alt.Chart:
    """ICL curves: each predictor's mean error against k with its 90% band, the model emphasised; hover a point for
    its numbers. `y_scale`: linear, log (from FLOOR) or clipped (see `clipped_top`)."""
    names = list(curve["curves"])
    floor = FLOOR if y_scale == "log" else float("-inf")
    rows = [{"predictor": name, "k": k, "error": max(floor, c["mean"][i]), "lo": max(floor, c["lo"][i]),
             "hi": max(floor, c["hi"][i]), "model": name == "model"}
            for name, c in curve["curves"].items() for i, k in enumerate(curve["k"])]
    data = pd.DataFrame(rows)
    if y_scale == "log":
        scale = alt.Scale(type="log")
    elif y_scale == "clipped":
        scale = alt.Scale(domain=[min(0.0, float(data["lo"].min())), clipped_top(curve)], clamp=True)
    else:
        scale = alt.Scale()
    title = curve.get("metric", "error") + (" (log)" if y_scale == "log" else "")
    base = alt.Chart(data).encode(x=alt.X("k:Q", title="in-context examples k", axis=alt.Axis(tickMinStep=1)),
                                  color=alt.Color("predictor:N", title=None, scale=predictor_colours(names),
                                                  sort=names, legend=alt.Legend(symbolOpacity=1)))  # not the bands'
    band = base.mark_area(opacity=0.15, clip=True).encode(y=alt.Y("lo:Q", title=title, scale=scale), y2="hi:Q")
    line = base.mark_line(point=True, clip=True).encode(
        y=alt.Y("error:Q", scale=scale),
        strokeWidth=alt.condition("datum.model", alt.value(3.5), alt.value(1.6)),
        tooltip=["predictor:N", "k:Q", alt.Tooltip("error:Q", format=".4f"), alt.Tooltip("lo:Q", format=".4f"),
                 alt.Tooltip("hi:Q", format=".4f")])
    rule = alt.Chart(pd.DataFrame({"k": [curve["d"]]})).mark_rule(strokeDash=[4, 4], color="grey").encode(x="k:Q")
    return (band + line + rule).properties(height=340).interactive()


def line_chart(rows: list[dict], x: str, y: str, series: str, title: str, integer_x: bool = True,
               y_domain: tuple[float, float] | None = None, log_y: bool = False) -> alt.Chart:
    """Lines of y against x, one per series (rows of dicts); hover a point for its numbers. `integer_x`: ticks at
    whole numbers only (layers, depths); `y_domain`: the y axis clipped there (points beyond it drawn at its edge);
    `log_y`: a log y axis (losses)."""
    scale = alt.Scale(domain=list(y_domain), clamp=True) if y_domain else alt.Scale(type="log" if log_y else "linear")
    axis = alt.Axis(tickMinStep=1, format="d") if integer_x else alt.Axis()
    return alt.Chart(pd.DataFrame(rows)).mark_line(point=True, clip=True).encode(
        x=alt.X(f"{x}:Q", axis=axis), y=alt.Y(f"{y}:Q", scale=scale), color=alt.Color(f"{series}:N", title=None),
        tooltip=[f"{series}:N", f"{x}:Q", alt.Tooltip(f"{y}:Q", format=".4f")],
    ).properties(height=340, title=title).interactive()


PAGE_WIDTH = 1100  # pixels a wide page's main column gives a chart (Streamlit's wide layout on a laptop screen)


def pattern_chart(patterns, labels: list[str], width: int = PAGE_WIDTH) -> alt.Chart:
    """Attention patterns [L, H, T, T] as heatmaps, one per layer and head, all heads side by side within `width`
    pixels (cells shrink for long prompts; token names then show on hover); hover a cell for the query token, key
    token and weight; click a cell to pick its key token (selection TOKEN_PICK, field "key_index")."""
    L, H, T, _ = patterns.shape
    cell = max(3.0, min(16.0, (width - 140 - 30 * H) / (H * T)))
    font = 0 if cell < 6 else min(11, cell - 1)
    rows = [{"layer": l, "head": h, "query": labels[q], "key": labels[k], "query_index": q, "key_index": k,
             "attention": float(patterns[l, h, q, k])}
            for l in range(L) for h in range(H) for q in range(T) for k in range(T)]
    pick = alt.selection_point(name=TOKEN_PICK, fields=["key_index"], on="click")
    order = {"sort": labels}
    axis = alt.Axis(labelOverlap=False, labels=font > 0, labelFontSize=font or 1)
    chart = alt.Chart(pd.DataFrame(rows)).mark_rect().encode(
        x=alt.X("key:N", title="key token (click one to edit its example)", axis=axis, **order),
        y=alt.Y("query:N", title="query token", axis=axis, **order),
        color=alt.Color("attention:Q", scale=alt.Scale(scheme="magma", reverse=True)),
        opacity=alt.condition(pick, alt.value(1.0), alt.value(0.45)),
        tooltip=["layer:O", "head:O", "query:N", "key:N", alt.Tooltip("attention:Q", format=".3f")],
    ).properties(width=cell * T, height=cell * T).add_params(pick)
    return chart.facet(row=alt.Row("layer:O", title="layer"), column=alt.Column("head:O", title="head"))


def heatmap_chart(grid, rows: list[str], cols: list[str], value: str, title: str, diverging: bool = True,
                  log: bool = False, limit: float | None = None) -> alt.Chart:
    """A rows x cols heatmap of `grid` (None cells left blank), every row and column labelled; hover a cell for its
    row, column and value. `limit`: the diverging colour scale's end (give two charts one scale to compare them)."""
    data = pd.DataFrame([{"row": r, "col": c, value: grid[i][j]} for i, r in enumerate(rows)
                         for j, c in enumerate(cols) if grid[i][j] is not None])
    if diverging:
        lim = limit or (max(1e-9, float(data[value].abs().max())) if len(data) else 1.0)
        scale = alt.Scale(scheme="redblue", domain=[lim, -lim])  # red = positive, as the PNG figures
    else:
        scale = alt.Scale(scheme="viridis", reverse=True, type="log" if log else "linear")
    return alt.Chart(data).mark_rect().encode(
        x=alt.X("col:N", sort=cols, title=None, axis=alt.Axis(labelOverlap=False)),
        y=alt.Y("row:N", sort=rows, title=None, axis=alt.Axis(labelOverlap=False)),
        color=alt.Color(f"{value}:Q", scale=scale),
        tooltip=[alt.Tooltip("row:N", title="row"), alt.Tooltip("col:N", title="column"),
                 alt.Tooltip(f"{value}:Q", format=".4f")],
    ).properties(title=title)


def shared_limit(*grids) -> float:
    """One colour-scale end for several diverging heatmaps: the largest |value| in any of them."""
    values = [abs(v) for g in grids for row in g for v in row if v is not None]
    return max([1e-9, *values])


def heatmap_height(rows: list[str], cols: list[str]) -> int:
    """Pixels for st.altair_chart(height=...) that fit a heatmap's rows and its rotated column labels (Streamlit
    sizes a chart by that argument, not by the chart's own height)."""
    return 70 + 32 * len(rows) + 7 * max(len(c) for c in cols)


def bar_chart(labels: list[str], values: list[float], colour: list[float], value: str, colour_title: str) -> alt.Chart:
    """Bars per component, coloured by a second number in [-1, 1]; hover for both."""
    data = pd.DataFrame({"component": labels, value: values, colour_title: colour})
    return alt.Chart(data).mark_bar().encode(
        x=alt.X("component:N", sort=None, title=None), y=alt.Y(f"{value}:Q"),
        color=alt.Color(f"{colour_title}:Q", scale=alt.Scale(scheme="redblue", domain=[1, -1])),
        tooltip=["component:N", alt.Tooltip(f"{value}:Q", format=".4f"),
                 alt.Tooltip(f"{colour_title}:Q", format=".2f")],
    ).properties(height=300)


def picked_key(event) -> int | None:
    """The key token index a click on `pattern_chart` picked (None when nothing is picked)."""
    try:
        points = event.selection[TOKEN_PICK]
    except (AttributeError, KeyError, TypeError):
        return None
    if isinstance(points, list) and points and "key_index" in points[0]:
        return int(points[0]["key_index"])
    return None
