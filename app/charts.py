"""Interactive charts (Altair, which ships with Streamlit): hover shows the value, a click can pick a token.
The same results also exist as PNGs (probes' figures) for scripts and papers; pages offer those as downloads."""
from __future__ import annotations

import altair as alt
import pandas as pd

TOKEN_PICK = "token"  # the name of the click selection on the attention-pattern chart


def curve_chart(curve: dict) -> alt.Chart:
    """ICL curves: each predictor's mean error against k with its 90% band; hover a point for its numbers."""
    rows = [{"predictor": name, "k": k, "error": c["mean"][i], "lo": c["lo"][i], "hi": c["hi"][i]}
            for name, c in curve["curves"].items() for i, k in enumerate(curve["k"])]
    data = pd.DataFrame(rows)
    base = alt.Chart(data).encode(x=alt.X("k:Q", title="in-context examples k"),
                                  color=alt.Color("predictor:N", title=None))
    band = base.mark_area(opacity=0.18).encode(y=alt.Y("lo:Q", title=curve.get("metric", "error")), y2="hi:Q")
    line = base.mark_line(point=True).encode(
        y="error:Q",
        tooltip=["predictor:N", "k:Q", alt.Tooltip("error:Q", format=".4f"), alt.Tooltip("lo:Q", format=".4f"),
                 alt.Tooltip("hi:Q", format=".4f")])
    rule = alt.Chart(pd.DataFrame({"k": [curve["d"]]})).mark_rule(strokeDash=[4, 4], color="grey").encode(x="k:Q")
    return (band + line + rule).properties(height=340).interactive()


def line_chart(rows: list[dict], x: str, y: str, series: str, title: str) -> alt.Chart:
    """Lines of y against x, one per series (rows of dicts); hover a point for its numbers."""
    return alt.Chart(pd.DataFrame(rows)).mark_line(point=True).encode(
        x=alt.X(f"{x}:Q"), y=alt.Y(f"{y}:Q"), color=alt.Color(f"{series}:N", title=None),
        tooltip=[f"{series}:N", f"{x}:Q", alt.Tooltip(f"{y}:Q", format=".4f")],
    ).properties(height=340, title=title).interactive()


def pattern_chart(patterns, labels: list[str]) -> alt.Chart:
    """Attention patterns [L, H, T, T] as heatmaps, one per layer and head; hover a cell for the query token, key
    token and weight; click a cell to pick its key token (selection TOKEN_PICK, field "key_index")."""
    L, H, T, _ = patterns.shape
    rows = [{"layer": l, "head": h, "query": labels[q], "key": labels[k], "query_index": q, "key_index": k,
             "attention": float(patterns[l, h, q, k])}
            for l in range(L) for h in range(H) for q in range(T) for k in range(T)]
    pick = alt.selection_point(name=TOKEN_PICK, fields=["key_index"], on="click")
    order = {"sort": labels}
    chart = alt.Chart(pd.DataFrame(rows)).mark_rect().encode(
        x=alt.X("key:N", title="key token (click one to edit its example)", axis=alt.Axis(labelOverlap=False), **order),
        y=alt.Y("query:N", title="query token", axis=alt.Axis(labelOverlap=False), **order),
        color=alt.Color("attention:Q", scale=alt.Scale(scheme="magma", reverse=True)),
        opacity=alt.condition(pick, alt.value(1.0), alt.value(0.45)),
        tooltip=["layer:O", "head:O", "query:N", "key:N", alt.Tooltip("attention:Q", format=".3f")],
    ).properties(width=max(160, 16 * T), height=max(160, 16 * T)).add_params(pick)
    return chart.facet(row=alt.Row("layer:O", title="layer"), column=alt.Column("head:O", title="head"))


def heatmap_chart(grid, rows: list[str], cols: list[str], value: str, title: str, diverging: bool = True,
                  log: bool = False) -> alt.Chart:
    """A rows x cols heatmap of `grid` (None cells left blank); hover a cell for its row, column and value."""
    data = pd.DataFrame([{"row": r, "col": c, value: grid[i][j]} for i, r in enumerate(rows)
                         for j, c in enumerate(cols) if grid[i][j] is not None])
    if diverging:
        lim = max(1e-9, float(data[value].abs().max())) if len(data) else 1.0
        scale = alt.Scale(scheme="redblue", domain=[lim, -lim])  # red = positive, as the PNG figures
    else:
        scale = alt.Scale(scheme="viridis", reverse=True, type="log" if log else "linear")
    return alt.Chart(data).mark_rect().encode(
        x=alt.X("col:N", sort=cols, title=None), y=alt.Y("row:N", sort=rows, title=None),
        color=alt.Color(f"{value}:Q", scale=scale),
        tooltip=[alt.Tooltip("row:N", title="row"), alt.Tooltip("col:N", title="column"),
                 alt.Tooltip(f"{value}:Q", format=".4f")],
    ).properties(title=title)


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
