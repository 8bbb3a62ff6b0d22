"""Which algorithm: the probes of `lab probe` on the selected run, with their figures. A result already computed
(RUN/eval/KIND.json) is shown at once, and until it is, the result shipped with the run's zoo reference (a zoo model
of the same task); the buttons compute it (again) on fresh prompts."""
import streamlit as st

from app import common
from app.tables import NOTES, TABLES
from probes import figures
from probes.inspect import PROBES, not_applicable, probe_run

st.title("Which algorithm?")
common.sidebar("linear_regression")
run = common.selected_run()

SECTIONS = {
    "match": ("Closest algorithm by SPD (Akyurek et al.)",
              "Squared prediction difference to the best one-step GD, ridge and least squares: the smallest is the "
              "algorithm the model's predictions are closest to."),
    "readout": ("Layer by layer: Newton iterations or GD steps? (Fu et al.)",
                "A linear read-out of each layer, matched by similarity of errors to Newton's method and to GD: "
                "Newton iterations grow linearly with depth, GD steps exponentially."),
    "probe": ("What do the layers encode? (Akyurek et al.)",
              "R^2 of probes for the least-squares weights w_OLS and for X^T y, layer by layer, against the same "
              "model untrained."),
    "construction": ("Trained weights vs the GD construction (von Oswald et al.)",
                     "For one linear self-attention layer: W_KQ and W_PV beside the weights that implement one "
                     "gradient-descent step exactly."),
    "search": ("Graph search: circuits and reachable sets per layer (Saparov et al.)",
               "For a graph-search run: the path-merge length of the traced circuits per block, which vertices each "
               "edge token knows to be reachable, layer by layer, and the attention entries that carry one answer "
               "(more on the Graph search page)."),
}
FIGURES = {"readout": "readout.png", "construction": "kq_pv.png", "search": "reach.png"}


if run is not None:
    common.status_note(run)
    n_prompts = st.select_slider("Prompts per probe", [200, 500, 1000, 2000], 500, key="probe_prompts")
    for kind, (title, text) in SECTIONS.items():
        st.subheader(title)
        st.caption(text)
        why_not = not_applicable(run, kind)
        if why_not:
            st.caption(f"Not for this run: this probe {why_not}.")
            continue
        if st.button(f"Run `{kind}` on this run", key=f"run-{kind}"):
            with common.guard(f"Probe {kind}"):
                common.with_progress(f"lab probe {common.run_name(run)} {kind}",
                                     lambda kind=kind: probe_run(run, kind, n_prompts=n_prompts), f"probe-{kind}",
                                     n_prompts)
        shown = run
        res = common.read_json(common.analysis_file(run, "eval", f"{kind}.json"))
        if res is None:
            st.caption(f"Not computed yet: press the button, or `lab probe {common.run_arg(run)} {kind}`.")
            reference = common.zoo_reference(run)  # meanwhile, what a model of the same task that learned gives
            res = reference and common.read_json(common.analysis_file(reference, "eval", f"{kind}.json"))
            if not res:
                continue
            shown = reference
            st.caption(f"Meanwhile, the same probe on the zoo's model of this task, {common.run_name(reference)} "
                       f"({reference.config.train.steps} steps), as shipped with the lab:")
        if kind == "match":  # each figure the page's full width, so its text reads at the size of the page's
            common.image(figures.png_bytes(figures.spd_figure(res)))
        elif kind == "probe":
            common.image(figures.png_bytes(figures.probe_figure(res)))
        elif common.analysis_file(shown, "figures", FIGURES[kind]).is_file():
            common.image(common.analysis_file(shown, "figures", FIGURES[kind]).read_bytes())
        if kind in TABLES:
            with common.guard(f"The {kind} table"):
                st.dataframe(TABLES[kind](res), hide_index=True, width="stretch")
                if kind in NOTES and NOTES[kind](res):
                    st.caption(NOTES[kind](res))
        else:
            st.code(PROBES[kind].format(res), language=None)
