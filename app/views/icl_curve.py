"""In-context curve: the model's error against the number of examples, beside the baselines, on the run's own
prompts or on shifted ones (Garg et al. fig. 2 and their out-of-distribution tests)."""
import streamlit as st

import lab
from app import charts, common
from probes.icl_curve import icl_curve, plot_curve, shifted_task

st.title("In-context curve")
common.sidebar("linear_regression")
st.caption("Squared error / E[y^2] (the zero predictor scores 1) against the number of in-context examples k, "
           "with 90% bootstrap bands, on fresh prompts. Every baseline sees the same prompts.")
run = common.selected_run()
if run is not None:
    common.status_note(run)
    task = run.task
    if run.config.task.name != "linear_regression":
        st.info(f"This page shows linear-regression runs; {common.run_name(run)} trains {run.config.task.name}"
                + {"boolean": ": see the Boolean functions page.", "graph_search": ": see the Graph search page."}
                .get(run.config.task.name, "."))
        st.stop()
    c1, c2, c3 = st.columns(3)
    url = common.url_value  # every setting starts from the page's URL, when a link gives it
    scales, sizes = [0.25, 0.5, 1.0, 2.0, 3.0], [128, 256, 640, 1280]
    d_active = c1.slider("Active dimensions d (x beyond them is 0)", 1, task.d,
                         url("d_active", task.d, (1, task.d)), key="d_active")
    noise = c1.slider("Label noise std", 0.0, 1.0, url("noise", float(task.noise_std), (0.0, 1.0)), 0.05, key="noise")
    x_scale = c2.select_slider("Scale x by", scales, url("x_scale", 1.0, scales), key="x_scale")
    w_scale = c2.select_slider("Scale w by", scales, url("w_scale", 1.0, scales), key="w_scale")
    covs = ["isotropic", "skewed"] if task.x_dist == "gaussian" else ["isotropic"]
    x_cov = c3.radio("x covariance", covs, index=covs.index(url("x_cov", task.x_cov if task.x_cov in covs
                                                                  else covs[0], covs)), key="x_cov")
    n_prompts = c3.select_slider("Prompts", sizes, url("n_prompts", 640, sizes), key="n_prompts")
    common.keep_in_url({"d_active": d_active, "noise": noise, "x_scale": x_scale, "w_scale": w_scale,
                        "x_cov": x_cov, "n_prompts": n_prompts})
    shifts = {"noise_std": noise, "x_scale": x_scale, "w_std": task.w_std * w_scale, "x_cov": x_cov}

    @st.cache_data(max_entries=32, show_spinner="Computing the curve...", hash_funcs={lab.Run: lambda r: 0})
    def curve(path: str, member, stamp: float, shifts: dict, d_active: int, n_prompts: int, of: lab.Run) -> dict:
        return icl_curve(of, n_prompts=n_prompts, task=shifted_task(of.task, **shifts), d_active=d_active)

    with common.guard("The curve"):
        result = curve(str(run.path), st.session_state.get("member"), common.checkpoint_stamp(run.path), shifts,
                       d_active, n_prompts, run)
        names = [n for n in result["curves"] if n != "model"]
        shown = st.multiselect("Baselines", names, default=[n for n in names if n != "zero"], key="baselines")
        view = {**result, "curves": {n: c for n, c in result["curves"].items() if n == "model" or n in shown}}
        left, right = st.columns([3, 2])
        with left:
            y_scale = st.radio("y axis", charts.Y_SCALES, horizontal=True, key="icl_y",
                               help="clipped: the axis ends just above the model's and least squares' errors")
            st.altair_chart(charts.curve_chart(view, y_scale), key="icl_chart")  # hover a point: value and band
            st.download_button("Download as PNG", plot_curve(view), "icl_curve.png", "image/png", key="curve_png")
        reference = common.zoo_reference(run)
        unshifted = shifted_task(run.task, **shifts) == run.task and d_active == task.d
        if reference is not None and unshifted:
            ref = curve(str(reference.path), None, 0.0, shifts, d_active, n_prompts, reference)
            past_d = slice(task.d, None)
            mean = [sum(c["mean"][past_d]) / len(c["mean"][past_d]) for c in (result["curves"]["model"],
                                                                             ref["curves"]["model"])]
            note = common.under_trained_note(run, mean[0], reference, mean[1])
            if note:
                st.warning(note)
        with right:
            k = min(d_active, len(result["k"]) - 1)
            model = result["curves"]["model"]["mean"]
            st.metric(f"Model error at k = {k}", f"{model[k]:.4f}")
            st.metric("Model error at the last k", f"{model[-1]:.4f}",
                      delta=f"{model[-1] - result['curves']['ols']['mean'][-1]:+.4f} vs least squares",
                      delta_color="inverse")
            st.dataframe({"k": result["k"], **{n: [round(v, 4) for v in c["mean"]]
                                               for n, c in view["curves"].items()}}, hide_index=True)
    st.markdown("**What to notice.** Least squares drops to 0 once k reaches d. A model that learned in-context "
                "regression follows it closely; scale x or w beyond training and watch where it stops following.")
