"""The probe tables of the Which-algorithm page hold the numbers of the probe's result, row for row (on the results
shipped with the zoo, and on a construction probe computed here)."""
import json

import lab
from app.tables import NOTES, TABLES
from lab import zoo
from probes.inspect import probe_run

SHIPPED = zoo.ROOT / "garg-curve" / "linreg" / "eval"


def _shipped(kind: str) -> dict:
    return json.loads((SHIPPED / f"{kind}.json").read_text())


def test_the_match_table_has_one_row_per_algorithm_and_marks_the_closest_the_one_of_least_spd():
    res = _shipped("match")
    rows = TABLES["match"](res)
    assert [r["algorithm"] for r in rows] == list(res["families"])
    assert [r["SPD / d (k >= 1)"] for r in rows] == [f["spd"] for f in res["families"].values()]
    closest = [r for r in rows if r["closest"] == "yes"]
    assert len(closest) == 1 and closest[0]["SPD / d (k >= 1)"] == min(r["SPD / d (k >= 1)"] for r in rows)


def test_the_readout_table_lists_every_layers_iterations_and_similarities():
    res = _shipped("readout")
    rows = TABLES["readout"](res)
    assert [r["layer"] for r in rows] == res["layers"]
    assert [r["Newton iterations"] for r in rows] == res["best_newton"]
    assert [r["GD steps"] for r in rows] == res["best_gd"]
    assert [r["SimE (GD)"] for r in rows] == res["best_gd_similarity"]
    assert f"{res['newton_slope_per_layer']:.2f}" in NOTES["readout"](res)


def test_the_probe_table_has_a_row_per_target_probe_and_model_with_every_layers_r2():
    res = _shipped("probe")
    rows = TABLES["probe"](res)
    assert len(rows) == 8
    for r in rows:
        values = res[r["target"]][r["model"]][r["probe"]]
        assert [r[f"layer {i}"] for i in range(len(values))] == values


def test_the_construction_table_holds_the_cosines_computed_for_each_layer():
    res = probe_run(lab.load_run("zoo:vo-1layer/train"), "construction", n_prompts=200)
    rows = TABLES["construction"](res)
    assert len(rows) == len(res["layers"]) >= 1
    for r, layer in zip(rows, res["layers"]):
        assert (r["cosine W_KQ"], r["cosine W_PV"]) == (layer["kq_cosine"], layer["pv_cosine"])
        assert -1 <= r["cosine W_KQ"] <= 1
