"""The probe tables of the Which-algorithm page hold the numbers of the probe's result, row for row (on the results
shipped with the zoo, and on a construction probe computed here)."""
import json

import lab
from app.tables import NOTES, TABLES, config_differences, match_side_by_side
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


def test_config_differences_list_exactly_the_keys_whose_values_differ():
    a = lab.make_config("tiny-linreg", {"train.lr": 3e-3}).to_dict()
    b = lab.make_config("tiny-linreg", {"model.n_layers": 2, "task.d": 4}).to_dict()
    rows = config_differences({"a": a, "b": b})
    by_key = {r["key"]: (r["a"], r["b"]) for r in rows}
    assert by_key["train.lr"] == ("0.003", "0.001")
    assert by_key["model.n_layers"] == ("3", "2")
    assert by_key["task.params.d"] == ("5", "4")
    # every other key is equal in the two configs (an independent walk of the nested dicts)
    def leaves(cfg, prefix=""):
        for k, v in cfg.items():
            yield from (leaves(v, f"{prefix}{k}.") if isinstance(v, dict) else [(f"{prefix}{k}", v)])
    la, lb = dict(leaves(a)), dict(leaves(b))
    assert set(by_key) == {k for k in la.keys() | lb.keys() if la.get(k, "-") != lb.get(k, "-")}
    assert config_differences({"a": a, "again": a}) == []


def test_match_results_side_by_side_keep_each_runs_numbers():
    res = _shipped("match")
    rows = match_side_by_side({"x": res, "y": res})
    assert [r["run"] for r in rows] == ["x", "y"]
    assert rows[0]["closest"] == res["best_family"]
    assert all(rows[0][f"SPD / d {f}"] == res["families"][f]["spd"] for f in res["families"])
