"""Runs: the run store as a table, the selected run's loss curve, and new runs started from a preset."""
import shlex
import time

import streamlit as st

import lab
from app import common, jobs
from lab.runs import METRICS, check_run_name, read_metrics
from probes.figures import png_bytes, training_curve

st.title("Runs")
runs, problems = common.sidebar()
if runs:
    st.dataframe([common.run_summary(r) for r in runs], hide_index=True, width="stretch")
else:
    st.info(f"No runs of your own under {common.runs_root()} yet: start one below, or run `lab demo` in a terminal. "
            "Meanwhile every page opens on the models shipped with the lab (below).")
for path, problem in problems:
    st.warning(f"{path.name}: {problem}")
with st.expander(f"Shipped with the lab: {len(common.zoo_runs())} trained models (the zoo)", expanded=not runs):
    st.dataframe([common.run_summary(r) for r in common.zoo_runs()], hide_index=True, width="stretch")
    st.caption("`lab zoo list` names them; `lab.load_run(\"zoo:NAME\")` opens one; `lab reproduce NAME --zoo` "
               "checks an experiment's claims on them in seconds.")


path = common.selected_path()
if path is not None:
    name = common.run_name(lab.load_run(path))
    st.subheader(f"Selected: {name}")
    with common.guard(f"Reading {name}"):
        status = lab.load_run(path).status
        if status.get("status") == "diverged":
            st.error(status.get("message", "this run diverged"))
        elif status.get("status") == "interrupted":
            st.warning(f"Interrupted at the checkpoint of step {status.get('step')}: "
                       f"{status.get('message', 'resume it with the command that started it')}")
        rows = read_metrics(path / METRICS)
        if rows:
            common.image(png_bytes(training_curve(rows, name)))
        else:
            st.caption("No metrics logged yet.")

st.subheader("Start a new run")
with st.form("new_run"):
    preset = st.selectbox("Preset", lab.preset_names(), index=lab.preset_names().index("tiny-linreg"))
    overrides = st.text_input("Overrides (key=value, separated by spaces)", "train.steps=500", key="overrides")
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
    for name in reversed(names[-6:]):
        job = jobs.state(name)
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
