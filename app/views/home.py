"""The landing page: what the lab is, where to start, and one live chart of a model shipped with the lab."""
import streamlit as st

from app import charts, common
from lab import zoo
from probes.icl_curve import icl_curve

st.title("How do transformers learn in context?")
common.sidebar()
st.markdown(
    "The lab trains small transformers on tasks whose best learner is known (linear regression, Boolean functions, "
    "graph search), then looks inside them and asks which algorithm they run: gradient descent, Newton's method, "
    "least squares, a max-margin SVM over tokens, breadth-first search. Every page opens on a model trained by us "
    "and shipped with the lab (the **zoo**); train your own on the **Runs** page or with `lab train`.")

left, right = st.columns([3, 2])
with right:
    st.subheader("Start here")
    st.page_link("views/tour.py", label="The tour: eight results, one after another", icon=":material/school:")
    st.page_link("views/icl_curve.py", label="In-context curve: a model against least squares",
                 icon=":material/show_chart:")
    st.page_link("views/inside.py", label="Inside the model: attention, patching, attribution",
                 icon=":material/visibility:")
    st.page_link("views/algorithm.py", label="Which algorithm: GD, Newton, ridge or least squares?",
                 icon=":material/functions:")
    st.page_link("views/runs.py", label="Runs: train your own", icon=":material/play_arrow:")
    st.caption("From a terminal: `lab demo` trains and evaluates a model in about two minutes; `lab zoo list` names "
               "the shipped models; `lab reproduce NAME --zoo` checks a paper's claims on them in seconds.")

with left:
    name = common.ZOO_DEFAULT["linear_regression"]
    st.subheader("A transformer that learned least squares")
    if name not in zoo.models():
        st.info("The zoo's regression model is not installed: `lab zoo build garg-curve` trains it.")
    else:
        run = common.load_zoo_run(name)

        @st.cache_data(show_spinner="Evaluating the shipped model on fresh prompts (a few seconds)...")
        def curve(name: str, stamp: float) -> dict:
            return icl_curve(run, n_prompts=256, n_boot=200)

        with common.guard("The curve"):
            result = curve(name, common.checkpoint_stamp(run.path))
            shown = {n: c for n, c in result["curves"].items() if n in ("model", "ols", "averaging", "3-nn")}
            st.altair_chart(charts.curve_chart({**result, "curves": shown}, "clipped"), key="home_chart")
            st.caption(f"Computed now, on 256 fresh prompts: `{zoo.PREFIX}{name}` (d = {result['d']}, "
                       f"{run.config.model.n_layers} layers) against least squares, averaging and 3-nearest "
                       "neighbours. Its error falls with the number of examples k like least squares', far below the "
                       "others: it learned a learning algorithm, with no weight update at test time. Hover a point.")
