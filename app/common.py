"""What every page shares: the run store, the selected run (cached by checkpoint), messages instead of tracebacks,
and images. Holds no science: numbers and figures come from lab and probes."""
from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from pathlib import Path

import streamlit as st
from streamlit.runtime.scriptrunner import add_script_run_ctx, get_script_run_ctx

import lab
from lab import zoo
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
from tasks.checks import shown


def run_name(run: lab.Run) -> str:
    """How a run is named to people: its folder's name, or a zoo model's name."""
    return zoo.PREFIX + run.zoo_name if run.zoo_name else run.path.name


def run_arg(run: lab.Run) -> str:
    """What names the run on a `lab` command line."""
    return zoo.PREFIX + run.zoo_name if run.zoo_name else str(run.path)


def run_summary(run: lab.Run) -> dict:
    """One table row: what the Runs page lists."""
    cfg, rows = run.config, read_metrics(run.path / METRICS)
    status = run.status
    last = rows[-1] if rows else {}
    updated = max((run.path / f).stat().st_mtime for f in (CONFIG, METRICS, STATUS) if (run.path / f).exists())
    task = run.task
    size = f"{task.n_vertices} vertices, {task.distribution}" if cfg.task.name == "graph_search" else f"d={task.d}"
    return {"run": run_name(run), "preset": cfg.preset, "task": f"{cfg.task.name} {size}",
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


# The zoo model each kind of page opens on a fresh install (before the user picks one or trains one of their own)
ZOO_DEFAULT = {"linear_regression": "garg-curve/linreg", "boolean": "bhattamishra-table/conjunction-transformer",
               "representation": "guo-representation/representation", "graph_search": "saparov-distributions/balanced"}
ZOO, YOURS = "zoo (shipped)", "your runs"


@st.cache_resource(show_spinner=False)
def _zoo_runs(stamp: float) -> list[lab.Run]:
    return [lab.load_run(zoo.PREFIX + name) for name in zoo.models()]


def zoo_runs() -> list[lab.Run]:
    """The shipped models (lab/zoo/), read once per manifest."""
    return _zoo_runs(zoo.MANIFEST.stat().st_mtime if zoo.MANIFEST.is_file() else 0.0)


def choose(path: Path) -> None:
    """Make `path` the selected run of every page of its task (and of the pages about no task in particular): the
    sweeps page opens a trial this way."""
    chosen = st.session_state.setdefault("chosen", {})
    chosen["any"] = Path(path)
    try:
        chosen[lab.load_run(path).config.task.name] = Path(path)
    except (OSError, RunFileError):
        pass


def _default(task: str | None, yours: list[lab.Run], shipped: list[lab.Run]) -> lab.Run | None:
    """A page's run before any choice: the user's newest run of its task, else its zoo reference model."""
    def of_task(runs):
        return [r for r in runs if task is None or r.config.task.name == task]

    mine = sorted(of_task(yours), key=lambda r: (r.path / CONFIG).stat().st_mtime)
    if mine:
        return mine[-1]
    by_name = {r.zoo_name: r for r in shipped}
    return by_name.get(ZOO_DEFAULT.get(task, "garg-curve/linreg")) or next(iter(of_task(shipped)), None) \
        or next(iter(shipped), None)


def _picked(slot: str) -> None:
    """The picker changed: the picked run becomes this kind of page's choice, and its own task's."""
    path = st.session_state["picker_paths"][st.session_state["run_picker"]]
    choose(path)
    st.session_state["chosen"][slot] = path


def _source_changed(slot: str, task: str | None) -> None:
    """The zoo / your runs switch changed: this kind of page opens the best run of that source."""
    listed = st.session_state["picker_sources"][st.session_state["run_source"]]
    best = _default(task, listed, []) if st.session_state["run_source"] == YOURS else _default(task, [], listed)
    if best is not None:
        st.session_state["chosen"][slot] = best.path
    else:
        st.session_state["picker_note"] = f"No runs under {runs_root()} yet: train one on the Runs page."


def load_zoo_run(name: str) -> lab.Run:
    """A shipped model, loaded once (the zoo never changes under a running dashboard)."""
    return _load(zoo.PREFIX + name, None, 0.0)


def zoo_reference(run: lab.Run) -> lab.Run | None:
    """A shipped model trained on exactly the run's task and prompt length (None for a zoo model itself, or when the
    zoo has none): what a run of that task reaches when it has learned."""
    if run.zoo_name:
        return None
    return next((r for r in zoo_runs() if r.config.task == run.config.task), None)


UNDER_TRAINED = 0.1  # a run is flagged when its mean error at k >= d exceeds its zoo reference's by this and 2x


def under_trained_note(run: lab.Run, model_error: float, reference: lab.Run, reference_error: float) -> str | None:
    """One line when the run's mean error at k >= d is far above its zoo reference's, with the steps that made it."""
    if not (model_error > reference_error + UNDER_TRAINED and model_error > 2 * reference_error):
        return None
    ref = reference.config
    return (f"Under-trained: at k >= d its mean error is {model_error:.3f}, against {reference_error:.3f} for "
            f"{run_name(reference)} on the same task ({ref.model.n_layers} layers, {ref.train.steps} steps; this run "
            f"{run.config.model.n_layers} layers, {run.config.train.steps} steps). It has not learned the task yet: "
            f"train with the reference's recipe, `{zoo.models()[reference.zoo_name]['command']}`.")


def sidebar(task: str | None = None) -> tuple[list[lab.Run], list[tuple[Path, str]]]:
    """The run picker every page starts with: the models shipped with the lab (zoo) and your runs, listed apart. Each
    kind of page (`task`: linear_regression, boolean, ...) remembers its own choice and opens, before any, the
    user's newest run of its task or else its zoo model; a pick is also remembered for the other pages of the picked
    run's task. Returns what `lab.runs.scan_runs` found (your runs)."""
    slot = task or "any"
    with st.sidebar:
        yours, problems = scan_runs()
        shipped = zoo_runs()
        chosen = st.session_state.setdefault("chosen", {})
        for path in set(chosen.values()) - {r.path for r in yours + shipped}:  # a sweep's trial opened on Sweeps
            try:
                yours.append(lab.load_run(path))
            except (OSError, RunFileError):
                pass
        _apply_url_run(slot, yours + shipped)
        current = chosen.get(slot)
        if current not in [r.path for r in yours + shipped]:
            fallback = _default(task, yours, shipped)
            current = fallback.path if fallback is not None else None
        source = YOURS if current in [r.path for r in yours] else ZOO
        listed = yours if source == YOURS else shipped
        st.session_state["picker_sources"] = {ZOO: shipped, YOURS: yours}
        st.session_state["run_source"] = source  # set before the widgets: each kind of page shows its own choice
        st.radio("Models", [ZOO, YOURS], horizontal=True, key="run_source", on_change=_source_changed,
                 args=(slot, task))
        if current is None:
            st.session_state["run_path"] = st.session_state["member"] = None
            st.caption(f"No runs under {runs_root()} yet." if source == YOURS else "No zoo models are installed.")
        else:
            names = [_display_name(r) for r in listed]
            picked = next(r for r in listed if r.path == current)
            st.session_state["picker_paths"] = dict(zip(names, [r.path for r in listed]))
            st.session_state["run_picker"] = _display_name(picked)
            st.selectbox("Run", names, key="run_picker", on_change=_picked, args=(slot,))
            chosen[slot] = st.session_state["run_path"] = current
            if picked.n_members > 1:
                st.session_state["member"] = st.number_input(f"Member (of {picked.n_members})", 0,
                                                             picked.n_members - 1, _url_member(picked),
                                                             key="member_picker")
            else:
                st.session_state["member"] = None
            _show_in_url(picked)
            if source == ZOO:
                st.caption("Shipped with the lab, trained by `lab zoo build`; read-only (analyses are saved under "
                           f"{runs_root() / 'zoo'}).")
        if "picker_note" in st.session_state:
            st.caption(st.session_state.pop("picker_note"))
        for path, problem in problems:
            st.caption(f"Skipped {path.name}: {problem}")
    return yours, problems


URL_VALUE_MAX = 500  # longer query values are no run name: ignored (and echoed cut short, as every error value)


def _apply_url_run(slot: str, runs: list[lab.Run]) -> None:
    """A link's `?run=NAME` (a name as the picker shows it) opens that run, once per link: a later pick wins. An
    unknown or malformed name is ignored with one line."""
    wanted = st.query_params.get("run")
    if wanted is None or wanted == st.session_state.get("url_run"):
        return
    st.session_state["url_run"] = wanted
    by_name = {_display_name(r): r.path for r in runs}
    if len(wanted) <= URL_VALUE_MAX and wanted in by_name:
        choose(by_name[wanted])
        st.session_state.setdefault("chosen", {})[slot] = by_name[wanted]
    else:
        st.session_state["picker_note"] = f"The link names no run here ({shown(wanted)}): showing the page's default."


def _url_member(run: lab.Run) -> int:
    """The ensemble member a link names (`?member=i`), 0 when it names none or none that exists."""
    text = st.query_params.get("member", "")
    return int(text) if text.isdigit() and len(text) < 6 and int(text) < run.n_members else 0


def _show_in_url(run: lab.Run) -> None:
    """The view's state in its URL (run, member), so a link opens the same view."""
    name = _display_name(run)
    if st.query_params.get("run") != name:
        st.query_params["run"] = name
    st.session_state["url_run"] = name
    member = st.session_state.get("member")
    if member is None:
        st.query_params.pop("member", None)
    elif st.query_params.get("member") != str(member):
        st.query_params["member"] = str(member)


def url_value(key: str, default, allowed):
    """A widget's starting value from the page's URL (`?key=value`, what `keep_in_url` wrote): the value if
    `allowed` (a list of choices, or a (low, high) range of numbers) holds it, else `default`. Never raises."""
    text = st.query_params.get(key)
    if text is None or len(text) > 40:
        return default
    if isinstance(allowed, tuple):
        try:
            value = type(default)(float(text)) if isinstance(default, (int, float)) else None
        except (ValueError, OverflowError):
            return default
        return value if value is not None and allowed[0] <= value <= allowed[1] else default
    return next((c for c in allowed if str(c) == text), default)


def keep_in_url(values: dict) -> None:
    """Write a view's widget values into its URL, so a link opens the same view (read back by `url_value`)."""
    for key, value in values.items():
        if st.query_params.get(key) != str(value):
            st.query_params[key] = str(value)


def _display_name(run: lab.Run) -> str:
    """A run's name in the picker: a zoo model's name, a run's folder name, or its path under the run store for a
    nested one (a trial)."""
    if run.zoo_name:
        return run.zoo_name
    path, root = Path(run.path).absolute(), runs_root().absolute()
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


def with_progress(what: str, work, key: str, size: float = 1.0):
    """Run `work()` (a computation of seconds to minutes) while a progress bar shows the time spent and an estimate:
    the seconds per unit of `size` (prompts, say) that `key` took last time on this machine, kept in
    $LAB_RUNS/.dashboard/timings/seconds.json. Returns work()'s result (its exception is raised here)."""
    path = runs_root() / ".dashboard" / "timings" / "seconds.json"  # beside the jobs' records, not one of them
    timings = read_json(path) or {}
    per_unit = timings.get(key)
    estimate = per_unit * size if isinstance(per_unit, (int, float)) else None
    done: dict = {}

    def target():
        try:
            done["value"] = work()
        except BaseException as e:  # noqa: BLE001 - handed to the page's thread
            done["error"] = e

    thread = threading.Thread(target=target, daemon=True)
    add_script_run_ctx(thread, get_script_run_ctx())  # cached functions inside work() see this page's session
    bar, t0 = st.progress(0.0, text=f"{what} ..."), time.time()
    thread.start()
    while thread.is_alive():
        spent = time.time() - t0
        left = f"about {max(0.0, estimate - spent):.0f} s left" if estimate else "no estimate yet (the first time)"
        bar.progress(min(0.99, spent / estimate) if estimate else 0.0, text=f"{what}: {spent:.0f} s, {left}")
        thread.join(0.5)
    bar.empty()
    if "error" in done:
        raise done["error"]
    if time.time() - t0 > 1.0:  # cache hits are not timings
        try:
            from lab.runs import atomic_write_json

            atomic_write_json(path, {**timings, key: (time.time() - t0) / max(size, 1e-9)})
        except OSError:
            pass  # a read-only run store: no estimate next time, nothing else lost
    return done["value"]


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


def shipped_result(name: str) -> tuple[dict | None, Path]:
    """A reproduction's result and its folder: the user's own quick run where there is one, else the zoo's (the
    result of the models shipped with the lab), else (None, the quick folder)."""
    from probes.experiments.common import experiment_dir

    folder = experiment_dir(name, "quick")
    res = read_json(folder / "result.json")
    if res is None and (zoo.ROOT / name / "result.json").is_file():
        return read_json(zoo.ROOT / name / "result.json"), zoo.ROOT / name
    return res, folder


def claims_table(res: dict) -> None:
    """A result's claims: paper, ours, passed (m of N over seeds where there are several)."""
    def passed(c):
        return f"{c['passed_seeds']}/{c['seeds']}" if "passed_seeds" in c else "yes" if c["passed"] else "no"

    st.dataframe([{"claim": c["claim"], "paper": number(c["paper"]), "ours": number(c["ours"]), "passed": passed(c)}
                  for c in res["claims"]], hide_index=True, width="stretch")


def analysis_file(run: lab.Run, *parts: str) -> Path:
    """A file an analysis of the run wrote (eval/KIND.json, figures/NAME.png): where its analyses go now, else, for
    a zoo model, the one shipped with it (so a fresh install shows it at once)."""
    mine = run.out.joinpath(*parts)
    return mine if mine.is_file() or not run.zoo_name else run.path.joinpath(*parts)


def experiment_result(name: str, figure: str, minutes: int, button_key: str) -> None:
    """A reproduction's result (its figure and claims table): the user's quick run, else the one measured on the
    shipped zoo models at once; and, while it runs in the background, its progress, else a button that runs it
    (`lab reproduce NAME --scale quick`)."""
    from app import jobs

    res, folder = shipped_result(name)
    if res is not None:
        if folder.is_relative_to(zoo.ROOT):
            st.caption(f"Measured on the models shipped with the lab (`lab reproduce {name} --zoo`"
                       f"{', ' + str(res['seeds']) + ' seeds' if res.get('seeds') else ''}).")
        if (folder / "figures" / figure).is_file():
            image((folder / "figures" / figure).read_bytes())
        claims_table(res)
        if not folder.is_relative_to(zoo.ROOT):
            return
    job = jobs.state(name)
    if job is not None and job["running"]:
        st.info(f"`lab reproduce {name} --scale quick` is running (about {minutes} min on a laptop CPU); its "
                "progress, with each training's step, loss and time left:")
        st.code(job["progress"] or "(starting)", language=None)
    else:
        st.caption(f"{'Train it yourself' if res is not None else 'Not computed yet'}: `lab reproduce {name}` (about "
                   f"{minutes} min on a laptop CPU), or:")
        if st.button("Run it in the background", key=button_key):
            jobs.start(name, ["reproduce", name, "--scale", "quick"])
            st.rerun()
