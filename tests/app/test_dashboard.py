"""The dashboard through streamlit's AppTest: every page renders against a small run made here, one
interaction per page changes what is shown, and bad run folders give messages, not exceptions."""
import json
import os
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

import lab  # noqa: E402
from app import jobs  # noqa: E402
from lab import runlock, zoo  # noqa: E402
from owned import wait_for  # noqa: E402

MAIN = str(Path(__file__).parents[2] / "app" / "main.py")
PAGES = ["views/home.py", "views/runs.py", "views/icl_curve.py", "views/inside.py", "views/algorithm.py",
         "views/tour.py", "views/boolean.py", "views/graph_search.py", "views/attention_svm.py", "views/sweeps.py",
         "views/representation.py"]
SMALL = ["train.steps=40", "model.d_model=16", "model.n_layers=2", "train.batch_size=32"]


@pytest.fixture(scope="module")
def root(tmp_path_factory, ray_session):
    root = tmp_path_factory.mktemp("dash") / "runs"
    lab.sweep("tiny-linreg", [a for a in SMALL if not a.startswith("model.n_layers")] +
              ["model.n_layers=1,2", "seeds=0..1", "metrics=loss"], out=root / "sweep-small",
              quiet=True)
    lab.train("tiny-linreg", SMALL + ["ensemble=2", "train.log_every=10"], out=root / "ens", quiet=True)
    lab.train("boolean-tiny", ["task.n=6", "task.n_points=10", "train.steps=20", "model.d_model=16"],
              out=root / "bool", quiet=True)
    lab.train("graph-search", ["task.n_vertices=7", "train.steps=20", "model.d_model=16", "model.n_layers=2"],
              out=root / "graph", quiet=True)
    lab.train("guo-representation", ["task.d=3", "task.D=3", "task.n_points=7", "model.n_layers=2", "model.d_model=16",
                                     "model.n_heads=2", "train.steps=20", "curriculum.enabled=false"],
              out=root / "rep", quiet=True)
    lab.train("tiny-linreg", SMALL, out=root / "small", quiet=True)
    return root


@pytest.fixture
def app(root, monkeypatch):
    monkeypatch.setenv("LAB_RUNS", str(root))
    at = AppTest.from_file(MAIN, default_timeout=120)
    at.run()
    assert not at.exception
    return at


def _page(at, page):
    at.switch_page(page)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _texts(at) -> str:
    return " ".join(str(e.value) for kind in ("markdown", "caption", "code", "error", "info", "warning", "success",
                                              "header", "subheader", "title") for e in getattr(at, kind))


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_against_a_small_run(app, page):
    _page(app, page)
    assert not app.error, [e.value for e in app.error]


def test_an_ensemble_member_can_be_picked_and_looked_at(app):
    app.sidebar.selectbox(key="run_picker").set_value("ens").run()
    app.sidebar.number_input(key="member_picker").set_value(1).run()
    _page(app, "views/runs.py")
    assert "Selected: ens" in _texts(app)
    _page(app, "views/icl_curve.py")
    assert not app.error and len(app.metric) == 2


def test_boolean_page_recomputes_for_another_class(app):
    app.sidebar.selectbox(key="run_picker").set_value("bool").run()
    _page(app, "views/boolean.py")
    assert not app.error
    labels = [m.label for m in app.metric]
    assert labels[:2] == ["Model accuracy, all prefixes (the paper's measure)", "Model accuracy at the last prefix"]
    table = app.dataframe[0].value
    assert list(table.columns) == ["learner", "all prefixes", "last prefix"] and "null (-1)" in set(table["learner"])
    assert (table.set_index("learner").loc["null (-1)", "all prefixes"] < 1)  # always -1: wrong on every +1 label
    before = [m.value for m in app.metric]
    app.selectbox(key="bool_fn").set_value("parity").run()
    assert not app.exception and "out of its training distribution" in _texts(app)
    assert [m.value for m in app.metric] != before


def test_representation_page_probes_a_representation_run(app):
    app.sidebar.selectbox(key="run_picker").set_value("rep").run()
    _page(app, "views/representation.py")
    assert not app.error, [e.value for e in app.error]
    assert "An affine function of x alone reaches R^2" in _texts(app)
    app.sidebar.selectbox(key="run_picker").set_value("small").run()
    assert not app.exception and "trains linear_regression" in _texts(app)


def test_graph_page_shows_another_graph_for_another_lookahead(app):
    app.sidebar.selectbox(key="run_picker").set_value("graph").run()
    _page(app, "views/graph_search.py")
    assert not app.error, [e.value for e in app.error]
    assert len(app.metric) == 1 and app.metric[0].label == "Model's next vertex"
    before = app.dataframe[0].value.to_dict()
    app.select_slider(key="graph_lookahead").set_value(2).run()
    assert not app.exception and not app.error
    assert app.dataframe[0].value.to_dict() != before  # another graph: other children, other probabilities
    assert "Accuracy by lookahead" in _texts(app) and len(app.dataframe) >= 2
    app.button(key="graph_probe").click().run()
    assert not app.exception and not app.error, [e.value for e in app.error]
    assert "decoded reach" in _texts(app) and "traced circuits" in _texts(app)
    assert (Path(os.environ["LAB_RUNS"]) / "graph" / "eval" / "search.json").is_file()


def test_svm_page_solves_another_problem_and_another_ratio(app):
    _page(app, "views/attention_svm.py")
    assert not app.error, [e.value for e in app.error]
    assert app.metric[0].label.startswith("corr with the Frobenius SVM") and float(app.metric[0].value) > 0.9
    def samples():  # the live problem's table (the shipped results' claims tables come first on the page)
        return next(d.value for d in app.dataframe if "sample" in d.value.columns).to_dict()

    before = samples()
    app.number_input(key="svm_seed").set_value(3).run()
    assert not app.exception and not app.error
    assert samples() != before  # another problem: other tokens selected and scored
    app.radio(key="svm_param").set_value("K Q^T").run()
    assert app.metric[0].label.startswith("corr with the nuclear-norm SVM")
    entropy = app.metric[2].value
    app.select_slider(key="snap_ratio").set_value(20).run()
    assert not app.exception and float(app.metric[2].value) > float(entropy)  # a larger ratio: a higher entropy


@pytest.mark.parametrize("page", ["views/icl_curve.py", "views/inside.py", "views/algorithm.py", "views/boolean.py"])
def test_other_pages_point_a_graph_run_to_its_page(app, page):
    _page(app, page)
    app.sidebar.selectbox(key="run_picker").set_value("graph").run()
    assert not app.exception and not app.error, [e.value for e in app.error]
    assert "graph" in _texts(app).lower()


def test_inside_page_on_a_boolean_run_compares_with_the_exact_learner(app):
    _page(app, "views/inside.py")
    app.sidebar.selectbox(key="run_picker").set_value("bool").run()
    labels = [m.label for m in app.metric]
    assert "Literal elimination on the edited prompt" in labels and "Model logit for y = +1, edited prompt" in labels


def test_icl_curve_recomputes_when_the_noise_changes(app):
    _page(app, "views/icl_curve.py")
    before = [m.value for m in app.metric]
    app.slider(key="noise").set_value(0.8).run()
    assert not app.exception
    assert [m.value for m in app.metric] != before


def test_editing_an_example_changes_the_prediction(app):
    _page(app, "views/inside.py")
    edited = next(m for m in app.metric if m.label == "Model prediction, edited prompt").value
    key = next(n.key for n in app.number_input if n.key.startswith("edit_y"))
    app.number_input(key=key).set_value(15.0).run()
    assert not app.exception
    assert next(m for m in app.metric if m.label == "Model prediction, edited prompt").value != edited


def test_running_a_probe_from_the_page_shows_its_result(app, root):
    """Until a probe is computed on the run, the page shows what it gives on the run's zoo reference (shipped);
    the button computes the run's own, which takes that one's place."""
    _page(app, "views/algorithm.py")
    meanwhile = "Meanwhile, the same probe on the zoo's model of this task, zoo:garg-curve/linreg"
    def match_tables():  # the match probe's table: one row per algorithm, the closest marked
        return [t.value for t in app.dataframe if "closest" in t.value.columns]

    assert _texts(app).count(meanwhile) == 3 and len(app.dataframe) == 3  # match, readout, probe: as tables
    assert len(match_tables()) == 1 and list(match_tables()[0]["closest"]).count("yes") == 1
    app.select_slider(key="probe_prompts").set_value(200).run()
    app.button(key="run-match").click().run()
    assert not app.exception and _texts(app).count(meanwhile) == 2 and len(match_tables()) == 1
    computed = json.loads((root / "small" / "eval" / "match.json").read_text())
    table = match_tables()[0]
    assert list(table["SPD / d (k >= 1)"]) == [f["spd"] for f in computed["families"].values()]  # the run's own
    assert table.loc[table["closest"] == "yes", "algorithm"].item() == computed["best_family"]


def test_the_tour_steps_through_its_demos(app):
    _page(app, "views/tour.py")
    assert "1. In-context learning" in _texts(app)
    app.button(key="tour_next").click().run()
    assert "2. One layer of linear attention" in _texts(app) and "1. In-context" not in _texts(app)


def test_runs_page_refuses_a_bad_override_and_trains_a_good_one(app, root):
    _page(app, "views/runs.py")
    app.text_input(key="overrides").input("train.steps=abc")
    next(b for b in app.button if b.label == "Start training").click().run()
    assert any("train.steps must be an integer" in e.value for e in app.error)
    assert not (root / ".dashboard").exists() or not any((root / ".dashboard").glob("train-*"))

    app.text_input(key="overrides").input("train.steps=5 model.d_model=16 model.n_layers=1")
    app.text_input(key="run_name").input("from-page")
    next(b for b in app.button if b.label == "Start training").click().run()
    assert any("Started from-page" in s.value for s in app.success)
    status = root / "from-page" / "status.json"
    wait_for(lambda: status.is_file() and json.loads(status.read_text())["status"] == "done", timeout=120)
    assert json.loads(status.read_text())["status"] == "done"
    app.run()
    assert "from-page" in str(app.dataframe[0].value)


def test_sweeps_page_shows_the_trials_and_opens_one_on_the_other_pages(app):
    _page(app, "views/sweeps.py")
    table = str(app.dataframe[0].value)
    assert all(f"n_layers{n}_seed{s}" in table for n in (1, 2) for s in (0, 1)) and "done" in table
    assert "4 of 4 trials done" in _texts(app) and app.selectbox(key="sweep_metric").value == "loss"
    app.selectbox(key="sweep_trial").select("n_layers2_seed1").run()
    app.button(key="open_trial").click().run()
    assert any("n_layers2_seed1 is the selected run" in s.value for s in app.success)
    _page(app, "views/inside.py")
    assert "sweep-small" in app.selectbox(key="run_picker").value
    assert not app.error, [e.value for e in app.error]


def test_sweeps_page_refuses_a_bad_spec_and_runs_a_good_one(app, root):
    _page(app, "views/sweeps.py")
    app.text_area(key="sweep_spec").input('preset = "tiny-linreg"\n[grid]\n"train.stepz" = [1, 2]\n')
    next(b for b in app.button if b.label == "Start the sweep").click().run()
    assert any("unknown key 'train.stepz'" in e.value for e in app.error)
    spec = 'name = "from-page"\npreset = "tiny-linreg"\nseeds = "0..1"\n[fixed]\n' + \
        "\n".join(f'"{k}" = {v}' for k, v in dict(x.split("=") for x in SMALL + ["train.steps=5"]).items()) + "\n"
    app.text_area(key="sweep_spec").input(spec)
    next(b for b in app.button if b.label == "Start the sweep").click().run()
    try:
        assert any("Started sweep-from-page" in s.value for s in app.success), [e.value for e in app.error]
        summary = root / "sweep-from-page" / "summary.json"
        assert wait_for(summary.is_file, timeout=180)
        assert json.loads(summary.read_text())["done"] == 2
        assert wait_for(lambda: not jobs.state("sweep-from-page")["running"], timeout=60)
        assert jobs.state("sweep-from-page")["returncode"] == 0
    finally:
        jobs.stop("sweep-from-page")


def _edit_y(app):
    return next((n for n in app.number_input if n.key.startswith("edit_y")), None)


def test_the_inside_page_refuses_bad_labels_and_seeds_and_keeps_edits_per_run(app, tally):
    _page(app, "views/inside.py")
    app.sidebar.selectbox(key="run_picker").set_value("small").run()
    for bad in (1e308, -1e30, 23.0):
        tally["bad inputs tried"] += 1
        _edit_y(app).set_value(bad).run()
        assert not app.exception, [e.value for e in app.exception]
        errors = [e.value for e in app.error]
        assert len(errors) == 1 and errors[0].startswith("The label must be a number from -") and \
            "\n" not in errors[0], errors
        assert not any(m.label.startswith("Model prediction") for m in app.metric)  # nothing computed from it
    _edit_y(app).set_value(15.0).run()
    assert not app.error and _edit_y(app).value == 15.0
    tally["bad inputs tried"] += 1
    seed = next(n for n in app.number_input if n.key.startswith("prompt_seed"))
    seed.set_value(10**7).run()
    assert [e.value for e in app.error] == ["The prompt seed must be a whole number from 0 to 1,000,000; got 10000000."]
    seed.set_value(3).run()
    assert not app.error
    edited = _edit_y(app).value
    app.sidebar.selectbox(key="run_picker").set_value("bool").run()  # a Boolean run: its own edit, labels -1 or +1
    assert not app.exception and not app.error, [e.value for e in app.error]
    assert _edit_y(app) is None
    label = next(b for b in app.selectbox if b.key.startswith("edit_y"))
    assert set(label.options) == {"+1", "-1"}
    assert all(abs(float(m.value)) < 1e6 for m in app.metric if m.label == "True y of the query")
    app.sidebar.selectbox(key="run_picker").set_value("small").run()  # back: the regression run's edit is kept
    assert _edit_y(app).value == edited


def test_the_sweeps_page_skips_corrupt_rows_and_refuses_a_huge_spec_quickly(tmp_path, monkeypatch, root, tally):
    import shutil

    store = tmp_path / "runs"
    shutil.copytree(root / "sweep-small", store / "sweep-small", symlinks=True)
    with open(store / "sweep-small" / "results.jsonl", "a") as f:  # rows a crash or another program left
        f.write('{"trial": "x_seed9", "status": "done"}\n{"trial": 3, "seed": "a"}\n[1, 2]\n{"trial": "half"')
    tally["faults injected"] += 1
    monkeypatch.setenv("LAB_RUNS", str(store))
    at = AppTest.from_file(MAIN, default_timeout=120)
    at.run()
    _page(at, "views/sweeps.py")
    assert not at.error, [e.value for e in at.error]
    table = str(at.dataframe[0].value)
    assert "4 of 4 trials done" in _texts(at) and "x_seed9" not in table
    tally["bad inputs tried"] += 1
    grid = "\n".join(f'"k{i}" = [{", ".join(map(str, range(12)))}]' for i in range(8))
    at.text_area(key="sweep_spec").input(f'preset = "tiny-linreg"\n[grid]\n{grid}\n')
    next(b for b in at.button if b.label == "Start the sweep").click().run()
    assert not at.exception
    assert any("the number of trials must be at most 10000; got 429981696" in e.value for e in at.error), \
        [e.value for e in at.error]


def _bad_folders(root: Path):
    good = root / "small"
    bad = {"bad-config": None, "no-checkpoint": None, "bad-checkpoint": None, "still-training": None, "killed": None}
    for name in bad:
        (root / name).mkdir(exist_ok=True)
    (root / "bad-config" / "config.json").write_text("{not json")
    for name in ("no-checkpoint", "bad-checkpoint", "still-training", "killed"):
        (root / name / "config.json").write_text((good / "config.json").read_text())
    (root / "bad-checkpoint" / "checkpoint.pt").write_bytes(b"this is not a checkpoint")
    for name in ("still-training", "killed"):  # both say "running"; only still-training has a live trainer
        (root / name / "checkpoint.pt").write_bytes((good / "checkpoint.pt").read_bytes())
        (root / name / "status.json").write_text(json.dumps({"status": "running", "step": 20, "steps": 40}))


@pytest.mark.parametrize("name", ["no-checkpoint", "bad-checkpoint", "still-training", "killed"])
@pytest.mark.parametrize("page", PAGES)
def test_bad_run_folders_show_a_message_never_a_crash(tmp_path, monkeypatch, root, name, page):
    bad_root = tmp_path / "runs"
    bad_root.mkdir()
    (bad_root / "small").symlink_to(root / "small")
    _bad_folders(bad_root)
    monkeypatch.setenv("LAB_RUNS", str(bad_root))
    with runlock.hold(bad_root / "still-training"):  # a trainer holds the lock: this process, here
        at = AppTest.from_file(MAIN, default_timeout=120)
        at.run()
        assert any("bad-config" in c.value for c in at.sidebar.caption)  # listed as skipped, with why
        at.sidebar.selectbox(key="run_picker").set_value(name).run()
        _page(at, page)
    shown = _texts(at)
    if page == "views/runs.py" and name == "killed":
        assert "Interrupted at the checkpoint of step 20" in shown and "--out" in shown
    if page in ("views/home.py", "views/runs.py", "views/tour.py", "views/boolean.py", "views/graph_search.py",
                "views/attention_svm.py", "views/sweeps.py", "views/representation.py"):  # pages about other things
        return
    if name in ("still-training", "killed"):
        assert ("Still training" in shown) == (name == "still-training")
        assert ("This run is interrupted" in shown) == (name == "killed")
    else:
        assert ("no checkpoint yet" in shown) if name == "no-checkpoint" else ("cannot be loaded" in shown)


@pytest.mark.skipif("garg-curve/linreg" not in zoo.models(), reason="the zoo's regression model is not shipped")
def test_an_under_trained_run_is_flagged_beside_its_zoo_reference(app):
    _page(app, "views/icl_curve.py")
    app.sidebar.selectbox(key="run_picker").set_value("small").run()  # 40 steps: it has learned nothing
    notes = [w.value for w in app.warning if w.value.startswith("Under-trained")]
    assert len(notes) == 1 and "zoo:garg-curve/linreg" in notes[0], [w.value for w in app.warning]
    assert zoo.models()["garg-curve/linreg"]["command"] in notes[0]
    _page(app, "views/runs.py")  # compare: the run and its zoo reference, overlaid by default
    assert app.multiselect(key="compare_runs").value == ["small", "zoo:garg-curve/linreg"]
    app.toggle(key="compare_icl").set_value(True).run()
    assert not app.exception and not app.error, [e.value for e in app.error]


@pytest.mark.parametrize("page", PAGES)
def test_a_fresh_install_opens_every_page_on_a_zoo_model(tmp_path, monkeypatch, page):
    """An empty run store: every page opens on a shipped model of its own kind, never on "No run selected"."""
    monkeypatch.setenv("LAB_RUNS", str(tmp_path / "runs"))
    at = AppTest.from_file(MAIN, default_timeout=300)
    at.run()
    _page(at, page)
    assert "No run selected" not in _texts(at) and not at.error, [e.value for e in at.error]
    picked = at.sidebar.selectbox(key="run_picker").value
    assert at.sidebar.radio(key="run_source").value.startswith("zoo") and picked in zoo.models()
    kind = {"views/boolean.py": "boolean", "views/graph_search.py": "graph_search",
            "views/representation.py": "representation"}.get(page, "linear_regression")
    if any(lab.load_run(zoo.PREFIX + m).config.task.name == kind for m in zoo.models()):
        assert lab.load_run(zoo.PREFIX + picked).config.task.name == kind


def test_lab_dashboard_serves_the_app(root):
    from dashboard_server import dashboard

    with dashboard(root) as (base, first_line, _):
        assert base in first_line and urllib.request.urlopen(base, timeout=10).status == 200


def _start(app, overrides: str, name: str):
    app.text_input(key="overrides").input(overrides)
    app.text_input(key="run_name").input(name)
    next(b for b in app.button if b.label == "Start training").click().run()
    assert any(f"Started {name}" in s.value for s in app.success)


def test_a_run_can_be_stopped_and_a_failed_run_shows_its_error(app, root):
    _page(app, "views/runs.py")
    _start(app, "train.steps=100000 model.d_model=16 model.n_layers=1 train.log_every=10", "long")
    status = root / "long" / "status.json"
    assert wait_for(lambda: status.is_file() and (root / "long" / "metrics.jsonl").is_file()
                    and (root / "long" / "metrics.jsonl").read_text().strip(), timeout=120)
    app.run()
    app.button(key="stop-train-long").click().run()
    assert wait_for(lambda: json.loads(status.read_text())["status"] == "interrupted", timeout=120)
    app.sidebar.selectbox(key="run_picker").set_value("long").run()  # interrupted: the page offers to resume it
    step = json.loads(status.read_text())["step"]
    app.button(key="resume_run").click().run()
    assert any("Resumed long" in s.value for s in app.success)
    assert wait_for(lambda: json.loads(status.read_text()).get("step", 0) > step, timeout=120)  # on from there
    app.run()
    app.button(key="stop-train-long").click().run()
    assert wait_for(lambda: json.loads(status.read_text())["status"] == "interrupted", timeout=120)

    _start(app, "train.steps=50 train.lr=1e6 train.grad_clip=0 train.warmup_steps=0", "blows-up")
    from app import jobs
    assert wait_for(lambda: not jobs.state("train-blows-up")["running"], timeout=120)
    app.run()
    assert any("blows-up failed" in e.value and "training stopped at step" in e.value for e in app.error)
