"""Runs: the run store as a table, the selected run's loss curve, and new runs started from a preset."""
import shlex
import time

import streamlit as st

import lab
from app import charts, common, jobs, tables
from lab.runs import METRICS, check_run_name, read_metrics
from probes.figures import png_bytes, training_curve
from probes.icl_curve import icl_curve

st.title("Runs")
runs, problems = common.sidebar()


@st.fragment(run_every=5)
def runs_table():
    """Your runs, refreshed every few seconds while the page is open (steps and losses of runs in training)."""
    mine = common.scan_runs()[0]
    if mine:
        st.dataframe([common.run_summary(r) for r in mine], hide_index=True, width="stretch")
    else:
        st.info(f"No runs of your own under {common.runs_root()} yet: start one below, or run `lab demo` in a "
                "terminal. Meanwhile every page opens on the models shipped with the lab (below).")


runs_table()
for path, problem in problems:
    st.warning(f"{path.name}: {problem}")
with st.expander(f"Shipped with the lab: {len(common.zoo_runs())} trained models (the zoo)", expanded=not runs):
    st.dataframe([common.run_summary(r) for r in common.zoo_runs()], hide_index=True, width="stretch")
    st.caption("`lab zoo list` names them; `lab.load_run(\"zoo:NAME\")` opens one; `lab reproduce NAME --zoo` "
               "checks an experiment's claims on them in seconds.")


path = common.selected_path()
if path is not None:
    with common.guard(f"Reading {path.name}"):  # a folder deleted since the sidebar listed it: one line
        selected_run = lab.load_run(path)
        name = common.run_name(selected_run)
        st.subheader(f"Selected: {name}")
        status = selected_run.status
        if status.get("status") == "diverged":
            st.error(status.get("message", "this run diverged"))
        elif status.get("status") == "interrupted":
            st.warning(f"Interrupted at the checkpoint of step {status.get('step')}: "
                       f"{status.get('message', 'resume it with the command that started it')}")
            if st.button("Resume it", key="resume_run", help="trains on from its last checkpoint, in the background"):
                jobs.start(f"train-{path.name}", ["train", str(path / "config.json"), "--out", str(path), "--quiet"])
                st.success(f"Resumed {path.name}: progress below.")
        rows = read_metrics(path / METRICS)
        if rows:
            common.image(png_bytes(training_curve(rows, name)))
        else:
            st.caption("No metrics logged yet.")

st.subheader("Compare runs")
everything = runs + common.zoo_runs()
labels = [common.run_name(r) for r in everything]
selected = next((r for r in everything if r.path == path), None)
reference = common.zoo_reference(selected) if selected is not None else None
default = [common.run_name(r) for r in (selected, reference) if r is not None]
picked = [everything[labels.index(n)] for n in st.multiselect(
    "Runs to overlay (yours and the zoo's)", labels, default=default, key="compare_runs")]
if picked:
    def loss_of(row: dict) -> float | None:
        losses = [x for x in row.get("losses") or [row.get("loss")] if isinstance(x, (int, float))]
        return sum(losses) / len(losses) if losses else None

    rows = [{"step": row["step"], "loss": loss_of(row), "run": common.run_name(r)}
            for r in picked for row in read_metrics(r.path / METRICS) if loss_of(row)]
    st.altair_chart(charts.line_chart(rows, "step", "loss", "run", "training loss (log scale; an ensemble's mean)",
                                      integer_x=False, log_y=True), key="compare_loss")
    if len(picked) > 1:
        differences = tables.config_differences({common.run_name(r): r.config.to_dict() for r in picked})
        st.caption("What their configs set differently:" if differences else "Their configs are the same.")
        if differences:
            st.dataframe(differences, hide_index=True, width="stretch")
    matched = {common.run_name(r): res for r in picked
               if (res := common.read_json(common.analysis_file(r, "eval", "match.json")))}
    if matched:
        st.caption("Closest algorithm by SPD (lab probe RUN match), for the runs it was computed on:")
        st.dataframe(tables.match_side_by_side(matched), hide_index=True, width="stretch")
    same = [r for r in picked if r.config.task.name == picked[0].config.task.name]
    if st.toggle(f"Overlay their in-context curves too ({len(same)} runs of {picked[0].config.task.name}, 256 fresh "
                 "prompts each: a few seconds a run)", key="compare_icl"):
        @st.cache_data(max_entries=32, show_spinner=False, hash_funcs={lab.Run: lambda r: 0})
        def model_curve(path: str, stamp: float, of: lab.Run) -> dict:
            return icl_curve(of, n_prompts=256, n_boot=100)

        with common.guard("The curves"):
            bar = st.progress(0.0)
            curves = {}
            for i, r in enumerate(same):
                bar.progress(i / len(same), text=f"{common.run_name(r)} ({i + 1} of {len(same)})")
                curves[common.run_name(r)] = model_curve(str(r.path), common.checkpoint_stamp(r.path), r)
            bar.empty()
            first = next(iter(curves.values()))
            overlay = {**first, "curves": {**{n: c["curves"]["model"] for n, c in curves.items()},
                                           **{b: first["curves"][b] for b in ("ols",) if b in first["curves"]}}}
            st.altair_chart(charts.curve_chart(overlay, "clipped"), key="compare_curves")
            if len(same) < len(picked):
                st.caption("Runs of other tasks are left out of the in-context overlay: their errors are not "
                           "comparable.")

st.subheader("Start a new run")
with st.form("new_run"):
    preset = st.selectbox("Preset", lab.preset_names(), index=lab.preset_names().index("tiny-linreg"))
    overrides = st.text_input("Overrides (key=value, separated by spaces; none: the preset's own settings, which "
                              "train a model that has learned)", "", key="overrides",
                              placeholder="e.g. model.n_layers=4 train.steps=8000")
    name = st.text_input("Run name (a folder under the run store)", "", key="run_name",
                         placeholder="default: PRESET-TIME")
    submitted = st.form_submit_button("Start training")
if submitted:
    try:
        items = shlex.split(overrides)
        lab.make_config(preset, items)  # a bad key or value stops here, with one line, and nothing starts
        folder = common.runs_root() / check_run_name(name.strip() or f"{preset}-{time.strftime('%Y%m%d-%H%M%S')}")
        if folder.exists():
            raise ValueError(f"{folder.name} already exists; choose another run name")
        jobs.start(f"train-{folder.name}", ["train", preset, *items, "--out", str(folder), "--quiet"])
        st.success(f"Started {folder.name}: it trains in its own process; progress below.")
    except ValueError as e:  # ConfigError is a ValueError
        st.error(str(e))


@st.fragment(run_every=2)
def job_progress():
    names = [n for n in jobs.names() if n.startswith("train-")]
    if not names:
        return
    st.subheader("Training jobs")
    states = {name: jobs.state(name) for name in names}
    running = [n for n in names if states[n] and states[n]["running"]]
    for name in running + [n for n in reversed(names) if n not in running][:max(0, 6 - len(running))]:
        job = states[name]
        folder = common.runs_root() / name[len("train-"):]
        status = common.read_json(folder / "status.json") or {}
        rows = read_metrics(folder / METRICS)  # logged every train.log_every steps: the live progress
        step = rows[-1]["step"] if rows else status.get("step", 0)
        steps = status.get("steps") or 1
        loss = f", loss {rows[-1]['loss']:.4g}" if rows and rows[-1].get("loss") is not None else ""
        cols = st.columns([4, 1])
        if job["running"]:
            cols[0].progress(min(1.0, step / steps), text=f"{folder.name}: step {step} of {steps}{loss}")
            if cols[1].button("Stop", key=f"stop-{name}"):
                jobs.stop(name)
        elif job["returncode"] not in (None, 0) and status.get("status") != "interrupted":
            cols[0].error(f"{folder.name} failed: {jobs.error_line(job) or job['log'][-300:]}")
        else:
            cols[0].caption(f"{folder.name}: {status.get('status', 'finished')} at step {step} of {steps}")


job_progress()
