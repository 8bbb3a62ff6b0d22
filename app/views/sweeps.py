"""Sweeps: the sweeps in the run store, each one's trials (live while it runs), a metric against a swept key with
its seed band, a trial opened on the other pages, and a new sweep started from a spec in the background."""
import time
import tomllib

import streamlit as st

import lab
from app import common, jobs
from lab.executor import Job, job_progress
from lab.runs import check_run_name
from lab.sweeps import SPEC, SUMMARY, list_sweeps, read_rows, spec_from_dict, summarize, trials_of
from probes.figures import png_bytes, sweep_figure

EXAMPLE = """name = "depth-lr"
preset = "tiny-linreg"
seeds = "0..1"
metrics = ["loss", "curves.model.mean[d]"]
eval_prompts = 320

[fixed]
"train.steps" = 300

[grid]
"model.n_layers" = [1, 2]
"train.lr" = [1e-3, 3e-3]
"""

st.title("Sweeps")
common.sidebar()
sweeps = list_sweeps()


def trial_state(row: dict) -> str:
    """A pending trial's progress, read from its run folder (or the ensemble it is packed in)."""
    if row["status"] != "pending":
        return row["status"]
    folder = row.get("packed_in") or row["run_dir"]
    try:
        run = lab.load_run(folder)
        status = run.status
    except (FileNotFoundError, ValueError):
        return "queued"
    live = job_progress(Job(run.path, run.config.to_dict(), []))  # "NAME step/steps, loss L, T left" while training
    if live is not None:
        return "training " + live.split(" ", 1)[1]
    return f"{status.get('status', 'starting')} {status.get('step', 0)}/{status.get('steps', '?')}"


@st.fragment(run_every=3)
def trials_table(folder):
    with common.guard(f"Reading {folder.name}'s trials"):  # a fragment reruns alone, outside the page's guard
        _trials_table(folder)


def _trials_table(folder):
    rows = read_rows(folder)
    if not rows:
        st.caption("No trial has been planned yet (the sweep is starting).")
        return
    table = [{"trial": r["trial"], "seed": r["seed"], "state": trial_state(r),
              **{k: common.number(v) for k, v in r["overrides"].items()},
              **{m: common.number(v) for m, v in (r["metrics"] or {}).items()},
              "wall s": round(r["wall_s"], 1) if r["status"] != "pending" else None,
              "error": r["error"] or ""} for r in rows]
    done = sum(r["status"] == "done" for r in rows)
    st.caption(f"{done} of {len(rows)} trials done; {sum(r['status'] not in ('done', 'pending') for r in rows)} "
               "failed. This table refreshes every 3 s.")
    st.dataframe(table, hide_index=True, width="stretch")


if not sweeps:
    st.info(f"No sweeps under {common.runs_root()} yet: start one below, or from a terminal: "
            "`lab sweep tiny-linreg train.steps=300 model.n_layers=1,2 seeds=0..2`.")
    st.subheader("Meanwhile: a sweep over depth, shipped with the lab")
    st.caption("`akyurek-depth` trains the same regression task at depth 1, 2, 4 and 8 (one executor, one trial "
               "per depth, as a sweep does) and asks which algorithm each depth is closest to (Akyurek et al.).")
    common.experiment_result("akyurek-depth", "spd_by_depth.png", 10, "sweeps_akyurek_run")
else:
    names = [p.name for p in sweeps]
    folder = sweeps[names.index(st.selectbox("Sweep", names, index=len(names) - 1, key="sweep_picker"))]
    with common.guard(f"Reading {folder.name}"):
        spec = common.read_json(folder / SPEC) or {}
        summary = common.read_json(folder / SUMMARY)
        swept = spec.get("swept", [])
        st.caption(f"preset {spec.get('preset')}; swept: {', '.join(swept) or 'seeds only'}; "
                   f"seeds {spec.get('seeds')}; {spec.get('n_trials')} trials. Folder: {folder}")
        trials_table(folder)

        rows = read_rows(folder)
        metrics = spec.get("metrics", ["loss"])
        settings = summarize(metrics, rows)
        if any(s["done"] for s in settings):
            c1, c2 = st.columns(2)
            metric = c1.selectbox("Metric", metrics, key="sweep_metric")
            key = c2.selectbox("Against", swept or ["seed"], key="sweep_key")
            common.image(png_bytes(sweep_figure(settings, metric, [key], f"{folder.name}: {metric}, mean over seeds "
                                                "with a 90% bootstrap band")))
            if summary is None:
                st.caption("The sweep is still running: the figure shows the trials finished so far.")
        done = [r for r in rows if r["status"] == "done"]
        if done:
            pick = st.selectbox("Trial", [r["trial"] for r in done], key="sweep_trial")
            if st.button("Open this trial on the other pages", key="open_trial"):
                row = done[[r["trial"] for r in done].index(pick)]
                common.choose(common.Path(row["run_dir"]))
                st.success(f"{pick} is the selected run now: the sidebar shows it on every page.")

st.subheader("Start a sweep")
with st.form("new_sweep"):
    text = st.text_area("Sweep spec (TOML; see `lab sweep --help` and the README)", EXAMPLE, height=260,
                        key="sweep_spec")
    submitted = st.form_submit_button("Start the sweep")
if submitted:
    try:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise ValueError(f"the spec is not valid TOML: {e}") from None
        name = check_run_name(str(data.get("name") or f"sweep-{time.strftime('%Y%m%d-%H%M%S')}"))
        spec = spec_from_dict(data, name=name)
        trials_of(spec, common.runs_root() / f"sweep-{name}")  # every trial's config checked before anything starts
        path = jobs.jobs_dir() / f"sweep-{name}.toml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        jobs.start(f"sweep-{name}", ["sweep", str(path), "--quiet"])
        st.success(f"Started sweep-{name}: it runs in its own process on an embedded Ray cluster; pick it above.")
    except ValueError as e:  # ConfigError and SpecError are ValueErrors
        st.error(str(e))


@st.fragment(run_every=2)
def sweep_jobs():
    for name in [n for n in jobs.names() if n.startswith("sweep-")]:
        job = jobs.state(name)
        if job is None:
            continue
        if job["running"]:
            st.caption(f"{name}: running")
            if st.button(f"Stop {name}", key=f"stop-{name}"):
                jobs.stop(name)
        elif job["returncode"] not in (None, 0):
            st.error(f"{name} stopped: {jobs.error_line(job) or 'see its log'}")


sweep_jobs()
