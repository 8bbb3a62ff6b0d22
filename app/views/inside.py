"""Inside the model: attention patterns on one prompt, an edited example, activation and attribution patching,
path patching between heads, the logit lens, direct logit attribution and head ablations."""
import streamlit as st

from app import charts, common
from probes import ablation, dla, lens, patching, solve
from probes.figures import png_bytes
from probes.icl_curve import baselines_for

MAX_SEED = 10**6
ACTIVATIONS = {"resid_pre": "residual stream entering the block", "attn_out": "attention output",
               "mlp_out": "MLP output", "z": "heads' mixed values (z)", "v": "heads' values (v)"}

st.title("Inside the model")
common.sidebar("linear_regression")
run = common.selected_run()
if run is not None and run.config.task.name == "graph_search":
    st.info(f"{common.run_name(run)} searches graphs: its attention trace and reachable sets are on the Graph search "
            "page.")
elif run is not None:
    common.status_note(run)
    n = run.config.task.n_points
    boolean = getattr(run.task, "metric", "") == "accuracy"
    transformer = run.config.model.arch == "transformer"
    run_key = f"{run.path}|{st.session_state.get('member')}"  # each run keeps its own edit
    if "picked_index" in st.session_state:  # a click on the attention chart picked an example (before its widget)
        st.session_state[f"edit_index|{run_key}"] = st.session_state.pop("picked_index")
    c1, c2, c3 = st.columns(3)
    seed = c1.number_input("Prompt seed (0 to 1,000,000)", value=0, step=1, key=f"prompt_seed|{run_key}")
    if seed != int(seed) or not 0 <= seed <= MAX_SEED:
        st.error(f"The prompt seed must be a whole number from 0 to {MAX_SEED:,}; got {seed}.")
        st.stop()
    seed = int(seed)
    prompt = run.task.sample(1, n, seed=seed)
    index = c2.selectbox("Example to edit", list(range(n - 1)), format_func=lambda i: f"example {i + 1}",
                         key=f"edit_index|{run_key}")
    y_now = float(prompt.ys[0, index])
    low, high = patching.label_range(run.task)
    if boolean:  # a Boolean label is -1 or +1: flipping it is the edit
        new_y = c2.selectbox(f"Its label y (originally {y_now:+.0f})", [-y_now, y_now],
                             format_func=lambda v: f"{v:+.0f}", key=f"edit_y|{run_key}|{seed}|{index}")
    else:
        new_y = c2.number_input(f"Its label y (originally {y_now:.3f}; from {low:g} to {high:g})",
                                value=round(y_now + 2.0, 3), step=0.5, key=f"edit_y|{run_key}|{seed}|{index}")
        if not low <= new_y <= high:  # NaN fails too
            st.error(f"The label must be a number from {low:g} to {high:g} (10 standard deviations of this task's "
                     f"y either side of 0); got {new_y:g}.")
            st.stop()
    x_factor = c3.select_slider("Scale its x by", [-1.0, 0.0, 0.5, 1.0, 2.0], 1.0, key=f"edit_x|{run_key}")
    edited = None
    with common.guard("Editing the example"):
        edited = patching.edit_example(prompt, index, y=new_y, x_scale=x_factor)
    if edited is None:
        st.stop()
    stamp = (str(run.path), st.session_state.get("member"), common.checkpoint_stamp(run.path))

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
    st.subheader("Attention patterns (edited prompt)")
    if not transformer:
        st.info(f"This run is a {run.config.model.arch} model: it has no attention heads to look into.")
        st.stop()
    with common.guard("The attention patterns"):
        pats = patching.attention_patterns(run, edited)
        st.caption("Hover a cell for the query token, key token and weight; click a key token to edit its example.")
        event = st.altair_chart(charts.pattern_chart(pats, labels), on_select="rerun", key="pattern_chart")
        key_token = charts.picked_key(event)
        picked = None if key_token is None else min(key_token // (1 if run.format.name == "stacked" else 2), n - 2)
        if picked is not None and picked != index and st.session_state.get("last_pick") != key_token:
            st.session_state["last_pick"] = key_token
            st.session_state["picked_index"] = picked
            st.rerun()
        st.download_button("Download as PNG", png_bytes(patching.patterns_figure(
            pats, labels, "query token (rows) attends to key token (columns)")), "attention_patterns.png",
            "image/png", key="patterns_png")

    st.subheader("Activation patching: original (clean) vs edited (corrupt)")
    st.caption("Exact: run the edited prompt, put back the original activation at one layer and token, and see what "
               "fraction of the original prediction comes back. Attribution patching estimates every cell at once "
               "from one gradient (exact where the prediction is linear in the activation).")
    activation = st.selectbox("Activation to patch", list(ACTIVATIONS), format_func=lambda a: f"{a}: {ACTIVATIONS[a]}",
                              key="patch_activation")

    @st.cache_data(max_entries=16, show_spinner="Patching every layer and token...")
    def patch(stamp, seed: int, index: int, new_y: float, x_factor: float, activation: str) -> dict:
        exact = patching.activation_patching(run, prompt, edited, activation)
        approx = patching.attribution_patching(run, prompt, edited, activation)
        return {"exact": exact, "attribution": approx, "agreement": patching.agreement(exact, approx),
                "activation": activation, "labels": labels}

    @st.cache_data(max_entries=16, show_spinner="Patching every path between heads...")
    def path_result(stamp, seed: int, index: int, new_y: float, x_factor: float) -> dict:  # for any activation
        return patching.path_patching(run, prompt, edited)

    if new_y == round(y_now, 3) and x_factor == 1.0:
        st.info("Edit the example (its label or its x) to see where the change flows.")
    else:
        with common.guard("Activation patching"):
            res = patch(stamp, int(seed), index, float(new_y), float(x_factor), activation)
            layers = [f"layer {l}" for l in range(res["exact"]["layers"])]
            left, right = st.columns(2)
            height = charts.heatmap_height(layers, labels)
            limit = charts.shared_limit(res["exact"]["effect"], res["attribution"]["effect"])  # one colour scale
            left.altair_chart(charts.heatmap_chart(res["exact"]["effect"], layers, labels, "restored",
                                                   "exact activation patching", limit=limit), height=height,
                              key="exact_chart")
            right.altair_chart(charts.heatmap_chart(res["attribution"]["effect"], layers, labels, "restored",
                                                    "attribution patching (one backward pass)", limit=limit),
                               height=height, key="attr_chart")
            a = res["agreement"]
            st.metric("Agreement of attribution with exact patching (correlation over cells)",
                      "-" if a["correlation"] is None else f"{a['correlation']:.3f}",
                      help=f"largest difference {a['max_abs_difference']:.3f}")
            st.markdown("**Path patching.** Only one path carries the original value: the sender head's direct "
                        "output into one receiver (a later head's input, or the read-out); everything else stays "
                        "edited.")
            path = path_result(stamp, int(seed), index, float(new_y), float(x_factor))
            st.altair_chart(charts.heatmap_chart(path["effect"], path["senders"], path["receivers"], "restored",
                                                 "sender (rows) -> receiver (columns)"),
                            height=charts.heatmap_height(path["senders"], path["receivers"]), key="path_chart")
            st.download_button("Download the patching figures as PNG",
                               png_bytes(patching.patching_comparison_figure(res)), "patching.png", "image/png",
                               key="patching_png")

    if run.config.task.name != "linear_regression":
        st.info("The logit lens, direct attribution and head ablations score regression runs (error / E[y^2]).")
        st.stop()

    st.subheader("Logit lens: the read-out on every layer")
    st.caption("The model's own read-out applied to the residual stream after each block (no training), beside a "
               "read-out trained for each layer (Fu et al.): error / E[y^2] by layer and number of examples k.")

    @st.cache_data(max_entries=8, show_spinner="Reading every layer...")
    def lens_result(stamp) -> dict:
        return lens.lens(run, n_prompts=500, n_train=1000)

    with common.guard("The logit lens"):
        res = lens_result(stamp)
        ks = [str(k) for k in res["k"]]
        left, right = st.columns(2)
        height = charts.heatmap_height(res["layers"], ks)
        left.altair_chart(charts.heatmap_chart(res["logit_lens"], res["layers"], ks, "error", "logit lens",
                                               diverging=False, log=True), height=height, key="lens_chart")
        if res["tuned_lens"]:
            right.altair_chart(charts.heatmap_chart(res["tuned_lens"], res["layers"], ks, "error",
                                                    "trained per-layer read-outs", diverging=False, log=True),
                               height=height, key="tuned_chart")

    st.subheader("Direct attribution of the query prediction")
    st.caption("The prediction is a sum: embeddings, each head, each MLP and bias, read out through the final "
               "LayerNorm (its scale frozen). Bars: mean |contribution| over 500 prompts; colour: how it correlates "
               "with the true y.")

    @st.cache_data(max_entries=8, show_spinner="Attributing...")
    def dla_result(stamp) -> dict:
        return dla.direct_attribution(run, n_prompts=500)

    with common.guard("Direct attribution"):
        res = dla_result(stamp)
        st.altair_chart(charts.bar_chart(res["components"], res["mean_abs"], res["corr_with_target"],
                                         "mean |contribution|", "correlation with y"), key="dla_chart")
        st.caption(f"The parts add up to the prediction within {res['sum_error']:.1e} (read-out bias "
                   f"{res['readout_bias']:+.4f}).")

    st.subheader("Head ablations")
    mode = st.radio("Ablation", ["zero", "mean"], horizontal=True, key="ablation_mode",
                    help="zero: the head writes nothing; mean: it writes its average over the prompts")

    @st.cache_data(max_entries=8, show_spinner="Ablating each head...")
    def ablation_result(stamp, mode: str) -> dict:
        return ablation.head_ablations(run, n_prompts=300, mode=mode)

    with common.guard("Head ablations"):
        res = ablation_result(stamp, mode)
        curves = {"k": res["k"], "d": res["d"], "metric": "error / E[y^2]",
                  "curves": {"intact": {"mean": res["intact"], "lo": res["intact"], "hi": res["intact"]},
                             **{f"without {h}": {"mean": res["ablated"][h], "lo": res["ablated"][h],
                                                 "hi": res["ablated"][h]} for h in res["ranked"][:4]}}}
        left, right = st.columns([3, 2])
        left.altair_chart(charts.curve_chart(curves), key="ablation_curves")
        right.dataframe({"head": res["ranked"], "error increase": [round(res["increase"][h], 4)
                                                                   for h in res["ranked"]]}, hide_index=True)
    st.markdown("**What to notice.** The edit enters at one token; patching shows the layers and positions "
                "through which it reaches the prediction (in a trained model, usually the query token late on). The "
                "logit lens shows at which layer the answer appears; attribution and ablations name the heads.")
