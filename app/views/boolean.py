"""Boolean functions in context (Bhattamishra et al. 2023): a Boolean run's accuracy against the number of
examples beside the baselines and the exact learner, on its own class or another; and the class x architecture
table of `lab reproduce bhattamishra-table`."""
import streamlit as st

from app import common
from probes.boolean_learners import all_prefix_mean
from probes.icl_curve import icl_curve, plot_curve, shifted_task
from tasks.boolean import CLASSES, TEACHABLE

st.title("Boolean functions")
common.sidebar("boolean")
st.caption("Inputs in {-1, +1}^n, a fresh function per prompt, labels +-1; accuracy of the sign of the prediction "
           "(a score of 0 is wrong) against the number of in-context examples k, with 90% bootstrap bands. The "
           "paper's scalar is the accuracy averaged over every prefix k = 0..N-1.")
run = common.selected_run()
if run is not None and run.config.task.name != "boolean":
    st.info(f"{common.run_name(run)} trains {run.config.task.name}. Train a Boolean run to see its curve here: "
            "`lab train boolean-tiny task.fn=conjunction` (or start it from the Runs page).")
elif run is not None:
    common.status_note(run)
    task = run.task
    c1, c2, c3 = st.columns(3)
    fn = c1.selectbox("Function class of the prompts", CLASSES, index=CLASSES.index(task.fn), key="bool_fn")
    teaching = c2.toggle("Teaching prefix first", value=task.teaching, disabled=fn not in TEACHABLE,
                         key="bool_teaching") and fn in TEACHABLE
    n_prompts = c3.select_slider("Prompts", [128, 256, 512, 1024], 256, key="bool_prompts")
    if fn != task.fn or teaching != task.teaching:
        st.caption(f"The model was trained on {task.fn}{' with teaching prefixes' if task.teaching else ''}: "
                   "these prompts are out of its training distribution.")

    @st.cache_data(max_entries=32, show_spinner="Computing accuracies...")
    def curve(path: str, member, stamp: float, fn: str, teaching: bool, n_prompts: int) -> dict:
        return icl_curve(run, n_prompts=n_prompts, n_boot=300, task=shifted_task(run.task, fn=fn, teaching=teaching))

    with common.guard("The accuracy curve"):
        result = curve(str(run.path), st.session_state.get("member"), common.checkpoint_stamp(run.path), fn,
                       teaching, n_prompts)
        left, right = st.columns([3, 2])
        with left:
            common.image(plot_curve(result))
        with right:
            means = {name: c["mean"] for name, c in result["curves"].items()}
            st.metric("Model accuracy, all prefixes (the paper's measure)", f"{all_prefix_mean(means['model']):.3f}")
            st.metric("Model accuracy at the last prefix", f"{means['model'][-1]:.3f}")
            best = max((n for n in means if n != "model"), key=lambda n: all_prefix_mean(means[n]))
            st.metric(f"Best baseline, all prefixes ({best})", f"{all_prefix_mean(means[best]):.3f}")
            st.dataframe({"learner": list(means),
                          "all prefixes": [round(all_prefix_mean(m), 3) for m in means.values()],
                          "last prefix": [round(m[-1], 3) for m in means.values()]}, hide_index=True)

st.subheader("Classes x architectures")
common.experiment_result("bhattamishra-table", "table.png", 9, "bool_table_run")
st.markdown("**What to notice.** Conjunctions and disjunctions are learned almost as well as the exact learner "
            "(literal elimination), while no sequence model does better on parities than guessing from the query "
            "alone or copying the nearest earlier example, although Gaussian elimination over GF(2) solves them "
            "exactly. A teaching prefix puts the most informative examples first.")
