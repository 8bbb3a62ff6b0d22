"""Learning with a representation (Guo et al. 2023): a representation run's error beside the oracle ridge on Phi*(x),
where its layers hold Phi*(x_i) (linear probes at the x and y tokens, beside an untrained control), how strongly the
y tokens attend to their own x token, and the result of `lab reproduce guo-representation` (with pasting)."""
import streamlit as st

from app import charts, common
from probes import representation as rep
from probes.experiments.guo import untrained_like
from probes.icl_curve import EVAL_SEED, icl_curve

st.title("Learning with a representation")
common.sidebar("representation")
st.caption("y = <w, Phi*(x)> + noise: Phi* is one fixed random MLP shared by every prompt, w is fresh per prompt. "
           "The best learner is ridge regression on Phi*(x) (the oracle); ridge on x alone cannot fit it.")
run = common.selected_run()
if run is not None and run.config.task.name != "representation":
    st.info(f"{common.run_name(run)} trains {run.config.task.name}. Train a representation run to see it here: "
            "`lab train guo-representation task.d=5 task.D=5 task.n_points=16 model.n_layers=4 model.d_model=64 "
            "model.n_heads=4 train.lr=1e-3 curriculum.enabled=false train.steps=5000`, or run the reproduction below.")
elif run is not None:
    common.status_note(run)
    n_prompts = st.select_slider("Prompts", [128, 256, 512], 256, key="rep_prompts")

    @st.cache_data(max_entries=16, show_spinner=False)
    def analysis(path: str, member, stamp: float, n_prompts: int) -> dict:
        n, dtype = run.config.task.n_points, next(run.model.parameters()).dtype
        train = run.task.sample(n_prompts, n, seed=EVAL_SEED + 1, dtype=dtype)
        test = run.task.sample(max(64, n_prompts // 2), n, seed=EVAL_SEED + 2, dtype=dtype)
        control = untrained_like(run)
        probes = {f"{who}, {tokens} tokens": rep.token_probe(m, run.format, train, test, tokens=tokens)
                  for who, m in (("trained", run.model), ("untrained", control)) for tokens in ("x", "y")}
        return {"curve": icl_curve(run, n_prompts=n_prompts, n_boot=300), "probes": probes,
                "floor": rep.linear_in_x_r2(train, test),
                "attention": rep.previous_token_attention(run.model, run.format, test).tolist()}

    with common.guard("The representation analysis"):
        a = common.with_progress("Evaluating and probing", lambda: analysis(
            str(run.path), st.session_state.get("member"), common.checkpoint_stamp(run.path), n_prompts),
            "representation", n_prompts)
        left, right = st.columns(2)
        with left:
            y_scale = st.radio("y axis", charts.Y_SCALES, index=2, horizontal=True, key="rep_y")
            st.altair_chart(charts.curve_chart(a["curve"], y_scale), width="stretch")
        with right:
            rows = [{"layer": l, "R^2": v, "probe": name} for name, vals in a["probes"].items()
                    for l, v in enumerate(vals)]
            st.altair_chart(charts.line_chart(rows, "layer", "R^2", "probe", y_domain=(-0.5, 1.0),
                                              title="linear probe of Phi*(x_i), by layer (0 = read-in)"),
                            width="stretch")
            st.caption(f"An affine function of x alone reaches R^2 = {a['floor']:.3f}: what any linear read-in gives. "
                       "The axis stops at -0.5: a probe below it predicts worse than the mean.")
        att = a["attention"]  # [L, H]
        layers, heads = [f"layer {l}" for l in range(len(att))], [f"head {h}" for h in range(len(att[0]))]
        st.altair_chart(charts.heatmap_chart(att, layers, heads, "attention to own x",
                                             "how much each y token attends to its own x token (copying)",
                                             diverging=False), height=charts.heatmap_height(layers, heads),
                        width="stretch")

st.subheader("The reproduction: oracle, probes, pasting, copying")
common.experiment_result("guo-representation", "representation.png", 6, "guo_run")
st.markdown("**What to notice.** The model's error follows the oracle ridge on Phi*(x), far below ridge on x. The "
            "probes find Phi*(x_i) at the x tokens after the first block (beyond what is linear in x and beyond the "
            "untrained control), and, partly, at the y tokens, which attend to their own x token (copying). Guo et al. "
            "paste the upper layers onto a new embedding of (Phi*(x), y) and find near-optimal linear in-context "
            "regression; at the quick scale the pasted module gets most of the way (its table says how far).")
