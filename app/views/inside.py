"""Inside the model: attention patterns on one prompt, an edited example, and activation patching."""
import streamlit as st

from app import common
from probes import patching, solve
from probes.icl_curve import baselines_for
from probes.figures import png_bytes

st.title("Inside the model")
common.sidebar()
run = common.selected_run()
if run is not None and run.config.task.name == "graph_search":
    st.info(f"{run.path.name} searches graphs: its attention trace and reachable sets are on the Graph search page.")
elif run is not None:
    common.status_note(run)
    n = run.config.task.n_points
    boolean = getattr(run.task, "metric", "") == "accuracy"
    c1, c2, c3 = st.columns(3)
    seed = c1.number_input("Prompt seed", 0, 10**6, 0, key="prompt_seed")
    prompt = run.task.sample(1, n, seed=int(seed))
    index = c2.selectbox("Example to edit", list(range(n - 1)), format_func=lambda i: f"example {i + 1}",
                         key="edit_index")
    y_now = float(prompt.ys[0, index])
    new_y = c2.number_input(f"Its label y (originally {y_now:.3f})", value=round(y_now + 2.0, 3), step=0.5,
                            key=f"edit_y_{seed}_{index}")
    x_factor = c3.select_slider("Scale its x by", [-1.0, 0.0, 0.5, 1.0, 2.0], 1.0, key="edit_x")
    edited = patching.edit_example(prompt, index, y=new_y, x_scale=x_factor)

    with common.guard("The prediction"):
        before, after = patching.query_prediction(run, prompt).item(), patching.query_prediction(run, edited).item()
        # the reference learner beside the model: least squares, or for Boolean tasks the exact learner (or 1-NN)
        reference = baselines_for(run.task).get("exact", ("knn", {"k": 1})) if boolean else ("ols", {})
        ref_label = {"ols": "Least squares", "knn": "1-NN", "elimination": "Literal elimination",
                     "gf2": "GF(2) elimination"}[reference[0]]
        ref = solve(reference[0], edited, **reference[1])[0, -1].item()
        m1, m2, m3, m4 = st.columns(4)
        unit = "logit for y = +1" if boolean else "prediction"
        m1.metric(f"Model {unit}, original prompt", f"{before:.4f}")
        m2.metric(f"Model {unit}, edited prompt", f"{after:.4f}", delta=f"{after - before:+.4f}")
        m3.metric(f"{ref_label} on the edited prompt", f"{ref:.4f}")
        m4.metric("True y of the query", f"{prompt.ys[0, -1].item():.4f}")

    labels = patching.token_labels(run, n)
    arch = run.config.model.arch
    st.subheader("Attention patterns (edited prompt)")
    if arch != "transformer":
        st.info(f"This run is a {arch} model: it has no attention to show.")
    else:
        with common.guard("The attention patterns"):
            pats = patching.attention_patterns(run, edited)
            common.image(png_bytes(patching.patterns_figure(pats, labels, "query token (rows) attends to key "
                                                                           "token (columns)")))

    st.subheader("Activation patching: original (clean) vs edited (corrupt)")
    st.caption("Each cell: run the edited prompt, but put back the original residual stream at one layer and "
               "token; the colour is the fraction of the original prediction that comes back.")

    @st.cache_data(max_entries=16, show_spinner="Patching every layer and token...")
    def patch(path: str, member, stamp: float, seed: int, index: int, new_y: float, x_factor: float) -> dict:
        return patching.activation_patching(run, prompt, edited)

    if new_y == round(y_now, 3) and x_factor == 1.0:
        st.info("Edit the example (its label or its x) to see where the change flows.")
        st.stop()
    with common.guard("Activation patching"):
        res = patch(str(run.path), st.session_state.get("member"), common.checkpoint_stamp(run.path), int(seed),
                    index, float(new_y), float(x_factor))
        common.image(png_bytes(patching.patching_figure(res, labels)))
    st.markdown("**What to notice.** The edit enters at one token; patching shows the layers and positions "
                "through which it reaches the prediction (in a trained model, usually the query token late on).")
