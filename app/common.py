"""What every page shares: the run store, the selected run (cached by checkpoint), messages instead of tracebacks,
and images. Holds no science: numbers and figures come from lab and probes."""
from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path

import streamlit as st

import lab
from lab.runs import (
    CHECKPOINT,
    CONFIG,
    METRICS,
    STATUS,
    RunFileError,
    read_json_file,
    read_metrics,
    resume_command,
    runs_root,
    scan_runs,
)


def run_summary(run: lab.Run) -> dict:
    """One table row: what the Runs page lists."""
    cfg, rows = run.config, read_metrics(run.path / METRICS)
    status = run.status
    last = rows[-1] if rows else {}
    updated = max((run.path / f).stat().st_mtime for f in (CONFIG, METRICS, STATUS) if (run.path / f).exists())
    task = run.task
    size = f"{task.n_vertices} vertices, {task.distribution}" if cfg.task.name == "graph_search" else f"d={task.d}"
    return {"run": run.path.name, "preset": cfg.preset, "task": f"{cfg.task.name} {size}",
            "format": cfg.task.format, "model": f"{cfg.model.n_layers}L x {cfg.model.d_model}, {cfg.model.n_heads}h",
            "members": cfg.ensemble.size, "status": status.get("status", "?"),
            "step": f"{status.get('step', last.get('step', 0))}/{cfg.train.steps}",
            "final loss": last.get("loss"), "updated": time.strftime("%Y-%m-%d %H:%M", time.localtime(updated))}


def checkpoint_stamp(path: Path) -> float:
    """The checkpoint's modification time (0 if none): part of every cache key, so a new checkpoint reloads."""
    ckpt = Path(path) / CHECKPOINT
    return ckpt.stat().st_mtime if ckpt.is_file() else 0.0


@st.cache_resource(max_entries=8, show_spinner=False)
def _load(path: str, member: int | None, stamp: float) -> lab.Run:
    run = lab.load_run(path)
    if member is not None:
        run = run.member(member)
    _ = run.model  # load now, inside the cache: the model is what is expensive
    return run


def sidebar() -> tuple[list[lab.Run], list[tuple[Path, str]]]:
    """The run picker every page starts with: the selected run (and ensemble member) live in session state.
    Returns what `lab.runs.scan_runs` found."""
    with st.sidebar:
        runs, problems = scan_runs()
        current = st.session_state.get("run_path")
        if current is not None and current not in [r.path for r in runs]:  # a sweep's trial, opened on Sweeps
            try:
                runs.append(lab.load_run(current))
            except (OSError, RunFileError):
                pass
        names = [_display_name(r.path) for r in runs]
        if names:
            index = names.index(_display_name(current)) if current is not None and _display_name(current) in names \
                else len(names) - 1
            choice = st.selectbox("Run", names, index=index, key="run_picker")
            chosen = runs[names.index(choice)]
            st.session_state["run_path"] = chosen.path
            if chosen.n_members > 1:
                st.session_state["member"] = st.number_input(f"Member (of {chosen.n_members})", 0,
                                                             chosen.n_members - 1, 0, key="member_picker")
            else:
                st.session_state["member"] = None
        else:
            st.session_state["run_path"] = st.session_state["member"] = None
            st.caption(f"No runs under {runs_root()} yet.")
        for path, problem in problems:
            st.caption(f"Skipped {path.name}: {problem}")
    return runs, problems


def _display_name(path: Path) -> str:
    """A run's name in the picker: its folder name, or its path under the run store for a nested one (a trial)."""
    path, root = Path(path).absolute(), runs_root().absolute()
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def selected_path() -> Path | None:
    return st.session_state.get("run_path")


def selected_run(need_model: bool = True) -> lab.Run | None:
    """The run picked in the sidebar (the member, for an ensemble), or None after showing why there is none."""
    path = selected_path()
    if path is None:
        st.info("No run selected. Train one on the Runs page, or from a terminal: `lab train tiny-linreg`.")
        return None
    member = st.session_state.get("member")
    try:
        if not need_model:
            run = lab.load_run(path)
            return run.member(member) if member is not None else run
        return _load(str(path), member, checkpoint_stamp(path))
    except FileNotFoundError:
        st.warning(f"{Path(path).name} has no checkpoint yet (still starting?). Come back in a moment, or train "
                   f"it: `{resume_command(path)}`.")
    except RunFileError as e:  # one line naming the file and what is wrong with it
        st.error(f"{Path(path).name} cannot be loaded: {e}")
    except Exception as e:
        st.error(f"{Path(path).name} cannot be loaded: {type(e).__name__}: {e}")
    return None


def status_note(run: lab.Run) -> None:
    """A line about a run that is still training, stopped or diverged (its last checkpoint is what is shown)."""
    try:
        st_ = run.status
    except RunFileError as e:
        st.caption(f"Its status is unknown: {e}.")
        return
    state = st_.get("status")
    if state == "running":
        st.caption(f"Still training: showing its checkpoint at step {st_.get('step')} of {st_.get('steps')}.")
    elif state in ("interrupted", "diverged"):
        st.caption(f"This run is {state}: {st_.get('message', 'showing its last checkpoint')}.")


@contextmanager
def guard(what: str):
    """Show a failure as one line (what failed and why), never as a traceback."""
    try:
        yield
    except Exception as e:
        st.error(f"{what} failed: {type(e).__name__}: {e}")


def image(png: bytes, caption: str | None = None) -> None:
    st.image(png, caption=caption, width="stretch")


def number(v) -> str:
    """A number as people read it (4 significant digits); anything else as text."""
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def read_json(path: Path) -> dict | None:
    """A JSON object that an analysis wrote (RUN/eval/KIND.json, a result.json), or None when there is none or it
    cannot be read (then it is computed again)."""
    try:
        return read_json_file(path)
    except (OSError, RunFileError):
        return None


def experiment_result(name: str, figure: str, minutes: int, button_key: str) -> None:
    """A reproduction's quick-scale result (its figure and claims table), or, before it exists, its progress while
    it runs in the background, or a button that starts it (`lab reproduce NAME --scale quick`)."""
    from app import jobs
    from probes.experiments.common import experiment_dir

    folder = experiment_dir(name, "quick")
    res = read_json(folder / "result.json")
    if res is None:
        job = jobs.state(name)
        if job is not None and job["running"]:
            st.info(f"`lab reproduce {name} --scale quick` is running (about {minutes} min on a laptop CPU).")
            st.code(job["log"] or "(starting)", language=None)
        else:
            st.caption(f"Not computed yet: `lab reproduce {name}` (about {minutes} min on a laptop CPU), or:")
            if st.button("Run it in the background", key=button_key):
                jobs.start(name, ["reproduce", name, "--scale", "quick", "--quiet"])
                st.rerun()
        return
    if (folder / "figures" / figure).is_file():
        image((folder / "figures" / figure).read_bytes())
    st.dataframe([{"claim": c["claim"], "paper": number(c["paper"]), "ours": number(c["ours"]),
                   "passed": "yes" if c["passed"] else "no"} for c in res["claims"]], hide_index=True, width="stretch")
